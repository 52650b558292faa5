"""The working law: the one law every page plans with. A preset (with its published uncertainty where there is one),
or a fit made the working law on the Scaling laws page; its posterior (`planner.uncertainty`) gives each prediction an
interval inside the region its runs cover, and none outside."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from planner.fit import FitResult
from planner.laws import DEFAULT_LAW, PRESETS, Law, resolve_law
from planner.search import law_inputs
from planner.uncertainty import LawPosterior
from planner.uncertainty.priors import preset_posterior


@dataclass(frozen=True)
class WorkingLaw:
    label: str  # what every page says is in force
    law: Law  # a fit's law carries its exponents' profile intervals in `ci`
    posterior: LawPosterior | None = field(default=None, compare=False)  # loss intervals; None: no uncertainty known
    runs: pd.DataFrame | None = field(default=None, compare=False)  # fitted runs: outside them is extrapolation
    no_interval: str = field(default="this preset publishes no usable uncertainty", compare=False)

    @property
    def key(self) -> str:
        """Content hash, so a cached search or a plan selection belongs to exactly one law."""
        return hashlib.sha1((self.label + self.law.model_dump_json()).encode()).hexdigest()[:16]


def loss_interval(working: WorkingLaw, n_avg, n_final, final_sparsity, tokens) -> tuple[float | None, float | None]:
    """The 95% interval of the predicted loss at a plan's counts and tokens; (None, None) without a posterior or
    outside the region its runs cover (an extrapolation: `interval_caption` says why)."""
    if working.posterior is None:
        return None, None
    n, s = law_inputs(working.law, n_avg, n_final, final_sparsity)
    low, high = (float(x) for x in working.posterior.loss_ci(n, tokens, s))
    return (low, high) if np.isfinite(low + high) else (None, None)


def interval_caption(working: WorkingLaw, n_avg, n_final, final_sparsity, tokens) -> str:
    """The line under a predicted loss: its interval, or why there is none."""
    low, high = loss_interval(working, n_avg, n_final, final_sparsity, tokens)
    if low is not None:
        return f"95% interval [{low:.3f}, {high:.3f}]"
    if working.posterior is None:
        return f"no interval: {working.no_interval}"
    n, _ = law_inputs(working.law, n_avg, n_final, final_sparsity)
    return f"extrapolation, no interval: {np.ravel(working.posterior.region.reasons(n, tokens))[0]}"


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
    ci = {k: (p.low, p.high) for k, p in profiles.items() if p.identified}
    law = fit.law.model_copy(update={"ci": ci or None, "provenance": provenance})
    return WorkingLaw(what, law, posterior, runs, no_interval)


def planning_presets() -> list[str]:
    """Presets a plan can use: laws whose D counts tokens (a law fitted in training steps of its own setup cannot
    budget tokens)."""
    return [name for name, law in PRESETS.items() if law.d_counts == "tokens"]
