"""Pareto search over sparse pre-training plans: training cost vs inference cost vs loss.

The candidates (`planner.candidates`: shape family x sparsities x schedules x tokens) become answers here:

* target loss: `lifetime_optimal` minimises training + lifetime inference cost at the target (Sardana et al. 2024,
  "Beyond Chinchilla-Optimal", generalised from dense models to sparse schedules) and compares it with the dense
  Chinchilla-optimal and the dense inference-aware plans at the same loss;
* training budget: `budget_optimal` minimises loss for training FLOPs counted in a chosen ledger.

Every answer is the best over the whole family of widths, refined from the grid (`refine_sizes`); when every
candidate lies outside the validated region the answer says so once and names the nearest plan inside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from planner.candidates import (ASPECT, DEFAULT_BATCH, DEFAULT_D_MODELS, DEFAULT_SCHEDULES, DEFAULT_SEQ_LEN,  # noqa
                                DEFAULT_SPARSITIES, DEFAULT_TOKENS_PER_PARAM, FAMILY_D_MODELS, SCHEDULE_OPTIONS, VOCAB,
                                ScheduleOption, candidates, family_shape, law_inputs, planning_law,
                                schedule_warnings)
from planner.hardware.costs import EFFECTIVE, LEDGER_COLUMNS, PREFILL_SHARE, cost_ledgers, hardware_profile
from planner.errors import PlannerInputError
from planner.hardware.breakeven import with_breakeven
from planner.hardware.report import derived_figures
from planner.laws import N_COLUMN, Law, default_law
from planner.pareto import pareto_front
from planner.plan import Budget, Hardware, TrainingPlan, make_plan, resolve_schedule
from planner.regime import schedule_flag, schedule_warning, validated_region
from planner.shapes import ModelShape

if TYPE_CHECKING:
    from planner.uncertainty import LawPosterior

# --- lifetime-optimal and budget modes -----------------------------------------------------------------------------

COST_COLUMNS = {"flops": ("train_flops_effective", "lifetime_inference_flops", "lifetime_flops"),
                "usd": ("train_usd", "inference_usd", "lifetime_usd")}
LIFETIME_OPTIMAL, DENSE_INFERENCE_AWARE, DENSE_CHINCHILLA = \
    "lifetime-optimal", "dense inference-aware", "dense Chinchilla-optimal"
LOWEST_LOSS, DENSE_COMPUTE_OPTIMAL = "lowest loss", "dense compute-optimal"


@dataclass(frozen=True)
class Comparison:
    """A search's answer, ready to show: every candidate, the frontier, the chosen plan beside its dense baselines
    (`table`, first row the choice, one labelled row per plan) and what the choice saves against each baseline
    (`savings`: per compared column, the baseline's value minus the choice's, absolute and as % of the baseline)."""
    candidates: pd.DataFrame
    frontier: pd.DataFrame
    objectives: tuple[str, ...]
    table: pd.DataFrame
    savings: pd.DataFrame
    notes: tuple[str, ...] = ()  # said once about the whole search (e.g. every candidate extrapolates)
    nearest_in_region: pd.Series | None = field(default=None)  # when every candidate lies outside the region

    @property
    def best(self) -> pd.Series:
        return self.table.iloc[0]

    @property
    def warnings(self) -> list[str]:
        """Each distinct warning about the compared plans, once, prefixed by the plans it concerns."""
        by_text = self.table.groupby("schedule_warning", sort=False).groups
        return [f"{', '.join(plans)}: {text}" for text, plans in by_text.items() if text]


def savings(chosen: pd.Series, baselines: pd.DataFrame, columns) -> pd.DataFrame:
    """What `chosen` saves against each baseline row: `saved_<col>` (absolute) and `saved_<col>_pct` (share of the
    baseline, %); negative where it costs more."""
    return pd.DataFrame({f"saved_{c}{suffix}": (baselines[c] - chosen[c]) * (100 / baselines[c] if suffix else 1)
                         for c in columns for suffix in ("", "_pct")})


def _compare(df, objectives, rows: dict, compared, outside=((), None)) -> Comparison:
    table = pd.DataFrame(rows).T.infer_objects()
    table.index.name = "plan"
    frontier = pareto_front(df, objectives)
    for small in (table, frontier):  # a warning column on what is shown, not on every candidate
        small["schedule_warning"] = schedule_warnings(small)
    return Comparison(df, frontier, tuple(objectives), table, savings(table.iloc[0], table.iloc[1:], compared),
                      *outside)


REGION_TOKENS_PER_PARAM = np.geomspace(5, 1000, 48)  # token counts tried for the nearest plan inside the region


def nearest_in_region(df, law: Law | None, gap, cost: str, **search) -> tuple[tuple[str, ...], pd.Series | None]:
    """(notes, plan) when every candidate of `df` lies outside the validated region, else ((), None).

    The plan is the in-region candidate (every family width, schedule variant and a fine grid of token counts)
    closest to the request by `gap` (a function of the candidates: distance to the target loss or budget), the
    cheapest by `cost` among equals.
    """
    if df.empty or not df["extrapolated"].all():
        return (), None
    law = law or default_law()
    region = search.get("region") or validated_region(search.get("runs"), law.n_convention, N_COLUMN[law.form])
    note = (f"every one of the {len(df):,} candidates lies outside {region.source}: all their predicted losses "
            f"extrapolate")
    n_lo, n_hi = region.n_range
    floor = 0.3 if N_COLUMN[law.form] == "n_avg" else 0.1  # N_avg >= 0.3 N_total inside the regime; N_final >= 0.1
    widths = [d for d in FAMILY_D_MODELS if n_lo <= family_shape(d).total <= n_hi / floor]
    inside = candidates(law, tokens_per_param=REGION_TOKENS_PER_PARAM, d_models=widths or FAMILY_D_MODELS, **search)
    inside = inside[~inside["extrapolated"].to_numpy()]
    if inside.empty:
        return (note,), None
    order = np.lexsort((inside[cost].to_numpy(), np.round(gap(inside).to_numpy(), 9)))
    plan = inside.iloc[order[0]]
    return (f"{note}; the nearest plan inside it: d_model {int(plan['d_model'])}, final sparsity "
            f"{plan['final_sparsity']:g}, {plan['schedule']}, {plan['tokens']:.3g} tokens, predicted loss "
            f"{plan['loss']:.4f}",), plan


REACH = 2  # grid steps either side of a grid optimum that `refine_sizes` searches at every family width


def refine_sizes(df: pd.DataFrame, criteria, d_models=DEFAULT_D_MODELS, **search) -> pd.DataFrame:
    """`df` (candidates on the grid `d_models`) plus candidates at every family width the grid skipped next to each
    schedule variant's best width under each criterion (a column, minimised).

    A variant's cost is unimodal in width up to the family's steps in depth and d_ff (whole layers, d_ff rounded),
    which can make a width one grid step past a neighbour cheaper than the neighbour (at small widths, where a layer
    is a large share); so its optimum over the whole family lies within ``REACH`` grid steps of its grid optimum (to
    the family's end when that is the grid's end). `search` is what made `df`.
    """
    grid, family = np.array(sorted({int(d) for d in d_models})), np.array(FAMILY_D_MODELS)
    new: set[int] = set()
    for col in criteria:
        best = df.loc[df.groupby(["schedule", "final_sparsity"], observed=True)[col].idxmin(), "d_model"].to_numpy()
        i = np.searchsorted(grid, best)
        lo = np.where(i >= REACH, grid[np.maximum(i - REACH, 0)], family[0] - 1)
        hi = np.where(i < len(grid) - REACH, grid[np.minimum(i + REACH, len(grid) - 1)], family[-1] + 1)
        for a, b in zip(lo, hi):
            new.update(int(d) for d in family[(family > a) & (family < b)])
    new -= set(grid.tolist())
    if not new:
        return df
    return pd.concat([df, candidates(d_models=sorted(new), **search)], ignore_index=True)


def _kept(df: pd.DataFrame, keep) -> pd.DataFrame:
    """The candidates `keep` accepts (all without one); none kept is an input error naming the constraint."""
    if keep is None or df.empty:
        return df
    kept = df[keep(df)].reset_index(drop=True)
    if kept.empty or not (kept["final_sparsity"] == 0).any():
        raise PlannerInputError(f"{getattr(keep, 'label', 'the constraint')}: no dense candidate meets it (the "
                                f"baselines need one); allow more GPUs")
    return kept


def lifetime_optimal(law: Law | None = None, target_loss: float = 2.6, *, objective: str = "flops",
                     d_models=DEFAULT_D_MODELS, refine: bool = True, keep=None, **search) -> Comparison:
    """Cheapest plan over training + lifetime inference at `target_loss` (Sardana et al. 2024 for sparse schedules).

    objective 'flops' sums effective training FLOPs and lifetime inference FLOPs (ideal sparse kernels); 'usd' sums
    dollars from wall-clock-equivalent training and the hardware's inference speedups. Baselines at the same loss:
    the dense Chinchilla-optimal plan (least training FLOPs) and the dense inference-aware plan (least lifetime
    cost), both within the same shape family. With `refine`, every plan is the best over the whole family of widths
    (`refine_sizes`), not only the grid `d_models`. `keep` (candidates -> bool mask, e.g. `planner.hardware.fits`)
    drops candidates first. Every row carries its break-even speedups against the cheapest dense plan in dollars
    (`planner.hardware.breakeven`). `search` passes on to `candidates` (lifetime_tokens, hardware...).
    """
    if objective not in COST_COLUMNS:
        raise PlannerInputError(f"objective {objective!r}: use one of {sorted(COST_COLUMNS)}")
    train, infer, total = COST_COLUMNS[objective]
    df = candidates(law, target_loss=target_loss, d_models=d_models, **search)
    if refine and df.empty:  # nothing on the grid reaches the target: look at the family's larger widths
        d_models = [d for d in FAMILY_D_MODELS if d > max(d_models)]
        df = candidates(law, target_loss=target_loss, d_models=d_models, **search) if d_models else df
    if refine and not df.empty:
        df = refine_sizes(df, (total, "train_flops_effective"), d_models, law=law, target_loss=target_loss, **search)
    df = with_breakeven(_kept(df, keep))
    dense = df[df["final_sparsity"] == 0]
    if dense.empty:
        raise PlannerInputError(f"target loss {target_loss} is below what every candidate can reach; raise the target")
    rows = {LIFETIME_OPTIMAL: df.loc[df[total].idxmin()], DENSE_INFERENCE_AWARE: dense.loc[dense[total].idxmin()],
            DENSE_CHINCHILLA: dense.loc[dense["train_flops_effective"].idxmin()]}
    outside = nearest_in_region(df, law, lambda c: (c["loss"] - target_loss).abs(), total, **search)
    return _compare(df, (train, infer), rows, (total, train, infer), outside)


def budget_optimal(law: Law | None = None, budget_flops: float = 1e21, *, objective: str = "flops",
                   d_models=DEFAULT_D_MODELS, refine: bool = True, keep=None, **search) -> Comparison:
    """Lowest predicted loss for a fixed training budget (FLOPs in `budget_ledger`, default effective), beside the
    dense compute-optimal plan; the frontier trades loss against lifetime inference cost. `refine`, `keep`: as in
    `lifetime_optimal`."""
    if objective not in COST_COLUMNS:
        raise PlannerInputError(f"objective {objective!r}: use one of {sorted(COST_COLUMNS)}")
    if not budget_flops > 0:
        raise PlannerInputError(f"--budget-flops must be positive, got {budget_flops}")
    infer = COST_COLUMNS[objective][1]
    df = candidates(law, budget_flops=budget_flops, d_models=d_models, **search)
    if refine:
        df = refine_sizes(df, ("loss",), d_models, law=law, budget_flops=budget_flops, **search)
    df = _kept(df, keep)
    dense = df[df["final_sparsity"] == 0]
    rows = {LOWEST_LOSS: df.loc[df["loss"].idxmin()], DENSE_COMPUTE_OPTIMAL: dense.loc[dense["loss"].idxmin()]}
    spent = LEDGER_COLUMNS[search.get("budget_ledger", EFFECTIVE)]
    outside = nearest_in_region(df, law, lambda c: np.log(c[spent] / budget_flops).abs(), "loss",
                                **{k: v for k, v in search.items() if k != "budget_ledger"})
    return _compare(df, ("loss", infer), rows, ("loss", infer), outside)


# --- plans ---------------------------------------------------------------------------------------------------------

def build_plan(model: ModelShape, final_sparsity: float = 0.0, shape: str = "geometric", *,
               window_basis: str = "compute", start: float = 0.25, end: float = 0.75, every_steps: int | None = None,
               pattern: str = "unstructured", tokens: float | None = None, tokens_per_param: float | None = None,
               law: Law | None = None, hardware: Hardware | None = None, lifetime_tokens: float = 0.0,
               context: int | None = None, prefill_share: float = PREFILL_SHARE, batch_size: int = DEFAULT_BATCH,
               seq_len: int = DEFAULT_SEQ_LEN, lr: float = 3e-4, name: str = "plan",
               posterior: LawPosterior | None = None, runs: pd.DataFrame | None = None) -> TrainingPlan:
    """A complete TrainingPlan: schedule resolved in all three bases, budget, law, prediction, hardware and costs.

    Give `tokens`, or `tokens_per_param` (D / N_avg in the law's convention). Tokens round to whole optimizer steps
    of batch_size x seq_len. `start`/`end` are read in `window_basis` (see plan.resolve_schedule). The prediction
    is `planner.uncertainty.plan_prediction`'s: `posterior` (the law's) adds its loss interval inside its region;
    `runs` (the table the law was fitted on) sets the region when the posterior has none, else the seed's validated
    range. The hardware defaults to an H100 with the pattern's speedups.
    """
    from planner.uncertainty import plan_counts, plan_prediction  # its fitting stack (scipy) only once a plan is built
    law = planning_law(law)
    hardware = hardware or hardware_profile("h100", pattern)
    if (tokens is None) == (tokens_per_param is None):
        raise PlannerInputError("give exactly one of --tokens and --tokens-per-param")
    if not 0 <= final_sparsity < 1:
        raise PlannerInputError(f"--final-sparsity {final_sparsity} is outside [0, 1)")
    if not (tokens or tokens_per_param) > 0:
        raise PlannerInputError(f"--tokens/--tokens-per-param must be positive, got {tokens or tokens_per_param}")
    per_step = batch_size * seq_len
    fixed, prunable = model.n_params(law.n_convention)

    def resolve(steps):
        return resolve_schedule(model, steps, shape, final_sparsity, window_basis, start, end, every_steps,
                                pattern=pattern)

    if tokens is None:  # N_avg moves a little as the window snaps to steps: size the run at the dense count first
        first = resolve(max(1, round(tokens_per_param * (fixed + prunable) / per_step)))
        tokens = tokens_per_param * first.schedule().n_avg(fixed, prunable)
    steps = max(1, round(tokens / per_step))
    schedule = resolve(steps)
    budget = Budget(tokens=steps * per_step, seq_len=seq_len, batch_size=batch_size, steps=steps, lr=lr,
                    warmup_steps=min(2000, steps // 100))
    draft = make_plan(model, schedule, budget, law.n_convention, name=name)
    prediction = plan_prediction(law, *plan_counts(draft), posterior, runs)
    flag = int(schedule_flag(schedule.compute_start, schedule.compute_end, schedule.final_sparsity))
    if flag:
        warning = schedule_warning(schedule.compute_start, schedule.compute_end, flag)
        prediction = prediction.model_copy(update={"warnings": [*prediction.warnings, warning]})
    costs = cost_ledgers(draft, hardware, lifetime_tokens, context, prefill_share)
    plan = make_plan(model, schedule, budget, law.n_convention, name=name, law=law, prediction=prediction,
                     hardware=hardware, costs=costs)
    return plan.model_copy(update={"derived": plan.derived.model_copy(update=derived_figures(plan, hardware,
                                                                                               context))})


def plan_from_candidate(row: pd.Series, law: Law | None = None, hardware: Hardware | None = None, **plan) -> \
        TrainingPlan:
    """build_plan for one row of `candidates` (family shape, schedule, compute window, tokens); `plan` passes on
    (lifetime_tokens, batch_size, seq_len, name, posterior, runs, ...)."""
    dense = row["final_sparsity"] == 0
    return build_plan(family_shape(int(row["d_model"])), float(row["final_sparsity"]),
                      "dense" if dense else str(row["schedule_shape"]), window_basis="compute",
                      start=0.0 if dense else float(row["compute_start"]),
                      end=0.0 if dense else float(row["compute_end"]), tokens=float(row["tokens"]), law=law,
                      hardware=hardware, **plan)
