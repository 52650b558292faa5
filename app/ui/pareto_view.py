"""Pareto planner logic: inputs as one hashable value, candidates and frontier from planner.search, chart axes."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import pandas as pd

from planner.costs import HARDWARE, PATTERN_SPEEDUPS, hardware_profile, this_machine
from planner.laws import default_law
from planner.plan import Hardware, TrainingPlan
from planner.search import COST_COLUMNS, DEFAULT_SPARSITIES, SCHEDULE_OPTIONS, Comparison, budget_optimal, savings, \
    lifetime_optimal, plan_from_candidate

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


def search(inputs: PlannerInputs) -> Comparison:
    """The search under the Epoch-replication law applied with N_avg: candidates, frontier, chosen plan and its
    dense baselines (planner.search), with a readable `plan_id` on every row."""
    common = dict(objective=inputs.units, hardware=hardware(inputs), lifetime_tokens=inputs.lifetime_tokens,
                  schedules=inputs.schedules, sparsities=inputs.sparsities)
    if inputs.mode == "loss":
        comp = lifetime_optimal(default_law(), inputs.target_loss, **common)
    else:
        comp = budget_optimal(default_law(), inputs.budget_flops, **common)
    return dataclasses.replace(comp, candidates=_labelled(comp.candidates), frontier=_labelled(comp.frontier),
                               table=_labelled(comp.table))


def _labelled(df: pd.DataFrame) -> pd.DataFrame:
    pct = (df["final_sparsity"].astype(float) * 100).round().astype(int).astype(str)
    return df.assign(plan_id="d" + df["d_model"].astype(int).astype(str) + " · " + pct + "% · "
                     + df["schedule"].astype(str))


@dataclass(frozen=True)
class Axes:
    x: str
    y: str
    x_title: str
    y_title: str


def axes(inputs: PlannerInputs) -> Axes:
    """Target-loss mode: training vs inference cost at one loss. Budget mode: inference cost vs loss at one
    training budget (every candidate spends the same training FLOPs there). Columns as planner.search ranks them."""
    train, infer, _ = COST_COLUMNS[inputs.units]
    usd = inputs.units == "usd"
    train_title = "Training cost (US$)" if usd else "Training compute, effective (FLOP)"
    infer_title = "Lifetime inference cost (US$)" if usd else "Lifetime inference compute (FLOP)"
    if inputs.mode == "loss":
        return Axes(train, infer, train_title, infer_title)
    return Axes(infer, "loss", infer_title, "Predicted loss (nats/token)")


def view_domain(front: pd.DataFrame, ax: Axes, pad: float = 3.0) -> tuple[list[float], list[float]]:
    """Initial (x, y) axis domains: the frontier widened by `pad`x on log axes, so the choices fill the chart
    rather than the dominated far corners (zoom and pan reach every candidate)."""
    def span(col, log):
        lo, hi = float(front[col].min()), float(front[col].max())
        return [lo / pad, hi * pad] if log else [lo - 0.05, hi + 0.05]
    return span(ax.x, True), span(ax.y, ax.y != "loss")


def row(comp: Comparison, plan_id: str) -> pd.Series:
    return comp.candidates[comp.candidates["plan_id"] == plan_id].iloc[0]


def selected_plan(inputs: PlannerInputs, comp: Comparison, plan_id: str) -> TrainingPlan:
    """The full TrainingPlan of a candidate (schedule in all bases, prediction, costs) for export and runs."""
    name = re.sub(r"[^a-z0-9]+", "-", plan_id.lower()).strip("-")
    return plan_from_candidate(row(comp, plan_id), default_law(), hardware(inputs),
                               lifetime_tokens=inputs.lifetime_tokens, name=name)


def versus_baselines(comp: Comparison, plan_id: str, units: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(plans, savings): the selected plan beside the search's dense baselines at the same loss (or budget), and
    what it saves against each, absolute and as a share of the baseline (negative: it costs more)."""
    baselines = comp.table.iloc[1:]
    plans = pd.concat([row(comp, plan_id).to_frame("selected").T, baselines])
    train, infer, total = COST_COLUMNS[units]
    cols = (total, train, infer) if comp.objectives[0] != "loss" else ("loss", infer)  # headline first
    chosen = plans.iloc[0]
    saved = savings(chosen, baselines, cols)
    label = {c: SUMMARY_FIELDS[c][0] for c in cols}
    shown = {f"{label[c]} reduction": saved[f"saved_{c}"] for c in cols} | \
        {f"{label[c]} reduction (%)": saved[f"saved_{c}_pct"] for c in cols}
    return plans, pd.DataFrame(shown)


def clicked_plan(event, selection: str = "pick") -> str | None:
    """The plan_id of a point clicked in the chart (st.altair_chart's selection state), if any."""
    picks = ((event or {}).get("selection") or {}).get(selection) or []
    return picks[0].get("plan_id") if picks else None


SUMMARY_FIELDS = {  # column: (label, format) of the side-by-side table
    "plan_id": ("plan", "{}"), "n_layer": ("layers", "{:.0f}"), "final_sparsity": ("final sparsity", "{:.0%}"),
    "n_avg": ("N_avg", "{:.4g}"), "n_final": ("N_final", "{:.4g}"), "tokens": ("training tokens", "{:.4g}"),
    "tokens_per_param": ("tokens / N_avg", "{:.1f}"), "loss": ("predicted loss", "{:.3f}"),
    "train_flops_effective": ("training FLOP (effective)", "{:.3g}"),
    "lifetime_inference_flops": ("lifetime inference FLOP", "{:.3g}"), "lifetime_flops": ("lifetime FLOP", "{:.3g}"),
    "train_usd": ("training $", "{:,.0f}"), "inference_usd": ("inference $", "{:,.0f}"),
    "lifetime_usd": ("lifetime $", "{:,.0f}"), "extrapolated": ("extrapolated", "{}"),
}


def side_by_side(plans: pd.DataFrame) -> pd.DataFrame:
    """The plans as formatted columns (one per plan), rows labelled, for st.dataframe."""
    return pd.DataFrame({name: [fmt.format(r[k]) for k, (_, fmt) in SUMMARY_FIELDS.items()]
                         for name, r in plans.iterrows()},
                        index=[label for label, _ in SUMMARY_FIELDS.values()])
