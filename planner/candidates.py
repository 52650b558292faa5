"""The candidate plans of the search: a Llama-style shape family x final sparsities x pruning schedules x token
counts, evaluated at once with numpy broadcasting (the law at each candidate's N, N_avg for the unified law, and the
cost ledgers of `planner.hardware.costs`). Tokens come from a target loss (solved from the law), a training budget, or a
token grid; `planner.search` turns candidates into answers.

Shape family (Llama style, `family_shape`): n_layer = round(d_model / 128) (the aspect ratio of Llama 2 7B/13B),
head_dim 64 below d_model 1024 and 128 from there, multi-head attention (no grouped KV), SwiGLU with d_ff = 8/3 d_model
rounded up to a multiple of 256, vocabulary 32000, untied embeddings, no biases.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from planner.hardware.costs import (EFFECTIVE, LEDGER_COLUMNS, PREFILL_SHARE, hardware_profile, ledger_arrays,
                                    matmul_params, serving_bytes, train_flops_per_token)
from planner.errors import PlannerInputError
from planner.laws import N_COLUMN, Law, default_law
from planner.plan import Hardware
from planner.regime import SCHEDULE_OK, schedule_flag, schedule_warning, validated_region
from planner.schedules import compute_weighting, mean_density, n_of_t, window_from_compute
from planner.shapes import ModelShape

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


def family_dims(d_models) -> dict:
    """The family's shapes at these widths as (S, 1) arrays of dimensions (planner.hardware.memory.dims)."""
    shapes = [family_shape(int(d)) for d in d_models]
    col = {k: np.array([getattr(m, k) for m in shapes], np.int64)[:, None]
           for k in ("n_layer", "d_model", "n_head", "d_ff")}
    head_dim = np.array([m.head_size for m in shapes], np.int64)[:, None]
    return {**col, "n_kv_head": col["n_head"], "head_dim": head_dim, "vocab": VOCAB, "tied": False, "swiglu": True}


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


def family_flops_per_token(law: Law | None = None, seq_len: int = DEFAULT_SEQ_LEN, vocab: int = VOCAB):
    """Training FLOPs per token of the family's dense models as a function of N in the law's count (log-log
    interpolation between widths), for `Law.compute_optimal`: the ledgers' matmul parameters plus attention."""
    law = law or default_law()
    shapes = [family_shape(d, vocab) for d in FAMILY_D_MODELS]
    n = np.log([sum(m.n_params(law.n_convention)) for m in shapes])
    flops = np.log([train_flops_per_token(*matmul_params(m), 1.0, m.n_layer, m.n_head * m.head_size, seq_len)
                    for m in shapes])

    def per_token(n_law):
        return np.exp(np.interp(np.log(n_law), n, flops))
    per_token.n_range = (float(np.exp(n[0])), float(np.exp(n[-1])))
    return per_token


def planning_law(law: Law | None) -> Law:
    """The law (default: Epoch applied with N_avg), refused when it counts D in steps: plans budget tokens."""
    law = law or default_law()
    if law.d_counts != "tokens":
        raise PlannerInputError(f"--law: this law counts D in training {law.d_counts} of its own setup "
                                f"({law.provenance.split(':')[0]}); planning needs a law in tokens")
    return law


def law_inputs(law: Law, n_avg, n_final, final_sparsity):
    """(N, sparsity) that `law.predict` / `tokens_for_loss` take: the law's own N column (N_avg for unified)."""
    return (n_avg if N_COLUMN[law.form] == "n_avg" else n_final), final_sparsity


# --- candidates ----------------------------------------------------------------------------------------------------

def candidates(law: Law | None = None, *, target_loss: float | None = None, budget_flops: float | None = None,
               tokens=None, tokens_per_param=DEFAULT_TOKENS_PER_PARAM, d_models=DEFAULT_D_MODELS,
               sparsities=DEFAULT_SPARSITIES, schedules=DEFAULT_SCHEDULES, hardware: Hardware | None = None,
               lifetime_tokens: float = 0.0, context: int | None = None, prefill_share: float = PREFILL_SHARE,
               seq_len: int = DEFAULT_SEQ_LEN, budget_ledger: str = EFFECTIVE,
               runs: pd.DataFrame | None = None, region=None) -> pd.DataFrame:
    """Every candidate plan as a DataFrame row: shape, schedule, N_avg, tokens, predicted loss and cost ledgers.

    Tokens come from `target_loss` (solved; unreachable candidates dropped), `budget_flops` (training FLOPs in
    `budget_ledger`), absolute `tokens`, or `tokens_per_param` x N_avg, in that order. `schedules` are names of
    SCHEDULE_OPTIONS or ScheduleOption tuples; sparsity 0 is one dense candidate per shape. Columns include
    loss, n_avg, n_final, tokens, every CostLedgers field, lifetime_flops (effective training + lifetime inference),
    lifetime_usd, extrapolated (outside `region`, N as the law counts it) and schedule_flag (the `planner.regime`
    bits: 0 inside the validated schedule regime). `region` is where the law's predictions may carry an interval
    (`planner.uncertainty.prediction_region`: the chosen plan's flag follows the same one); default
    `validated_region(runs)`.
    """
    law = planning_law(law)
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
                   seq_len, hardware, lifetime_tokens, context, prefill_share,
                   serving_bytes(family_dims(d_models), 1.0 - s, hardware))

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
    def along_tokens(a):  # per-(shape, variant) arrays gain the tokens axis
        if isinstance(a, dict):
            return {k: along_tokens(v) for k, v in a.items()}
        return a[..., None] if isinstance(a, np.ndarray) else a
    ledgers = ledger_arrays(tok, *(along_tokens(a) for a in ledger_args))
    region = region or validated_region(runs, law.n_convention, N_COLUMN[law.form])
    ratio = tok / n_avg[..., None]
    inside = region.contains(n_law[..., None], tok, s[:, None])

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
    out["extrapolated"] = ~inside.ravel()
    out["schedule_flag"] = flat(schedule_flag(c0, c1, s))
    df = pd.DataFrame(out, copy=False)
    return df[np.isfinite(df["tokens"].to_numpy())].reset_index(drop=True) if target_loss is not None else df
