"""A plan's predicted loss with its interval: the one place that decides whether a prediction carries an interval.

One region rule, so a prediction is never both flagged as an extrapolation and given an interval: the posterior's
`Region` (its runs' hull widened by `region.MARGIN`) when it has one; otherwise (no posterior, e.g. a preset that
publishes no uncertainty, or a posterior without a region) the planner's validated region of ``runs``
(`planner.regime.validated_region`: the fitted runs' hull, else the seed's validated range). Inside, the prediction
carries the posterior's interval (none without a posterior); outside, it is flagged, with the reason, and no interval.
A preset with published uncertainty is judged on its own data's region (`priors`), not the seed's range; the search's
per-candidate ``extrapolated`` column (`planner.candidates`) still reads `validated_region` alone.
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


def prediction_region(law: Law, posterior: LawPosterior | None = None,
                      runs: pd.DataFrame | None = None) -> Region | ValidatedRegion:
    """Where `law`'s predictions carry an interval (the rule in the module's docstring)."""
    if posterior is not None and posterior.region is not None:
        return posterior.region
    return validated_region(runs, law.n_convention, N_COLUMN[law.form])


def _reason(region: Region | ValidatedRegion, n, tokens) -> str:
    if isinstance(region, Region):  # names the count that left the runs' range
        return str(np.ravel(region.reasons(n, tokens))[0])
    return f"outside {region.source}"


def plan_prediction(law: Law, n_avg, n_final, final_sparsity, tokens, posterior: LawPosterior | None = None,
                    runs: pd.DataFrame | None = None, *, level: float = 0.95,
                    noise_sd: float | None = None) -> Prediction:
    """`law`'s loss at a plan's counts and tokens, with the ``level`` interval of `posterior` inside the region of
    `prediction_region`; outside, flagged extrapolated with the reason as its first warning and no interval.

    The interval is of the law's mean loss; with ``noise_sd`` (nats) of one run's loss (`LawPosterior.predict`)."""
    n, s = law_inputs(law, n_avg, n_final, final_sparsity)
    loss = float(law.predict(n, tokens, s))
    region = prediction_region(law, posterior, runs)
    if not bool(np.all(region.contains(n, tokens))):
        return Prediction(loss=loss, extrapolated=True, warnings=[
            f"extrapolation, no interval: {_reason(region, n, tokens)}; this plan: N {n:.3g}, D/N {tokens / n:.0f}"])
    if posterior is None:
        return Prediction(loss=loss)
    tail = (1 - level) / 2
    low, high = (float(x) for x in posterior.predict(n, tokens, s, (tail, 1 - tail), noise_sd is not None, noise_sd))
    if not np.isfinite(low + high):  # draws that overflow here claim nothing
        return Prediction(loss=loss)
    return Prediction(loss=loss, ci_low=low, ci_high=high)
