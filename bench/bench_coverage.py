"""Coverage of the fitter's intervals: synthetic runs from known laws, refitted, and how often each 95% interval
contains the truth.

    nice -n 10 python bench/bench_coverage.py --replicates 40            # print the table
    nice -n 10 python bench/bench_coverage.py --replicates 40 --write    # and record it in bench/RESULTS.md
    nice -n 10 python bench/bench_coverage.py --loo bench/study/quick/runs.csv --write   # leave-one-out on a study

Designs: 'weak-12' is issue #18's example (12 runs, 4 sizes x 3 token budgets, E 1.7, A 400, alpha 0.34, B 400,
beta 0.28, 0.3% log-normal noise); 'grid-30' a well-identified grid (6 sizes x 5 token counts spanning two decades
each, same law, 0.5% noise). Per replicate: the fit (coarse grid), profile intervals of alpha, beta and the
compute-optimal exponent (`planner.uncertainty.profile`), the parametric-bootstrap posterior's interval of the
law's loss at three untrained points inside the runs' region, and, for comparison, the nonparametric percentile
bootstrap the app showed before.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import cpu_model, write_section  # noqa: E402
from planner.fit import LawFitter  # noqa: E402
from planner.laws import Law  # noqa: E402
from planner.runs import RUN_COLUMNS, in_regime, load_runs  # noqa: E402
from planner.uncertainty import bootstrap, posterior_from_fit, profile_intervals  # noqa: E402
from planner.uncertainty.coverage import calibrate, coverage_summary, loo_coverage  # noqa: E402

TRUTH = Law(form="unified", params={"E": 1.7, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28})
LEVEL = 0.95


def design_runs(design: str, seed: int) -> pd.DataFrame:
    """A synthetic runs table of `design` (module docstring) with log-normal noise from `seed`."""
    if design == "weak-12":
        n = np.repeat(np.geomspace(5e7, 4e8, 4), 3)
        d, noise = n * np.tile([10.0, 20.0, 40.0], 4), 0.003
    else:
        n = np.repeat(np.geomspace(3e7, 3e9, 6), 5)
        d, noise = np.tile(np.geomspace(1e9, 1e11, 5), 6), 0.005
    rng = np.random.default_rng(seed)
    loss = TRUTH.predict(n, d) * np.exp(rng.normal(0.0, noise, n.size))
    return pd.DataFrame({"loss": loss, "tokens": d, "n_avg": n})


def test_points(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Three untrained points inside the runs' hull: the geometric centre and halfway from it to two corners."""
    ln, ld = np.log(table["n_avg"]), np.log(table["tokens"])
    c = np.array([ln.mean(), ld.mean()])
    corners = [np.array([ln.min(), ld[ln.idxmin()]]), np.array([ln.max(), ld[ln.idxmax()]])]
    pts = np.array([c] + [(c + k) / 2 for k in corners])
    return np.exp(pts[:, 0]), np.exp(pts[:, 1])


def replicate(design: str, seed: int, n_draws: int) -> list[dict]:
    """Coverage records of one synthetic runs table: (quantity, method, status, covered, width)."""
    table = load_runs(design_runs(design, seed), "unified")
    fit = LawFitter("unified", grid="coarse").fit(table)
    truth = {"alpha": 0.34, "beta": 0.28, "optimal_n_exponent": TRUTH.optimal_n_exponent}
    rows = []
    for q, p in profile_intervals(fit, table, LEVEL).items():
        rows.append({"quantity": q, "method": "profile likelihood", "status": p.status,
                     "covered": p.low <= truth[q] <= p.high if p.identified else np.nan, "width": p.high - p.low})
    n, d = test_points(table)
    true_loss = TRUTH.predict(n, d)
    post = posterior_from_fit(fit, table, n_draws=n_draws, seed=seed)
    iv = post.interval(n, d, level=LEVEL)
    for k in range(len(n)):
        ok = not iv["extrapolated"].iloc[k]
        rows.append({"quantity": "predicted loss", "method": "parametric bootstrap", "status":
                     "identified" if ok else "extrapolated", "width": iv["high"].iloc[k] - iv["low"].iloc[k],
                     "covered": iv["low"].iloc[k] <= true_loss[k] <= iv["high"].iloc[k] if ok else np.nan})
    boot = bootstrap(table, "unified", n_boot=n_draws, seed=seed, fit=fit, by_group=False, level=LEVEL)
    ci = boot.ci()
    low, high = boot.loss_ci(n, d)
    for q in truth:
        rows.append({"quantity": q, "method": "percentile bootstrap (before)", "status": "identified",
                     "covered": ci[q][0] <= truth[q] <= ci[q][1], "width": ci[q][1] - ci[q][0]})
    for k in range(len(n)):
        rows.append({"quantity": "predicted loss", "method": "percentile bootstrap (before)", "status": "identified",
                     "covered": low[k] <= true_loss[k] <= high[k], "width": high[k] - low[k]})
    return [dict(r, design=design, seed=seed) for r in rows]


def summarise(records: pd.DataFrame) -> pd.DataFrame:
    def one(g):
        ident = g[g["status"] == "identified"]
        return pd.Series({"cases": len(g), "identified": f"{len(ident) / len(g):.0%}",
                          "coverage": f"{ident['covered'].astype(float).mean():.0%}" if len(ident) else "-",
                          "median width": f"{ident['width'].median():.3g}" if len(ident) else "-"})
    return records.groupby(["design", "quantity", "method"], sort=False).apply(one, include_groups=False)\
        .reset_index()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicates", type=int, default=40)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--designs", default="weak-12,grid-30")
    ap.add_argument("--loo", metavar="RUNS_CSV", help="instead: leave-one-out coverage on a study's runs.csv")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    machine = f"{cpu_model()}, {os.cpu_count()} CPUs, one numpy thread, niced, shared with other jobs"
    if args.loo:
        return loo_main(args, machine)
    start, records = time.time(), []
    for design in args.designs.split(","):
        for seed in range(args.replicates):
            records += replicate(design, seed, args.draws)
    table = summarise(pd.DataFrame(records))
    print(table.to_string(index=False))
    if args.write:
        write_section(HEADING, coverage_section(table, args.replicates, args.draws,
                                                f"{time.time() - start:.0f} s on {machine}"))
    return 0


HEADING = "## Interval coverage (planner.uncertainty)"


def markdown(table: pd.DataFrame) -> str:
    rows = [list(table.columns), ["---"] * len(table.columns), *table.astype(str).itertuples(index=False)]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def coverage_section(table: pd.DataFrame, replicates: int, draws: int, timing: str) -> str:
    return f"""\
`python bench/bench_coverage.py --replicates {replicates} --draws {draws} --write` ({timing}). Synthetic runs \
from E 1.7, A 400, alpha 0.34, B 400, beta 0.28: **weak-12** is issue #18's example (12 runs: 4 sizes 5e7-4e8 x \
10/20/40 tokens per parameter, 0.3% noise), **grid-30** a well-identified grid (6 sizes 3e7-3e9 x 5 token counts \
1e9-1e11, 0.5% noise). {replicates} replicates per design (seeds 0-{replicates - 1}); nominal level {LEVEL:.0%}; \
{draws} draws or resamples per interval. *identified*: share of cases with an interval (profile: bounded inside the \
plausible range; predicted loss: the three untrained test points inside the runs' region); *coverage*: share of \
those intervals that contain the truth (Monte Carlo sd about {100 * np.sqrt(LEVEL * (1 - LEVEL) / replicates):.0f} \
points per row at {replicates} cases, {100 * np.sqrt(LEVEL * (1 - LEVEL) / (3 * replicates)):.0f} at \
{3 * replicates}).

{markdown(table)}

{comparison(table)}
"""


def comparison(table: pd.DataFrame) -> str:
    """What the table says about the percentile bootstrap the app showed before, against the profile intervals."""
    t = table.set_index(["design", "quantity", "method"])["median width"].astype(float)
    ratios = [t[d, q, "percentile bootstrap (before)"] / t[d, q, "profile likelihood"]
              for d in table["design"].unique() for q in ("alpha", "beta", "optimal_n_exponent")]
    return (f"In these designs the percentile bootstrap over single runs covered the exponents too, with intervals "
            f"{min(ratios):.1f}-{max(ratios):.1f}x the profile intervals' median width; they do not reproduce the "
            f"one-sided intervals issue #18 reports, whose sizes and token counts the issue does not give. Every "
            f"profile here was bounded (identified); the unidentified path is tested on a design whose token counts "
            f"barely vary (tests/test_uncertainty.py).")


def loo_main(args, machine) -> int:
    df = pd.read_csv(args.loo)
    runs = in_regime(df)
    start = time.time()
    loo = loo_coverage(runs[[c for c in RUN_COLUMNS if c in runs]], level=LEVEL, n_draws=args.draws)
    s, c = coverage_summary(loo, LEVEL), calibrate(loo, LEVEL)
    print(loo.to_string(index=False))
    print(s, c)
    missed = ", ".join(loo.loc[loo["covered"] == False, "name"]) or "none"  # noqa: E712
    far = loo[loo["extrapolated"] == True]  # noqa: E712
    outside = ", ".join(f"{r.name} ({r.reason})" for r in far.itertuples()) or "none"
    if args.write:
        write_section("## Leave-one-out coverage (planner.uncertainty)", f"""\
`python bench/bench_coverage.py --loo {args.loo} --draws {args.draws} --write` ({time.time() - start:.0f} s on \
{machine}). The {s['n_runs']} non-ablation runs at {loo['point'].nunique()} points of the law (runs within 5% in \
N_avg and tokens are one point: repeated seeds, a sparse run and its partners); each point left out in turn, the \
unified law refitted on the rest (coarse grid) with its parametric-bootstrap posterior; the {LEVEL:.0%} interval for \
one run's loss (parameter draws and the fit's residual noise). **Coverage {s['coverage']:.1%}** \
({int(round(s['coverage'] * s['n_inside']))} of {s['n_inside']} runs inside the others' region; median width \
{s['median_width']:.3f} nats). Missed: {missed}. Outside the others' region (no interval, marked as \
extrapolations): {outside}. Calibration (`planner.uncertainty.coverage.calibrate`): widening one run's interval \
{c['scale']:.2f}x about its centre covers {c['calibrated']:.1%}, each run checked against the widening the scores \
at other points give.
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
