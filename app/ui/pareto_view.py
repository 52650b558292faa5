"""Pareto planner logic: inputs as one hashable value, candidates and frontier from planner.search, chart axes."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.ui.common import human, usd
from app.ui.working_law import DEFAULT, WorkingLaw
from planner.hardware.costs import HARDWARE, PATTERN_SPEEDUPS, hardware_profile, this_machine
from planner.hardware.breakeven import BREAKEVEN_COLUMNS, FLOP_VS_DOLLAR, dense_wins_note, format_speedup
from planner.plan import Hardware, TrainingPlan
from planner.search import COST_COLUMNS, DEFAULT_SCHEDULES, DEFAULT_SPARSITIES, SCHEDULE_OPTIONS, Comparison, \
    budget_optimal, lifetime_optimal, plan_from_candidate, savings, schedule_warnings
from planner.uncertainty import prediction_region

THIS_MACHINE = "this machine"
HARDWARE_CHOICES = (*HARDWARE, THIS_MACHINE)
SCHEDULE_CHOICES = tuple(SCHEDULE_OPTIONS)
# Final sparsities searched per pattern: 2:4 keeps exactly half of every group of four.
PATTERN_SPARSITIES = {"unstructured": tuple(float(s) for s in DEFAULT_SPARSITIES), "2:4": (0.0, 0.5)}


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
    mfu_decode: float = 0.5  # efficiency against the roofline bound (planner.hardware.roofline), not MFU
    pattern: str = "unstructured"
    speedups: tuple[float, float, float] | None = None  # (train, prefill, decode); None: the pattern's defaults
    sparse_kernel: bool | None = None  # serving reads the sparse layout; None: the pattern's default
    schedules: tuple[str, ...] = DEFAULT_SCHEDULES  # the CLI's default search too
    units: str = "flops"  # "flops" or "usd"
    machine_peak: float | None = None  # FLOP/s measured once for "this machine"
    law: str = DEFAULT.key  # WorkingLaw.key of the law searched with

    @property
    def sparsities(self) -> tuple[float, ...]:
        return PATTERN_SPARSITIES[self.pattern]


def hardware(inputs: PlannerInputs) -> Hardware:
    over = {"mfu_train": inputs.mfu_train, "mfu_prefill": inputs.mfu_prefill, "mfu_decode": inputs.mfu_decode}
    if inputs.speedups is not None:
        over |= dict(zip(("speedup_train", "speedup_prefill", "speedup_decode"), inputs.speedups))
    if inputs.usd_per_gpu_hour is not None:
        over["usd_per_gpu_hour"] = inputs.usd_per_gpu_hour
    if inputs.sparse_kernel is not None:
        over["sparse_kernel"] = inputs.sparse_kernel
    if inputs.hardware == THIS_MACHINE:
        return this_machine(inputs.machine_peak, inputs.pattern, **over)
    return hardware_profile(inputs.hardware, inputs.pattern, **over)


def pattern_speedups(pattern: str) -> tuple[float, float, float]:
    return PATTERN_SPEEDUPS[pattern]


def priced(inputs: PlannerInputs) -> bool:
    """Whether dollars mean anything: "this machine" costs $0 per hour unless the user gives a price."""
    return hardware(inputs).usd_per_gpu_hour > 0


def cost_units(inputs: PlannerInputs) -> str:
    """The units costs are ranked in: US$ only at a positive price (all-zero dollars rank nothing), else FLOP."""
    return "usd" if inputs.units == "usd" and priced(inputs) else "flops"


def input_problems(inputs: PlannerInputs, working: WorkingLaw = DEFAULT) -> list[str]:
    """One line per input the search cannot use, naming the field (the page shows them instead of a chart)."""
    floor = float(working.law.predict(float("inf"), float("inf")))
    problems = []
    if inputs.mode == "loss" and not inputs.target_loss > floor:
        problems.append(f"Target loss {inputs.target_loss:g} is at or below the law's irreducible loss {floor:.3f}: "
                        f"no model reaches it. Enter a target above {floor:.3f} nats/token.")
    for label, value in (("MFU train", inputs.mfu_train), ("MFU prefill", inputs.mfu_prefill),
                         ("MFU decode", inputs.mfu_decode)):
        if not 0 < value <= 1:
            problems.append(f"{label}: {value:g} is not a fraction in (0, 1].")
    if inputs.usd_per_gpu_hour is not None and inputs.usd_per_gpu_hour < 0:
        problems.append(f"$ per GPU-hour: {inputs.usd_per_gpu_hour:g} is negative.")
    for name, value in zip(("train", "prefill", "decode"), inputs.speedups or ()):
        if value < 1:
            problems.append(f"Speedup {name}: {value:g} is below 1 (a sparsity pattern never slows a GEMM here).")
    return problems


def search(inputs: PlannerInputs, working: WorkingLaw = DEFAULT) -> Comparison:
    """The search under the working law: candidates, frontier, chosen plan and its dense baselines
    (planner.search), with a readable `plan_id` on every row."""
    common = dict(objective=cost_units(inputs), hardware=hardware(inputs), lifetime_tokens=inputs.lifetime_tokens,
                  schedules=inputs.schedules, sparsities=inputs.sparsities, runs=working.runs,
                  region=prediction_region(working.law, working.posterior, working.runs))
    if inputs.mode == "loss":
        comp = lifetime_optimal(working.law, inputs.target_loss, **common)
    else:
        comp = budget_optimal(working.law, inputs.budget_flops, **common)
    return dataclasses.replace(comp, candidates=_labelled(comp.candidates), frontier=_labelled(comp.frontier),
                               table=_labelled(comp.table))


def _labelled(df: pd.DataFrame) -> pd.DataFrame:
    """`plan_id` such as 'd1536 · 70% · geometric 25-75' (a list comprehension: pandas string ops cost 10x more)."""
    ids = [f"d{d} · {round(s * 100)}% · {name}" for d, s, name in
           zip(df["d_model"].to_numpy(int), df["final_sparsity"].to_numpy(float), df["schedule"].tolist())]
    return df.assign(plan_id=ids)


@dataclass(frozen=True)
class Axes:
    x: str
    y: str
    x_title: str
    y_title: str


def axes(inputs: PlannerInputs) -> Axes:
    """Target-loss mode: training vs inference cost at one loss. Budget mode: inference cost vs loss at one
    training budget (every candidate spends the same training FLOPs there). Columns as planner.search ranks them."""
    train, infer, _ = COST_COLUMNS[cost_units(inputs)]
    usd = cost_units(inputs) == "usd"
    train_title = "Training cost (US$)" if usd else "Training compute, effective (FLOP)"
    infer_title = "Lifetime inference cost (US$)" if usd else "Lifetime inference compute (FLOP)"
    if inputs.mode == "loss":
        return Axes(train, infer, train_title, infer_title)
    return Axes(infer, "loss", infer_title, "Predicted loss (nats/token)")


def view_domain(front: pd.DataFrame, ax: Axes, pad: float = 3.0, also: pd.DataFrame | None = None
                ) -> tuple[list[float], list[float]]:
    """Initial (x, y) axis domains: the frontier (and the rows `also`, e.g. a clicked plan) widened by `pad`x on log
    axes, out to a labelled 1x/3x tick, so the choices fill the chart rather than the dominated far corners and each
    axis ends on a label."""
    shown = front if also is None else pd.concat([front, also])

    def span(col, log):
        lo, hi = float(shown[col].min()), float(shown[col].max())
        if not log:
            return [math.floor((lo - 0.05) * 20) / 20, math.ceil((hi + 0.05) * 20) / 20]
        return [_tick(lo / pad, False), _tick(hi * pad, True)]
    return span(ax.x, True), span(ax.y, ax.y != "loss")


def _tick(v: float, up: bool) -> float:
    """The nearest 1x or 3x power of ten at or above (`up`) or below v: the log axes' labelled ticks."""
    k = math.floor(math.log10(v))
    ticks = [m * 10.0 ** e for e in (k - 1, k, k + 1) for m in (1, 3)]
    return min(t for t in ticks if t >= v * (1 - 1e-9)) if up else max(t for t in ticks if t <= v * (1 + 1e-9))


def in_view(df: pd.DataFrame, ax: Axes, domain, margin: float = 0.04) -> np.ndarray:
    """Rows whose point lies inside the domains with `margin` (a share of each axis) to spare: drawn whole, never cut
    in half by the chart's edge. Far-off dominated candidates stay in the candidates CSV."""
    keep = np.ones(len(df), bool)
    for col, (lo, hi) in zip((ax.x, ax.y), domain):
        log = col != "loss"
        v, lo, hi = (np.log10(df[col].to_numpy(float)), np.log10(lo), np.log10(hi)) if log else \
            (df[col].to_numpy(float), lo, hi)
        gap = margin * (hi - lo)
        keep &= (v >= lo + gap) & (v <= hi - gap)
    return keep


def row(comp: Comparison, plan_id: str) -> pd.Series:
    return comp.candidates[comp.candidates["plan_id"] == plan_id].iloc[0]


def selected_plan(inputs: PlannerInputs, comp: Comparison, plan_id: str, working: WorkingLaw = DEFAULT) -> \
        TrainingPlan:
    """The full TrainingPlan of a candidate (schedule in all bases, law, prediction with the working law's
    interval, costs) for export and runs."""
    name = re.sub(r"[^a-z0-9]+", "-", plan_id.lower()).strip("-")
    return plan_from_candidate(row(comp, plan_id), working.law, hardware(inputs),
                               lifetime_tokens=inputs.lifetime_tokens, name=name, posterior=working.posterior,
                               runs=working.runs)


def versus_baselines(comp: Comparison, plan_id: str, units: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(plans, savings): the selected plan beside the search's dense baselines at the same loss (or budget), and
    what it saves against each, absolute and as a share of the baseline (negative: it costs more)."""
    baselines = comp.table.iloc[1:]
    train, infer, total = COST_COLUMNS[units]
    cols = (total, train, infer) if comp.objectives[0] != "loss" else ("loss", infer)  # headline first
    if plan_id == comp.best["plan_id"]:  # the search's own pick (after every input change): its table and savings
        plans, saved = comp.table.rename(index={comp.table.index[0]: "selected"}), comp.savings
    else:
        plans = pd.concat([row(comp, plan_id).to_frame("selected").T, baselines])
        saved = savings(plans.iloc[0], baselines, cols)
    label = {c: SUMMARY_FIELDS[c][0] for c in cols}
    shown = {f"{label[c]} reduction": saved[f"saved_{c}"] for c in cols} | \
        {f"{label[c]} reduction (%)": saved[f"saved_{c}_pct"] for c in cols}
    return plans, pd.DataFrame(shown)


def baseline_note(comp: Comparison, plan_id: str, units: str = "flops", lifetime_tokens: float = 0.0,
                  largest_lifetime: float | None = None) -> str | None:
    """Why a saving reads 0%: the selected plan is one of the baselines (the search often picks a dense plan); when
    the search picked a dense plan, what would make a sparse one win (planner.hardware.breakeven), never advice
    past `largest_lifetime`, the largest demand the page offers."""
    same = [name for name, r in comp.table.iloc[1:].iterrows() if r["plan_id"] == plan_id]
    if not same:
        return None
    note = (f"The selected plan is the {same[0]} plan itself, so the saving against it is 0%." if len(same) == 1 else
            f"The selected plan is both the {same[0]} and the {same[1]} plan, so the savings against them are 0%.")
    if plan_id == comp.best["plan_id"] and row(comp, plan_id)["final_sparsity"] == 0:
        train, infer, _ = COST_COLUMNS[units]
        note += " " + (BUDGET_DENSE if "loss" in comp.objectives else
                       dense_wins_note(comp.candidates, train, infer, lifetime_tokens, units, largest_lifetime))
    return note


BUDGET_DENSE = ("At this training budget a dense plan predicts the lowest loss; the lifetime inference demand does not "
                "change which plan that is (it moves only the inference-cost axis).")


def breakeven_caption(comp: Comparison) -> str | None:
    """What the break-even rows of the table mean, with the FLOP-vs-dollar sentence (loss mode only)."""
    if "breakeven_all" not in comp.table:
        return None
    return ("Break-even speedup: how much faster than on dense kernels a sparse plan's phase must run for its "
            "lifetime cost in US$ to equal the cheapest dense plan's (the other phases as modelled). " + FLOP_VS_DOLLAR)


def clicked_plan(event, selection: str = "pick") -> str | None:
    """The plan_id of a point clicked in the chart (st.altair_chart's selection state), if any."""
    picks = ((event or {}).get("selection") or {}).get(selection) or []
    return picks[0].get("plan_id") if picks else None


def sci(x: float, digits: int = 3) -> str:
    """3.2e+20 -> '3.2e20': FLOP counts without SI prefixes (E would read as the law's irreducible loss)."""
    return f"{x:.{digits}g}".replace("e+", "e")


SUMMARY_FIELDS = {  # column: (label, format) of the side-by-side table
    "plan_id": ("plan", str), "n_layer": ("layers", "{:.0f}".format),
    "final_sparsity": ("final sparsity", "{:.0%}".format), "schedule": ("schedule", str),
    "n_avg": ("N_avg (parameters)", lambda x: human(x, 4)), "n_final": ("N_final (parameters)", lambda x: human(x, 4)),
    "tokens": ("training tokens", lambda x: human(x, 4)), "tokens_per_param": ("tokens / N_avg", "{:.1f}".format),
    "loss": ("predicted loss (nats/token)", "{:.3f}".format),
    "train_flops_effective": ("training FLOP (effective)", sci),
    "lifetime_inference_flops": ("lifetime inference FLOP", sci), "lifetime_flops": ("lifetime FLOP", sci),
    "train_usd": ("training cost", usd), "inference_usd": ("inference cost", usd),
    "lifetime_usd": ("lifetime cost", usd), "train_days": ("days to train on the profile's GPUs", "{:.3g}".format),
    **{c: (f"break-even speedup, {c.removeprefix('breakeven_').replace('all', 'every phase')}", format_speedup)
       for c in BREAKEVEN_COLUMNS},
    "extrapolated": ("outside the validated regime", "{:}".format),
}

USD_FIELDS = ("train_usd", "inference_usd", "lifetime_usd")


def side_by_side(plans: pd.DataFrame, intervals: dict | None = None, dollars: bool = True) -> pd.DataFrame:
    """The plans as formatted columns (one per plan), rows labelled, for st.table. `intervals` maps a plan's
    column name to its loss interval (low, high); `dollars` False drops the dollar rows (no price set)."""
    fields = {k: v for k, v in SUMMARY_FIELDS.items() if (dollars or k not in USD_FIELDS) and k in plans}
    table = pd.DataFrame({name: [fmt(r[k]) if k != "extrapolated" else ("yes" if r[k] else "no")
                                 for k, (_, fmt) in fields.items()] for name, r in plans.iterrows()},
                         index=[label for label, _ in fields.values()])
    if intervals:
        level = "95% interval of the loss"
        shown = {name: "—" if iv is None or iv[0] is None else f"[{iv[0]:.3f}, {iv[1]:.3f}]"
                 for name, iv in intervals.items()}
        at = list(table.index).index(SUMMARY_FIELDS["loss"][0]) + 1
        table = pd.concat([table.iloc[:at], pd.DataFrame(shown, index=[level]), table.iloc[at:]])
    return table


def comparison_frame(plans: pd.DataFrame, intervals: dict | None = None) -> pd.DataFrame:
    """The compared plans as numbers, one row each (the side-by-side table's fields, the loss interval beside the
    loss, the schedule warning), for the CSV: a spreadsheet reads 1294000000, not '1.294B'."""
    fields = [k for k in SUMMARY_FIELDS if k in plans.columns]
    out = plans[fields].copy()
    if intervals:
        at = out.columns.get_loc("loss") + 1
        for i, side in enumerate(("loss_ci_low", "loss_ci_high")):
            out.insert(at + i, side, [None if iv is None or iv[0] is None else iv[i] for iv in
                                      (intervals.get(name) for name in out.index)])
    if "schedule_warning" in plans.columns:
        out["schedule_warning"] = plans["schedule_warning"]
    return out


def candidates_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Every candidate with its schedule warning ("" inside the validated regime), as the frontier CSV has it."""
    return df.assign(schedule_warning=schedule_warnings(df))


def edge_note(comp: Comparison, plan_id: str, inputs: PlannerInputs) -> str | None:
    """Why to distrust an optimum on the edge of the sparsity grid: the search tried nothing sparser, so a sparser
    plan may do better still (2:4 has no grid: it is 50% by construction)."""
    top = max(inputs.sparsities)
    if inputs.pattern != "unstructured" or row(comp, plan_id)["final_sparsity"] < top:
        return None
    return (f"The selected plan's final sparsity, {top:.0%}, is the largest the search tries: the optimum sits on the "
            f"edge of the sparsity grid, so a sparser plan might do better still, and no sparsity above 80% has been "
            f"validated (the seed's runs stop there).")
