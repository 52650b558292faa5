"""Profile-likelihood intervals for the exponents and the compute-optimal exponent, or "unidentified".

Likelihood: Gaussian noise on log loss, so the profile is of the sum of squared log residuals S (the fitter's Huber
objective with a delta no residual reaches is S / 2; `planner.optim` minimises it). For a value v of a quantity q,
S_q(v) is the least S with q held at v (every other free parameter refitted, from many starts). The interval is
{v : (S_q(v) - S_min) / (S_min / dof) <= F(1, dof) quantile}, the profile-t interval of nonlinear regression (Bates
and Watts), calibrated for few runs. q is *unidentified* when that set reaches an end of the plausible range
(`planner.identify.PLAUSIBLE_EXPONENT`; for a = beta / (alpha + beta), the range those exponents allow): the runs do
not bound it, and no interval is shown.

A held quantity is reported as held. Profiles are traced on a grid of values (log-spaced for exponents), walking out
from the estimate: each refit starts from the unconstrained optimum, the fit's basins and the neighbouring value's
optimum, each moved to v along the valley A and alpha trade along (optionally also from the coarse start grid: the
same profiles in the tests, at three times the cost). The crossings are refined on a finer grid and interpolated.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import f as f_dist

from planner.fit import FitResult, design, distinct_basins, start_grid
from planner.identify import PLAUSIBLE_EXPONENT
from planner.laws import EXPONENTS, PARAM_NAMES, optimal_n_exponent
from planner.optim import batched_bfgs, batched_newton, make_problem

LS_DELTA = 10.0  # a Huber delta above every log residual: the objective is half the sum of squares
QUANTITIES = ("alpha", "beta", "optimal_n_exponent")


@dataclass(frozen=True)
class ProfileInterval:
    """A quantity's estimate (least squares) and profile interval; low and high are NaN unless identified."""
    name: str
    estimate: float
    low: float
    high: float
    status: str  # 'identified', 'unidentified' or 'held'
    note: str = ""

    @property
    def identified(self) -> bool:
        return self.status == "identified"


def law_ci(form: str, profiles: dict[str, ProfileInterval]) -> dict[str, tuple[float, float]] | None:
    """The identified intervals as a saved law's `Law.ci` (None when none is): the exponents under the form's own
    parameter names (Frantar's d, f), and 'optimal_n_exponent' as `fit --bootstrap` saves it."""
    names = dict(zip(("alpha", "beta"), EXPONENTS[form]))
    return {names.get(k, k): (p.low, p.high) for k, p in profiles.items() if p.identified} or None


def _minimise(prob, starts):
    """Best (theta, objective) over starts: BFGS from every start, Newton to finish the best few."""
    theta, f, _, _ = batched_bfgs(starts, prob, LS_DELTA, maxiter=400)
    best = distinct_basins(theta, f, 3)
    if len(best) == 0:
        return None, np.inf
    theta, f, _, _ = batched_newton(theta[best], prob, LS_DELTA, maxiter=50)
    i = int(np.nanargmin(np.where(np.isfinite(f), f, np.inf)))
    return theta[i], float(f[i])


class _Profiler:
    """Least-squares refits of a fit's runs under linear constraints theta = T phi + c (held values in c)."""

    def __init__(self, fit: FitResult, table: pd.DataFrame, grid: bool = False):
        self.fit, self.F, self.y = fit, *design(fit.form, table)
        names = PARAM_NAMES[fit.form]
        self.held = {names.index(k) for k in fit.fixed}
        self.free = [i for i in range(len(names)) if i not in self.held]
        self.center = self.F.mean(axis=1)  # (terms, params): the design at the runs' geometric centre
        theta, self.s_min = self.solve([], {}, np.vstack([fit.theta, fit.basins]), grid=True)
        self.grid = grid
        self.theta = theta if theta is not None else fit.theta
        self.dof = len(self.y) - len(self.free)

    def solve(self, tied, values, seeds, grid=False):
        """Least S with parameters in ``values`` ({index: value}) held and each (i, j, k) in ``tied`` setting
        theta_j = k theta_i; seeds are full theta vectors (moved to satisfy the constraints by the caller), plus the
        coarse start grid with ``grid``."""
        p = self.F.shape[2]
        fixed = {i: self.fit.theta[i] for i in self.held} | values
        dropped = set(fixed) | {j for _, j, _ in tied}
        keep = [i for i in range(p) if i not in dropped]
        T = np.eye(p)[:, keep]
        for i, j, k in tied:
            T[j, keep.index(i)] = k
        c = np.zeros(p)
        c[list(fixed)] = list(fixed.values())
        prob = make_problem(self.F @ T, self.y, self.F @ c)
        starts = np.asarray(seeds)[:, keep]
        if grid:
            starts = np.vstack([starts, start_grid(self.fit.form, "coarse", held=dropped)])
        theta, f = _minimise(prob, starts)
        return (None if theta is None else T @ theta + c), 2 * f

    def moved(self, seeds, exponent, new):
        """Seeds with exponent column ``exponent`` set to ``new`` and each term's coefficient shifted so that
        term is unchanged at the runs' geometric centre (the valley A and alpha trade along)."""
        seeds = np.array(seeds, float)
        for k in range(self.F.shape[0]):
            x = self.center[k, exponent]
            if x == 0:
                continue
            coef = int(np.flatnonzero(np.all(self.F[k] == 1, axis=0))[0])
            seeds[:, coef] -= (new - seeds[:, exponent]) * x
        seeds[:, exponent] = new
        return seeds

    def profile(self, name: str, values) -> np.ndarray:
        """S at each value of 'alpha', 'beta' (the form's N and D exponents) or 'optimal_n_exponent', walking out
        from the estimate so that each refit also starts from its neighbour's optimum (continuation)."""
        names = PARAM_NAMES[self.fit.form]
        i, j = (names.index(e) for e in EXPONENTS[self.fit.form])
        base = np.vstack([self.theta, self.fit.theta, self.fit.basins])
        est = optimal_n_exponent(self.theta[i], self.theta[j]) if name == "optimal_n_exponent" else \
            self.theta[i if name == "alpha" else j]
        values = np.asarray(values, float)
        out = np.empty(len(values))
        for walk in (np.flatnonzero(values >= est), np.flatnonzero(values < est)[::-1]):
            seeds = base
            for k in walk:
                theta, out[k] = self._at(name, values[k], seeds, i, j)
                seeds = base if theta is None else np.vstack([theta, base])
        return out

    def _at(self, name, v, seeds, i, j):
        if name == "optimal_n_exponent":
            total = seeds[:, i] + seeds[:, j]
            return self.solve([(i, j, v / (1 - v))], {}, self.moved(self.moved(seeds, i, (1 - v) * total), j,
                                                                    v * total), self.grid)
        col = i if name == "alpha" else j
        return self.solve([], {col: v}, self.moved(seeds, col, v), self.grid)


def _range(name: str) -> tuple[float, float]:
    lo, hi = PLAUSIBLE_EXPONENT
    return (lo / (lo + hi), hi / (lo + hi)) if name == "optimal_n_exponent" else (lo, hi)


def _grid(name: str, n: int, lo: float, hi: float) -> np.ndarray:
    return np.linspace(lo, hi, n) if name == "optimal_n_exponent" else np.geomspace(lo, hi, n)


def _crossing(values, rise, threshold, left: bool) -> float:
    """Where the profile crosses the threshold inside a refined cell (linear between the bracketing values)."""
    above = rise > threshold
    k = np.flatnonzero(above[:-1] != above[1:])
    if not len(k):
        return float(values[0] if left else values[-1])
    k = k[-1] if left else k[0]
    pair = np.argsort(rise[k:k + 2])
    return float(np.interp(threshold, rise[k:k + 2][pair], values[k:k + 2][pair]))


def profile_intervals(fit: FitResult, table: pd.DataFrame, level: float = 0.95, n_grid: int = 24,
                      n_refine: int = 8, grid: bool = False) -> dict[str, ProfileInterval]:
    """Profile-likelihood intervals of the N and D exponents (reported as 'alpha', 'beta'; Frantar's d, f) and the
    compute-optimal exponent 'optimal_n_exponent' of a fit on its validated runs table. ``grid`` also starts every
    profile refit from the coarse start grid (slower; the continuation starts found the same profiles in the tests)."""
    prof = _Profiler(fit, table, grid)
    names = PARAM_NAMES[fit.form]
    i, j = (names.index(e) for e in EXPONENTS[fit.form])
    estimates = {"alpha": prof.theta[i], "beta": prof.theta[j],
                 "optimal_n_exponent": optimal_n_exponent(prof.theta[i], prof.theta[j])}
    held = {"alpha": EXPONENTS[fit.form][0] in fit.fixed, "beta": EXPONENTS[fit.form][1] in fit.fixed}
    held["optimal_n_exponent"] = held["alpha"] and held["beta"]
    out = {}
    if prof.dof < 1 or not np.isfinite(prof.s_min):
        for q in QUANTITIES:
            out[q] = ProfileInterval(q, float(estimates[q]), np.nan, np.nan, "held" if held[q] else "unidentified",
                                     "held" if held[q] else "no degree of freedom left to measure the noise")
        return out
    threshold = f_dist.ppf(level, 1, prof.dof) * max(prof.s_min, 1e-300) / prof.dof
    for q in QUANTITIES:
        est = float(estimates[q])
        if held[q]:
            out[q] = ProfileInterval(q, est, np.nan, np.nan, "held", "held at the value given")
            continue
        lo, hi = _range(q)
        values = np.unique(np.r_[_grid(q, n_grid, lo, hi), np.clip(est, lo, hi)])
        rise = prof.profile(q, values) - prof.s_min
        inside = rise <= threshold
        if not inside.any():  # the optimum itself is off the grid's resolution: refine around it
            inside = values == np.clip(est, lo, hi)
        first, last = np.flatnonzero(inside)[[0, -1]]
        if first == 0 or last == len(values) - 1:
            side = "below" if first == 0 else "above"
            out[q] = ProfileInterval(q, est, np.nan, np.nan, "unidentified",
                                     f"the runs do not bound it {side}: the profile stays within the {level:.0%} "
                                     f"threshold out to {values[0 if first == 0 else -1]:.3g}")
            continue
        ends = []
        for cell, left in (((first - 1, first), True), ((last, last + 1), False)):
            fine = _grid(q, n_refine + 2, *values[list(cell)])
            ends.append(_crossing(fine, prof.profile(q, fine) - prof.s_min, threshold, left))
        out[q] = ProfileInterval(q, est, min(ends), max(ends), "identified")
    return out
