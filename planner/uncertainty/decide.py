"""Decisions under a law's uncertainty: the probability that each plan reaches its target loss, the cheapest plan
at a confidence level beside the median plan, and the law parameter a decision hinges on.

A plan reaches the target when its measured loss, the law's prediction under the true parameters times run-to-run
noise, is below it: `LawPosterior.prob_below`, the mean over parameter draws of the noise's probability of landing
below the target (the indicator when there is no noise). Everything is vectorised over candidates x draws.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from planner.candidates import FAMILY_D_MODELS, candidates, law_inputs
from planner.laws import PARAM_NAMES, Law
from planner.search import COST_COLUMNS, Comparison
from planner.uncertainty.posterior import LawPosterior, posterior_from_fit

TOLERANCE = 1e-9  # a probability this close below the confidence still meets it (the median plan sits on 0.5)


def point_posterior(law: Law, rel_noise_sd: float = 0.0) -> LawPosterior:
    """The law with no parameter uncertainty (one draw, its own parameters) and run-to-run noise only."""
    c = law.coefficients
    return LawPosterior(law, np.array([[c[k] for k in PARAM_NAMES[law.form]]]), rel_noise_sd,
                        method="point law, no parameter uncertainty")


def law_point(law: Law, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(N in the law's count, sparsity) of candidate rows."""
    n, s = law_inputs(law, rows["n_avg"].to_numpy(float), rows["n_final"].to_numpy(float),
                      rows["final_sparsity"].to_numpy(float))
    return np.asarray(n, float), np.asarray(s, float)


def reach_probability(post: LawPosterior, rows: pd.DataFrame, target: float) -> np.ndarray:
    """P(reach target) of every candidate row at its own tokens."""
    n, s = law_point(post.law, rows)
    return post.prob_below(target, n, rows["tokens"].to_numpy(float), sparsity=s)


def with_reach(comp: Comparison, post: LawPosterior, target: float) -> Comparison:
    """The comparison with a `p_reach` column on its candidates, frontier and table."""
    frames = {k: getattr(comp, k) for k in ("candidates", "frontier", "table")}
    return dataclasses.replace(comp, **{k: df.assign(p_reach=reach_probability(post, df, target))
                                        for k, df in frames.items()})


def tokens_at_confidence(post: LawPosterior, target: float, confidence: float, n, sparsity=None,
                         bounds=(1e3, 1e17), iters: int = 36) -> np.ndarray:
    """Fewest tokens at which each (n, sparsity) reaches `target` with probability `confidence`; inf where even
    unlimited tokens do not (P rises with tokens towards its value at the floor). Bisection in log tokens."""
    n = np.asarray(n, float)
    s = np.broadcast_to(np.asarray(0.0 if sparsity is None else sparsity, float), n.shape)
    ok = post.prob_below(target, n, np.inf, sparsity=s) >= confidence - TOLERANCE
    lo, hi = np.full(n.shape, np.log(bounds[0])), np.full(n.shape, np.log(bounds[1]))
    for _ in range(iters):  # the bracket halves each step: 36 steps take 32 nats to 5e-10
        mid = (lo + hi) / 2
        met = post.prob_below(target, n, np.exp(mid), sparsity=s) >= confidence - TOLERANCE
        lo, hi = np.where(met, lo, mid), np.where(met, mid, hi)
    return np.where(ok, np.exp(hi), np.inf)


def sensitivity(post: LawPosterior, n, tokens, sparsity=None) -> dict[str, float]:
    """Rank correlation, across draws, of each free parameter with the predicted loss at one point (held
    parameters, constant across draws, are left out): which parameter's uncertainty moves the prediction most."""
    loss = rankdata(post.loss_draws(n, tokens, sparsity).ravel())
    out = {}
    for name, column in post.params.items():
        if len(column) > 2 and np.ptp(column) > 0:
            out[name] = float(np.corrcoef(rankdata(column), loss)[0, 1])
    return out


@dataclass(frozen=True)
class ConfidenceChoice:
    """The cheapest plan reaching the target with probability `confidence` beside the median (50%) plan.

    `table`: one row each ('at <q>', 'median'), candidate columns at the tokens found, with `p_reach`.
    `extra_cost`/`extra_pct`: what the certainty costs over the median plan in the objective's lifetime column.
    `sensitive`: the parameter the chosen plan's prediction hinges on, with its rank correlation.
    """
    confidence: float
    table: pd.DataFrame
    cost_column: str
    extra_cost: float
    extra_pct: float
    sensitive: str | None
    correlation: float


def _cheapest(post, df, target, q, train, total):
    """Index and tokens of the row that reaches `target` with probability q at least lifetime cost: training
    ledgers are tokens x a per-token cost, so a row's cost at other tokens rescales its training column."""
    n, s = law_point(post.law, df)
    tokens = tokens_at_confidence(post, target, q, n, s)
    with np.errstate(invalid="ignore"):
        cost = df[total].to_numpy(float) + df[train].to_numpy(float) * (tokens / df["tokens"].to_numpy(float) - 1)
    if not np.isfinite(cost).any():
        return None, None
    i = int(np.nanargmin(np.where(np.isfinite(cost), cost, np.nan)))
    return i, float(tokens[i])


def _row_at(law, row, tokens, search) -> pd.Series:
    """A candidate recomputed exactly (every ledger) at other tokens."""
    sparse = row["final_sparsity"] > 0
    search = {k: v for k, v in search.items() if k not in ("sparsities", "schedules")}
    df = candidates(law, tokens=[tokens], d_models=[int(row["d_model"])],
                    sparsities=[float(row["final_sparsity"])] if sparse else [],
                    schedules=[str(row["schedule"])] if sparse else [], **search)
    return df.iloc[-1 if sparse else 0]


def confidence_plan(post: LawPosterior, target: float, confidence: float, objective: str = "flops",
                    **search) -> ConfidenceChoice | None:
    """Cheapest plan over every family width and schedule variant that reaches `target` with probability
    `confidence`, beside the median plan; None when no candidate gets there. `search` passes on to `candidates`;
    its `keep` (the fits-on/serve-on mask, which does not depend on tokens) filters the candidates first."""
    train, _, total = COST_COLUMNS[objective]
    keep = search.pop("keep", None)
    df = candidates(post.law, target_loss=target, d_models=FAMILY_D_MODELS, **search)
    if keep is not None:
        df = df[keep(df)].reset_index(drop=True)
    rows = {}
    for label, q in ((f"at {100 * confidence:g}%", confidence), ("median", 0.5)):
        i, tokens = _cheapest(post, df, target, q, train, total)
        if i is None:
            return None
        rows[label] = _row_at(post.law, df.iloc[i], tokens, search)
    table = pd.DataFrame(rows).T.infer_objects()
    table["p_reach"] = reach_probability(post, table, target)
    chosen, median = table.iloc[0], table.iloc[1]
    n, s = law_point(post.law, table.iloc[:1])
    corr = sensitivity(post, n[0], chosen["tokens"], s[0])
    name = max(corr, key=lambda k: abs(corr[k])) if corr else None
    extra = float(chosen[total] - median[total])
    return ConfidenceChoice(confidence, table, total, extra, 100 * extra / float(median[total]), name,
                            corr.get(name, float("nan")))


def fitted_posterior(form: str, runs: pd.DataFrame, n_draws: int = 200, seed: int = 0,
                     rel_noise_sd: float | None = None, grid: str = "chinchilla",
                     n_convention: str = "total") -> LawPosterior:
    """Fit `form` on a validated runs table (`planner.runs.load_runs`) and draw from its parametric bootstrap
    (`posterior_from_fit`); the run-to-run noise defaults to the residuals'."""
    from planner.fit import LawFitter  # scipy's optimiser only when fitting
    fit = LawFitter(form, grid=grid, n_convention=n_convention).fit(runs)
    return posterior_from_fit(fit, runs, n_draws=n_draws, seed=seed, rel_noise_sd=rel_noise_sd)
