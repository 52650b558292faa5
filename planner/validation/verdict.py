"""Does a sparse/dense pair match? Paired gaps over seeds, their interval, a verdict and the seeds it would take.

A pair's gap is sparse loss minus dense-partner loss; both runs share the seed, hence the training windows, their
order and the validation windows, so seed-to-seed noise of the gap is smaller than sqrt(2) x the run-to-run noise of
one run. The gap's sd is pooled over every (pair, partner) measured with more than one seed (one noise level for
the study); without repeats, sqrt(2) x the run-to-run sd (unpaired, so conservative) stands in.

The verdict is an equivalence test with the issue's tolerance, 1% of the partner's loss:
- holds: the whole 95% interval of the gap lies within +-1%;
- fails: the whole interval lies outside it (the gap is surely larger than 1%);
- cannot tell: otherwise (the interval straddles a bound: more seeds needed).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

TOLERANCE = 0.01  # of the partner's loss
LEVEL = 0.95
POWER = 0.8
MAX_SEEDS = 1000
# Where the run-to-run sd behind the unpaired gap noise comes from (`gap_noise`); the report and the Runs page print it.
STUDY_NOISE = "the run-to-run sd of this study's single runs"
LAW_NOISE = "the bundled laptop law's run-to-run sd from an earlier study"


def seedless(name: str) -> str:
    """The name (or pair id) a run shares with its repeats under other seeds: `-seed<k>` removed."""
    return re.sub(r"-seed\d+", "", name)


def pooled_sd(values: pd.Series, groups: pd.Series) -> tuple[float, int]:
    """Pooled within-group standard deviation of `values` and its degrees of freedom (nan, 0 without repeats)."""
    g = pd.DataFrame({"v": np.asarray(values, float), "g": np.asarray(groups)}).groupby("g")["v"]
    dof = int((g.count() - 1).clip(lower=0).sum())
    if dof == 0:
        return float("nan"), 0
    ss = float(g.apply(lambda x: ((x - x.mean()) ** 2).sum()).sum())
    return float(np.sqrt(ss / dof)), dof


def _t(q: float, dof: int) -> float:
    from scipy import stats  # scipy.stats only when judging: `planner plan` imports this through the ladder
    return float(stats.t.ppf(q, dof)) if dof > 0 else float("nan")


def half_width(sd: float, dof: int, seeds, level: float = LEVEL):
    """Half-width of the `level` interval of a mean gap over `seeds` seeds, with an sd estimated on `dof` dof."""
    return _t(0.5 + level / 2, dof) * sd / np.sqrt(np.asarray(seeds, float))


def seeds_needed(sd: float, dof: int, ref: float, tol: float = TOLERANCE, level: float = LEVEL) -> float:
    """Fewest seeds whose interval half-width is at most tol x ref (nan without an sd; inf past MAX_SEEDS)."""
    if not np.isfinite(sd) or dof == 0:
        return float("nan")
    n = int(np.ceil((half_width(sd, dof, 1, level) / (tol * ref)) ** 2))
    return float(max(n, 1)) if n <= MAX_SEEDS else float("inf")


def detectable_gap(sd: float, dof: int, seeds, level: float = LEVEL, power: float = POWER):
    """The smallest |gap| that `seeds` seeds find (interval excludes zero) with probability `power`."""
    return (_t(0.5 + level / 2, dof) + _t(power, dof)) * sd / np.sqrt(np.asarray(seeds, float))


def verdict(low, high, ref, tol: float = TOLERANCE) -> np.ndarray:
    """'holds' / 'fails' / 'cannot tell' for gap intervals [low, high] against +-tol x ref (vectorised)."""
    low, high, bound = (np.asarray(x, float) for x in (low, high, tol * np.asarray(ref, float)))
    out = np.full(np.broadcast(low, high, bound).shape, "cannot tell", dtype=object)
    out[(low >= -bound) & (high <= bound)] = "holds"
    out[(low > bound) | (high < -bound)] = "fails"
    return out


def closer_count(err_avg, err_final, half) -> np.ndarray:
    """Which count predicts a sparse run's loss better: 'N_avg', 'N_final', or 'cannot tell' when the two absolute
    errors differ by less than `half` (the noise of the comparison) or either is missing."""
    a, f, h = (np.abs(np.asarray(x, float)) for x in (err_avg, err_final, half))
    out = np.full(np.broadcast(a, f, h).shape, "cannot tell", dtype=object)
    margin = np.where(np.isfinite(h), h, 0.0)
    out[a + margin < f] = "N_avg"
    out[f + margin < a] = "N_final"
    return out


def gap_noise(run_sd: float = float("nan"), run_dof: int = 0, law=None) -> dict:
    """The gap noise that judges pairs until one has repeated seeds, {'sd', 'dof', 'source'}: sqrt(2) x a run-to-run
    sd, as if the two runs were independent (conservative: a shared seed makes the paired gap quieter). The sd is
    this study's (`run_sd` on `run_dof` dof) when it repeated any run, else the laptop law's (`law`, a LaptopLaw:
    an earlier study's), else none (nan, 0 dof: no interval, no verdict)."""
    source = STUDY_NOISE
    if run_dof == 0 and law is not None and law.noise_dof:
        run_sd, run_dof, source = law.noise_sd, law.noise_dof, LAW_NOISE
    return {"sd": np.sqrt(2) * run_sd, "dof": run_dof, "source": source}


def pair_verdicts(gaps: pd.DataFrame, fallback: dict | None = None, tol: float = TOLERANCE, level: float = LEVEL
                  ) -> tuple[pd.DataFrame, dict]:
    """One row per (pair, partner) from per-seed gaps: mean gap, interval, verdict, and the power figures. The study's
    report and the app's Runs page both judge pairs here.

    `gaps` has columns pair (the same across seeds), partner, gap (sparse - partner loss), ref (partner loss) and
    optionally variant (the pruning method: geometric, per-layer, ...). Repeated seeds give the noise, pooled within
    a variant: one method's spread (a per-layer run that blew up) must not widen another's intervals. A variant
    without repeats takes the noise of the variant with the most degrees of freedom (the main pairs); with none at
    all, `fallback` (a `gap_noise`). Returns the table (with each row's noise_sd) and the main noise used:
    {'sd', 'dof', 'source'}, plus 'by_variant' when there is more than one variant.
    """
    variant = gaps["variant"].astype(str) if "variant" in gaps else pd.Series("", index=gaps.index)
    key = gaps["pair"].astype(str) + "|" + gaps["partner"].astype(str)
    own = {v: pooled_sd(gaps["gap"][variant == v], key[variant == v]) for v in variant.unique()}
    main = max(own, key=lambda v: (own[v][1], (variant == v).sum()))
    sd, dof = own[main]
    noise = {"sd": sd, "dof": dof, "source": f"paired gaps pooled over repeated seeds ({dof} dof"
                                             + (f", {main} pairs)" if len(own) > 1 else ")")}
    if dof == 0:
        fallback = fallback or gap_noise()
        noise = {"sd": fallback["sd"], "dof": fallback["dof"],
                 "source": f"sqrt(2) x {fallback['source']} ({fallback['dof']} dof; unpaired, conservative)"}
    used = {v: (own[v] if own[v][1] else (noise["sd"], noise["dof"])) for v in own}
    if len(own) > 1:
        noise["by_variant"] = {v: {"sd": used[v][0], "dof": used[v][1], "own": bool(own[v][1])} for v in own}
    g = gaps.assign(variant=variant).groupby(["pair", "partner"], sort=False)
    out = g.agg(seeds=("gap", "size"), gap=("gap", "mean"), ref=("ref", "mean"), variant=("variant", "first")
                ).reset_index()
    out["gap_rel"] = out["gap"] / out["ref"]
    out["noise_sd"] = out["variant"].map(lambda v: used[v][0])
    nsd, ndof = out["noise_sd"].to_numpy(float), out["variant"].map(lambda v: used[v][1]).to_numpy(int)
    half = np.array([half_width(a, b, n, level) if b else np.nan for a, b, n in zip(nsd, ndof, out["seeds"])])
    out["ci_low"], out["ci_high"] = out["gap"] - half, out["gap"] + half
    out["half_rel"] = half / out["ref"]
    out["verdict"] = verdict(out["ci_low"], out["ci_high"], out["ref"], tol)
    out["seeds_needed"] = [seeds_needed(a, b, r, tol, level) for a, b, r in zip(nsd, ndof, out["ref"])]
    out["detectable_gap"] = [detectable_gap(a, b, n, level) if b else np.nan for a, b, n in zip(nsd, ndof, out["seeds"])]
    return out.drop(columns="variant") if "variant" not in gaps else out, noise


def partner_errors(table: pd.DataFrame) -> pd.DataFrame:
    """Per pair of a `pair_verdicts` table: its gaps to the N_avg and the N_final partner (what a law that counts N_avg,
    or N_final, misses the sparse loss by; NaN without that partner) and the N_avg gap's half-width, the margin
    `closer_count` needs to name a count."""
    main = table[table["partner"] == "dense_n_avg"].set_index("pair")
    final = table[table["partner"] == "dense_n_final"].set_index("pair")["gap"]
    return pd.DataFrame({"err_n_avg": main["gap"], "err_n_final": final.reindex(main.index),
                         "half": main["ci_high"] - main["gap"]}, index=main.index)
