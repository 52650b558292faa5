"""Out-of-sample check of the prediction intervals: leave each point of the law out (a run with its repeated seeds and
partners), refit, and ask whether each of its runs' measured loss falls inside the interval the others predict for
it (where they may predict it: inside their region); and the calibration that widens the intervals when they cover
too little.

Calibration (a jackknife form of conformal prediction): each left-out run's score is how far it lies from the centre
of the others' interval, in units of that interval's half-width on its side (`score` <= 1: covered). Widening every
interval about its centre by the ceil((n + 1) level)-th smallest of the n scores covers a new run with probability at
least ``level`` when the runs are exchangeable. Its own out-of-sample coverage is checked the same way: each run
against the widening that the scores of the runs at other points give.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.sparse.csgraph import connected_components

from planner.errors import PlannerInputError
from planner.fit import LawFitter
from planner.laws import N_COLUMN
from planner.runs import load_runs
from planner.uncertainty.posterior import posterior_from_fit

TWIN_TOL = 0.05  # log distance under which two runs are one point of the law (5%)


def same_points(n, tokens, tol: float = TWIN_TOL) -> np.ndarray:
    """A label per run; runs within ``tol`` (relative) of each other in both N and tokens share it, chained: repeated
    seeds, and a sparse run with its dense partner at the same N_avg, are one point of the law."""
    ln, ld = np.log(np.asarray(n, float)), np.log(np.asarray(tokens, float))
    near = (np.abs(ln[:, None] - ln) < tol) & (np.abs(ld[:, None] - ld) < tol)
    return connected_components(near, directed=False)[1]


def loo_coverage(runs, form: str = "unified", level: float = 0.95, n_draws: int = 200, grid: str = "coarse",
                 fixed=None, seed: int = 0) -> pd.DataFrame:
    """One row per run: its measured loss, the interval for one run's loss (parameter draws and run-to-run noise)
    from a fit to the runs at other points (`same_points`: a run's repeated seeds and partners are left out with it,
    so the check is out of sample in (N, D), as a new plan is), with its centre (the draws' median), whether the run
    lies inside the others' region, whether the interval contains it, and its calibration score (see the module).

    Each fold is a full fit (``grid`` starts, holding ``fixed``) and a parametric-bootstrap posterior; a run outside
    the others' region gets no interval (``extrapolated``). ``coverage_summary`` condenses the table."""
    table = load_runs(runs, form, n_held=len(fixed or {}))
    point = same_points(table[N_COLUMN[form]], table["tokens"])
    rows, order = [], []
    for g in np.unique(point):
        rest, out = table[point != g], table[point == g]
        order += list(np.flatnonzero(point == g))
        try:
            fit = LawFitter(form, grid=grid, fixed=fixed).fit(rest)
            post = posterior_from_fit(fit, rest, n_draws=n_draws, seed=seed + int(g))
        except PlannerInputError as exc:  # too few runs left to fit or to measure the noise
            rows += [{"name": name, "point": int(g), "error": str(exc)} for name in out.get("name", out.index)]
            continue
        sparsity = out["sparsity"].to_numpy(float) if form == "frantar" else None
        n, d = out[N_COLUMN[form]].to_numpy(float), out["tokens"].to_numpy(float)
        pred = post.interval(n, d, sparsity, level, noise=True)
        center = post.center(post.loss_draws(n, d, sparsity))
        loss = out["loss"].to_numpy(float)
        inside = ~pred["extrapolated"].to_numpy(bool)
        side = np.where(loss >= center, pred["high"] - center, center - pred["low"])
        rows += [{"name": out["name"].iloc[k] if "name" in out else str(out.index[k]), "point": int(g),
                  "loss": loss[k], "predicted": pred["loss"].iloc[k], "center": center[k], "low": pred["low"].iloc[k],
                  "high": pred["high"].iloc[k], "extrapolated": not inside[k], "reason": pred["reason"].iloc[k],
                  "covered": bool(pred["low"].iloc[k] <= loss[k] <= pred["high"].iloc[k]) if inside[k] else None,
                  "score": abs(loss[k] - center[k]) / side[k] if inside[k] else np.nan} for k in range(len(out))]
    return pd.DataFrame(rows, index=order).sort_index()  # the runs' own order


def coverage_summary(loo: pd.DataFrame, level: float = 0.95) -> dict:
    """Coverage of the nominal interval over the runs inside the others' region, and how many were not."""
    inside = loo[loo["extrapolated"] == False]  # noqa: E712 (a column of bools and None)
    return {"level": level, "n_runs": len(loo), "n_inside": len(inside),
            "n_extrapolated": int((loo["extrapolated"] == True).sum()),  # noqa: E712
            "coverage": float(inside["covered"].astype(bool).mean()) if len(inside) else float("nan"),
            "median_width": float((inside["high"] - inside["low"]).median()) if len(inside) else float("nan")}


def conformal_scale(scores, level: float = 0.95) -> float:
    """The widening that makes the intervals cover ``level`` of new runs: the ceil((n + 1) level)-th smallest score,
    at least 1 (never narrowed); inf when n runs are too few for that rank to exist."""
    scores = np.sort(np.asarray(scores, float))
    k = math.ceil((len(scores) + 1) * level)
    return float("inf") if k > len(scores) else max(1.0, float(scores[k - 1]))


def calibrate(loo: pd.DataFrame, level: float = 0.95) -> dict:
    """The widening of one run's interval from `loo_coverage` (``scale``) and the coverage it reaches out of sample:
    ``coverage`` before; ``calibrated`` after, each run against the widening the scores at other points give, over
    the ``n_checked`` runs whose other points hold enough scores to set one (an infinite widening proves nothing)."""
    inside = loo[loo["extrapolated"] == False]  # noqa: E712 (a column of bools and None)
    scores = inside["score"].to_numpy(float)
    point = inside["point"].to_numpy() if "point" in inside else np.arange(len(inside))
    others = np.array([conformal_scale(scores[point != p], level) for p in point])
    checked = np.isfinite(others)
    return {"level": level, "n_inside": len(scores), "scale": conformal_scale(scores, level),
            "coverage": float(np.mean(scores <= 1)) if len(scores) else float("nan"),
            "calibrated": float(np.mean(scores[checked] <= others[checked])) if checked.any() else float("nan"),
            "n_checked": int(checked.sum())}
