"""Fitting scaling laws: Chinchilla approach 3 as corrected by the Epoch replication (Besiroglu et al. 2024).

Protocol: parameters live in log space (log E, log A, log B, alpha, beta); the prediction is
``log L_hat = logsumexp(log A - alpha log N, log B - beta log D, log E)``; the objective is the Huber loss (delta 1e-3)
of the log residuals, SUMMED over runs (the mean shrinks the objective so far that L-BFGS's relative-decrease test
stops it early); L-BFGS from every point of a grid of starts, best objective kept.

The Frantar form uses four log-space terms in the same machinery:
``log_a + b log(1 - S) - d log N``, ``log_c - d log N``, ``log_e - f log D`` and ``log_g``.

Speed: every start runs at once. A batched BFGS (one small dense inverse Hessian per start, Armijo backtracking)
evaluates the objective and gradient of all active starts as one (starts x runs x terms) numpy computation; the best
few distinct basins are then polished with scipy's L-BFGS-B. ``n_starts_at_best`` counts, from the batched phase, the
starts that ended within tolerance of the best objective; ``n_capped`` those stopped by the iteration cap.

Identifiability: A and alpha (and B and beta) trade off against each other almost exactly over the range of N in a
typical runs table, so their raw values and intervals are wide and strongly correlated. Report derived quantities
(predicted loss, the compute-optimal exponent beta / (alpha + beta)); those are well determined.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from planner.errors import PlannerInputError
from planner.laws import N_COLUMN, PARAM_NAMES, Law, chinchilla, chinchilla_terms, optimal_n_exponent
from planner.runs import load_runs

# Optimised (log-space) parameter names per form, in the order of PARAM_NAMES.
THETA_NAMES = {
    "chinchilla": ("log_E", "log_A", "log_B", "alpha", "beta"),
    "unified": ("log_E", "log_A", "log_B", "alpha", "beta"),
    "frantar": ("log_a", "b", "log_c", "d", "log_e", "f", "log_g"),
}


def _grid_axes(form: str, grid: str):
    """Axes of the start grid in THETA_NAMES order; 'chinchilla' is Hoffmann's 4500-point grid."""
    if form == "frantar":
        if grid == "chinchilla":  # 4050 points: the Chinchilla grid thinned, plus the sparsity term
            return [(0, 5, 10), (0.5, 2), (0, 5, 10, 15, 20), (0.25, 0.75, 1.5), (0, 5, 10, 15, 20),
                    (0.25, 0.75, 1.5), (-1, 0, 1)]
        return [(0, 5), (0.5, 2), (5, 10), (0.3, 1), (5, 10), (0.3, 1), (0, 1)]  # coarse: 128 points
    if grid == "chinchilla":
        return [np.arange(-1, 1.01, 0.5), np.arange(0, 26, 5), np.arange(0, 26, 5),
                np.arange(0, 2.01, 0.5), np.arange(0, 2.01, 0.5)]
    return [(-1, 0, 1), (0, 10, 20), (0, 10, 20), (0, 0.5, 1), (0, 0.5, 1)]  # coarse: 243 points


def start_grid(form: str, grid: str = "chinchilla") -> np.ndarray:
    """All grid starts for ``form`` as a (starts, params) array in THETA_NAMES order."""
    if grid not in ("chinchilla", "coarse"):
        raise ValueError(f"unknown grid {grid!r}: use 'chinchilla' or 'coarse'")
    return np.array(list(product(*_grid_axes(form, grid))), dtype=float)


def design(form: str, runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(F, y): log L_hat for run r is logsumexp over terms k of F[k, r] @ theta; y = log loss. F is (terms, runs,
    params), terms first so the per-term arrays stay contiguous."""
    log_n = np.log(runs[N_COLUMN[form]].to_numpy(float))
    log_d = np.log(runs["tokens"].to_numpy(float))
    one, zero = np.ones_like(log_n), np.zeros_like(log_n)
    if form == "frantar":
        log_keep = np.log1p(-runs["sparsity"].to_numpy(float))
        rows = [(one, log_keep, zero, -log_n, zero, zero, zero), (zero, zero, one, -log_n, zero, zero, zero),
                (zero, zero, zero, zero, one, -log_d, zero), (zero, zero, zero, zero, zero, zero, one)]
    else:
        rows = [(one, zero, zero, zero, zero), (zero, one, zero, -log_n, zero), (zero, zero, one, zero, -log_d)]
    return np.stack([np.stack(r, axis=-1) for r in rows]), np.log(runs["loss"].to_numpy(float))


def objective(theta, F, y, delta=1e-3, weights=None, reduce="sum", chunk=128):
    """Huber(delta) of log residuals for each row of theta (starts, params): (values, gradients).

    ``weights`` (starts, runs) re-weights runs per start (bootstrap counts, held-out folds). ``reduce='mean'`` is
    the uncorrected variant, kept to show why the protocol sums. Starts are processed ``chunk`` rows at a time so the
    (starts x runs) temporaries stay in cache, which is several times faster than one big pass.
    """
    theta = np.atleast_2d(theta)
    const = [bool((Fk == Fk[0]).all()) for Fk in F]  # a term equal for every run (log E) is computed once per start
    parts = [_huber_chunk(theta[i:i + chunk], F, const, y, delta, None if weights is None else weights[i:i + chunk])
             for i in range(0, len(theta), chunk)]
    scale = 1.0 / F.shape[1] if reduce == "mean" else 1.0
    return np.concatenate([p[0] for p in parts]) * scale, np.concatenate([p[1] for p in parts]) * scale


def _huber_chunk(theta, F, const, y, delta, weights):
    # No max shift in the log-sum-exp: at any sensible point each term is a log loss of order 1; a wild trial step
    # overflows to a non-finite objective, which the line search rejects.
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        ex = [np.exp(theta @ Fk[0])[:, None] if c else np.exp(theta @ Fk.T) for Fk, c in zip(F, const)]
        total = ex[0] + ex[1]
        for ek in ex[2:]:
            total += ek
        r = np.log(total)
        r -= y
        dh = np.clip(r, -delta, delta)  # the Huber derivative
        r -= 0.5 * dh
        r *= dh  # now the Huber loss itself, on both branches
        if weights is not None:
            r *= weights
            dh *= weights
        dh /= total
        grad = sum((ek * dh).sum(1, keepdims=True) * Fk[0] if c else (ek * dh) @ Fk for ek, Fk, c in zip(ex, F, const))
    return r.sum(axis=1), grad


def batched_bfgs(theta0, F, y, delta=1e-3, weights=None, maxiter=1000, gtol=1e-8, ftol=1e-9):
    """Minimise `objective` from every row of theta0 at once; returns (theta, f, n_iter, capped).

    Each start keeps its own dense inverse-Hessian estimate and stops, as scipy's L-BFGS-B would, on a small relative
    decrease (ftol), a small gradient (gtol) or a failed line search. Unlike scipy the decrease test has no floor of
    1: a summed Huber objective is ~1e-3, where that floor makes the test absolute and stops starts early.
    """
    x = np.array(theta0, dtype=float)
    n_start, n_par = x.shape
    w = None if weights is None else np.broadcast_to(weights, (n_start, F.shape[1]))
    f, g = objective(x, F, y, delta, w)
    n_iter = np.zeros(n_start, int)
    # Working set: only unfinished starts, compacted every iteration.
    idx = np.flatnonzero(np.isfinite(f))
    xa, fa, ga = x[idx], f[idx], g[idx]
    wa = None if w is None else w[idx]
    H = np.tile(np.eye(n_par), (len(idx), 1, 1))
    fresh = np.ones(len(idx), bool)  # no curvature pair yet: first step of unit length, H rescaled after
    for _ in range(maxiter):
        if not idx.size:
            break
        p = -np.einsum("spq,sq->sp", H, ga)
        slope = np.einsum("sp,sp->s", p, ga)
        uphill = ~(slope < 0)
        if uphill.any():  # lost descent (non-smooth kinks): restart that start's estimate from the gradient
            p[uphill], H[uphill], slope[uphill] = -ga[uphill], np.eye(n_par), -np.einsum("sp,sp->s", ga, ga)[uphill]
        step = np.where(fresh, np.minimum(1.0, 1.0 / np.sqrt(np.einsum("sp,sp->s", ga, ga))), 1.0)
        x_new, f_new, g_new = xa.copy(), fa.copy(), ga.copy()
        moved = np.zeros(len(idx), bool)
        pending = np.arange(len(idx))
        for _ls in range(40):  # Armijo backtracking on the starts not yet accepted
            xt = xa[pending] + step[pending, None] * p[pending]
            ft, gt = objective(xt, F, y, delta, None if wa is None else wa[pending])
            ok = np.isfinite(ft) & (ft <= fa[pending] + 1e-4 * step[pending] * slope[pending])
            acc = pending[ok]
            x_new[acc], f_new[acc], g_new[acc], moved[acc] = xt[ok], ft[ok], gt[ok], True
            pending = pending[~ok]
            if not pending.size:
                break
            step[pending] *= 0.5
        s, yv = x_new - xa, g_new - ga
        sy, yy = np.einsum("sp,sp->s", s, yv), np.einsum("sp,sp->s", yv, yv)
        curved = moved & (sy > 1e-10 * np.sqrt(np.einsum("sp,sp->s", s, s) * yy))
        if curved.any():
            Hc, sc, yc, rho = H[curved], s[curved], yv[curved], 1.0 / sy[curved]
            Hc[fresh[curved]] *= (sy[curved] / yy[curved])[fresh[curved], None, None]
            Hy = np.einsum("spq,sq->sp", Hc, yc)
            yHy = np.einsum("sp,sp->s", yc, Hy)
            H[curved] = (Hc - rho[:, None, None] * (Hy[:, :, None] * sc[:, None, :] + sc[:, :, None] * Hy[:, None, :])
                         + ((1 + rho * yHy) * rho)[:, None, None] * sc[:, :, None] * sc[:, None, :])
        small_drop = ~fresh & ((fa - f_new) <= ftol * np.abs(fa))  # waits for a curvature pair
        fresh &= ~curved
        n_iter[idx] += 1
        done = ~moved | small_drop | (np.abs(g_new).max(1) <= gtol)
        x[idx[done]], f[idx[done]] = x_new[done], f_new[done]
        keep = ~done
        idx, xa, fa, ga, H, fresh = idx[keep], x_new[keep], f_new[keep], g_new[keep], H[keep], fresh[keep]
        wa = None if wa is None else wa[keep]
    x[idx], f[idx] = xa, fa
    capped = np.zeros(n_start, bool)
    capped[idx] = True
    return x, f, n_iter, capped


def distinct_basins(theta, f, k, decimals=2):
    """Indices of the best start in each of the k best distinct end points (theta rounded to ``decimals``)."""
    order = np.argsort(f, kind="stable")
    order = order[np.isfinite(f[order])]
    _, first = np.unique(np.round(theta[order], decimals), axis=0, return_index=True)
    return order[np.sort(first)[:k]]


def _polish(theta0, F, y, delta):
    """scipy L-BFGS-B from one end point, on the objective divided by its starting value so that scipy's
    relative-decrease test (floored at 1) is relative here too."""
    scale = float(objective(theta0, F, y, delta)[0][0])
    res = minimize(lambda th: tuple(v[0] / scale for v in objective(th, F, y, delta)), theta0, jac=True,
                   method="L-BFGS-B")
    return res.x, float(res.fun) * scale


@dataclass(frozen=True)
class FitResult:
    """Outcome of a multi-start fit. ``params`` are natural-scale and unrounded; ``theta`` the log-space optimum."""
    form: str
    params: dict
    theta: np.ndarray
    objective: float
    n_runs: int
    n_starts: int
    n_starts_at_best: int
    n_capped: int
    rmse: float
    mae: float
    basins: np.ndarray  # log-space end points of the best distinct basins, best first (warm starts for refits)
    n_convention: str = "total"
    provenance: str = ""

    @property
    def law(self) -> Law:
        return Law(form=self.form, params=self.params, n_convention=self.n_convention, provenance=self.provenance)

    @property
    def optimal_n_exponent(self) -> float:
        return self.law.optimal_n_exponent


def theta_to_params(form: str, theta: np.ndarray) -> dict:
    """Log-space parameters (last axis in THETA_NAMES order) to natural ones, keyed by PARAM_NAMES."""
    theta = np.asarray(theta, float)
    return {name: (np.exp(theta[..., i]) if log.startswith("log_") else theta[..., i])
            for i, (name, log) in enumerate(zip(PARAM_NAMES[form], THETA_NAMES[form]))}


def predict_loss(form: str, params: dict, runs: pd.DataFrame):
    """Predicted loss of each run (the form's N column); params may hold arrays of shape (samples, 1)."""
    n, tokens = runs[N_COLUMN[form]].to_numpy(float), runs["tokens"].to_numpy(float)
    return chinchilla(n, tokens, *chinchilla_terms(form, params, runs["sparsity"].to_numpy(float)))


class LawFitter:
    """Scikit-learn-style fitter: ``LawFitter('unified').fit(runs)`` then ``.predict(runs)``.

    grid: 'chinchilla' (the protocol's full grid) or 'coarse'. best_rtol: a start counts as reaching the best
    objective when within best_rtol (relative) of it. n_polish: distinct basins polished with scipy L-BFGS-B.
    """

    def __init__(self, form="unified", grid="chinchilla", delta=1e-3, maxiter=1000, best_rtol=1e-4, n_polish=4,
                 n_convention="total"):
        if form not in PARAM_NAMES:
            raise ValueError(f"unknown law form {form!r}: use one of {sorted(PARAM_NAMES)}")
        self.form, self.grid, self.delta, self.maxiter = form, grid, delta, maxiter
        self.best_rtol, self.n_polish, self.n_convention = best_rtol, n_polish, n_convention

    def fit(self, runs) -> FitResult:
        table = load_runs(runs, self.form)
        F, y = design(self.form, table)
        starts = start_grid(self.form, self.grid)
        theta, f, _, capped = batched_bfgs(starts, F, y, self.delta, maxiter=self.maxiter)
        basins = distinct_basins(theta, f, self.n_polish)
        polished = [_polish(theta[i], F, y, self.delta) for i in basins]
        best_theta, best_f = min(polished + [(theta[basins[0]], f[basins[0]])], key=lambda tf: tf[1])
        params = {k: float(v) for k, v in theta_to_params(self.form, best_theta).items()}
        resid = predict_loss(self.form, params, table) - table["loss"].to_numpy(float)
        self.result_ = FitResult(
            form=self.form, params=params, theta=np.asarray(best_theta), objective=float(best_f),
            n_runs=len(table), n_starts=len(starts),
            n_starts_at_best=int((f <= best_f + self.best_rtol * abs(best_f)).sum()), n_capped=int(capped.sum()),
            rmse=float(np.sqrt(np.mean(resid ** 2))), mae=float(np.mean(np.abs(resid))), basins=theta[basins],
            n_convention=self.n_convention,
            provenance=f"fitted ({self.form}, Huber delta={self.delta:g} summed, {self.grid} grid) on {len(table)} runs")
        return self.result_

    def predict(self, runs) -> np.ndarray:
        if not hasattr(self, "result_"):
            raise RuntimeError("call fit() before predict()")
        return predict_loss(self.form, self.result_.params, load_runs(runs, self.form))


def refit_weighted(result: FitResult, table: pd.DataFrame, weights: np.ndarray, delta=1e-3, maxiter=500):
    """Refit once per row of run weights (bootstrap counts, held-out folds), all rows in one batch.

    Each refit starts from the full-data optimum and from each distinct basin the full fit's grid found, and keeps
    its best; a resample whose optimum lies in a basin no grid start of the full fit reached would be missed.
    Returns the (rows, params) log-space optima.
    """
    F, y = design(result.form, table)
    seeds = np.vstack([result.theta, result.basins])
    k = len(seeds)
    theta, f, _, _ = batched_bfgs(np.tile(seeds, (len(weights), 1)), F, y, delta,
                                  weights=np.repeat(weights, k, axis=0), maxiter=maxiter)
    best = np.where(np.isfinite(f), f, np.inf).reshape(-1, k).argmin(axis=1)
    return theta.reshape(len(weights), k, -1)[np.arange(len(weights)), best]


@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap refits: natural-scale parameter ``samples`` (one row per resample) and percentile intervals.

    The raw A and alpha (B and beta) are nearly unidentifiable, so their intervals are wide; the intervals on
    predicted loss (`loss_ci`) and on the compute-optimal exponent are the ones to show.
    """
    form: str
    samples: pd.DataFrame
    level: float

    def _bounds(self, values, axis=0):
        tail = 50 * (1 - self.level)
        return tuple(np.nanpercentile(values, [tail, 100 - tail], axis=axis))

    @property
    def exponent_samples(self) -> np.ndarray:
        _, _, _, alpha, beta = chinchilla_terms(self.form, self.samples)
        return optimal_n_exponent(np.asarray(alpha), np.asarray(beta))

    def ci(self) -> dict[str, tuple[float, float]]:
        """Percentile interval per parameter plus 'optimal_n_exponent' (beta / (alpha + beta))."""
        out = {k: tuple(float(b) for b in self._bounds(self.samples[k])) for k in self.samples.columns}
        out["optimal_n_exponent"] = tuple(float(b) for b in self._bounds(self.exponent_samples))
        return out

    def loss_ci(self, n, tokens, sparsity=None):
        """(low, high) predicted loss at the given points (the form's N convention), broadcast over arrays."""
        ndim = np.broadcast(np.asarray(n), np.asarray(tokens), np.asarray(0.0 if sparsity is None else sparsity)).ndim
        coef = {k: self.samples[k].to_numpy()[(slice(None),) + (None,) * ndim] for k in self.samples}
        return self._bounds(chinchilla(n, tokens, *chinchilla_terms(self.form, coef, sparsity)))


def bootstrap(runs, form="unified", n_boot=1000, seed=0, by_group=False, level=0.95, grid="chinchilla", fit=None,
              delta=1e-3):
    """Resample runs with replacement (whole groups when ``by_group``) ``n_boot`` times and refit each resample.

    ``fit`` reuses a full-data FitResult (else one is fitted on ``grid``). Refits are warm-started (`refit_weighted`)
    and run together as one batch.
    """
    table = load_runs(runs, form)
    fit = fit or LawFitter(form, grid=grid, delta=delta).fit(table)
    rng = np.random.default_rng(seed)
    if by_group:
        if "group" not in table.columns:
            raise PlannerInputError("runs table: column 'group' is missing; a by-group bootstrap resamples groups")
        codes, uniques = pd.factorize(table["group"])
        weights = rng.multinomial(len(uniques), np.full(len(uniques), 1 / len(uniques)), size=n_boot)[:, codes]
    else:
        weights = rng.multinomial(len(table), np.full(len(table), 1 / len(table)), size=n_boot)
    theta = refit_weighted(fit, table, weights.astype(float), delta)
    return BootstrapResult(form, pd.DataFrame(theta_to_params(form, theta)), level)


def heldout_errors(runs, form="unified", grid="chinchilla", fit=None, delta=1e-3) -> dict:
    """Held-out loss error: leave one group out (``group`` column, e.g. one model size at a time), else leave one
    run out. Each fold is refitted without its runs (warm-started as in `refit_weighted`) and predicts them."""
    table = load_runs(runs, form)
    fit = fit or LawFitter(form, grid=grid, delta=delta).fit(table)
    grouped = "group" in table.columns and table["group"].nunique() > 1
    codes, uniques = pd.factorize(table["group"]) if grouped else (np.arange(len(table)), table.index)
    weights = (codes[None, :] != np.arange(len(uniques))[:, None]).astype(float)
    theta = refit_weighted(fit, table, weights, delta)[codes]  # each run predicted by the fold that left it out
    resid = predict_loss(form, theta_to_params(form, theta), table) - table["loss"].to_numpy(float)
    return {"heldout_rmse": float(np.sqrt(np.mean(resid ** 2))), "heldout_mae": float(np.mean(np.abs(resid))),
            "scheme": "leave-one-group-out" if grouped else "leave-one-out", "n_folds": len(uniques)}


def compare_forms(runs, forms=("unified", "chinchilla", "frantar"), grid="chinchilla", delta=1e-3) -> pd.DataFrame:
    """Fit every form on the same runs and tabulate in-sample and held-out error: the seed's central experiment
    (does N_avg unify sparse and dense runs better than N_final, or than a sparsity term?)."""
    rows = []
    for form in forms:
        table = load_runs(runs, form)
        fit = LawFitter(form, grid=grid, delta=delta).fit(table)
        held = heldout_errors(table, form, fit=fit, delta=delta)
        rows.append({"form": form, "n_params": len(PARAM_NAMES[form]), "objective": fit.objective, "rmse": fit.rmse,
                     "mae": fit.mae, "heldout_rmse": held["heldout_rmse"], "heldout_mae": held["heldout_mae"]})
    return pd.DataFrame(rows)
