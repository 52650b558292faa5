"""The working law: the one law every page plans with. A preset (with its published uncertainty where there is one),
or a fit made the working law on the Scaling laws page; its posterior (`planner.uncertainty`) gives each prediction an
interval inside the region its runs cover, and none outside."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd

from planner.fit import FitResult
from planner.laws import DEFAULT_LAW, PRESETS, Law, resolve_law
from planner.plan import Prediction
from planner.uncertainty import LawPosterior, plan_prediction
from planner.uncertainty.priors import preset_posterior
from planner.uncertainty.profile import law_ci


@dataclass(frozen=True)
class WorkingLaw:
    label: str  # what every page says is in force
    law: Law  # a fit's law carries its exponents' profile intervals in `ci`
    posterior: LawPosterior | None = field(default=None, compare=False)  # loss intervals; None: no uncertainty known
    runs: pd.DataFrame | None = field(default=None, compare=False)  # fitted runs: the region without a posterior
    no_interval: str = field(default="this preset publishes no usable uncertainty", compare=False)

    @property
    def key(self) -> str:
        """Content hash, so a cached search or a plan selection belongs to exactly one law."""
        return hashlib.sha1((self.label + self.law.model_dump_json()).encode()).hexdigest()[:16]


def prediction_at(working: WorkingLaw, n_avg, n_final, final_sparsity, tokens) -> Prediction:
    """The working law's prediction at a plan's counts and tokens: `planner.uncertainty.plan_prediction`'s, with the
    posterior's interval inside its region and an extrapolation, without one, outside."""
    return plan_prediction(working.law, n_avg, n_final, final_sparsity, tokens, working.posterior, working.runs)


def loss_interval(working: WorkingLaw, *point) -> tuple[float | None, float | None]:
    """(low, high) of `prediction_at`: (None, None) outside the region or without a posterior."""
    p = prediction_at(working, *point)
    return p.ci_low, p.ci_high


def interval_caption(working: WorkingLaw, *point) -> str:
    """The line under the working law's predicted loss at a point (`caption`)."""
    return caption(prediction_at(working, *point), working.no_interval)


def caption(p: Prediction, no_interval: str) -> str:
    """The line under a predicted loss: its interval, or why there is none (an extrapolation's reason, else
    ``no_interval``: why the law has no uncertainty)."""
    if p.ci_low is not None:
        return f"95% interval [{p.ci_low:.3f}, {p.ci_high:.3f}]"
    return p.warnings[0] if p.extrapolated else f"no interval: {no_interval}"


def preset_law(name: str = DEFAULT_LAW) -> WorkingLaw:
    """A published preset (a Chinchilla preset applied with N_avg: the unified hypothesis), with its published
    uncertainty where it has one (`planner.uncertainty.priors`)."""
    law = resolve_law(name)
    posterior = preset_posterior(name, law)
    note = "published uncertainty" if posterior else "no interval"
    return WorkingLaw(f"{name} preset, {law.form} form ({note})", law, posterior)


DEFAULT = preset_law()


def fitted_law(fit: FitResult, posterior: LawPosterior | None, profiles: dict, runs: pd.DataFrame, source: str,
               no_interval: str = "") -> WorkingLaw:
    """A fit as the working law: its law with the exponents' profile intervals (identified ones only) and a
    provenance that says what it was fitted on and where its intervals come from."""
    held = ", ".join(f"{k} = {v:.4g}" for k, v in fit.fixed.items())
    what = f"{fit.form} form fitted on {source} ({fit.n_runs} runs" + (f"; {held} held" if held else "") + ")"
    provenance = f"{what}; {posterior.method if posterior else 'no interval: ' + no_interval} (sparseplan app)"
    law = fit.law.model_copy(update={"ci": law_ci(fit.form, profiles), "provenance": provenance})
    return WorkingLaw(what, law, posterior, runs, no_interval)


def planning_presets() -> list[str]:
    """Presets a plan can use: laws whose D counts tokens (a law fitted in training steps of its own setup cannot
    budget tokens)."""
    return [name for name, law in PRESETS.items() if law.d_counts == "tokens"]
