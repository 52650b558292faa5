"""Frontier benchmark and optimality of the chosen size.

1. Speed: 1,000,000 candidate plans evaluated (law + cost ledgers) and their non-dominated set extracted. Candidates:
   the default grid of widths x (dense + 5 schedules x 9 sparsities) x enough token counts. Times are the median
   (and best) of several repeats, split into evaluation and Pareto extraction (2D: loss vs lifetime FLOPs; 3D:
   effective training FLOPs, inference FLOPs per token, loss). Target: evaluation + 2D frontier <= 1 s on 2 cores.
2. Optimality: the lifetime-optimal and budget-optimal answers against a brute-force search of every width of the
   family (same sparsities, schedules and cost model), over targets and budgets whose optimum lies between 20M and
   70B parameters; and, dense with attention FLOPs off, against Sardana et al.'s continuous optimum.
Writes the `## Frontier (planner)` and `## Optimum size (planner)` sections of bench/RESULTS.md.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import cpu_model, write_section  # noqa: E402
from planner.pareto import pareto_mask  # noqa: E402
from planner.laws import default_law, sardana_optimum  # noqa: E402
from planner.search import (DEFAULT_D_MODELS, DEFAULT_SCHEDULES, DEFAULT_SPARSITIES, FAMILY_D_MODELS,  # noqa: E402
                            budget_optimal, candidates, family_shape, lifetime_optimal)

REPEATS = 5
HEADING = "## Frontier (planner)"
OPT_HEADING = "## Optimum size (planner)"
OLD_GRID = tuple(range(512, 8193, 256))  # the grid before refinement (widths 512-8192 in steps of 256)
TWO_D = ["loss", "lifetime_flops"]
THREE_D = ["train_flops_effective", "inference_flops_per_token", "loss"]


def timed(fn, repeats=REPEATS):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times)), float(min(times))


def optimality():
    """Rows (mode, case, plan, N of the brute-force optimum, chosen/brute ratio now, ratio on the old grid)."""
    rows = []
    for objective in ("flops", "usd"):
        cols = {"lifetime-optimal": objective_col(objective), "dense inference-aware": objective_col(objective),
                "dense Chinchilla-optimal": "train_flops_effective"}
        for lifetime in (0.0, 1e11, 1e12, 1e13):
            for target in np.round(np.arange(2.0, 3.61, 0.2), 2):
                kw = dict(target_loss=target, lifetime_tokens=lifetime, objective=objective)
                try:
                    brute = lifetime_optimal(d_models=FAMILY_D_MODELS, refine=False, **kw)
                except Exception:  # out of reach of the family
                    continue
                now, old = lifetime_optimal(**kw), lifetime_optimal(d_models=OLD_GRID, refine=False, **kw)
                for plan, col in cols.items():
                    n = brute.table.loc[plan, "n_total"]
                    if 20e6 <= n <= 70e9:
                        rows.append(("target", f"{objective} L={target} D_inf={lifetime:.0e}", plan, n,
                                     now.table.loc[plan, col] / brute.table.loc[plan, col],
                                     old.table.loc[plan, col] / brute.table.loc[plan, col]))
    law = default_law()
    for budget in np.geomspace(1e17, 1e25, 9):
        brute = budget_optimal(budget_flops=budget, d_models=FAMILY_D_MODELS, refine=False)
        now, old = budget_optimal(budget_flops=budget), budget_optimal(budget_flops=budget, d_models=OLD_GRID,
                                                                       refine=False)
        for i in range(2):  # reducible loss (loss - E) ratio
            n = brute.table.iloc[i]["n_total"]
            if 20e6 <= n <= 70e9:
                e = law.coefficients["E"]
                rows.append(("budget", f"C={budget:.0e}", brute.table.index[i], n,
                             (now.table.iloc[i]["loss"] - e) / (brute.table.iloc[i]["loss"] - e),
                             (old.table.iloc[i]["loss"] - e) / (brute.table.iloc[i]["loss"] - e)))
    return pd.DataFrame(rows, columns=["mode", "case", "plan", "n_total", "ratio", "ratio_old_grid"])


def objective_col(objective):
    return "lifetime_flops" if objective == "flops" else "lifetime_usd"


def sardana_ratios():
    """Chosen dense plan (N without embeddings, attention off) over Sardana's continuous optimum, by N*."""
    law = default_law().model_copy(update={"n_convention": "non_embedding"})
    rows = []
    for lifetime in (0.0, 1e11, 1e12, 1e13):
        for target in np.round(np.arange(2.0, 3.41, 0.1), 2):
            n_star, cost = sardana_optimum(law, target, lifetime)
            if 20e6 <= n_star <= 70e9:
                best = lifetime_optimal(law, target, sparsities=(0.0,), schedules=(), seq_len=0, context=0,
                                        lifetime_tokens=lifetime).best
                rows.append((n_star, best["lifetime_flops"] / cost))
    return pd.DataFrame(rows, columns=["n_star", "ratio"])


def optimality_section() -> str:
    df, sar = optimality(), sardana_ratios()
    worst_old = df.loc[df["ratio_old_grid"].idxmax()]
    span = (family_shape(OLD_GRID[0]).total, family_shape(OLD_GRID[-1]).total)
    within = df[df["n_total"].between(*span)]  # optimum inside the old grid's own range
    worst_within = within.loc[within["ratio_old_grid"].idxmax()]
    same = int((df["ratio"] == 1.0).sum())
    band = sar[sar["n_star"] < 1e9]
    lines = [
        OPT_HEADING, "",
        "`python bench/bench_frontier.py` — the lifetime-optimal, dense inference-aware and dense Chinchilla-optimal "
        "answers (cost: lifetime FLOPs or dollars; training FLOPs for Chinchilla) and the budget-optimal answers "
        "(reducible loss, loss − E), each divided by the best plan of a brute-force search over all "
        f"{len(FAMILY_D_MODELS)} widths of the family with the same sparsities, schedules and cost model. "
        f"{len(df)} cases (targets 2.0–3.6 × lifetime tokens 0–1e13 × both objectives; budgets 1e17–1e25) whose "
        "optimum lies between 20M and 70B parameters.", "",
        "| search | worst ratio | median ratio | worst case |", "| --- | ---: | ---: | --- |",
        f"| default grid ({len(DEFAULT_D_MODELS)} widths 256–9216) refined over the family | {df['ratio'].max():.6f} | "
        f"{df['ratio'].median():.6f} | the brute-force optimum itself in {same} of {len(df)} cases |",
        f"| old grid (512–8192 step 256), not refined | {df['ratio_old_grid'].max():.4f} | "
        f"{df['ratio_old_grid'].median():.4f} | {worst_old['case']}, {worst_old['plan']} (N "
        f"{worst_old['n_total']:.3g}) |",
        f"| old grid, the {len(within)} cases with the optimum inside its own range ({span[0] / 1e6:.0f}M–"
        f"{span[1] / 1e9:.0f}B) | {within['ratio_old_grid'].max():.4f} | {within['ratio_old_grid'].median():.4f} | "
        f"{worst_within['case']}, {worst_within['plan']} (N {worst_within['n_total']:.3g}) |", "",
        "Against Sardana et al.'s continuous dense optimum (attention FLOPs off, N counted without embeddings as the "
        f"FLOPs count it; {len(sar)} cases, N* 20M–70B): worst {sar['ratio'].max():.4f}, median "
        f"{sar['ratio'].median():.4f}; above N* = 1B worst {sar[sar['n_star'] >= 1e9]['ratio'].max():.4f}; "
        f"below 1B worst {band['ratio'].max():.4f}. That remaining gap is the family's own spacing, not the search: "
        "below 1B consecutive widths differ by up to ~30% in non-embedding N (depth = round(width/128)), and the "
        "continuous optimum always lies between the chosen width's neighbours (tests/test_optimum.py).", "",
    ]
    return "\n".join(lines)


def main() -> None:
    variants = 1 + len(DEFAULT_SCHEDULES) * (len(DEFAULT_SPARSITIES) - 1)
    n_tokens = -(-1_000_000 // (len(DEFAULT_D_MODELS) * variants))
    grid = np.geomspace(5, 500, n_tokens)
    kw = dict(tokens_per_param=grid, lifetime_tokens=1e12)
    candidates(**kw)  # warm-up: imports, the seed runs table, page faults
    df, eval_med, eval_min = timed(lambda: candidates(**kw))
    two, two_med, two_min = timed(lambda: pareto_mask(df[TWO_D].to_numpy()))
    three, three_med, three_min = timed(lambda: pareto_mask(df[THREE_D].to_numpy()), repeats=3)
    answer, ans_med, ans_min = timed(lambda: lifetime_optimal(target_loss=2.3, lifetime_tokens=1e12))
    n = len(df)
    machine = (f"{os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, numpy {np.__version__}, "
               f"pandas {pd.__version__}; 1-minute load average {os.getloadavg()[0]:.1f} when measured")
    lines = [
        HEADING, "",
        f"`python bench/bench_frontier.py` — {n:,} candidate plans ({len(DEFAULT_D_MODELS)} widths x {variants} "
        f"schedule variants x {n_tokens} token counts), law + all cost ledgers into one DataFrame, then the "
        f"non-dominated set. Median (best) of {REPEATS} repeats; 3D of 3.", "",
        f"Machine: {machine}.", "",
        "| step | median s | best s | result |", "| --- | ---: | ---: | --- |",
        f"| evaluate (law + ledgers + flags → DataFrame) | {eval_med:.3f} | {eval_min:.3f} | {df.shape[1]} columns |",
        f"| Pareto 2D ({', '.join(TWO_D)}) | {two_med:.3f} | {two_min:.3f} | {int(two.sum()):,} non-dominated |",
        f"| Pareto 3D ({', '.join(THREE_D)}) | {three_med:.3f} | {three_min:.3f} | {int(three.sum()):,} "
        f"non-dominated |",
        f"| **evaluate + 2D frontier** | **{eval_med + two_med:.3f}** | {eval_min + two_min:.3f} | target ≤ 1 s |",
        f"| lifetime-optimal answer at target 2.3 (grid, refinement over the family, nearest in-region plan) | "
        f"{ans_med:.3f} | {ans_min:.3f} | {len(answer.candidates):,} candidates |",
        "",
        "2D is one sort and a running minimum. 3D sweeps in order of the first objective against a staircase of the "
        "kept points and brute-forces blocks of ≤256 survivors; its cost grows with the front's size (here "
        f"{100 * three.mean():.0f}% of all candidates, since every token count of a curve trades loss against "
        "training cost).", "",
    ]
    section = "\n".join(lines)
    print(section)
    write_section(HEADING, section)
    opt = optimality_section()
    print(opt)
    write_section(OPT_HEADING, opt)


if __name__ == "__main__":
    main()
