"""Fitting scaling laws: Chinchilla approach 3 as corrected by the Epoch replication (Besiroglu et al. 2024).

Protocol: parameters live in log space (log E, log A, log B, alpha, beta); the prediction is
``log L_hat = logsumexp(log A - alpha log N, log B - beta log D, log E)``; the objective is the Huber loss (delta 1e-3)
of the log residuals, SUMMED over runs (the mean shrinks the objective so far that L-BFGS's relative-decrease test
stops it early); L-BFGS from every point of a grid of starts, best objective kept.

The Frantar form uses four log-space terms in the same machinery:
``log_a + b log(1 - S) - d log N``, ``log_c - d log N``, ``log_e - f log D`` and ``log_g``.

Speed: every start runs at once in a batched BFGS (`planner.optim`: one small dense inverse Hessian per start,
Armijo backtracking); the best few distinct basins are then polished with scipy's L-BFGS-B. ``n_starts_at_best``
counts the starts whose own batched run ended within best_rtol of the best objective (no start is merged into
another or stopped early); ``n_capped`` those stopped by the iteration cap.

Held parameters: ``LawFitter(form, fixed={"alpha": 0.3478, "beta": 0.3658})`` holds any subset of the form's
parameters at given natural-scale values (log-space internally). The optimiser and the start grid see only the free
parameters; a held one enters every run's prediction as a constant offset, so it stays exactly at its value. Small
run sets (the seed's eight ~1B runs) cannot identify five parameters; holding the exponents at a large fit's values
leaves E, A, B to the runs.

Identifiability: A and alpha (and B and beta) trade off against each other almost exactly over the range of N in a
typical runs table, so their raw values are wide and strongly correlated. Intervals live in `planner.uncertainty`:
profile likelihood for the exponents and beta / (alpha + beta) ('unidentified' when the runs do not bound them),
parametric-bootstrap draws for the predicted loss inside the region the runs cover.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from planner.errors import PlannerInputError
from planner.identify import check_runs, degeneracies
from planner.laws import EXPONENTS, N_COLUMN, PARAM_NAMES, Law, chinchilla, chinchilla_terms
from planner.optim import Problem, batched_bfgs, batched_newton, evaluate, make_problem
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


def start_grid(form: str, grid: str = "chinchilla", held=()) -> np.ndarray:
    """Grid starts for ``form`` as a (starts, free params) array in THETA_NAMES order, over the axes of the
    parameters not in ``held`` (theta indices)."""
    if grid not in ("chinchilla", "coarse"):
        raise ValueError(f"unknown grid {grid!r}: use 'chinchilla' or 'coarse'")
    axes = [axis for i, axis in enumerate(_grid_axes(form, grid)) if i not in held]
    return np.array(list(product(*axes)), dtype=float)


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


def objective(theta, F, y, delta=1e-3, weights=None, reduce="sum"):
    """Huber(delta) of log residuals for each row of theta (starts, params) on a dense design: (values, gradients).

    ``weights`` (starts, runs) re-weights runs per start. ``reduce='mean'`` is the uncorrected variant, kept to show
    why the protocol sums.
    """
    f, g = evaluate(theta, make_problem(F, y), delta, weights)
    scale = 1.0 / F.shape[1] if reduce == "mean" else 1.0
    return f * scale, g * scale


def held_theta(form: str, fixed: dict | None) -> dict[int, float]:
    """Held parameters as {index in THETA_NAMES: log-space value}; ValueError naming a bad name or value."""
    names = PARAM_NAMES[form]
    unknown = sorted(set(fixed or {}) - set(names))
    if unknown:
        raise ValueError(f"cannot hold {', '.join(unknown)}: the {form} form's parameters are {', '.join(names)}")
    held = {}
    for name, value in (fixed or {}).items():
        i = names.index(name)
        log = THETA_NAMES[form][i].startswith("log_")
        if not (np.isfinite(value) and (value > 0 or not log)):
            raise ValueError(f"held {name} must be a finite{' positive' if log else ''} number, got {value!r}")
        held[i] = float(np.log(value)) if log else float(value)
    if len(held) == len(names):
        raise ValueError(f"every {form} parameter is held: leave at least one free to fit")
    return held


def problem(form: str, table: pd.DataFrame, held: dict[int, float]) -> Problem:
    """The optimiser's view of a fit: free parameters only, held ones folded into per-term offsets."""
    F, y = design(form, table)
    free = np.ones(F.shape[2], bool)
    free[list(held)] = False
    offset = F[:, :, ~free] @ np.array(list(held.values())) if held else None
    return make_problem(F[:, :, free], y, offset)


def _full(form: str, theta_free: np.ndarray, held: dict[int, float]) -> np.ndarray:
    """Free log-space parameters (last axis) back to full THETA_NAMES vectors with the held values inserted."""
    theta_free = np.asarray(theta_free, float)
    out = np.empty(theta_free.shape[:-1] + (len(THETA_NAMES[form]),))
    free = [i for i in range(out.shape[-1]) if i not in held]
    out[..., free] = theta_free
    for i, v in held.items():
        out[..., i] = v
    return out


# Past this many runs the start grid runs on a fixed random sample of them, and the sample's best distinct basins are
# refined on every run: the grid's cost stops growing with the table and the fit stays linear in the runs (100,000
# runs: the grid would otherwise cost ~400x the 240-run fit). A sample this size pins down the basins a law's five
# parameters have.
GRID_RUNS = 1024


def grid_sample(n_runs: int) -> np.ndarray | None:
    """Indices of the runs the start grid fits (sorted, seed 0), or None to use them all."""
    if n_runs <= GRID_RUNS:
        return None
    return np.sort(np.random.default_rng(0).choice(n_runs, GRID_RUNS, replace=False))


def distinct_basins(theta, f, k, decimals=2):
    """Indices of the best start in each of the k best distinct end points (theta rounded to ``decimals``)."""
    order = np.argsort(f, kind="stable")
    order = order[np.isfinite(f[order])]
    _, first = np.unique(np.round(theta[order], decimals), axis=0, return_index=True)
    return order[np.sort(first)[:k]]


def polish(theta0, prob, delta):
    """scipy L-BFGS-B from one end point, on the objective divided by its starting value so that scipy's
    relative-decrease test (floored at 1) is relative here too."""
    scale = float(evaluate(theta0, prob, delta)[0][0]) or 1.0
    res = minimize(lambda th: tuple(v[0] / scale for v in evaluate(th, prob, delta)), theta0, jac=True,
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
    fixed: dict = field(default_factory=dict)  # held parameters at their natural-scale values
    degenerate: tuple[str, ...] = ()  # why the runs do not determine this fit (planner.identify); empty when they do

    @property
    def n_free(self) -> int:
        """Parameters the runs determined (the form's count less the held ones)."""
        return len(self.params) - len(self.fixed)

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
    fixed: {parameter: natural-scale value} held during the fit (module docstring).
    """

    def __init__(self, form="unified", grid="chinchilla", delta=1e-3, maxiter=1000, best_rtol=1e-4, n_polish=4,
                 n_convention="total", fixed=None):
        if form not in PARAM_NAMES:
            raise ValueError(f"unknown law form {form!r}: use one of {sorted(PARAM_NAMES)}")
        self.form, self.grid, self.delta, self.maxiter = form, grid, delta, maxiter
        self.best_rtol, self.n_polish, self.n_convention = best_rtol, n_polish, n_convention
        self.held = held_theta(form, fixed)
        self.fixed = {k: float(v) for k, v in (fixed or {}).items()}

    def fit(self, runs) -> FitResult:
        table = load_runs(runs, self.form, n_held=len(self.held))
        check_runs(table, self.form, tuple(self.fixed))
        prob = problem(self.form, table, self.held)
        starts = start_grid(self.form, self.grid, self.held)
        sample = grid_sample(len(table))
        grid_prob = prob if sample is None else problem(self.form, table.iloc[sample], self.held)
        theta, f, _, capped = batched_bfgs(starts, grid_prob, self.delta, maxiter=self.maxiter)
        basins = distinct_basins(theta, f, self.n_polish)
        if len(basins) == 0:  # e.g. a held exponent so negative that every start overflows
            holding = ", ".join(f"{k}={v:g}" for k, v in self.fixed.items())
            raise PlannerInputError("fit: no start reached a finite objective" + (f" holding {holding}" if holding
                                                                                    else ""))
        at_best = None
        if sample is not None:  # the sample's best basins, refined on every run; starts counted on the sample
            at_best = int((f <= f[basins[0]] + self.best_rtol * abs(f[basins[0]])).sum())
            theta, f = batched_bfgs(theta[basins], prob, self.delta, maxiter=self.maxiter)[:2]
            basins = np.argsort(f, kind="stable")
        polished = [polish(theta[i], prob, self.delta) for i in basins]
        best_theta, best_f = min(polished + [(theta[basins[0]], f[basins[0]])], key=lambda tf: tf[1])
        best_theta = _full(self.form, best_theta, self.held)
        params = {k: float(v) for k, v in theta_to_params(self.form, best_theta).items()}
        params.update(self.fixed)  # exactly the values asked for (not exp(log(value)))
        overflow = [k for k, v in params.items() if not np.isfinite(v)]
        if overflow:  # the optimum ran off to infinity in log space: nothing in the runs bounds that term
            raise PlannerInputError(f"{len(table)} runs do not determine the {self.form} fit: {overflow[0]} runs to "
                                    f"infinity; add runs that vary size and tokens apart, or hold the exponents")
        resid = predict_loss(self.form, params, table) - table["loss"].to_numpy(float)
        held = f", holding {', '.join(f'{k}={v:g}' for k, v in self.fixed.items())}" if self.fixed else ""
        self.result_ = FitResult(
            form=self.form, params=params, theta=best_theta, objective=float(best_f),
            n_runs=len(table), n_starts=len(starts),
            n_starts_at_best=at_best if sample is not None else int((f <= best_f + self.best_rtol * abs(best_f)).sum()),
            n_capped=int(capped.sum()),
            rmse=float(np.sqrt(np.mean(resid ** 2))), mae=float(np.mean(np.abs(resid))),
            basins=_full(self.form, theta[basins], self.held), n_convention=self.n_convention, fixed=dict(self.fixed),
            degenerate=degeneracies(self.form, params, best_theta, design(self.form, table)[0], tuple(self.fixed)),
            provenance=f"fitted ({self.form}, Huber delta={self.delta:g} summed, {self.grid} grid{held}"
                       f"{'' if sample is None else f' on a {len(sample)}-run sample'}) on {len(table)} runs")
        return self.result_

    def predict(self, runs) -> np.ndarray:
        if not hasattr(self, "result_"):
            raise RuntimeError("call fit() before predict()")
        return predict_loss(self.form, self.result_.params, load_runs(runs, self.form, n_held=len(self.held)))


def refit_weighted(result: FitResult, table: pd.DataFrame, weights: np.ndarray, delta=1e-3, maxiter=500):
    """Refit once per row of run weights (bootstrap counts, held-out folds), all rows in one batch, holding what
    the full fit held.

    Each refit starts from the full-data optimum and from each distinct basin the full fit's grid found, and keeps
    its best; a resample whose optimum lies in a basin no grid start of the full fit reached would be missed. That
    best is finished with damped Newton: BFGS alone stopped up to 0.5% above a full-grid refit's objective (its
    relative-decrease test fires in the slow valley), Newton closes that to under 1e-9 in ~6 iterations.
    Returns the (rows, params) log-space optima.
    """
    held = held_theta(result.form, result.fixed)
    free = [i for i in range(len(result.theta)) if i not in held]
    seeds = np.vstack([result.theta, result.basins])[:, free]
    k = len(seeds)
    prob = problem(result.form, table, held)
    theta, f, _, _ = batched_bfgs(np.tile(seeds, (len(weights), 1)), prob, delta,
                                  weights=np.repeat(weights, k, axis=0), maxiter=maxiter)
    best = np.where(np.isfinite(f), f, np.inf).reshape(-1, k).argmin(axis=1)
    theta = batched_newton(theta.reshape(len(weights), k, -1)[np.arange(len(weights)), best], prob, delta,
                           weights=weights)[0]
    return _full(result.form, theta, held)


def _table_and_fit(runs, form, grid, fit, delta, fixed):
    """The validated runs table and the full-data fit (``fit`` if given, else one holding ``fixed``)."""
    table = load_runs(runs, form, n_held=len(fit.fixed if fit else fixed or {}))
    return table, fit or LawFitter(form, grid=grid, delta=delta, fixed=fixed).fit(table)


def heldout_errors(runs, form="unified", grid="chinchilla", fit=None, delta=1e-3, fixed=None) -> dict:
    """Held-out loss error: leave one group out (``group`` column, e.g. one model size at a time), else leave one
    run out. Each fold is refitted without its runs (warm-started as in `refit_weighted`, holding what the full fit
    held) and predicts them."""
    table, fit = _table_and_fit(runs, form, grid, fit, delta, fixed)
    grouped = "group" in table.columns and table["group"].nunique() > 1
    codes, uniques = pd.factorize(table["group"]) if grouped else (np.arange(len(table)), table.index)
    weights = (codes[None, :] != np.arange(len(uniques))[:, None]).astype(float)
    theta = refit_weighted(fit, table, weights, delta)[codes]  # each run predicted by the fold that left it out
    resid = predict_loss(form, theta_to_params(form, theta), table) - table["loss"].to_numpy(float)
    return {"heldout_rmse": float(np.sqrt(np.mean(resid ** 2))), "heldout_mae": float(np.mean(np.abs(resid))),
            "scheme": "leave-one-group-out" if grouped else "leave-one-out", "n_folds": len(uniques)}


def compare_forms(runs, forms=("unified", "chinchilla", "frantar", "effective"), grid="chinchilla", delta=1e-3,
                  exponents=None) -> pd.DataFrame:
    """Fit every form on the same runs and tabulate in-sample and held-out error: the seed's central experiment
    (does N_avg unify sparse and dense runs better than N_final, a sparsity term (Frantar et al. 2024), or an
    effective-parameter multiplier per sparsity (Frantar, Evci et al. 2025, `planner.effective`)?).

    ``exponents`` (alpha, beta) holds each form's N and D exponents (`planner.laws.EXPONENTS`: Frantar's d, f) at
    those values, for run sets too small to identify them. ``degenerate`` lists why a fit is not determined by the
    runs (`planner.identify`); read its errors with that in mind.
    """
    from planner import effective  # it builds on this module
    rows = []
    for form in forms:
        names = EXPONENTS.get(form, ("alpha", "beta"))
        fixed = dict(zip(names, exponents)) if exponents is not None else None
        if form == "effective":
            fit = effective.fit(runs, grid=grid, delta=delta, fixed=fixed)
            held, n_params = effective.heldout_errors(runs, fit, delta=delta), len(fit.params)
            degenerate = effective.degeneracies(runs, fit)
        else:
            fit = LawFitter(form, grid=grid, delta=delta, fixed=fixed).fit(runs)
            held, n_params, degenerate = heldout_errors(runs, form, fit=fit, delta=delta), len(PARAM_NAMES[form]), \
                fit.degenerate
        rows.append({"form": form, "n_params": n_params, "n_free": fit.n_free,
                     "objective": fit.objective, "rmse": fit.rmse, "mae": fit.mae,
                     "heldout_rmse": held["heldout_rmse"], "heldout_mae": held["heldout_mae"],
                     "degenerate": "; ".join(degenerate)})
    return pd.DataFrame(rows)
