"""Break-even speedups: how much faster each phase of a sparse plan must run than on dense kernels for the plan to
cost what the cheapest dense plan at the same loss costs, and the lifetime demand from which a sparse plan wins.

Dollars are GPU-hours times one price, so the break-even holds in GPU-hours and at any price. For a sparse plan
with modelled hours H_train + H_prefill + H_decode = H and a dense baseline costing B, phase p breaks even at

    x_p = H_p(dense kernels) / (B - (H - H_p)),

the speedup of that phase over its dense-kernel time (training: the dense-equivalent ledger; serving: dense GEMMs
and dense weight bytes) with the other phases as modelled; infinite when even an instant phase p leaves the plan
dearer. x_all is the one speedup of every phase at once: sum_p H_p(dense kernels) / B.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from planner.candidates import law_inputs
from planner.hardware.costs import cost_ledgers
from planner.schedules import Schedule

PHASES = ("train", "prefill", "decode")
BREAKEVEN_COLUMNS = tuple(f"breakeven_{p}" for p in (*PHASES, "all"))
FLOP_VS_DOLLAR = ("In FLOP a sparse plan is charged only its non-zero multiplies (what ideal sparse kernels would "
                  "execute); in dollars it is charged the GPU time today's kernels take, so it wins in dollars only "
                  "once its phases run faster than on dense kernels by the break-even speedups.")


def _hours(df: pd.DataFrame, dense_kernels: bool = False) -> dict[str, np.ndarray]:
    suffix = "_dense_kernels" if dense_kernels else ""
    return {p: df[f"{p}_gpu_hours{suffix}"].to_numpy(float) for p in PHASES}


def breakeven_speedups(df: pd.DataFrame, baseline_hours: float) -> pd.DataFrame:
    """`BREAKEVEN_COLUMNS` for every row of `df` (candidates with the phase-hour columns of the cost ledgers)
    against a dense baseline costing `baseline_hours` GPU-hours; NaN on dense rows."""
    hours, dense = _hours(df), _hours(df, dense_kernels=True)
    total = sum(hours.values())
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for p in PHASES:
            room = baseline_hours - (total - hours[p])
            out[f"breakeven_{p}"] = np.where(room > 0, dense[p] / room, np.inf)
        out["breakeven_all"] = sum(dense.values()) / baseline_hours
    sparse = df["final_sparsity"].to_numpy(float) > 0
    return pd.DataFrame({k: np.where(sparse, v, np.nan) for k, v in out.items()}, index=df.index)


def against_dense_shape(plan, law, lifetime_tokens: float) -> dict[str, float] | None:
    """`BREAKEVEN_COLUMNS` of a sparse plan (a TrainingPlan with prediction and hardware) against the dense model of
    its own shape trained to the plan's predicted loss under `law`, both on the plan's hardware serving
    `lifetime_tokens`; None for a dense plan or when the dense shape cannot reach that loss."""
    if plan.schedule.final_density >= 1:
        return None
    n = sum(plan.model.n_params(law.n_convention))  # dense: every weight counts, pruned head or not
    tokens = float(law.tokens_for_loss(plan.prediction.loss, *law_inputs(law, n, n, 0.0)))
    if not np.isfinite(tokens):
        return None
    dense = SimpleNamespace(model=plan.model, schedule=Schedule(shape="dense"),  # what cost_ledgers reads of a plan
                            budget=SimpleNamespace(tokens=tokens, seq_len=plan.budget.seq_len))
    base = cost_ledgers(dense, plan.hardware, lifetime_tokens)
    mine = cost_ledgers(plan, plan.hardware, lifetime_tokens).model_dump()
    row = pd.DataFrame([{**mine, "final_sparsity": 1.0 - plan.schedule.final_density}])
    return breakeven_speedups(row, base.train_gpu_hours + base.inference_gpu_hours).iloc[0].to_dict()


def with_breakeven(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with break-even columns against its cheapest dense row (lifetime GPU-hours, hence dollars)."""
    dense = df[df["final_sparsity"] == 0]
    if dense.empty:
        return df
    base = float((sum(_hours(dense).values())).min())
    return pd.concat([df, breakeven_speedups(df, base)], axis=1)


def sparse_wins_from(df: pd.DataFrame, train: str, infer: str, lifetime_tokens: float,
                     grid=np.geomspace(1e6, 1e20, 561)) -> float | None:
    """The smallest lifetime demand on `grid` at which the cheapest sparse row costs less than the cheapest dense row
    (costs `train` + `infer` columns; inference scales with the lifetime tokens the table was made at); None when no
    demand on the grid makes a sparse plan cheaper."""
    if not lifetime_tokens > 0:
        return None
    sparse = df["final_sparsity"].to_numpy(float) > 0
    fixed, per_token = df[train].to_numpy(float), df[infer].to_numpy(float) / lifetime_tokens
    cost = fixed[:, None] + per_token[:, None] * grid[None, :]
    if not sparse.any() or sparse.all():
        return None
    wins = cost[sparse].min(axis=0) < cost[~sparse].min(axis=0) * (1 - 1e-9)
    return float(grid[np.argmax(wins)]) if wins.any() else None


def closest_sparse(df: pd.DataFrame) -> pd.Series | None:
    """The sparse row with the smallest all-phase break-even speedup (the one nearest to beating dense)."""
    if "breakeven_all" not in df or not (df["final_sparsity"] > 0).any():
        return None
    return df.loc[df["breakeven_all"].idxmin()]


def format_speedup(x: float) -> str:
    """A break-even speedup as shown: '—' for a dense plan (NaN), 'unreachable' when no speedup of that phase alone
    suffices (infinite), else '1.234×' (three significant figures from 10× on)."""
    return "—" if x != x else "unreachable" if not np.isfinite(x) else f"{x:.3f}×" if x < 10 else f"{x:.3g}×"


def speedups_text(row: pd.Series) -> str:
    """'training 1.8×, prefill unreachable, decode 4.2× (every phase at once 1.6×)'."""
    f = format_speedup
    return (f"training {f(row['breakeven_train'])}, prefill {f(row['breakeven_prefill'])}, decode "
            f"{f(row['breakeven_decode'])} (every phase at once {f(row['breakeven_all'])})")


def dense_wins_note(df: pd.DataFrame, train: str, infer: str, lifetime_tokens: float, units: str,
                    largest_offered: float | None = None) -> str:
    """What would make a sparse plan win when the search picked a dense one: true at these inputs, never advice
    past what can be followed."""
    start = "No sparse candidate beats the best dense model at these inputs."
    at, demand = sparse_wins_from(df, train, infer, lifetime_tokens), ""
    if at is not None and at > lifetime_tokens:
        beyond = largest_offered is not None and at > largest_offered
        demand = (f" A sparse plan would be cheaper from about {at:.2g} lifetime inference tokens"
                  + (f", beyond the largest demand offered here ({largest_offered:.0e})." if beyond else "."))
    elif at is None:
        demand = f" No lifetime inference demand up to {1e20:.0e} tokens makes a sparse plan cheaper at these speedups."
    closest = closest_sparse(df)
    if units != "usd" or closest is None:
        return start + demand
    return (start + demand + f" In US$ the sparse plan nearest to breaking even (d_model {closest['d_model']:.0f}, "
            f"{closest['final_sparsity']:.0%} sparse) does so when it runs faster than on dense kernels by: "
            f"{speedups_text(closest)}. " + FLOP_VS_DOLLAR)


def json_ready(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with infinite break-even speedups written 'unreachable' (JSON has no infinity; null stays 'dense')."""
    cols = [c for c in BREAKEVEN_COLUMNS if c in df]
    if not cols:
        return df
    return df.assign(**{c: df[c].astype(object).where(~np.isinf(df[c].to_numpy(float)), "unreachable") for c in cols})
