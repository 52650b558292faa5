"""A plan's predicted loss with its interval: the one place that decides whether a prediction carries an interval.

One region rule, so a prediction is never both flagged as an extrapolation and given an interval: the posterior's
`Region` (its runs' hull widened by `region.MARGIN`) when it has one; otherwise (no posterior, e.g. a preset that
publishes no uncertainty, or a posterior without a region) the planner's validated region of ``runs``
(`planner.regime.validated_region`: the fitted runs' hull, else the seed's validated range). Inside, the prediction
carries the posterior's interval (none without a posterior); outside, it is flagged, with the reason, and no interval.
A preset with published uncertainty (`LawPosterior.preset`: no runs of this project) must be inside both its own data's region (`priors`:
where its interval means something) and the seed's validated range (where N_avg was shown to stand in for N). The
search flags its candidates with the same region (`candidates(region=...)`), so the chart and the chosen plan agree.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from planner.candidates import law_inputs
from planner.laws import N_COLUMN, Law
from planner.plan import Prediction
from planner.regime import ValidatedRegion, validated_region
from planner.uncertainty.posterior import LawPosterior
from planner.uncertainty.region import Region


def plan_counts(plan) -> tuple[float, float, float, float]:
    """(N_avg, N_final, final sparsity, tokens) of a plan: what `plan_prediction` reads."""
    return plan.derived.n_avg, plan.derived.n_final, plan.schedule.final_sparsity, plan.budget.tokens


class BothRegions:
    """A preset's own data region, and for a sparse plan the seed's validated range too (a dense plan's N is N_avg:
    no substitution to validate)."""

    def __init__(self, data: Region, seed: ValidatedRegion):
        self.data, self.seed = data, seed
        self.source = f"{data.source} within {seed.source}"
        (lo, hi), (seed_lo, seed_hi) = data.n_range, seed.n_range
        self.n_range = (max(lo, seed_lo), min(hi, seed_hi))

    def contains(self, n, tokens, sparsity=None) -> np.ndarray:
        dense = np.asarray(0.0 if sparsity is None else sparsity, float) == 0
        return self.data.contains(n, tokens) & (dense | self.seed.contains(n, tokens))


def prediction_region(law: Law, posterior: LawPosterior | None = None,
                      runs: pd.DataFrame | None = None) -> Region | ValidatedRegion | BothRegions:
    """Where `law`'s predictions carry an interval (the rule in the module's docstring)."""
    region = validated_region(runs, law.n_convention, N_COLUMN[law.form])
    if posterior is None or posterior.region is None:
        return region
    return BothRegions(posterior.region, region) if posterior.preset else posterior.region


def _reason(region: Region | ValidatedRegion | BothRegions, n, tokens) -> str:
    if isinstance(region, BothRegions):
        if not np.all(region.data.contains(n, tokens)):
            return _reason(region.data, n, tokens)
        return f"outside {region.seed.source}"
    if isinstance(region, Region):  # names the count that left the runs' range
        return str(np.ravel(region.reasons(n, tokens))[0])
    return f"outside {region.source}"


def plan_prediction(law: Law, n_avg, n_final, final_sparsity, tokens, posterior: LawPosterior | None = None,
                    runs: pd.DataFrame | None = None, *, level: float = 0.95, noise: bool = False,
                    noise_sd: float | None = None) -> Prediction:
    """`law`'s loss at a plan's counts and tokens, with the ``level`` interval of `posterior` inside the region of
    `prediction_region`; outside, flagged extrapolated with the reason as its first warning and no interval.

    The interval is of the law's mean loss; with ``noise`` or ``noise_sd`` (nats) of one run's loss
    (`LawPosterior.predict`: without ``noise_sd``, the posterior's own relative noise)."""
    n, s = law_inputs(law, n_avg, n_final, final_sparsity)
    loss = float(law.predict(n, tokens, s))
    region = prediction_region(law, posterior, runs)
    if not bool(np.all(region.contains(n, tokens, final_sparsity))):
        return Prediction(loss=loss, extrapolated=True, warnings=[
            f"extrapolation, no interval: {_reason(region, n, tokens)}; this plan: N {n:.3g}, D/N {tokens / n:.0f}"])
    if posterior is None:
        return Prediction(loss=loss)
    tail = (1 - level) / 2
    low, high = (float(x) for x in posterior.predict(n, tokens, s, (tail, 1 - tail),
                                                        noise or noise_sd is not None, noise_sd))
    if not np.isfinite(low + high):  # draws that overflow here claim nothing
        return Prediction(loss=loss)
    return Prediction(loss=loss, ci_low=low, ci_high=high)
