"""The effective-parameter law of Frantar, Evci et al. 2025 ("Compression Scaling Laws: Unifying Sparsity and
Quantization", arXiv 2502.16440), a rival to N_avg in `planner.fit.compare_forms`:

    L(N, D, S) = A / (N eff(S))^alpha + B / D^beta + E

N is the model's size with every weight counted, pruned or not (the runs table's ``n_total``), and eff(S) one
effective-parameter multiplier per compression format, here per final sparsity level (eff = 1 for dense runs), each
a free parameter. Fitted by the same protocol as `planner.fit` (log space, Huber delta 1e-3 summed over runs, the
grid of starts, batched BFGS, L-BFGS-B polish); eff enters as v = -alpha log eff, which keeps the A term linear in
the parameters: log A - alpha log N + v_S.

A held-out fold that leaves out every run of a sparsity level has no eff for it; its eff is interpolated in S
between the fitted levels (log eff linear in S, eff(0) = 1, held constant past the last level), which the paper
does not do: say so beside any held-out figure for this form.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.errors import PlannerInputError
from planner.fit import distinct_basins, polish, start_grid
from planner.identify import degeneracies as _degeneracies
from planner.optim import batched_bfgs, batched_newton, make_problem
from planner.runs import load_runs

BASE = ("E", "A", "B", "alpha", "beta")


@dataclass(frozen=True)
class EffectiveFit:
    params: dict  # E, A, B, alpha, beta and eff@<sparsity> per level
    theta: np.ndarray  # (log E, log A, log B, alpha, beta, v per level)
    levels: np.ndarray  # the fitted non-zero sparsity levels
    objective: float
    rmse: float
    mae: float
    fixed: dict

    @property
    def n_free(self) -> int:
        return len(self.params) - len(self.fixed)

    def predict(self, runs: pd.DataFrame) -> np.ndarray:
        return predict(self.theta, self.levels, runs)


def _table(runs) -> pd.DataFrame:
    table = load_runs(runs, "frantar")
    missing = np.flatnonzero(table["n_total"].isna()) if "n_total" in table else np.arange(len(table))
    if missing.size:
        raise PlannerInputError(f"runs table: column 'n_total' (every weight of a sparse model, pruned or not) is "
                                f"needed by the effective form; row {missing[0] + 1} has none")
    return table


def design(table: pd.DataFrame, levels: np.ndarray):
    """(F, y) in `planner.fit.design`'s layout: terms (E, A, B) x runs x (log E, log A, log B, alpha, beta, v...)."""
    log_n, log_d = np.log(table["n_total"].to_numpy(float)), np.log(table["tokens"].to_numpy(float))
    at_level = (table["sparsity"].to_numpy(float)[:, None] == levels[None, :]).astype(float)
    one, zero = np.ones_like(log_n), np.zeros_like(log_n)
    pad = np.zeros((len(log_n), len(levels)))
    rows = [np.column_stack([one, zero, zero, zero, zero, pad]),
            np.column_stack([zero, one, zero, -log_n, zero, at_level]),
            np.column_stack([zero, zero, one, zero, -log_d, pad])]
    return np.stack(rows), np.log(table["loss"].to_numpy(float))


def _held(fixed):
    return {BASE.index(k): (np.log(v) if k in ("E", "A", "B") else v) for k, v in (fixed or {}).items()}


def _problem(table, levels, held):
    F, y = design(table, levels)
    free = np.ones(F.shape[2], bool)
    free[list(held)] = False
    offset = F[:, :, ~free] @ np.array(list(held.values())) if held else None
    return make_problem(F[:, :, free], y, offset), free


def _full(theta_free, free, held):
    out = np.empty(np.shape(theta_free)[:-1] + (free.size,))
    out[..., free] = theta_free
    for i, v in held.items():
        out[..., i] = v
    return out


def _eff(theta, levels, sparsity):
    """eff at each sparsity: fitted levels exactly, others interpolated in S (log eff linear, eff(0) = 1)."""
    log_eff = -theta[..., 5:] / theta[..., 3:4]
    s = np.asarray(sparsity, float)
    if theta.ndim == 1:
        return np.exp(np.interp(s, np.r_[0.0, levels], np.r_[0.0, log_eff]))
    return np.exp(np.array([np.interp(si, np.r_[0.0, levels], np.r_[0.0, le]) for si, le in zip(s, log_eff)]))


def predict(theta, levels, runs: pd.DataFrame) -> np.ndarray:
    """Predicted loss of each run; theta is one parameter row, or one row per run."""
    n, d, s = (runs[c].to_numpy(float) for c in ("n_total", "tokens", "sparsity"))
    th = np.asarray(theta, float)
    eff = _eff(th, levels, s)
    E, A, B, alpha, beta = (np.exp(th[..., i]) if i < 3 else th[..., i] for i in range(5))
    return E + A * (n * eff) ** -alpha + B * d ** -beta


def fit(runs, grid="chinchilla", delta=1e-3, fixed=None) -> EffectiveFit:
    """Fit the effective-parameter law, holding `fixed` (natural-scale E, A, B, alpha, beta) at given values."""
    table = _table(runs)
    levels = np.unique(table["sparsity"][table["sparsity"] > 0].to_numpy(float))
    held = _held(fixed)
    prob, free = _problem(table, levels, held)
    base = start_grid("unified", grid, tuple(held))
    starts = np.column_stack([base, np.zeros((len(base), len(levels)))])  # every eff starts at 1
    theta, f, _, _ = batched_bfgs(starts, prob, delta)
    best = min((polish(theta[i], prob, delta) for i in distinct_basins(theta, f, 4)), key=lambda tf: tf[1])
    full = _full(best[0], free, held)
    resid = predict(full, levels, table) - table["loss"].to_numpy(float)
    params = {k: float(np.exp(full[i]) if i < 3 else full[i]) for i, k in enumerate(BASE)}
    params.update(fixed or {})
    params.update({f"eff@{s:g}": float(e) for s, e in zip(levels, _eff(full, levels, levels))})
    return EffectiveFit(params, full, levels, float(best[1]), float(np.sqrt(np.mean(resid ** 2))),
                        float(np.mean(np.abs(resid))), dict(fixed or {}))


def degeneracies(runs, result: EffectiveFit) -> tuple[str, ...]:
    """`planner.identify.degeneracies` for this form."""
    table = _table(runs)
    names = BASE + tuple(k for k in result.params if k.startswith("eff@"))
    return _degeneracies("effective", result.params, result.theta, design(table, result.levels)[0],
                         tuple(result.fixed), names)


def heldout_errors(runs, result: EffectiveFit, delta=1e-3) -> dict:
    """Leave one group out (else one run out), each fold refitted from the full optimum (BFGS, then Newton)."""
    table = _table(runs)
    held = _held(result.fixed)
    prob, free = _problem(table, result.levels, held)
    grouped = "group" in table.columns and table["group"].nunique() > 1
    codes, uniques = pd.factorize(table["group"]) if grouped else (np.arange(len(table)), table.index)
    weights = (codes[None, :] != np.arange(len(uniques))[:, None]).astype(float)
    starts = np.tile(result.theta[free], (len(weights), 1))
    theta = batched_bfgs(starts, prob, delta, weights=weights, maxiter=500)[0]
    theta = _full(batched_newton(theta, prob, delta, weights=weights)[0], free, held)
    # A level no training run of the fold had: its v stayed at the full fit's value, so interpolate it instead.
    for k, s in enumerate(result.levels):
        for fold in range(len(uniques)):
            if not (weights[fold] * (table["sparsity"].to_numpy() == s)).any():
                others = [j for j in range(len(result.levels)) if j != k]
                log_eff = -theta[fold, 5:] / theta[fold, 3]
                theta[fold, 5 + k] = -theta[fold, 3] * np.interp(s, np.r_[0.0, result.levels[others]],
                                                                 np.r_[0.0, log_eff[others]])
    resid = predict(theta[codes], result.levels, table) - table["loss"].to_numpy(float)
    return {"heldout_rmse": float(np.sqrt(np.mean(resid ** 2))), "heldout_mae": float(np.mean(np.abs(resid))),
            "scheme": "leave-one-group-out" if grouped else "leave-one-out", "n_folds": len(uniques)}
