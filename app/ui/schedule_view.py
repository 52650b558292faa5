"""Schedule designer logic: a plan from the designer's inputs and the N(t) curves of its first figure."""
from __future__ import annotations

import numpy as np
import pandas as pd

from planner.costs import LEDGER_COLUMNS, cost_ledgers, final_model_memory, hardware_profile
from planner.plan import Budget, TrainingPlan, make_plan, resolve_schedule
from planner.schedules import n_of_t
from planner.shapes import ModelShape

SHAPES = ("geometric", "cubic", "linear", "one_shot", "dense")  # closed forms; piecewise needs knots, not sliders
BASES = ("compute", "tokens", "steps")


def design_plan(model: ModelShape, steps: int, shape: str, final_sparsity: float, basis: str, start: float,
                end: float, every_steps: int | None, seq_len: int, batch_size: int,
                name: str = "designed") -> TrainingPlan:
    """The plan the designer describes; bad combinations raise PlannerInputError/ValueError with the reason."""
    schedule = resolve_schedule(model, steps, shape, final_sparsity, basis, start, end,
                                every_steps if shape == "geometric" else None)
    budget = Budget(tokens=steps * batch_size * seq_len, seq_len=seq_len, batch_size=batch_size, steps=steps)
    return make_plan(model, schedule, budget, name=name)


def n_curves(plan: TrainingPlan, points: int = 600) -> pd.DataFrame:
    """Long table of N(t) for the sparse run and for the dense model with the same N_avg, against tokens."""
    t = np.linspace(0.0, 1.0, points + 1)
    d = plan.derived
    sparse = n_of_t(plan.schedule.density(t), d.n_fixed, d.n_prunable)
    tokens = t * plan.budget.tokens
    return pd.concat([
        pd.DataFrame({"tokens": tokens, "params": sparse, "run": "sparse run N(t)"}),
        pd.DataFrame({"tokens": tokens, "params": np.full_like(t, d.n_avg), "run": "dense model at the same N_avg"}),
    ], ignore_index=True)


def window_tokens(plan: TrainingPlan) -> tuple[float, float]:
    """Pruning window in tokens, for the chart's shaded band."""
    return plan.schedule.start * plan.budget.tokens, plan.schedule.end * plan.budget.tokens


def training_ledgers(plan: TrainingPlan, speedup_train: float = 1.0) -> dict[str, float]:
    """The three labelled training-FLOP ledgers of the plan (hardware only matters through the sparse speedup)."""
    costs = cost_ledgers(plan, hardware_profile("h100", speedup_train=speedup_train))
    return {label: getattr(costs, column) for label, column in LEDGER_COLUMNS.items()}


MEMORY_LABELS = {"dense": "dense", "bitmask": "bitmask", "csr": "CSR", "two_four": "2:4"}


def final_memory_gb(plan: TrainingPlan, dtype: str = "bfloat16") -> dict[str, float]:
    """GB (1e9 bytes) to store the final model per format; 2:4 only when the final sparsity is exactly 0.5."""
    sparsity = 1.0 - plan.schedule.final_density
    sizes = final_model_memory(plan.model, sparsity, dtype)
    return {MEMORY_LABELS[k]: float(v) / 1e9 for k, v in sizes.items() if np.isfinite(v)}
