"""Benchmark the approach-3 fit: batched multi-start vs a plain scipy loop, and 1000 bootstrap refits.

    python bench/bench_fit.py                          # synthetic 240 runs from the Epoch law
    python bench/bench_fit.py --runs data.csv          # also a CSV with columns 'Model Size', 'Training FLOP', loss
    python bench/bench_fit.py --runs data.csv --write  # and record the figures in bench/RESULTS.md

For a --runs CSV, tokens = FLOP / (6 * size) and the 5 highest-loss points are dropped, as the Epoch replication
does with the points it extracted from the Chinchilla paper.
"""
from __future__ import annotations

import argparse
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


def csv_runs(path, drop_highest=5) -> pd.DataFrame:
    raw = pd.read_csv(path)
    raw = raw.sort_values("loss").iloc[:len(raw) - drop_highest]
    size = raw["Model Size"].to_numpy(float)
    return pd.DataFrame({"n": size, "tokens": raw["Training FLOP"].to_numpy(float) / (6 * size),
                         "loss": raw["loss"].to_numpy(float)})


def scipy_loop(table):
    """The reference: one scipy L-BFGS-B call per grid start on the same objective and gradient."""
    prob = problem("chinchilla", table, {})
    best = np.inf
    t0 = time.perf_counter()
    for start in start_grid("chinchilla", "chinchilla"):
        res = minimize(lambda th: tuple(v[0] for v in evaluate(th, prob)), start, jac=True, method="L-BFGS-B")
        best = min(best, float(res.fun))
    return time.perf_counter() - t0, best


def bench(name, runs, n_boot, skip_loop, repeats=5):
    table = load_runs(runs, "chinchilla")
    load = os.getloadavg()[0]
    walls, cpus = [], []
    for _ in range(repeats):  # the median of several: other jobs and the host make single timings noisy
        t0, c0 = time.perf_counter(), time.process_time()
        fit = LawFitter("chinchilla", grid="chinchilla").fit(table)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    t_fit = float(np.median(walls))
    t0 = time.perf_counter()
    boot = bootstrap(table, "chinchilla", n_boot=n_boot, seed=0, fit=fit)
    t_boot = time.perf_counter() - t0
    t_loop, loop_best = (np.nan, np.nan) if skip_loop else scipy_loop(table)
    row = {"data": name, "runs": len(table), "starts": fit.n_starts, "batched_s": t_fit, "batched_best_s": min(walls),
           "batched_cpu_s": float(np.median(cpus)), "load": load, "loop_s": t_loop,
           "speedup": t_loop / t_fit, "batched_best": fit.objective, "loop_best": loop_best,
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
             "| data | runs | load (1 min) | batched fit, wall s [best] | batched fit, CPU s | scipy loop (s) | "
             "speedup | best objective: batched / loop | starts at best (rel 1e-4) | capped (1000 it) | "
             "bootstrap refits | bootstrap (s) | N_opt exponent [95% CI] |", "|" + "---|" * 13]
    for r in rows:
        lo, hi = r["exponent_ci"]
        lines.append(f"| {r['data']} | {r['runs']} | {r['load']:.1f} | {r['batched_s']:.2f} [{r['batched_best_s']:.2f}] "
                     f"| {r['batched_cpu_s']:.2f} | {r['loop_s']:.1f} | {r['speedup']:.1f}x "
                     f"| {r['batched_best']:.10g} / {r['loop_best']:.10g} | {r['at_best']}/{r['starts']} | "
                     f"{r['capped']} | {r['boot_n']} | {r['boot_s']:.2f} | {r['exponent']:.4f} [{lo:.3f}, {hi:.3f}] |")
    epoch = get_law("epoch-replication").params
    slowest = max(r["batched_s"] for r in rows)
    verdict = "met" if slowest <= 1.0 else f"NOT met: the slower dataset's median fit takes {slowest:.2f} s"
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



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", help="CSV with columns 'Model Size', 'Training FLOP', 'loss'")
    ap.add_argument("--drop-highest", type=int, default=5, help="highest-loss points dropped from --runs")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--skip-loop", action="store_true", help="skip the slow scipy reference loop")
    ap.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section of bench/RESULTS.md")
    args = ap.parse_args(argv)
    rows = [bench("synthetic (Epoch law, 240 runs)", synthetic_runs(), args.n_boot, args.skip_loop)]
    if args.runs:
        rows.append(bench(f"{Path(args.runs).name} (less {args.drop_highest} highest-loss)",
                          csv_runs(args.runs, args.drop_highest), args.n_boot, args.skip_loop))
    text = section(rows)
    print(text)
    if args.write:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
