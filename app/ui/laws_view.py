"""Scaling-laws page logic: where runs come from, fits per form, and the tables and frames the charts draw."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from planner.errors import PlannerInputError
from planner.fit import FitResult, LawFitter, heldout_errors, predict_loss
from planner.identify import cannot_plan
from planner.laws import DEFAULT_LAW, EXPONENTS, N_COLUMN, PARAM_NAMES, chinchilla_terms
from planner.plan import Prediction, TrainingPlan
from planner.runs import RUN_COLUMNS, in_regime, load_runs
from planner.uncertainty import (LawPosterior, plan_counts, plan_prediction, posterior_from_fit,
                                 profile_intervals)

FORMS = ("unified", "chinchilla", "frantar")
FORM_LABELS = {"unified": "unified (N_avg)", "chinchilla": "Chinchilla (N_final)", "frantar": "Frantar (S, N_final)"}
STUDY = Path(__file__).resolve().parents[2] / "bench" / "study" / "quick" / "runs.csv"
HOLD_BELOW = 20  # runs: below this the exponents are held at a preset by default (5 free parameters need more)
DEFAULT_EXPONENT_PRESET = DEFAULT_LAW


def count_runs(source) -> int:
    """Rows of a runs table or CSV (0 when unreadable: the fit then reports why), to pick the hold default."""
    if isinstance(source, pd.DataFrame):
        return len(source)
    try:
        return len(pd.read_csv(source))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
        return 0


def save_upload(name: str, data: bytes, folder: Path) -> Path:
    """Store an uploaded CSV under its own name so the planner's errors name the file the user picked."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name) or "runs.csv"
    path = Path(folder) / safe
    path.write_bytes(data)
    return path


def availability(source, n_held: int = 0) -> tuple[str | None, dict[str, str | None]]:
    """(file problem, per-form reason) for a runs table or CSV: a problem with the file itself (unreadable, a bad
    value) is reported once, not once per form; a form whose columns or run count the table lacks gets its reason
    (None: the form can be fitted). The planner's own validation decides both."""
    reasons: dict[str, str | None] = {}
    for form in FORMS:
        try:
            load_runs(source, form, n_held=min(n_held, len(PARAM_NAMES[form]) - 1))
            reasons[form] = None
        except PlannerInputError as exc:
            message = str(exc)
            if "missing column" not in message and not re.search(r"\d+ runs?, but", message):
                return message, {}
            reasons[form] = message
    return None, reasons


def off_reason(message: str) -> str:
    """A form's reason without the file name the page already shows."""
    return message.split(": ", 1)[-1]


@dataclass(frozen=True)
class FormFit:
    fit: FitResult
    posterior: LawPosterior | None  # parametric-bootstrap draws: the loss interval inside the runs' region
    profiles: dict  # planner.uncertainty.ProfileInterval per exponent and the compute-optimal exponent
    heldout: dict
    table: pd.DataFrame  # the validated runs table the form was fitted on
    no_interval: str = ""  # why there is no posterior (no degree of freedom left to measure the noise)


def fit_form(source, form: str, grid: str = "coarse", n_draws: int = 100, seed: int = 0,
             exponents: tuple[float, float] | None = None) -> FormFit:
    """Fit, posterior, profile intervals and held-out error of one form, its N and D exponents held at
    ``exponents`` (alpha, beta) if given. PlannerInputError (a named column, fewer runs than free parameters, none
    left to measure the noise) propagates for the page."""
    fixed = dict(zip(EXPONENTS[form], exponents)) if exponents is not None else None
    table = load_runs(source, form, n_held=len(fixed or {}))
    fit = LawFitter(form, grid=grid, fixed=fixed).fit(table)
    try:
        posterior, why = posterior_from_fit(fit, table, n_draws=n_draws, seed=seed), ""
    except PlannerInputError as exc:  # as many free parameters as runs: nothing left to measure the noise with
        posterior, why = None, off_reason(str(exc))
    profiles = profile_intervals(fit, table, n_grid=16, n_refine=6)  # a coarser trace than the bench's: page speed
    return FormFit(fit, posterior, profiles, heldout_errors(table, form, fit=fit), table, why)


def form_prediction(result: FormFit, plan: TrainingPlan) -> Prediction:
    """The form's prediction for the plan (`planner.uncertainty.plan_prediction`): an interval only inside the region
    of its runs."""
    return plan_prediction(result.fit.law, *plan_counts(plan), result.posterior, result.table)


def comparison(results: dict[str, FormFit]) -> pd.DataFrame:
    """One row per form: size of the fit, in-sample and held-out errors (the seed's central comparison)."""
    return pd.DataFrame([{
        "form": FORM_LABELS[form], "parameters": len(PARAM_NAMES[form]), "free": r.fit.n_free,
        "held": ", ".join(f"{k} = {v:.4g}" for k, v in r.fit.fixed.items()) or "none", "runs": r.fit.n_runs,
        "RMSE (nats)": r.fit.rmse, "held-out RMSE (nats)": r.heldout["heldout_rmse"],
        "held-out MAE (nats)": r.heldout["heldout_mae"],
        "held-out scheme": f"{r.heldout['scheme']} ({r.heldout['n_folds']} folds)",
    } for form, r in results.items()])


# Number formats of the comparison table: errors of a few hundredths of a nat need four decimals.
COMPARISON_FORMAT = {c: st.column_config.NumberColumn(format="%.4f") for c in
                     ("RMSE (nats)", "held-out RMSE (nats)", "held-out MAE (nats)")}


def pair_points(source) -> pd.DataFrame:
    """Measured loss of every run against both of its counts, N_avg and N_final, one row per (run, count), for
    tables whose ``group`` column pairs runs (the seed's sparse / small-dense pairs). Empty otherwise."""
    try:  # a chart, not a fit: one run is enough, and a table without N_avg simply gets no chart
        table = load_runs(source, "unified", n_held=len(PARAM_NAMES["unified"]) - 1)
    except PlannerInputError:
        return pd.DataFrame()
    if "group" not in table.columns or "n_final" not in table.columns or table["n_final"].isna().any():
        return pd.DataFrame()
    run = [f"sparse ({s:.0%})" if s > 0 else "dense" for s in table["sparsity"]]
    return pd.concat([pd.DataFrame({"pair": table["group"], "run": run, "name": table["name"], "count": label,
                                    "N": table[col], "loss": table["loss"]})
                      for col, label in (("n_avg", "N_avg"), ("n_final", "N_final"))], ignore_index=True)


def predictions(source, results: dict[str, FormFit]) -> pd.DataFrame:
    """Measured against predicted loss of every run under every fitted form, with the N the form reads."""
    frames = []
    for form, r in results.items():
        table = load_runs(source, form, n_held=len(r.fit.fixed))
        predicted = predict_loss(form, r.fit.params, table)
        frames.append(pd.DataFrame({
            "form": FORM_LABELS[form], "run": table["name"], "N": table[N_COLUMN[form]], "tokens": table["tokens"],
            "measured": table["loss"], "predicted": predicted, "residual": predicted - table["loss"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def params_table(result: FormFit) -> pd.DataFrame:
    """Raw parameters in the form's order (unrounded), with profile intervals for the exponents only: the
    coefficients' intervals were not checked by the simulation study, so none is shown."""
    names, fixed = PARAM_NAMES[result.fit.form], result.fit.fixed
    by_name = dict(zip(EXPONENTS[result.fit.form], (result.profiles["alpha"], result.profiles["beta"])))
    return pd.DataFrame({"parameter": names, "value": [result.fit.params[k] for k in names],
                         "95% profile interval": [interval_text(by_name[k]) if k in by_name and k not in fixed else
                                                  "" for k in names],
                         "source": ["held" if k in fixed else "fitted" for k in names]})


def interval_text(p) -> str:
    """A profile interval as the page shows it: the interval, 'unidentified' or 'held'."""
    return f"[{p.low:.3g}, {p.high:.3g}]" if p.identified else p.status


def support_warning(fit: FitResult) -> str | None:
    """An honest line when the runs cannot pin the free parameters down (fewer than ~3 runs per parameter)."""
    k = fit.n_free
    if fit.n_runs >= 3 * k:
        return None
    free = "free parameters" if fit.fixed else "parameters"
    return (f"{fit.n_runs} runs for {k} {free}: the raw coefficients are not identified. The page shows intervals "
            f"only for what the simulation study (bench/RESULTS.md) checked: exponents by profile likelihood "
            f"('unidentified' where the runs do not bound them) and the predicted loss inside the runs' region.")


def degenerate_warning(fit: FitResult) -> str | None:
    """Why a fit cannot plan, if it cannot (`planner.identify.cannot_plan`: a term that vanished, e.g. runs on one
    compute budget leave the data term B free, or an implausible exponent, e.g. loss that does not fall with more
    data). The advice names only remedies not already taken: with the exponents held it does not say to hold them."""
    problems = cannot_plan(fit.degenerate)
    if not problems:
        return None
    if set(EXPONENTS[fit.form]) <= set(fit.fixed):
        data = float(chinchilla_terms(fit.form, fit.params)[2]) < 1e-6  # wording only: which term fell away
        return (f"{'; '.join(problems)} with the exponents already held: in these runs loss does not fall as "
                f"{'tokens' if data else 'parameters'} grow (e.g. each smaller model trained on more tokens), so "
                f"the fit cannot plan: it would pick sizes or token counts the runs never tested. Add runs that vary "
                f"model size and tokens independently.")
    return (f"{'; '.join(problems)}: these runs do not pin down how loss falls with parameters and data (they vary "
            f"too little), so this fit cannot plan: it would pick sizes or token counts the runs never tested. Hold "
            f"the exponents, or add runs that vary model size and tokens independently.")


def study_runs(path: Path = STUDY) -> pd.DataFrame:
    """The shipped validation study's runs as its report fits them: the ladder, its seeds and the pairs, not the
    tiny preset nor the ablations (planner.runs.in_regime)."""
    return in_regime(pd.read_csv(path))[RUN_COLUMNS] \
        .reset_index(drop=True)


def heldout_note(fits: dict[str, FormFit], form: str) -> str | None:
    """A word when another fitted form predicts the held-out runs better than `form` does."""
    rmse = {f: r.heldout["heldout_rmse"] for f, r in fits.items()}
    best = min(rmse, key=rmse.get)
    if rmse[best] >= rmse[form]:
        return None
    return (f"The {FORM_LABELS[best]} form predicts held-out runs better on these runs (held-out RMSE "
            f"{rmse[best]:.3f} against {rmse[form]:.3f} nats): planning with this form trusts the worse predictor "
            f"of runs it has not seen.")
