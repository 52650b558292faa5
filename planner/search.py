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
from typing import NamedTuple

import numpy as np
import pandas as pd

from planner.costs import EFFECTIVE, LEDGER_COLUMNS, PREFILL_SHARE, cost_ledgers, hardware_profile, ledger_arrays, \
    matmul_params
from planner.errors import PlannerInputError
from planner.laws import N_COLUMN, Law, default_law
from planner.pareto import pareto_front
from planner.plan import Budget, Hardware, Prediction, TrainingPlan, make_plan, resolve_schedule
from planner.regime import SCHEDULE_OK, schedule_flag, schedule_warning, validated_region
from planner.schedules import compute_weighting, mean_density, n_of_t, window_from_compute
from planner.shapes import PRESETS, ModelShape

VOCAB = 32000
ASPECT = 128  # d_model per layer
# Every width of the family (multiples of its head_dim, 8.7M to 175B parameters), and the search's default grid:
# 32 of them spaced evenly in log width from 256 (18M parameters) to 9216 (74B). The optimum answers refine the grid
# over the whole family (`refine_sizes`).
FAMILY_D_MODELS = tuple(range(128, 1024, 64)) + tuple(range(1024, 12289, 128))
DEFAULT_D_MODELS = tuple(sorted({min(FAMILY_D_MODELS, key=lambda d: abs(np.log(d / w)))
                                 for w in np.geomspace(256, 9216, 32)}))
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
    "geometric 20-80": ScheduleOption("geometric", 0.20, 0.80),
    "geometric 30-70": ScheduleOption("geometric", 0.30, 0.70),
    # Opt-in, outside the seed's validated regime (planner.regime): flagged and warned about wherever they appear.
    "geometric 25-50": ScheduleOption("geometric", 0.25, 0.50),
    "geometric 50-75": ScheduleOption("geometric", 0.50, 0.75),
    "one-shot 50": ScheduleOption("one_shot", 0.50, 0.50),
    "geometric 0-75": ScheduleOption("geometric", 0.0, 0.75),
    "geometric 25-100": ScheduleOption("geometric", 0.25, 1.0),
}
# The default search: every option inside the validated regime (the app and the CLI both use this).
DEFAULT_SCHEDULES = tuple(name for name, o in SCHEDULE_OPTIONS.items()
                          if schedule_flag(o.compute_start, o.compute_end, 0.5) == SCHEDULE_OK)

# --- validated regimes (planner.regime) ----------------------------------------------------------------------------

def schedule_warnings(df: pd.DataFrame) -> pd.Series:
    """The schedule warning of each row ("" inside the validated regime): one text per distinct flagged schedule."""
    out = pd.Series("", index=df.index, dtype=object)
    flagged = df[df["schedule_flag"] != SCHEDULE_OK]
    for (c0, c1, flag), rows in flagged.groupby(["compute_start", "compute_end", "schedule_flag"]).groups.items():
        out[rows] = schedule_warning(c0, c1, flag)
    return out


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
    phi = np.array([compute_weighting(m) for m in shapes])[:, None]
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
    lo, hi = validated_region(runs, law.n_convention).bounds(n_avg)
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


def _compare(df, objectives, rows: dict, compared) -> Comparison:
    table = pd.DataFrame(rows).T.infer_objects()
    table.index.name = "plan"
    frontier = pareto_front(df, objectives)
    for small in (table, frontier):  # a warning column on what is shown, not on every candidate
        small["schedule_warning"] = schedule_warnings(small)
    return Comparison(df, frontier, tuple(objectives), table, savings(table.iloc[0], table.iloc[1:], compared))


def refine_sizes(df: pd.DataFrame, criteria, d_models=DEFAULT_D_MODELS, **search) -> pd.DataFrame:
    """`df` (candidates on the grid `d_models`) plus candidates at every family width the grid skipped next to each
    schedule variant's best width under each criterion (a column, minimised).

    A variant's cost is unimodal in width, so its optimum over the whole family lies between the grid neighbours of
    its grid optimum (to the family's end when that is the grid's end). `search` is what made `df`.
    """
    grid, family = np.array(sorted({int(d) for d in d_models})), np.array(FAMILY_D_MODELS)
    new: set[int] = set()
    for col in criteria:
        best = df.loc[df.groupby(["schedule", "final_sparsity"], observed=True)[col].idxmin(), "d_model"].to_numpy()
        i = np.searchsorted(grid, best)
        lo = np.where(i > 0, grid[np.maximum(i - 1, 0)], family[0] - 1)
        hi = np.where(i < len(grid) - 1, grid[np.minimum(i + 1, len(grid) - 1)], family[-1] + 1)
        for a, b in zip(lo, hi):
            new.update(int(d) for d in family[(family > a) & (family < b)])
    new -= set(grid.tolist())
    if not new:
        return df
    return pd.concat([df, candidates(d_models=sorted(new), **search)], ignore_index=True)


def lifetime_optimal(law: Law | None = None, target_loss: float = 2.6, *, objective: str = "flops",
                     d_models=DEFAULT_D_MODELS, refine: bool = True, **search) -> Comparison:
    """Cheapest plan over training + lifetime inference at `target_loss` (Sardana et al. 2024 for sparse schedules).

    objective 'flops' sums effective training FLOPs and lifetime inference FLOPs (ideal sparse kernels); 'usd' sums
    dollars from wall-clock-equivalent training and the hardware's inference speedups. Baselines at the same loss:
    the dense Chinchilla-optimal plan (least training FLOPs) and the dense inference-aware plan (least lifetime
    cost), both within the same shape family. With `refine`, every plan is the best over the whole family of widths
    (`refine_sizes`), not only the grid `d_models`. `search` passes on to `candidates` (lifetime_tokens, hardware...).
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
    dense = df[df["final_sparsity"] == 0]
    if dense.empty:
        raise PlannerInputError(f"target loss {target_loss} is below what every candidate can reach; raise the target")
    rows = {LIFETIME_OPTIMAL: df.loc[df[total].idxmin()], DENSE_INFERENCE_AWARE: dense.loc[dense[total].idxmin()],
            DENSE_CHINCHILLA: dense.loc[dense["train_flops_effective"].idxmin()]}
    return _compare(df, (train, infer), rows, (total, train, infer))


def budget_optimal(law: Law | None = None, budget_flops: float = 1e21, *, objective: str = "flops",
                   d_models=DEFAULT_D_MODELS, refine: bool = True, **search) -> Comparison:
    """Lowest predicted loss for a fixed training budget (FLOPs in `budget_ledger`, default effective), beside the
    dense compute-optimal plan; the frontier trades loss against lifetime inference cost. `refine`: as in
    `lifetime_optimal`."""
    if objective not in COST_COLUMNS:
        raise PlannerInputError(f"objective {objective!r}: use one of {sorted(COST_COLUMNS)}")
    if not budget_flops > 0:
        raise PlannerInputError(f"--budget-flops must be positive, got {budget_flops}")
    infer = COST_COLUMNS[objective][1]
    df = candidates(law, budget_flops=budget_flops, d_models=d_models, **search)
    if refine:
        df = refine_sizes(df, ("loss",), d_models, law=law, budget_flops=budget_flops, **search)
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
    region = validated_region(runs, law.n_convention)
    extrapolated = not bool(region.contains(d.n_avg, budget.tokens))
    warnings = [f"(N_avg {d.n_avg:.3g}, D/N_avg {budget.tokens / d.n_avg:.0f}) lies outside {region.source}: the "
                f"predicted loss extrapolates"] if extrapolated else []
    flag = int(schedule_flag(schedule.compute_start, schedule.compute_end, schedule.final_sparsity))
    if flag:
        warnings.append(schedule_warning(schedule.compute_start, schedule.compute_end, flag))
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
