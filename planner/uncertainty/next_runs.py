"""What to run next: candidate runs ranked by how much they narrow the target plan's predicted-loss interval per
unit of cost, chosen greedily within a budget and returned as ready-to-train plans.

Linearised update in prediction space (an ensemble Kalman step): across the law's draws, the log-loss predictions at
the target and at every candidate run have a covariance C. Measuring a run set I with log-loss noise variances s^2
lowers the target's variance by c'R^-1 c, c = C[I, target], R = C[I, I] + diag(s^2), and leaves
C - C[:, I] R^-1 C[I, :]: the Gaussian approximation of refitting on outcomes drawn from the draws. It needs only
predictions, so any posterior's draws serve, and its spread follows the draws rather than a local gradient
(a log-space covariance of weakly identified parameters, E near 0, is dominated by tails that move no prediction).
A sparse pair is one candidate of two rows. bench/bench_next_runs.py checks it against refits.

Candidates: on a CPU budget, the validation ladder's laptop recipe (`planner.ladder.rung`: a sparse run at the
target's schedule and its dense partner at the same N_avg) at every ladder size and a grid of tokens per N_avg, costed
by `planner.laptop`; on a GPU budget, the search's family (`planner.candidates`) at the target's sparsity and dense,
costed in training GPU-hours on the profile.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri

from planner.candidates import DEFAULT_D_MODELS, ScheduleOption, candidates, law_inputs
from planner.ladder import BATCH_SIZE, SEQ_LEN, ladder_shapes, rung, rung_cpu_minutes, with_prediction
from planner.plan import Hardware, TrainingPlan
from planner.search import plan_from_candidate
from planner.uncertainty.posterior import LawPosterior

TOKENS_PER_N_AVG = tuple(np.geomspace(5, 320, 7))  # run lengths tried at every size


@dataclass(frozen=True)
class RunOptions:
    """Candidate runs: `points` one row per run (candidate id 0..C-1, a candidate's runs on consecutive rows; n,
    tokens, sparsity), `cost` per candidate, `plans` the plans of each candidate, `unit` what the cost counts."""
    points: pd.DataFrame
    cost: np.ndarray
    plans: list[list[TrainingPlan]]
    unit: str


def _points(post: LawPosterior, plans: list[list[TrainingPlan]]) -> pd.DataFrame:
    rows = []
    for c, group in enumerate(plans):
        for p in group:
            n, s = law_inputs(post.law, p.derived.n_avg, p.derived.n_final, p.schedule.final_sparsity)
            rows.append({"candidate": c, "n": n, "tokens": float(p.budget.tokens), "sparsity": s})
    return pd.DataFrame(rows)


def laptop_options(post: LawPosterior, target: TrainingPlan, ratios=TOKENS_PER_N_AVG, sizes=None,
                   min_steps: int = 100) -> RunOptions:
    """Ladder rungs of the laptop recipe (the target's proportions: `planner.ladder.ladder_shapes`, or `sizes`) at
    every size x tokens per N_avg, costed in one-thread CPU minutes; a dense target gives single dense runs."""
    parent = target.model_copy(update={"name": f"{target.name}-next"})
    plans = []
    for i, (shape, ratio) in enumerate((s, r) for s in sizes or ladder_shapes(target) for r in ratios):
        pair = [with_prediction(p) for p in rung(parent, i, *shape, SEQ_LEN, BATCH_SIZE, min_steps, ratio=ratio)]
        plans.append(pair if target.schedule.final_sparsity > 0 else pair[:1])
    return RunOptions(_points(post, plans), np.array([rung_cpu_minutes(p) for p in plans]), plans,
                      "CPU minutes (one thread)")


def gpu_options(post: LawPosterior, target: TrainingPlan, hardware: Hardware, budget: float, ratios=TOKENS_PER_N_AVG,
                d_models=DEFAULT_D_MODELS) -> RunOptions:
    """Family runs (dense, and sparse at the target's schedule) at every width x tokens per N_avg that fit
    `budget` training GPU-hours on `hardware`, one run per candidate."""
    sched = target.schedule
    sparse = sched.final_sparsity > 0
    options = [ScheduleOption(sched.shape, sched.compute_start, sched.compute_end)] if sparse else []
    df = candidates(post.law, tokens_per_param=ratios, d_models=d_models, hardware=hardware,
                    sparsities=[sched.final_sparsity] if sparse else [], schedules=options)
    df = df[df["train_gpu_hours"] <= budget].reset_index(drop=True)
    plans = [[plan_from_candidate(r, post.law, hardware, name=f"{target.name}-next{i}",
                                  seq_len=target.budget.seq_len)] for i, r in df.iterrows()]
    return RunOptions(_points(post, plans), df["train_gpu_hours"].to_numpy(float), plans,
                      f"GPU-hours on {hardware.name}")


def _groups(candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, m) row indices of each candidate's runs (consecutive rows), padded with its first, and the mask of real
    entries."""
    _, first, counts = np.unique(candidate, return_index=True, return_counts=True)
    slot = np.arange(counts.max())
    real = slot < counts[:, None]
    return first[:, None] + np.where(real, slot, 0), real


def _greedy(C, idx, real, noise, cost, budget, per_cost, max_runs, min_gain):
    """Chosen candidates and the target's log-loss variance before each and after the last: each step adds the
    affordable candidate narrowing the target's sd most (per unit of cost when `per_cost`), ignoring those that
    narrow it by less than `min_gain` of its sd, and conditions C on it."""
    eye = np.eye(idx.shape[1])
    left, taken, chosen, var = budget, np.zeros(len(idx), bool), [], [C[0, 0]]
    while len(chosen) < max_runs:
        c = np.where(real, C[0, idx], 0.0)
        R = np.where(real[:, :, None] & real[:, None, :], C[idx[:, :, None], idx[:, None, :]], 0.0) + \
            np.where(real, noise[idx], 1.0)[:, :, None] * eye
        drop = np.einsum("cm,cm->c", c, np.linalg.solve(R, c[..., None])[..., 0])
        gain = np.sqrt(C[0, 0]) - np.sqrt(np.maximum(C[0, 0] - drop, 0.0))
        ok = ~taken & (cost <= left) & (gain > min_gain * np.sqrt(C[0, 0]))
        if not ok.any():
            break
        best = int(np.argmax(np.where(ok, gain / cost if per_cost else gain, -np.inf)))
        rows = idx[best][real[best]]
        C = C - C[:, rows] @ np.linalg.solve(C[np.ix_(rows, rows)] + np.diag(noise[rows]), C[rows, :])
        taken[best], left = True, left - cost[best]
        chosen.append(best)
        var.append(max(C[0, 0], 0.0))
    return chosen, np.array(var)


def choose(post: LawPosterior, target_point, options: RunOptions, budget: float, level: float = 0.9, max_runs: int = 8,
           min_gain: float = 0.01) -> pd.DataFrame:
    """Runs to add within `budget`: greedy by expected narrowing of the target's `level` interval per unit of cost,
    or greedy by narrowing alone when that ends narrower (the budgeted-coverage rule: per-cost greed alone can
    spend a large budget on cheap runs that barely help). At most `max_runs` candidates; a candidate narrowing the
    interval by less than `min_gain` of its width is passed over (the draws' covariance has rank below their count,
    so such gains are noise). One row per chosen candidate, in order, with the width (nats) before and after."""
    pts = options.points
    n, tokens, s = (np.r_[x, pts[c].to_numpy(float)] for x, c in zip(target_point, ("n", "tokens", "sparsity")))
    logs = np.log(post.loss_draws(n, tokens, s))  # (draws, 1 + runs): column 0 is the target
    logs = logs[np.isfinite(logs).all(axis=1)]
    if len(logs) < 3:
        return pd.DataFrame(columns=["candidate", "cost", "width_before", "width_after"])
    C = np.cov(logs, rowvar=False)
    noise = np.full(len(n), max(post.rel_noise_sd ** 2, 1e-12))  # log-loss variance of one run
    idx, real = _groups(pts["candidate"].to_numpy())
    runs = [_greedy(C, idx + 1, real, noise, options.cost, budget, per_cost, max_runs, min_gain)  # C: target first
            for per_cost in (True, False)]
    chosen, var = min(runs, key=lambda r: r[1][-1])
    scale = 2 * ndtri(0.5 + level / 2) * float(post.law.predict(*target_point))  # nats per sd of log loss
    width = scale * np.sqrt(var)
    return pd.DataFrame({"candidate": np.array(chosen, int), "cost": options.cost[chosen],
                         "width_before": width[:-1], "width_after": width[1:]})


def target_point(post: LawPosterior, plan: TrainingPlan) -> tuple[float, float, float]:
    """(n in the law's count, tokens, sparsity) of a plan."""
    n, s = law_inputs(post.law, plan.derived.n_avg, plan.derived.n_final, plan.schedule.final_sparsity)
    return float(n), float(plan.budget.tokens), float(s)


def summary(chosen: pd.DataFrame, options: RunOptions) -> pd.DataFrame:
    """The chosen runs as a readable table: each plan's name, N_avg, tokens and the candidate's cost and width."""
    rows = []
    for step, r in enumerate(chosen.itertuples(), start=1):
        for p in options.plans[r.candidate]:
            rows.append({"step": step, "plan": p.name, "n_avg": p.derived.n_avg, "tokens": p.budget.tokens,
                         "final_sparsity": p.schedule.final_sparsity, "cost": r.cost,
                         "width_before": r.width_before, "width_after": r.width_after})
    return pd.DataFrame(rows)



@dataclass(frozen=True)
class NextRuns:
    """What `next_runs` chose: `chosen` (`choose`'s rows), `table` (`summary`), `plans` (the chosen candidates' plans,
    in order) and `point` (the target's `target_point`)."""
    chosen: pd.DataFrame
    table: pd.DataFrame
    plans: list[TrainingPlan]
    point: tuple[float, float, float]


def next_runs(post: LawPosterior, target: TrainingPlan, options: RunOptions, budget: float,
              max_runs: int = 8) -> NextRuns:
    """The runs among `options` that narrow `target`'s predicted loss most within `budget` (`choose`), as the CLI
    and the Runs page show them."""
    point = target_point(post, target)
    chosen = choose(post, point, options, budget, max_runs=max_runs)
    plans = [p for c in chosen["candidate"] for p in options.plans[c]]
    return NextRuns(chosen, summary(chosen, options), plans, point)
