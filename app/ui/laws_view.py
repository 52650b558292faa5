"""Scaling-laws page logic: where runs come from, fits per form, and the tables and frames the charts draw."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from planner.fit import FitResult, LawFitter, predict_loss
from planner.laws import N_COLUMN, PARAM_NAMES
from planner.runs import load_runs

FORMS = ("unified", "chinchilla", "frantar")
FORM_LABELS = {"unified": "unified (N_avg)", "chinchilla": "Chinchilla (N_final)", "frantar": "Frantar (S, N_final)"}


def save_upload(name: str, data: bytes, folder: Path) -> Path:
    """Store an uploaded CSV under its own name so the planner's errors name the file the user picked."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name) or "runs.csv"
    path = Path(folder) / safe
    path.write_bytes(data)
    return path


def fit_form(source, form: str, grid: str = "coarse") -> FitResult:
    """One multi-start fit; PlannerInputError (named column, too few runs) propagates for the page to show."""
    return LawFitter(form, grid=grid).fit(source)


def predictions(source, fits: dict[str, FitResult]) -> pd.DataFrame:
    """Measured against predicted loss of every run under every fitted form, with the N the form reads."""
    frames = []
    for form, fit in fits.items():
        table = load_runs(source, form)
        predicted = predict_loss(form, fit.params, table)
        frames.append(pd.DataFrame({
            "form": FORM_LABELS[form], "run": table["name"], "N": table[N_COLUMN[form]], "tokens": table["tokens"],
            "measured": table["loss"], "predicted": predicted, "residual": predicted - table["loss"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def params_table(fit: FitResult) -> pd.DataFrame:
    """Raw parameters in the form's order (unrounded)."""
    return pd.DataFrame({"parameter": PARAM_NAMES[fit.form], "value": [fit.params[k] for k in PARAM_NAMES[fit.form]]})


def support_warning(fit: FitResult) -> str | None:
    """An honest line when the runs cannot pin the parameters down (fewer than ~3 runs per parameter)."""
    k = len(PARAM_NAMES[fit.form])
    if fit.n_runs >= 3 * k:
        return None
    return (f"{fit.n_runs} runs for {k} parameters: the fit interpolates these runs but cannot identify the raw "
            f"coefficients; trust the derived quantities and their intervals, not the raw coefficients.")
