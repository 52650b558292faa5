"""Benchmark the approach-3 fit: batched multi-start vs per-start scipy loops, 1000 bootstrap refits, and a
100,000-run table.

    python bench/bench_fit.py                          # synthetic 240 runs from the Epoch law
    python bench/bench_fit.py --runs data.csv          # also a CSV with columns 'Model Size', 'Training FLOP', loss
    python bench/bench_fit.py --runs data.csv --write  # and record the figures in bench/RESULTS.md

Two per-start loops are the references: 'plain' as the Epoch replication's code runs it (scipy L-BFGS-B on
scipy.special.logsumexp and huber, gradient by finite differences), and 'analytic' (scipy L-BFGS-B on this
package's objective and analytic gradient). `--loop-every K` times them on every K-th grid start and scales by the
4500 starts (the per-start cost varies little across the grid; the table says K). Times are CPU seconds of this
process, so other jobs on a shared machine change them less than wall time.

For a --runs CSV (`planner.uncertainty.priors.epoch_points`), tokens = FLOP / (6 * size) and the 5 highest-loss
points are dropped, as the Epoch replication does with the points it extracted from the Chinchilla paper.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import cpu_model, write_section  # noqa: E402
from planner.fit import LawFitter, problem, start_grid  # noqa: E402
from planner.uncertainty import bootstrap  # noqa: E402
from planner.uncertainty.priors import epoch_points  # noqa: E402
from planner.laws import get_law  # noqa: E402
from planner.optim import evaluate  # noqa: E402
from planner.runs import load_runs  # noqa: E402

HEADING = "## Fit (planner)"


def synthetic_runs(n_runs=240, noise=0.015, seed=0) -> pd.DataFrame:
    """Runs over Chinchilla's ranges (N 4e7-1.6e10, D 5e9-5e11, log-uniform), loss from the Epoch law times
    log-normal noise of sd ``noise`` (about the scatter of the Chinchilla points around that fit)."""
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(4e7), np.log(1.6e10), n_runs))
    d = np.exp(rng.uniform(np.log(5e9), np.log(5e11), n_runs))
    loss = get_law("epoch-replication").predict(n, d) * np.exp(rng.normal(0, noise, n_runs))
    return pd.DataFrame({"n": n, "tokens": d, "loss": loss})


def scipy_loop(table, every=1):
    """One scipy L-BFGS-B call per grid start on this package's objective and analytic gradient: (CPU seconds
    scaled to every start, best objective of the starts run)."""
    prob = problem("chinchilla", table, {})
    starts = start_grid("chinchilla", "chinchilla")
    best, c0 = np.inf, time.process_time()
    for start in starts[::every]:
        res = minimize(lambda th: tuple(v[0] for v in evaluate(th, prob)), start, jac=True, method="L-BFGS-B")
        best = min(best, float(res.fun))
    return (time.process_time() - c0) * len(starts) / len(starts[::every]), best


def plain_loop(table, every=1):
    """The Epoch replication's way: per start, scipy L-BFGS-B on logsumexp + Huber(1e-3) summed, gradient by finite
    differences; (CPU seconds scaled to every start, best objective of the starts run)."""
    from scipy.special import huber, logsumexp
    log_n, log_d = np.log(table["n_final"].to_numpy(float)), np.log(table["tokens"].to_numpy(float))
    log_loss = np.log(table["loss"].to_numpy(float))

    def objective(p):
        e, a, b, alpha, beta = p
        pred = logsumexp([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)], axis=0)
        return np.sum(huber(1e-3, pred - log_loss))
    starts = start_grid("chinchilla", "chinchilla")
    best, c0 = np.inf, time.process_time()
    for start in starts[::every]:
        best = min(best, float(minimize(objective, start, method="L-BFGS-B").fun))
    return (time.process_time() - c0) * len(starts) / len(starts[::every]), best


def bench(name, runs, n_boot, skip_loop, every=1, repeats=5):
    table = load_runs(runs, "chinchilla")
    load = os.getloadavg()[0]
    walls, cpus = [], []
    for _ in range(repeats):  # the median of several: other jobs and the host make single timings noisy
        t0, c0 = time.perf_counter(), time.process_time()
        fit = LawFitter("chinchilla", grid="chinchilla").fit(table)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    t_fit, t_cpu = float(np.median(walls)), float(np.median(cpus))
    t0 = time.perf_counter()
    boot = bootstrap(table, "chinchilla", n_boot=n_boot, seed=0, fit=fit)
    t_boot = time.perf_counter() - t0
    t_loop, loop_best = (np.nan, np.nan) if skip_loop else scipy_loop(table, every)
    t_plain, plain_best = (np.nan, np.nan) if skip_loop else plain_loop(table, every)
    row = {"data": name, "runs": len(table), "starts": fit.n_starts, "batched_s": t_fit, "batched_best_s": min(walls),
           "batched_cpu_s": t_cpu, "load": load, "loop_s": t_loop, "every": every,
           "speedup": t_loop / t_cpu, "plain_s": t_plain, "plain_speedup": t_plain / t_cpu, "plain_best": plain_best,
           "batched_best": fit.objective, "loop_best": loop_best,
           "at_best": fit.n_starts_at_best, "capped": fit.n_capped, "boot_n": n_boot, "boot_s": t_boot,
           "exponent": fit.optimal_n_exponent, "exponent_ci": boot.ci()["optimal_n_exponent"], "params": fit.params}
    print(row, flush=True)
    return row


def machine() -> str:
    cpu = cpu_model()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores (nproc), {cpu}; Python {platform.python_version()}, numpy {np.__version__}, "
            f"scipy {scipy.__version__}; load average (1, 5, 15 min) at the end {load}; the 1-minute load when "
            f"each row started is in the table (other jobs share the cores: wall times scale with it, the speedup "
            f"much less)")


def section(rows) -> str:
    lines = [HEADING, "", f"Machine: {machine()}.", "",
             "Chinchilla approach 3 (Epoch-corrected: log-space, Huber delta 1e-3 summed, 4500-start grid). "
             "'batched' is `LawFitter('chinchilla').fit` (batched BFGS over all starts in `planner.optim`, then "
             "scipy L-BFGS-B polish of the best 4 basins), median wall time of 5 fits (best in brackets) and "
             "median CPU time; 'loop' is one `scipy.optimize.minimize(method='L-BFGS-B')` per start on the same "
             "objective and analytic gradient. Bootstrap: resampled runs, refits warm-started from the full fit's "
             "basins, in one batch, each finished with batched damped Newton (`planner.optim.batched_newton`).", "",
             "| data | runs | load (1 min) | batched fit, wall s [best] | batched fit, CPU s | plain loop, CPU s | "
             "speedup vs plain (CPU) | analytic loop, CPU s | speedup vs analytic (CPU) | loops timed on | "
             "best objective: batched / plain / analytic | starts at best (rel 1e-4) | capped (1000 it) | "
             "bootstrap refits | bootstrap (s) | N_opt exponent [95% CI] |", "|" + "---|" * 16]
    for r in rows:
        lo, hi = r["exponent_ci"]
        lines.append(f"| {r['data']} | {r['runs']} | {r['load']:.1f} | {r['batched_s']:.2f} [{r['batched_best_s']:.2f}] "
                     f"| {r['batched_cpu_s']:.2f} | {r['plain_s']:.1f} | {r['plain_speedup']:.0f}x | {r['loop_s']:.1f} "
                     f"| {r['speedup']:.1f}x | every {r['every']}th start, scaled to {r['starts']} "
                     f"| {r['batched_best']:.10g} / {r['plain_best']:.10g} / {r['loop_best']:.10g} | "
                     f"{r['at_best']}/{r['starts']} | "
                     f"{r['capped']} | {r['boot_n']} | {r['boot_s']:.2f} | {r['exponent']:.4f} [{lo:.3f}, {hi:.3f}] |")
    epoch = get_law("epoch-replication").params
    slowest = max(r["batched_cpu_s"] for r in rows)  # CPU: on a shared machine wall time measures the others too
    verdict = "met" if slowest <= 1.0 else f"NOT met: the slower dataset's median fit takes {slowest:.2f} s of CPU"
    epoch_row = rows[-1]  # the Epoch data when given (the benchmark), else the synthetic table
    plain, analytic = epoch_row["plain_speedup"], epoch_row["speedup"]
    lines += ["", f"Target of at least 150x the per-start scipy loop on {epoch_row['data']}: {plain:.0f}x the plain "
              f"loop (the replication's own per-start code), {'met' if plain >= 150 else 'NOT met'}; against a "
              f"per-start loop on this package's analytic gradient the batched fit is {analytic:.1f}x (NOT 150x: "
              f"most of the gain over the plain loop is the analytic gradient, the rest the batching)."]
    lines += ["", "Fitted parameters (E, A, B, alpha, beta): " + "; ".join(
        f"{r['data']}: " + ", ".join(f"{k}={v:.6g}" for k, v in r["params"].items()) for r in rows), "",
        "For comparison, the Epoch replication's published fit on the extracted points: " + ", ".join(
            f"{k}={v:g}" for k, v in epoch.items()) + ".", "",
        f"Target of at most 1 s for the 4500-start fit on 2 cores: {verdict}. Each start runs to its own "
        "convergence (about 50 BFGS iterations on average, 1000 for the capped ones), so the cost is ~320k "
        "start-evaluations of 240 runs at ~3 us each plus the per-iteration overhead of the long tail. Measured and "
        "dropped: merging starts whose iterates meet (under 5% fewer evaluations: starts reach the optimum's "
        "neighbourhood at different times), a float32 first pass (starts must still converge in float64 before "
        "they count at the best objective, which cost what float32 saved; stopping in float32 cut starts-at-best "
        "from 971 to 222-855), threads over chunks of starts (no gain on this 2-vCPU machine), and a "
        "whitening preconditioner for the initial inverse Hessian (fewer iterations but fewer starts reaching the "
        "best, no net time), and damped Newton with the exact curvature inside the Huber zone from every grid start "
        "(~32 iterations instead of ~52-74 and twice the starts at the best objective, but a curvature pass costs "
        "~4x a gradient pass: 4.9-6.1 s; BFGS for 30 iterations then Newton: 2.5-2.9 s). Newton is kept for the "
        "bootstrap: on 20 resamples per dataset the warm-started BFGS refits stopped up to 0.25% (synthetic) and "
        "0.5% (Epoch) above a full-grid refit's objective (median 3.5e-4 / 5.7e-5); finished with Newton the gap is "
        "under 1e-9 (~6 iterations). Kept: several Armijo halvings per objective call once few starts are pending (40% "
        "fewer calls, identical steps) and a cheaper BFGS update.", ""]
    return "\n".join(lines)



def big_table(n_runs: int) -> str:
    """`planner fit` end to end on a synthetic CSV of n_runs rows (no bootstrap), as a person runs it."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.csv"
        synthetic_runs(n_runs, seed=1).to_csv(path, index=False)
        t0 = time.perf_counter()
        before = os.times()
        proc = subprocess.run([sys.executable, "-m", "planner", "fit", str(path), "--form", "chinchilla", "--json"],
                              capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        after = os.times()
        wall = time.perf_counter() - t0
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    out = json.loads(proc.stdout) if proc.returncode == 0 else {}
    verdict = "met" if proc.returncode == 0 and cpu <= 30 else "NOT met"
    return (f"\n`python -m planner fit` on a synthetic {n_runs:,}-run CSV (chinchilla form, full grid, no bootstrap): "
            f"{cpu:.1f} s CPU, {wall:.1f} s wall at a 1-minute load of {os.getloadavg()[0]:.1f}; exit "
            f"{proc.returncode}; fitted alpha {out.get('params', {}).get('alpha', float('nan')):.4f}, beta "
            f"{out.get('params', {}).get('beta', float('nan')):.4f} (the law's 0.3478, 0.3658). The start grid fits "
            f"a fixed 1,024-run sample and its best basins are refined on all runs (planner.fit.GRID_RUNS). Target "
            f"of at most 30 s: {verdict} (in CPU time; wall time here is the shared machine's).\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", help="CSV with columns 'Model Size', 'Training FLOP', 'loss'")
    ap.add_argument("--drop-highest", type=int, default=5, help="highest-loss points dropped from --runs")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--skip-loop", action="store_true", help="skip the slow scipy reference loops")
    ap.add_argument("--loop-every", type=int, default=1, help="time the loops on every K-th start (scaled)")
    ap.add_argument("--big", type=int, default=100_000, help="runs in the large synthetic table (0: skip it)")
    ap.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section of bench/RESULTS.md")
    args = ap.parse_args(argv)
    rows = [bench("synthetic (Epoch law, 240 runs)", synthetic_runs(), args.n_boot, args.skip_loop, args.loop_every)]
    if args.runs:
        rows.append(bench(f"{Path(args.runs).name} (less {args.drop_highest} highest-loss)",
                          epoch_points(args.runs, args.drop_highest), args.n_boot, args.skip_loop, args.loop_every))
    text = section(rows) + (big_table(args.big) if args.big else "")
    print(text)
    if args.write:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
