"""Pareto planner logic: inputs as one hashable value, candidates and frontier from planner.search, chart axes."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from planner.costs import HARDWARE, PATTERN_SPEEDUPS, hardware_profile, this_machine
from planner.laws import default_law
from planner.plan import Hardware
from planner.search import DEFAULT_SPARSITIES, SCHEDULE_OPTIONS, candidates, pareto_front

THIS_MACHINE = "this machine"
HARDWARE_CHOICES = (*HARDWARE, THIS_MACHINE)
SCHEDULE_CHOICES = tuple(SCHEDULE_OPTIONS)
SEED_SCHEDULE = "geometric 25-75"  # the seed's near-optimal default: geometric, 25% -> 75% of training compute


@dataclass(frozen=True)
class PlannerInputs:
    """Everything the Pareto page asks for; frozen so st.cache_data can key on it."""
    mode: str = "loss"  # "loss": reach target_loss at least cost; "budget": spend budget_flops, trade loss
    target_loss: float = 2.6
    budget_flops: float = 1e21
    lifetime_tokens: float = 1e12
    hardware: str = "h100"
    usd_per_gpu_hour: float | None = None  # None: the profile's rate
    mfu_train: float = 0.4
    mfu_prefill: float = 0.5
    mfu_decode: float = 0.05
    pattern: str = "unstructured"
    speedups: tuple[float, float, float] | None = None  # (train, prefill, decode); None: the pattern's defaults
    sparsities: tuple[float, ...] = tuple(float(s) for s in DEFAULT_SPARSITIES)
    schedules: tuple[str, ...] = (SEED_SCHEDULE,)
    units: str = "flops"  # "flops" or "usd"
    machine_peak: float | None = None  # FLOP/s measured once for "this machine"


def hardware(inputs: PlannerInputs) -> Hardware:
    over = {"mfu_train": inputs.mfu_train, "mfu_prefill": inputs.mfu_prefill, "mfu_decode": inputs.mfu_decode}
    if inputs.speedups is not None:
        over |= dict(zip(("speedup_train", "speedup_prefill", "speedup_decode"), inputs.speedups))
    if inputs.usd_per_gpu_hour is not None:
        over["usd_per_gpu_hour"] = inputs.usd_per_gpu_hour
    if inputs.hardware == THIS_MACHINE:
        return this_machine(inputs.machine_peak, inputs.pattern, **over)
    return hardware_profile(inputs.hardware, inputs.pattern, **over)


def pattern_speedups(pattern: str) -> tuple[float, float, float]:
    return PATTERN_SPEEDUPS[pattern]


def candidate_table(inputs: PlannerInputs) -> pd.DataFrame:
    """Every candidate under the Epoch-replication law applied with N_avg, with a readable id per row."""
    common = dict(hardware=hardware(inputs), lifetime_tokens=inputs.lifetime_tokens, schedules=inputs.schedules,
                  sparsities=inputs.sparsities)
    if inputs.mode == "loss":
        df = candidates(default_law(), target_loss=inputs.target_loss, **common)
    else:
        df = candidates(default_law(), budget_flops=inputs.budget_flops, **common)
    df["plan_id"] = (("d" + df["d_model"].astype(str)) + " · " + (df["final_sparsity"] * 100).round().astype(int)
                     .astype(str) + "% · " + df["schedule"].astype(str))
    return df


@dataclass(frozen=True)
class Axes:
    x: str
    y: str
    x_title: str
    y_title: str


def axes(inputs: PlannerInputs) -> Axes:
    """Target-loss mode: training vs inference cost at one loss. Budget mode: inference cost vs loss at one
    training budget (every candidate spends the same training FLOPs there)."""
    usd = inputs.units == "usd"
    train = ("train_usd", "Training cost (US$)") if usd else \
        ("train_flops_effective", "Training compute, effective (FLOP)")
    infer = ("inference_usd", "Lifetime inference cost (US$)") if usd else \
        ("lifetime_inference_flops", "Lifetime inference compute (FLOP)")
    if inputs.mode == "loss":
        return Axes(train[0], infer[0], train[1], infer[1])
    return Axes(infer[0], "loss", infer[1], "Predicted loss (nats/token)")


def frontier(df: pd.DataFrame, ax: Axes) -> pd.DataFrame:
    return pareto_front(df, [ax.x, ax.y])


def clicked_plan(event, selection: str = "pick") -> str | None:
    """The plan_id of a point clicked in the chart (st.altair_chart's selection state), if any."""
    picks = ((event or {}).get("selection") or {}).get(selection) or []
    return picks[0].get("plan_id") if picks else None


SUMMARY_FIELDS = {
    "d_model": ("width d_model", "{:.0f}"), "n_layer": ("layers", "{:.0f}"), "final_sparsity": ("final sparsity", "{:.0%}"),
    "schedule": ("schedule", "{}"), "n_avg": ("N_avg", "{:.4g}"), "n_final": ("N_final", "{:.4g}"),
    "tokens": ("training tokens", "{:.4g}"), "loss": ("predicted loss", "{:.3f}"),
    "train_flops_effective": ("training FLOP (effective)", "{:.3g}"),
    "lifetime_inference_flops": ("lifetime inference FLOP", "{:.3g}"),
    "train_usd": ("training $", "{:,.0f}"), "inference_usd": ("inference $", "{:,.0f}"),
}


def plan_summary(df: pd.DataFrame, plan_id: str) -> pd.DataFrame:
    row = df[df["plan_id"] == plan_id].iloc[0]
    return pd.DataFrame({"": [label for label, _ in SUMMARY_FIELDS.values()],
                         "value": [fmt.format(row[k]) for k, (_, fmt) in SUMMARY_FIELDS.items()]})
