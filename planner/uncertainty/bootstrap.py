"""Nonparametric bootstrap of a fit (runs or groups resampled with replacement, each resample refitted).

Kept for the per-parameter percentile intervals `fit --bootstrap` prints and a saved law carries (`Law.ci`). Issue
#18 saw them exclude the truth on a 12-run design; in bench/bench_coverage.py's designs they covered it but were wider
than the profile intervals. Predictions use `planner.uncertainty.posterior`, exponents `planner.uncertainty.profile`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.errors import PlannerInputError
from planner.fit import _table_and_fit, refit_weighted, theta_to_params
from planner.laws import chinchilla_terms, optimal_n_exponent
from planner.uncertainty.posterior import loss_draws


@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap refits: natural-scale parameter ``samples`` (one row per resample) and percentile intervals.

    The raw A and alpha (B and beta) are nearly unidentifiable, so their intervals are wide; the intervals on
    predicted loss (`loss_ci`) and on the compute-optimal exponent are the ones to show. ``method`` says how the
    intervals were made (what was resampled, how often).
    """
    form: str
    samples: pd.DataFrame
    level: float
    method: str = "percentile bootstrap"

    def _bounds(self, values, axis=0):
        tail = 50 * (1 - self.level)
        return tuple(np.nanpercentile(values, [tail, 100 - tail], axis=axis))

    @property
    def exponent_samples(self) -> np.ndarray:
        _, _, _, alpha, beta = chinchilla_terms(self.form, self.samples)
        return optimal_n_exponent(np.asarray(alpha), np.asarray(beta))

    def ci(self) -> dict[str, tuple[float, float]]:
        """Percentile interval per parameter plus 'optimal_n_exponent' (beta / (alpha + beta))."""
        out = {k: tuple(float(b) for b in self._bounds(self.samples[k])) for k in self.samples.columns}
        out["optimal_n_exponent"] = tuple(float(b) for b in self._bounds(self.exponent_samples))
        return out

    def loss_ci(self, n, tokens, sparsity=None):
        """(low, high) predicted loss at the given points (the form's N convention), broadcast over arrays."""
        return self._bounds(loss_draws(self.form, {k: self.samples[k].to_numpy() for k in self.samples}, n, tokens,
                                       sparsity))


def bootstrap(runs, form="unified", n_boot=1000, seed=0, by_group=None, level=0.95, grid="chinchilla", fit=None,
              delta=1e-3, fixed=None):
    """Resample runs with replacement ``n_boot`` times and refit each resample: whole groups (the ``group`` column,
    e.g. runs sharing a model size, which are not independent) when ``by_group``, single runs when False; None (the
    default) resamples groups whenever the table has more than one.

    ``fit`` reuses a full-data FitResult (else one is fitted on ``grid``, holding ``fixed``); refits hold what it
    held. Refits are warm-started (`refit_weighted`) and run together as one batch.
    """
    table, fit = _table_and_fit(runs, form, grid, fit, delta, fixed)
    rng = np.random.default_rng(seed)
    has_groups = "group" in table.columns and table["group"].nunique() > 1
    if by_group and "group" not in table.columns:
        raise PlannerInputError("runs table: column 'group' is missing; a by-group bootstrap resamples groups")
    if by_group or (by_group is None and has_groups):
        codes, uniques = pd.factorize(table["group"])
        weights = rng.multinomial(len(uniques), np.full(len(uniques), 1 / len(uniques)), size=n_boot)[:, codes]
        unit = f"{len(uniques)} groups (column 'group')" + (": so few that the intervals are rough"
                                                            if len(uniques) < 10 else "")
    else:
        weights = rng.multinomial(len(table), np.full(len(table), 1 / len(table)), size=n_boot)
        unit = f"{len(table)} single runs"
    theta = refit_weighted(fit, table, weights.astype(float), delta)
    method = f"{100 * level:g}% percentile bootstrap, {n_boot} refits resampling {unit}"
    return BootstrapResult(form, pd.DataFrame(theta_to_params(form, theta)), level, method)
