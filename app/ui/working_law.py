"""The working law: the one law every page plans with. A preset, or a fit made the working law on the Scaling laws
page, whose bootstrap gives each prediction an interval and whose runs bound the region it was fitted on."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd

from planner.fit import FitResult
from planner.laws import DEFAULT_LAW, PRESETS, Law, resolve_law
from planner.search import law_inputs
from planner.uncertainty import BootstrapResult


@dataclass(frozen=True)
class WorkingLaw:
    label: str  # what every page says is in force
    law: Law  # a fit's law carries its per-parameter bootstrap intervals in `ci`
    boot: BootstrapResult | None = field(default=None, compare=False)  # loss intervals; None for a preset
    runs: pd.DataFrame | None = field(default=None, compare=False)  # fitted runs: outside them is extrapolation

    @property
    def key(self) -> str:
        """Content hash, so a cached search or a plan selection belongs to exactly one law."""
        return hashlib.sha1((self.label + self.law.model_dump_json()).encode()).hexdigest()[:16]


def loss_interval(working: WorkingLaw, n_avg, n_final, final_sparsity, tokens) -> tuple[float | None, float | None]:
    """The bootstrap interval of the predicted loss at a plan's counts and tokens (None, None for a preset)."""
    if working.boot is None:
        return None, None
    n, s = law_inputs(working.law, n_avg, n_final, final_sparsity)
    low, high = working.boot.loss_ci(n, tokens, s)
    return float(low), float(high)


def preset_law(name: str = DEFAULT_LAW) -> WorkingLaw:
    """A published preset (a Chinchilla preset applied with N_avg: the unified hypothesis); no interval."""
    law = resolve_law(name)
    return WorkingLaw(f"{name} preset, {law.form} form (no interval)", law)


DEFAULT = preset_law()


def fitted_law(fit: FitResult, boot: BootstrapResult, runs: pd.DataFrame, source: str) -> WorkingLaw:
    """A fit as the working law: its law with bootstrap intervals and a provenance that says what it was fitted on."""
    held = ", ".join(f"{k} = {v:.4g}" for k, v in fit.fixed.items())
    what = f"{fit.form} form fitted on {source} ({fit.n_runs} runs" + (f"; {held} held" if held else "") + ")"
    provenance = f"{what}; {len(boot.samples)} bootstrap resamples, {boot.level:.0%} intervals (sparseplan app)"
    law = fit.law.model_copy(update={"ci": boot.ci(), "provenance": provenance})
    return WorkingLaw(what, law, boot, runs)


def planning_presets() -> list[str]:
    """Presets a plan can use: laws whose D counts tokens (a law fitted in training steps of its own setup cannot
    budget tokens)."""
    return [name for name, law in PRESETS.items() if law.d_counts == "tokens"]
