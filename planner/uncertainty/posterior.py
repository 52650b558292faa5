"""`LawPosterior`: draws of a law's parameters, what they say about a run's loss, and where they may say it.

A fitted law's draws come from a parametric bootstrap (`posterior_from_fit`): new loss tables are simulated from the
fitted law with the runs' own run-to-run noise (log-normal, sd estimated from the residuals; each table draws its own
sd from that estimate's chi-square spread, so a fit on few runs gets Student-t-wide tails), and each table is refitted
with the fitter's own objective, warm-started as the bootstrap's refits are. The spread of the refits' predictions is
the interval of the predicted loss; bench/bench_coverage.py measures how often it contains the truth. Presets get
their draws from published uncertainty (`planner.uncertainty.priors`).

Predictions with an interval are made only inside the region of the runs (`planner.uncertainty.region`); outside, the
point prediction is marked as an extrapolation with its reason and no interval.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr  # the normal CDF (scipy.stats costs 0.3 s to import)

from planner.errors import PlannerInputError
from planner.fit import FitResult, predict_loss, refit_weighted, theta_to_params
from planner.laws import N_COLUMN, PARAM_NAMES, Law, chinchilla, chinchilla_terms
from planner.uncertainty.region import Region

NOISE_SAMPLES = 4000  # samples of one run's loss behind its quantiles (parameter draws x noise draws)
BLOCK = 40  # simulated tables refitted together: their runs are stacked, and weights give each refit its own table


def loss_draws(form: str, params: dict[str, np.ndarray], n, tokens, sparsity=None) -> np.ndarray:
    """A law's predicted loss under every parameter draw (``params``: name -> (k,) array) at broadcast (n, tokens,
    sparsity): shape (k, *shape). Each draw gets its own leading row so a point never mixes draws."""
    n, tokens = np.asarray(n, float), np.asarray(tokens, float)
    ndim = np.broadcast(n, tokens, np.asarray(0.0 if sparsity is None else sparsity)).ndim
    coef = {k: np.asarray(v).reshape((-1,) + (1,) * ndim) for k, v in params.items()}
    return chinchilla(n, tokens, *chinchilla_terms(form, coef, sparsity))


@dataclass(frozen=True)
class LawPosterior:
    """Uncertainty about a law, as parameter draws; the API other features (probability of reaching a target,
    confidence-level plans, next runs) build on.

    law: the point estimate (a fit's optimum or the preset), whose `predict` is the headline number.
    draws: natural-scale parameter samples, shape (k, n_params), columns in `planner.laws.PARAM_NAMES[law.form]`
      order (E, A, B, alpha, beta for the Chinchilla forms); N in the law's count (N_avg for 'unified').
    rel_noise_sd: run-to-run sd of one run's log loss about the law (0.003: 0.3% noise); 0 when unknown.
    region: where the law has data (`Region`), or None when nothing bounds it (then every point is inside).
    method: one line saying where the draws come from, for the page and the saved law.
    preset: the draws are a preset's published uncertainty, not a fit to this project's runs: its region is the
      preset's own data, and a plan must also lie in the seed's validated range (`planner.uncertainty.prediction`).
    interval_scale: how much one run's interval is widened about its median (>= 1), from the leave-one-out
      calibration of the law's own runs (`planner.uncertainty.coverage.calibrate`); 1 when not calibrated.

    `predict(n, tokens)` gives quantiles of the predicted loss; `prob_below(target, n, tokens)` the probability that
    a run at (n, tokens) ends below a target loss (parameter draws plus run-to-run noise); `interval(n, tokens)` the
    table a page shows: point prediction, interval inside the region, extrapolation and its reason outside.
    """
    law: Law
    draws: np.ndarray
    rel_noise_sd: float = 0.0
    region: Region | None = None
    method: str = ""
    preset: bool = False
    interval_scale: float = 1.0

    def __post_init__(self):
        if self.draws.ndim != 2 or self.draws.shape[1] != len(PARAM_NAMES[self.law.form]):
            raise ValueError(f"draws must be (k, {len(PARAM_NAMES[self.law.form])}) for a {self.law.form} law")
        if self.law.n_unit != 1 or self.law.d_unit != 1 or self.law.d_counts != "tokens":
            raise ValueError("a posterior needs a law in raw parameters and tokens (n_unit = d_unit = 1)")

    @property
    def form(self) -> str:
        return self.law.form

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Draws per parameter name, each of shape (k,)."""
        return dict(zip(PARAM_NAMES[self.form], self.draws.T))

    def loss_draws(self, n, tokens, sparsity=None) -> np.ndarray:
        """Predicted loss under every draw at broadcast (n, tokens): shape (k, *shape). No run-to-run noise."""
        return loss_draws(self.form, self.params, n, tokens, sparsity)

    @staticmethod
    def center(loss_draws: np.ndarray) -> np.ndarray:
        """The centre one run's interval is widened about (`interval_scale`): the draws' median loss."""
        return np.median(loss_draws, axis=0)

    def predict(self, n, tokens, sparsity=None, quantiles=(0.025, 0.5, 0.975), noise: bool = False,
                noise_sd: float | None = None, seed: int = 0) -> np.ndarray:
        """Quantiles of the predicted loss at (n, tokens): shape (len(quantiles), *shape). With ``noise`` the loss
        of one run: each draw plus its own run-to-run noise (fixed ``seed``), normal with sd ``noise_sd`` nats when
        given, else log-normal with the posterior's relative sd, spread about the draws' median by
        ``interval_scale``; without it the law's mean."""
        loss = self.loss_draws(n, tokens, sparsity)
        if not noise:
            return np.quantile(loss, quantiles, axis=0)
        center = self.center(loss)
        copies = -(-NOISE_SAMPLES // len(loss))  # noise draws per parameter draw: a tail quantile needs thousands
        z = np.random.default_rng(seed).standard_normal((copies, *loss.shape))
        loss = loss + noise_sd * z if noise_sd is not None else loss * np.exp(self.rel_noise_sd * z)
        return center + self.interval_scale * (np.quantile(loss.reshape(-1, *center.shape), quantiles, axis=0) - center)

    def prob_below(self, target, n, tokens, noise_sd=None, sparsity=None) -> np.ndarray:
        """P(a run at (n, tokens) ends below ``target``): the mean over draws of the noise's probability of landing
        below it. ``noise_sd`` is the run-to-run sd in nats (loss units); None uses the posterior's own relative
        noise (log-normal about each draw's loss); 0 counts the draws alone. With noise, ``interval_scale`` widens
        the spread about the draws' median as in `predict`."""
        target, n, tokens = np.broadcast_arrays(np.asarray(target, float), np.asarray(n, float),
                                                np.asarray(tokens, float))
        loss = self.loss_draws(n, tokens, sparsity)
        if self.interval_scale != 1 and (noise_sd or (noise_sd is None and self.rel_noise_sd > 0)):
            center = self.center(loss)  # P(center + s (L - center) < t) = P(L < center + (t - center) / s)
            target = center + (target - center) / self.interval_scale
        with np.errstate(divide="ignore", invalid="ignore"):
            if noise_sd is None and self.rel_noise_sd > 0:
                z = (np.log(target) - np.log(loss)) / self.rel_noise_sd
            elif noise_sd:
                z = (target - loss) / noise_sd
            else:
                return (loss < target).mean(axis=0)
        return ndtr(z).mean(axis=0)

    def loss_ci(self, n, tokens, sparsity=None, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the law's predicted loss at broadcast (n, tokens); NaN outside the region (no claim)."""
        tail = (1 - level) / 2
        low, high = self.predict(n, tokens, sparsity, (tail, 1 - tail))
        inside = self.region.contains(n, tokens) if self.region else True
        return np.where(inside, low, np.nan), np.where(inside, high, np.nan)

    def interval(self, n, tokens, sparsity=None, level: float = 0.95, noise: bool = False,
                 noise_sd: float | None = None) -> pd.DataFrame:
        """One row per point: the point prediction, and inside the region its ``level`` interval (of one run's loss
        with ``noise``, as in `predict`); outside, no interval (NaN), ``extrapolated`` True and the reason."""
        n, tokens = np.broadcast_arrays(np.atleast_1d(np.asarray(n, float)), np.atleast_1d(np.asarray(tokens, float)))
        tail = (1 - level) / 2
        low, high = self.predict(n, tokens, sparsity, (tail, 1 - tail), noise, noise_sd)
        inside = self.region.contains(n, tokens) if self.region else np.ones(n.shape, bool)
        reason = self.region.reasons(n, tokens) if self.region else np.full(n.shape, "", object)
        return pd.DataFrame({"n": n, "tokens": tokens, "loss": self.law.predict(n, tokens, sparsity),
                             "low": np.where(inside, low, np.nan), "high": np.where(inside, high, np.nan),
                             "extrapolated": ~inside, "reason": np.where(inside, "", reason)})


def residual_sd(fit: FitResult, table: pd.DataFrame) -> tuple[float, int]:
    """(sd of the log residuals with the free parameters' degrees of freedom taken out, those degrees of freedom)."""
    resid = np.log(table["loss"].to_numpy(float)) - np.log(predict_loss(fit.form, fit.params, table))
    dof = len(table) - fit.n_free
    return (float(np.sqrt(np.sum(resid ** 2) / dof)) if dof > 0 else float("nan")), dof


def parametric_refits(fit: FitResult, table: pd.DataFrame, n_draws: int = 200, seed: int = 0,
                      rel_noise_sd: float | None = None, delta: float = 1e-3) -> tuple[np.ndarray, float]:
    """(log-space refits (n_draws, params), relative noise sd used): refits of tables simulated from the fit.

    Noise: ``rel_noise_sd`` (log loss) when known (e.g. from repeated seeds), else the residual sd, each table
    drawing its own sd as s * sqrt(dof / chi2(dof)). Refits hold what the fit held (`planner.fit.refit_weighted`).
    """
    rng = np.random.default_rng(seed)
    y_hat = np.log(predict_loss(fit.form, fit.params, table))
    if rel_noise_sd is None:
        sd, dof = residual_sd(fit, table)
        if dof < 1:
            raise PlannerInputError(f"runs table: {len(table)} runs for {fit.n_free} free parameters leave no "
                                    f"degree of freedom to measure the run-to-run noise; give more runs")
        scale = sd * np.sqrt(dof / rng.chisquare(dof, n_draws))
    else:
        sd, scale = float(rel_noise_sd), np.full(n_draws, float(rel_noise_sd))
    y = y_hat + scale[:, None] * rng.standard_normal((n_draws, len(table)))
    cols = [N_COLUMN[fit.form], "tokens", "sparsity"]
    base = table[[c for c in cols if c in table]].reset_index(drop=True)
    out = []
    for i in range(0, n_draws, BLOCK):
        block = y[i:i + BLOCK]
        stacked = pd.concat([base] * len(block), ignore_index=True).assign(loss=np.exp(block.ravel()))
        weights = np.kron(np.eye(len(block)), np.ones(len(table)))  # refit r sees only its own table
        out.append(refit_weighted(fit, stacked, weights, delta))
    return np.vstack(out), sd


def posterior_from_fit(fit: FitResult, table: pd.DataFrame, n_draws: int = 200, seed: int = 0,
                       rel_noise_sd: float | None = None, margin: float | None = None) -> LawPosterior:
    """The posterior of a fitted law: parametric-bootstrap draws (`parametric_refits`) and the region of the runs.

    ``table`` is the validated runs table the fit was made on (`planner.runs.load_runs`)."""
    theta, sd = parametric_refits(fit, table, n_draws, seed, rel_noise_sd)
    params = theta_to_params(fit.form, theta)
    draws = np.column_stack([params[k] for k in PARAM_NAMES[fit.form]])
    # A refit whose log-space optimum overflowed or underflowed (A = inf, or A = 0 with alpha far below zero)
    # predicts nothing, not even its own runs: inf - inf or 0 * inf there, NaN quantiles everywhere after.
    finite = np.isfinite(draws).all(axis=1)
    sparsity = table["sparsity"].to_numpy(float) if fit.form == "frantar" else None
    with np.errstate(all="ignore"):
        own = LawPosterior(fit.law, draws[finite]).loss_draws(table[N_COLUMN[fit.form]].to_numpy(float),
                                                               table["tokens"].to_numpy(float), sparsity)
    finite[finite] = np.isfinite(own).all(axis=1)
    draws = draws[finite]
    region = Region(table[N_COLUMN[fit.form]], table["tokens"], **({} if margin is None else {"margin": margin}),
                    source=f"the {len(table)} fitted runs")
    noise = "the runs' residual sd" if rel_noise_sd is None else "the given run-to-run sd"
    return LawPosterior(fit.law, draws, sd, region,
                        f"parametric bootstrap: {n_draws} refits of tables simulated from the fit with {noise} "
                        f"({sd:.2%} of loss)" + (f"; {(~finite).sum()} refits that overflowed (their own runs' "
                                                 "losses not finite) left out" if (~finite).any() else ""))
