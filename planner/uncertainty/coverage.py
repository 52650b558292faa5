"""Out-of-sample check of the prediction intervals: leave each run out, refit, and ask whether its measured loss
falls inside the interval the others predict for it (where they may predict it: inside their region)."""
from __future__ import annotations

import pandas as pd

from planner.errors import PlannerInputError
from planner.fit import LawFitter
from planner.laws import N_COLUMN
from planner.runs import load_runs
from planner.uncertainty.posterior import posterior_from_fit


def loo_coverage(runs, form: str = "unified", level: float = 0.95, n_draws: int = 200, grid: str = "coarse",
                 fixed=None, seed: int = 0) -> pd.DataFrame:
    """One row per run: its measured loss, the interval for one run's loss (parameter draws and run-to-run noise)
    from a fit to the other runs, whether it lies inside their region, and whether the interval contains it.

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
        pred = post.interval(one[N_COLUMN[form]].to_numpy(float), one["tokens"].to_numpy(float), sparsity, level,
                             noise=True).iloc[0]
        loss = float(one["loss"].iloc[0])
        rows.append({"name": one["name"].iloc[0] if "name" in one else str(i), "loss": loss,
                     "predicted": pred["loss"], "low": pred["low"], "high": pred["high"],
                     "extrapolated": bool(pred["extrapolated"]), "reason": pred["reason"],
                     "covered": bool(pred["low"] <= loss <= pred["high"]) if not pred["extrapolated"] else None})
    return pd.DataFrame(rows)


def coverage_summary(loo: pd.DataFrame, level: float = 0.95) -> dict:
    """Coverage of the nominal interval over the runs inside the others' region, and how many were not."""
    inside = loo[loo["extrapolated"] == False]  # noqa: E712 (a column of bools and None)
    return {"level": level, "n_runs": len(loo), "n_inside": len(inside),
            "n_extrapolated": int((loo["extrapolated"] == True).sum()),  # noqa: E712
            "coverage": float(inside["covered"].astype(bool).mean()) if len(inside) else float("nan"),
            "median_width": float((inside["high"] - inside["low"]).median()) if len(inside) else float("nan")}
