"""Out-of-sample check of the prediction intervals: leave each run out, refit, and ask whether its measured loss
falls inside the interval the others predict for it (where they may predict it: inside their region); and the
calibration that widens the intervals when they cover too little.

Calibration (a jackknife form of conformal prediction): each left-out run's score is how far it lies from the centre
of the others' interval, in units of that interval's half-width on its side (`score` <= 1: covered). Widening every
interval about its centre by the ceil((n + 1) level)-th smallest of the n scores covers a new run with probability at
least ``level`` when the runs are exchangeable. Its own out-of-sample coverage is checked the same way: each run
against the widening the other runs' scores give.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from planner.errors import PlannerInputError
from planner.fit import LawFitter
from planner.laws import N_COLUMN
from planner.runs import load_runs
from planner.uncertainty.posterior import posterior_from_fit


def loo_coverage(runs, form: str = "unified", level: float = 0.95, n_draws: int = 200, grid: str = "coarse",
                 fixed=None, seed: int = 0) -> pd.DataFrame:
    """One row per run: its measured loss, the interval for one run's loss (parameter draws and run-to-run noise)
    from a fit to the other runs with its centre (the draws' median), whether the run lies inside their region,
    whether the interval contains it, and its calibration score (see the module).

    Each fold is a full fit (``grid`` starts, holding ``fixed``) and a parametric-bootstrap posterior; a run outside
    the others' region gets no interval (``extrapolated``). ``coverage_summary`` condenses the table."""
    table = load_runs(runs, form, n_held=len(fixed or {}))
    rows = []
    for i in range(len(table)):
        rest = table.drop(index=table.index[i])
        one = table.iloc[[i]]
        try:
            fit = LawFitter(form, grid=grid, fixed=fixed).fit(rest)
            post = posterior_from_fit(fit, rest, n_draws=n_draws, seed=seed + i)
        except PlannerInputError as exc:  # too few runs left to fit or to measure the noise
            rows.append({"name": one.get("name", pd.Series([str(i)])).iloc[0], "error": str(exc)})
            continue
        sparsity = one["sparsity"].to_numpy(float) if form == "frantar" else None
        n, d = one[N_COLUMN[form]].to_numpy(float), one["tokens"].to_numpy(float)
        pred = post.interval(n, d, sparsity, level, noise=True).iloc[0]
        center = float(np.median(post.loss_draws(n, d, sparsity)))
        loss = float(one["loss"].iloc[0])
        side = pred["high"] - center if loss >= center else center - pred["low"]
        rows.append({"name": one["name"].iloc[0] if "name" in one else str(i), "loss": loss,
                     "predicted": pred["loss"], "center": center, "low": pred["low"], "high": pred["high"],
                     "extrapolated": bool(pred["extrapolated"]), "reason": pred["reason"],
                     "covered": bool(pred["low"] <= loss <= pred["high"]) if not pred["extrapolated"] else None,
                     "score": abs(loss - center) / side if not pred["extrapolated"] else np.nan})
    return pd.DataFrame(rows)


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
    """The widening of one run's interval from `loo_coverage` (``scale``) and the coverage it reaches out of sample
    (each run against the widening the other runs' scores give): ``coverage`` before, ``calibrated`` after."""
    scores = loo.loc[loo["extrapolated"] == False, "score"].to_numpy(float)  # noqa: E712
    held_out = [s <= conformal_scale(np.delete(scores, i), level) for i, s in enumerate(scores)]
    return {"level": level, "n_inside": len(scores), "scale": conformal_scale(scores, level),
            "coverage": float(np.mean(scores <= 1)) if len(scores) else float("nan"),
            "calibrated": float(np.mean(held_out)) if len(scores) else float("nan")}
