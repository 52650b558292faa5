"""Pareto search over sparse pre-training plans: training cost vs inference cost vs loss.

Candidates are the product of a model-shape family, final sparsities, pruning schedules (shape and compute window)
and token counts, evaluated at once with numpy broadcasting: the law at each candidate's N (N_avg for the unified
law) and the cost ledgers of `planner.costs`. Three modes:

* token grid: tokens = tokens_per_param * N_avg (or absolute tokens); frontier over (loss, training, inference);
* target loss: tokens solved from the law so every candidate lands exactly on the target (`Law.tokens_for_loss`);
  `lifetime_optimal` then minimises training + lifetime inference cost (Sardana et al. 2024, "Beyond
  Chinchilla-Optimal", generalised from dense models to sparse schedules) and compares it with the dense
  Chinchilla-optimal and the dense inference-aware plans at the same loss;
* training budget: tokens = budget / training FLOPs per token (in a chosen ledger); `budget_optimal` minimises loss.

Shape family (Llama style, `family_shape`): n_layer = round(d_model / 128) (the aspect ratio of Llama 2 7B/13B),
head_dim 64 below d_model 1024 and 128 from there, multi-head attention (no grouped KV), SwiGLU with d_ff = 8/3 d_model
rounded up to a multiple of 256, vocabulary 32000, untied embeddings, no biases.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.spatial import ConvexHull, QhullError

from planner.costs import EFFECTIVE, LEDGER_COLUMNS, PREFILL_SHARE, cost_ledgers, hardware_profile, ledger_arrays, \
    matmul_params
from planner.errors import PlannerInputError
from planner.laws import N_COLUMN, Law, default_law
from planner.pareto import pareto_front
from planner.plan import Budget, Hardware, Prediction, TrainingPlan, make_plan, resolve_schedule
from planner.runs import seed_pairs
from planner.schedules import mean_density, n_of_t, window_from_compute
from planner.shapes import PRESETS, ModelShape

VOCAB = 32000
ASPECT = 128  # d_model per layer
DEFAULT_D_MODELS = tuple(range(512, 8193, 256))
DEFAULT_SPARSITIES = tuple(np.round(np.arange(0.0, 0.91, 0.1), 2))
DEFAULT_TOKENS_PER_PARAM = tuple(np.geomspace(5, 500, 24))
DEFAULT_SEQ_LEN, DEFAULT_BATCH = 2048, 512  # 1M tokens per optimizer step


def family_shape(d_model: int, vocab: int = VOCAB) -> ModelShape:
    """The family's model at a width (a multiple of 64; of 128 from 1024 on)."""
    head_dim = 64 if d_model < 1024 else 128
    if d_model % head_dim:
        raise PlannerInputError(f"--d-model {d_model} is not a multiple of the family's head_dim {head_dim}")
    return ModelShape(n_layer=max(2, round(d_model / ASPECT)), d_model=d_model, n_head=d_model // head_dim,
                      head_dim=head_dim, d_ff=-(-8 * d_model // 3 // 256) * 256, vocab=vocab)


class ScheduleOption(NamedTuple):
    """A schedule choice of the search: shape and window as fractions of training compute."""
    shape: str
    compute_start: float
    compute_end: float


SCHEDULE_OPTIONS: dict[str, ScheduleOption] = {
    "geometric 25-75": ScheduleOption("geometric", 0.25, 0.75),  # the seed's near-optimal default
    "cubic 25-75": ScheduleOption("cubic", 0.25, 0.75),
    "linear 25-75": ScheduleOption("linear", 0.25, 0.75),
    "geometric 25-50": ScheduleOption("geometric", 0.25, 0.50),
    "geometric 50-75": ScheduleOption("geometric", 0.50, 0.75),
    "one-shot 50": ScheduleOption("one_shot", 0.50, 0.50),
    "geometric 0-75": ScheduleOption("geometric", 0.0, 0.75),  # outside the validated regime: flagged
    "geometric 25-100": ScheduleOption("geometric", 0.25, 1.0),  # outside the validated regime: flagged
}
DEFAULT_SCHEDULES = ("geometric 25-75", "cubic 25-75", "linear 25-75", "geometric 25-50", "geometric 50-75")

# --- validated regimes ---------------------------------------------------------------------------------------------

# The seed validated N_avg of 58M (its llama2-70m, exactly) to 468M at 1x-20x Chinchilla-optimal tokens (~20 tokens
# per parameter), plus the four ~1B pairs (planner.runs.seed_pairs). A preset law's validated region is the
# log-space hull of both (total params).
SEED_N_AVG, SEED_TOKENS_PER_PARAM = (PRESETS["llama2-70m"].total, 468e6), (20.0, 400.0)
REGIME_MARGIN = 0.20  # "about 25% of compute" dense before and sparse recovery after: flag below 20%
SCHEDULE_OK, SCHEDULE_OUTSIDE, SCHEDULE_EDGE = 0, 1, 2
SCHEDULE_WARNINGS = {
    SCHEDULE_OUTSIDE: "pruning window {c0:.0%}->{c1:.0%} of compute leaves less than about 25% of compute dense "
                      "before it or sparse after it: outside the seed's validated regime",
    SCHEDULE_EDGE: "pruning window {c0:.0%}->{c1:.0%} of compute starts at the beginning or ends at the end of "
                   "training: N_avg alone is not known to predict its loss",
}


class ValidatedRegion:
    """Convex hull, in log space, of the (N_avg, D/N_avg) points a law was fitted on; `contains` is vectorised.

    Fewer than three points, or collinear ones, fall back to their log-space bounding box.
    """

    def __init__(self, n_avg, tokens, source: str):
        pts = np.column_stack([np.log(n_avg), np.log(np.asarray(tokens, float) / n_avg)])
        self.source, self.points = source, pts
        try:
            self._facets = ConvexHull(pts).equations  # rows (a, b, c): a x + b y + c <= 0 inside
        except (QhullError, ValueError):
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            self._facets = np.array([[-1, 0, lo[0]], [1, 0, -hi[0]], [0, -1, lo[1]], [0, 1, -hi[1]]], float)

    def bounds(self, n_avg):
        """(low, high) tokens per parameter inside the region at each N_avg (low > high where N_avg is outside)."""
        x = np.log(np.asarray(n_avg, float))[..., None]
        a, b, c = self._facets.T
        with np.errstate(divide="ignore", invalid="ignore"):
            y = -(a * x + c) / b  # where a facet line crosses this N_avg: b < 0 bounds y below, b > 0 above
        lo = np.where(b < 0, y, -np.inf).max(axis=-1)
        hi = np.where(b > 0, y, np.inf).min(axis=-1)
        hi = np.where(np.all((b != 0) | (a * x + c <= 1e-9), axis=-1), hi, -np.inf)
        return np.exp(lo - 1e-9), np.exp(hi + 1e-9)

    def contains(self, n_avg, tokens) -> np.ndarray:
        lo, hi = self.bounds(n_avg)
        ratio = np.asarray(tokens, float) / n_avg
        return (ratio >= lo) & (ratio <= hi)


def validated_region(runs: pd.DataFrame | None = None) -> ValidatedRegion:
    """The region of the runs table (n_avg, else n_final; tokens), or the seed's validated box and ~1B pairs."""
    if runs is not None:
        n = runs["n_avg"] if "n_avg" in runs else runs["n_final"]
        return ValidatedRegion(n.to_numpy(float), runs["tokens"].to_numpy(float), f"{len(runs)} fitted runs")
    return _seed_region()


@cache
def _seed_region() -> ValidatedRegion:
    pairs = seed_pairs()
    n_box = np.array(SEED_N_AVG)[[0, 0, 1, 1]]
    tokens_box = n_box * np.array(SEED_TOKENS_PER_PARAM)[[0, 1, 0, 1]]
    return ValidatedRegion(np.r_[n_box, pairs["n_avg"]], np.r_[tokens_box, pairs["tokens"]],
                           "the seed's validated range (58M-468M at 20-400 tokens/param) and its ~1B pairs")


def schedule_flag(compute_start, compute_end, final_sparsity) -> np.ndarray:
    """SCHEDULE_OK / _OUTSIDE / _EDGE per schedule (vectorised); a dense run is always OK."""
    c0, c1, s = np.broadcast_arrays(*(np.asarray(x, float) for x in (compute_start, compute_end, final_sparsity)))
    edge = (c0 <= 1e-9) | (c1 >= 1 - 1e-9)
    outside = (c0 < REGIME_MARGIN) | (c1 > 1 - REGIME_MARGIN)
    return np.where(s > 0, np.where(edge, SCHEDULE_EDGE, np.where(outside, SCHEDULE_OUTSIDE, SCHEDULE_OK)),
                    SCHEDULE_OK).astype(np.int8)


def law_inputs(law: Law, n_avg, n_final, final_sparsity):
    """(N, sparsity) that `law.predict` / `tokens_for_loss` take: the law's own N column (N_avg for unified)."""
    return (n_avg if N_COLUMN[law.form] == "n_avg" else n_final), final_sparsity


# --- candidates ----------------------------------------------------------------------------------------------------

def candidates(law: Law | None = None, *, target_loss: float | None = None, budget_flops: float | None = None,
               tokens=None, tokens_per_param=DEFAULT_TOKENS_PER_PARAM, d_models=DEFAULT_D_MODELS,
               sparsities=DEFAULT_SPARSITIES, schedules=DEFAULT_SCHEDULES, hardware: Hardware | None = None,
               lifetime_tokens: float = 0.0, context: int | None = None, prefill_share: float = PREFILL_SHARE,
               seq_len: int = DEFAULT_SEQ_LEN, budget_ledger: str = EFFECTIVE,
               runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every candidate plan as a DataFrame row: shape, schedule, N_avg, tokens, predicted loss and cost ledgers.

    Tokens come from `target_loss` (solved; unreachable candidates dropped), `budget_flops` (training FLOPs in
    `budget_ledger`), absolute `tokens`, or `tokens_per_param` x N_avg, in that order. `schedules` are names of
    SCHEDULE_OPTIONS or ScheduleOption tuples; sparsity 0 is one dense candidate per shape. Columns include
    loss, n_avg, n_final, tokens, every CostLedgers field, lifetime_flops (effective training + lifetime inference),
    lifetime_usd, extrapolated (outside `validated_region(runs)`) and schedule_flag (SCHEDULE_*).
    """
    law = law or default_law()
    hardware = hardware or hardware_profile("h100")
    if budget_ledger not in LEDGER_COLUMNS:
        raise PlannerInputError(f"budget ledger {budget_ledger!r}: use one of {sorted(LEDGER_COLUMNS)}")
    options = [SCHEDULE_OPTIONS[s] if isinstance(s, str) else ScheduleOption(*s) for s in schedules]
    names = ["dense"] + [s if isinstance(s, str) else f"{o.shape} {o.compute_start:g}-{o.compute_end:g}"
                         for s, o in zip(schedules, options)]
    shapes = [family_shape(int(d)) for d in d_models]
    sp = np.asarray([s for s in sparsities if s > 0], float)
    if np.any((sp < 0) | (sp >= 1)):
        raise PlannerInputError(f"sparsities {list(sparsities)} must lie in [0, 1)")

    # Shape-level arrays are (S, 1); schedule variants (V) are the dense one, then every option at every sparsity.
    col = {k: np.array([getattr(m, k) for m in shapes], np.int32)[:, None] for k in ("n_layer", "d_model", "n_head")}
    col["head_dim"] = np.array([m.head_size for m in shapes], np.int32)[:, None]
    n_total = np.array([m.total for m in shapes], np.int64)[:, None]
    mm_fixed, mm_prunable = (np.array(x, float)[:, None] for x in zip(*(matmul_params(m) for m in shapes)))
    law_fixed = np.array([m.n_params(law.n_convention)[0] for m in shapes], float)[:, None]
    phi = np.array([m.counts()["norm"] for m in shapes])[:, None] / mm_prunable  # as plan.resolve_schedule
    K = len(sp)
    code = np.r_[0, np.repeat(np.arange(1, len(options) + 1), K)]  # variant -> schedule name
    s = np.r_[0.0, np.tile(sp, len(options))]
    c0, c1 = (np.r_[np.nan, [getattr(o, k) for o in options]][code] for k in ("compute_start", "compute_end"))
    grid2 = (len(shapes), code.size)
    md, t_end = np.ones(grid2), np.zeros(grid2)
    for i, o in enumerate(options, start=1):  # a handful of schedule shapes, each vectorised over shapes x sparsities
        t0, t1 = window_from_compute(o.shape, sp, o.compute_start, o.compute_end, phi)
        md[:, code == i], t_end[:, code == i] = mean_density(o.shape, sp, t0, t1), t1
    kinds = sorted({"dense"} | {o.shape for o in options})
    shape_code = np.array([kinds.index(k) for k in ["dense"] + [o.shape for o in options]])[code]
    n_avg, n_final = n_of_t(md, law_fixed, mm_prunable), n_of_t(1.0 - s, law_fixed, mm_prunable)
    n_law, s_law = law_inputs(law, n_avg, n_final, s)
    d_attn = col["n_head"] * col["head_dim"]
    ledger_args = (mm_fixed, mm_prunable, md, 1.0 - s, np.where(s > 0, 1.0 - t_end, 0.0), col["n_layer"], d_attn,
                   seq_len, hardware, lifetime_tokens, context, prefill_share)

    if target_loss is not None:
        tok = law.tokens_for_loss(target_loss, n_law, s_law)[..., None]
    elif budget_flops is not None:
        per_token = ledger_arrays(1.0, *ledger_args)[LEDGER_COLUMNS[budget_ledger]]
        tok = (budget_flops / per_token)[..., None]
    elif tokens is not None:
        tok = np.broadcast_to(np.asarray(tokens, float), grid2 + (np.size(tokens),))
    else:
        tok = np.asarray(tokens_per_param, float) * n_avg[..., None]
    T = tok.shape[-1]
    ledgers = ledger_arrays(tok, *(a[..., None] if isinstance(a, np.ndarray) else a for a in ledger_args))
    lo, hi = validated_region(runs).bounds(n_avg)
    ratio = tok / n_avg[..., None]

    def flat(a):  # a per-(shape, variant) array, (S, 1) or (S, V), repeated over the tokens axis
        return np.repeat(np.broadcast_to(a, grid2).ravel(), T)

    def cat(codes, categories):
        return pd.Categorical.from_codes(flat(codes.astype(np.int8)), categories=categories)

    out = {"d_model": flat(col["d_model"]), "n_layer": flat(col["n_layer"]), "n_total": flat(n_total),
           "final_sparsity": flat(s), "schedule": cat(code, names), "schedule_shape": cat(shape_code, kinds),
           "compute_start": flat(c0), "compute_end": flat(c1), "mean_density": flat(md), "n_avg": flat(n_avg),
           "n_final": flat(n_final), "tokens": tok.ravel(), "tokens_per_param": ratio.ravel(),
           "loss": law.predict(n_law[..., None], tok, s_law[..., None]).ravel()}
    for k, v in ledgers.items():
        if k not in ("inference_context", "lifetime_inference_tokens"):
            out[k] = flat(v[..., 0]) if v.strides[-1] == 0 else v.ravel()  # per-token inference: no tokens axis
    out["lifetime_flops"] = out["train_flops_effective"] + out["lifetime_inference_flops"]
    out["lifetime_usd"] = out["train_usd"] + out["inference_usd"]
    out["extrapolated"] = ~((ratio >= lo[..., None]) & (ratio <= hi[..., None])).ravel()
    out["schedule_flag"] = flat(schedule_flag(c0, c1, s))
    df = pd.DataFrame(out, copy=False)
    return df[np.isfinite(df["tokens"].to_numpy())].reset_index(drop=True) if target_loss is not None else df


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

    @property
    def best(self) -> pd.Series:
        return self.table.iloc[0]


def savings(chosen: pd.Series, baselines: pd.DataFrame, columns) -> pd.DataFrame:
    """What `chosen` saves against each baseline row: `saved_<col>` (absolute) and `saved_<col>_pct` (share of the
    baseline, %); negative where it costs more."""
    return pd.DataFrame({f"saved_{c}{suffix}": (baselines[c] - chosen[c]) * (100 / baselines[c] if suffix else 1)
                         for c in columns for suffix in ("", "_pct")})


def _compare(df, objectives, rows: dict, compared) -> Comparison:
    table = pd.DataFrame(rows).T.infer_objects()
    table.index.name = "plan"
    return Comparison(df, pareto_front(df, objectives), tuple(objectives), table,
                      savings(table.iloc[0], table.iloc[1:], compared))


def lifetime_optimal(law: Law | None = None, target_loss: float = 2.6, *, objective: str = "flops",
                     **search) -> Comparison:
    """Cheapest plan over training + lifetime inference at `target_loss` (Sardana et al. 2024 for sparse schedules).

    objective 'flops' sums effective training FLOPs and lifetime inference FLOPs (ideal sparse kernels); 'usd' sums
    dollars from wall-clock-equivalent training and the hardware's inference speedups. Baselines at the same loss:
    the dense Chinchilla-optimal plan (least training FLOPs) and the dense inference-aware plan (least lifetime
    cost), both within the same shape family. `search` passes on to `candidates` (lifetime_tokens, hardware, ...).
    """
    if objective not in COST_COLUMNS:
        raise PlannerInputError(f"objective {objective!r}: use one of {sorted(COST_COLUMNS)}")
    train, infer, total = COST_COLUMNS[objective]
    df = candidates(law, target_loss=target_loss, **search)
    dense = df[df["final_sparsity"] == 0]
    if dense.empty:
        raise PlannerInputError(f"target loss {target_loss} is below what every candidate can reach; raise the target")
    rows = {LIFETIME_OPTIMAL: df.loc[df[total].idxmin()], DENSE_INFERENCE_AWARE: dense.loc[dense[total].idxmin()],
            DENSE_CHINCHILLA: dense.loc[dense["train_flops_effective"].idxmin()]}
    return _compare(df, (train, infer), rows, (total, train, infer))


def budget_optimal(law: Law | None = None, budget_flops: float = 1e21, *, objective: str = "flops",
                   **search) -> Comparison:
    """Lowest predicted loss for a fixed training budget (FLOPs in `budget_ledger`, default effective), beside the
    dense compute-optimal plan; the frontier trades loss against lifetime inference cost."""
    if objective not in COST_COLUMNS:
        raise PlannerInputError(f"objective {objective!r}: use one of {sorted(COST_COLUMNS)}")
    if not budget_flops > 0:
        raise PlannerInputError(f"--budget-flops must be positive, got {budget_flops}")
    infer = COST_COLUMNS[objective][1]
    df = candidates(law, budget_flops=budget_flops, **search)
    dense = df[df["final_sparsity"] == 0]
    rows = {LOWEST_LOSS: df.loc[df["loss"].idxmin()], DENSE_COMPUTE_OPTIMAL: dense.loc[dense["loss"].idxmin()]}
    return _compare(df, ("loss", infer), rows, ("loss", infer))


# --- plans ---------------------------------------------------------------------------------------------------------

def build_plan(model: ModelShape, final_sparsity: float = 0.0, shape: str = "geometric", *,
               window_basis: str = "compute", start: float = 0.25, end: float = 0.75, every_steps: int | None = None,
               pattern: str = "unstructured", tokens: float | None = None, tokens_per_param: float | None = None,
               law: Law | None = None, hardware: Hardware | None = None, lifetime_tokens: float = 0.0,
               context: int | None = None, prefill_share: float = PREFILL_SHARE, batch_size: int = DEFAULT_BATCH,
               seq_len: int = DEFAULT_SEQ_LEN, lr: float = 3e-4, name: str = "plan", bootstrap=None,
               runs: pd.DataFrame | None = None) -> TrainingPlan:
    """A complete TrainingPlan: schedule resolved in all three bases, budget, law, prediction, hardware and costs.

    Give `tokens`, or `tokens_per_param` (D / N_avg in the law's convention). Tokens round to whole optimizer steps
    of batch_size x seq_len. `start`/`end` are read in `window_basis` (see plan.resolve_schedule). `bootstrap` (a
    planner.fit.BootstrapResult) adds a loss interval; `runs` (the table the law was fitted on) sets the
    extrapolation region, else the seed's validated range. The hardware defaults to an H100 with the pattern's
    speedups.
    """
    law = law or default_law()
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
    d = draft.derived
    n, s = law_inputs(law, d.n_avg, d.n_final, schedule.final_sparsity)
    region = validated_region(runs)
    extrapolated = not bool(region.contains(d.n_avg, budget.tokens))
    warnings = [f"(N_avg {d.n_avg:.3g}, D/N_avg {budget.tokens / d.n_avg:.0f}) lies outside {region.source}: the "
                f"predicted loss extrapolates"] if extrapolated else []
    flag = int(schedule_flag(schedule.compute_start, schedule.compute_end, schedule.final_sparsity))
    if flag:
        warnings.append(SCHEDULE_WARNINGS[flag].format(c0=schedule.compute_start, c1=schedule.compute_end))
    low = high = None
    if bootstrap is not None:
        low, high = (float(x) for x in bootstrap.loss_ci(n, budget.tokens, s))
    prediction = Prediction(loss=float(law.predict(n, budget.tokens, s)), ci_low=low, ci_high=high,
                            extrapolated=extrapolated, warnings=warnings)
    costs = cost_ledgers(draft, hardware, lifetime_tokens, context, prefill_share)
    return make_plan(model, schedule, budget, law.n_convention, name=name, law=law, prediction=prediction,
                     hardware=hardware, costs=costs)


def plan_from_candidate(row: pd.Series, law: Law | None = None, hardware: Hardware | None = None, **plan) -> \
        TrainingPlan:
    """build_plan for one row of `candidates` (family shape, schedule, compute window, tokens); `plan` passes on
    (lifetime_tokens, batch_size, seq_len, name, bootstrap, runs, ...)."""
    dense = row["final_sparsity"] == 0
    return build_plan(family_shape(int(row["d_model"])), float(row["final_sparsity"]),
                      "dense" if dense else str(row["schedule_shape"]), window_basis="compute",
                      start=0.0 if dense else float(row["compute_start"]),
                      end=0.0 if dense else float(row["compute_end"]), tokens=float(row["tokens"]), law=law,
                      hardware=hardware, **plan)
