"""Schedule designer logic: a plan from the designer's inputs (closed-form shapes or piecewise knots), its predicted
loss under the working law, the N(t) curves of its first figure, and the side-by-side comparison of designs."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from app.ui.common import error_message, human
from app.ui.pareto_view import sci
from app.ui.working_law import DEFAULT, WorkingLaw, prediction_at
from planner.hardware.costs import LEDGER_COLUMNS, cost_ledgers, final_model_memory, hardware_profile
from planner.errors import PlannerInputError
from planner.hardware.breakeven import (BREAKEVEN_COLUMNS, FLOP_VS_DOLLAR, against_dense_shape,  # noqa: F401
                                        format_speedup)
from planner.plan import Budget, Prediction, TrainingPlan, make_plan, piecewise_schedule, resolve_schedule
from planner.schedules import n_of_t
from planner.shapes import ModelShape
from planner.uncertainty import plan_counts

SHAPES = ("geometric", "cubic", "linear", "one_shot", "piecewise", "dense")
BASES = ("compute", "tokens", "steps")
MAX_COMPARED = 3
DEFAULT_KNOTS = "0:1, 0.25:1, 0.5:0.6, 0.75:0.4, 1:0.4"

LEDGER_HELP = {
    "dense-equivalent": "What masked training executes: dense GEMMs over weights that are partly zero, "
                        "D × (6 N_dense + attention). What a GPU without sparse kernels spends.",
    "effective": "The non-zero FLOPs, D × (6 N_avg + attention): what ideal sparse kernels would execute, and the "
                 "compute C = 6 N_avg D the unified law is written in.",
    "wall-clock-equivalent": "Dense-equivalent with the sparse phase (after the window, final mask in force) "
                             "divided by the training speedup: what sets GPU-hours. Inside the window masks change "
                             "every few steps and run dense.",
}


def parse_knots(text: str) -> list[tuple[float, float]]:
    """'0:1, 0.5:0.6, 1:0.4' -> [(0, 1), (0.5, 0.6), (1, 0.4)]: (fraction of training tokens, density kept)."""
    knots = []
    for item in filter(None, (p.strip() for p in re.split(r"[,;\n]", text))):
        t, sep, d = item.partition(":")
        try:
            knots.append((float(t), float(d)))
        except ValueError:
            raise PlannerInputError(f"Knots: {item!r} is not t:density (e.g. 0.5:0.6)") from None
        if not sep:
            raise PlannerInputError(f"Knots: {item!r} is not t:density (e.g. 0.5:0.6)")
    return knots


def design_plan(model: ModelShape, steps: int, shape: str, final_sparsity: float, basis: str, start: float,
                end: float, every_steps: int | None, seq_len: int, batch_size: int, name: str = "designed",
                knots: list[tuple[float, float]] | None = None, working: WorkingLaw = DEFAULT,
                speedup_train: float = 1.0) -> TrainingPlan:
    """The plan the designer describes, with its predicted loss under the working law and its costs on an H100
    (hardware matters to the FLOP ledgers only through the sparse-phase speedup). Bad combinations raise
    PlannerInputError/ValueError with the reason."""
    if shape == "piecewise":
        try:
            schedule = piecewise_schedule(model, knots or [])
        except ValueError as exc:  # the knots' rule, said as the field the designer typed
            raise PlannerInputError(f"Knots: {error_message(exc)}") from None
    else:
        schedule = resolve_schedule(model, steps, shape, final_sparsity, basis, start, end,
                                    every_steps if shape == "geometric" else None)
    budget = Budget(tokens=steps * batch_size * seq_len, seq_len=seq_len, batch_size=batch_size, steps=steps)
    draft = make_plan(model, schedule, budget, working.law.n_convention, name=name)
    hardware = hardware_profile("h100", speedup_train=speedup_train)
    return draft.model_copy(update={"law": working.law, "prediction": predict(draft, working), "hardware": hardware,
                                    "costs": cost_ledgers(draft, hardware)})


def predict(plan: TrainingPlan, working: WorkingLaw) -> Prediction:
    """The working law's loss at the plan's (N, D), with its interval inside the law's region."""
    return prediction_at(working, *plan_counts(plan))


def n_curves(plans: dict[str, TrainingPlan], points: int = 600) -> pd.DataFrame:
    """Long table of N(t) and of the flat N_avg line of every design, against training tokens."""
    t = np.linspace(0.0, 1.0, points + 1)
    frames = []
    for label, plan in plans.items():
        d = plan.derived
        tokens = t * plan.budget.tokens
        frames += [pd.DataFrame({"tokens": tokens, "params": n_of_t(plan.schedule.density(t), d.n_fixed,
                                                                    d.n_prunable), "design": label, "line": "N(t)"}),
                   pd.DataFrame({"tokens": tokens, "params": np.full_like(t, d.n_avg), "design": label,
                                 "line": "N_avg (dense model at the same average)"})]
    return pd.concat(frames, ignore_index=True)


def window_tokens(plan: TrainingPlan) -> tuple[float, float]:
    """Pruning window in tokens, for the chart's shaded band."""
    return plan.schedule.start * plan.budget.tokens, plan.schedule.end * plan.budget.tokens


def training_ledgers(plan: TrainingPlan) -> dict[str, float]:
    """The three labelled training-FLOP ledgers of the plan."""
    return {label: getattr(plan.costs, column) for label, column in LEDGER_COLUMNS.items()}


def ledger_table(plan: TrainingPlan) -> pd.DataFrame:
    """The ledgers with what each one counts, for reading side by side."""
    return pd.DataFrame({"FLOP": [sci(v) for v in training_ledgers(plan).values()],
                         "what it counts": list(LEDGER_HELP.values())}, index=list(LEDGER_HELP))


MEMORY_LABELS = {"dense": "dense", "bitmask": "bitmask", "csr": "CSR", "two_four": "2:4"}


def final_memory_gb(plan: TrainingPlan, dtype: str = "bfloat16") -> dict[str, float]:
    """GB (1e9 bytes) to store the final model per format; 2:4 only when the final sparsity is exactly 0.5."""
    sparsity = 1.0 - plan.schedule.final_density
    sizes = final_model_memory(plan.model, sparsity, dtype)
    return {MEMORY_LABELS[k]: float(v) / 1e9 for k, v in sizes.items() if np.isfinite(v)}


DESIGN_LIFETIME = 1e12  # lifetime inference tokens the designer prices break-even at (the CLI's default)


def breakeven(plan: TrainingPlan, working: WorkingLaw = DEFAULT) -> dict[str, float] | None:
    """Break-even speedups of a sparse design against the dense model of the same shape at the same predicted loss
    under the working law, serving DESIGN_LIFETIME tokens (`planner.hardware.breakeven.against_dense_shape`)."""
    return against_dense_shape(plan, working.law, DESIGN_LIFETIME)


def loss_text(p: Prediction) -> str:
    return f"{p.loss:.3f}" + ("" if p.ci_low is None else f" [{p.ci_low:.3f}, {p.ci_high:.3f}]")


def describe(plan: TrainingPlan) -> str:
    """A short label of a design: shape, sparsity, window in compute."""
    s = plan.schedule
    if s.shape == "dense":
        return f"{plan.model.d_model}d dense"
    return f"{plan.model.d_model}d {s.shape} {1 - s.final_density:.0%} @ {s.compute_start:.0%}→{s.compute_end:.0%}"


def comparison(plans: dict[str, TrainingPlan], working: WorkingLaw = DEFAULT) -> pd.DataFrame:
    """Designs side by side (one column each): counts, predicted loss with its interval, ledgers, memory, break-even
    speedups against the dense model of the same shape at the same loss."""
    rows = {}
    for label, plan in plans.items():
        d = plan.derived
        col = {"schedule": describe(plan), "N_avg (parameters)": human(d.n_avg, 4),
               "N_final (parameters)": human(d.n_final, 4),
               "compression N_avg / N_final": f"{d.n_avg / d.n_final:.3f}×",
               "training tokens": human(plan.budget.tokens, 4),
               "predicted loss [95% CI] (nats/token)": loss_text(plan.prediction)}
        col |= {f"training FLOP, {k}": sci(v) for k, v in training_ledgers(plan).items()}
        col |= {f"final memory, {k} (GB)": f"{v:.3g}" for k, v in final_memory_gb(plan).items()}
        even = breakeven(plan, working) or {}
        col |= {f"break-even speedup, {c.removeprefix('breakeven_').replace('all', 'every phase')}":
                format_speedup(even.get(c, float("nan"))) for c in BREAKEVEN_COLUMNS}
        rows[label] = col
    return pd.DataFrame(rows).fillna("—")


THIS_DESIGN = "this design"


def shown_designs(kept: dict[str, TrainingPlan], plan: TrainingPlan) -> dict[str, TrainingPlan]:
    """The kept designs and the current one, last so its line is drawn on top; a current design that is one of the
    kept ones is that design, marked, not a second identical line and column."""
    same = next((label for label, p in kept.items() if p == plan), None)
    if same is None:
        return {**kept, THIS_DESIGN: plan}
    return {f"{label} ({THIS_DESIGN})" if label == same else label: p for label, p in kept.items()}


def comparison_frame(plans: dict[str, TrainingPlan]) -> pd.DataFrame:
    """The designs as numbers, one row each, for the CSV (the table on the page is formatted text)."""
    rows = {}
    for label, plan in plans.items():
        d, p = plan.derived, plan.prediction
        rows[label] = {"schedule": describe(plan), "n_avg": d.n_avg, "n_final": d.n_final,
                       "compression": d.n_avg / d.n_final, "tokens": plan.budget.tokens, "loss": p.loss,
                       "loss_ci_low": p.ci_low, "loss_ci_high": p.ci_high,
                       **{f"train_flops_{k}": v for k, v in training_ledgers(plan).items()},
                       **{f"final_memory_gb_{k}": v for k, v in final_memory_gb(plan).items()}}
    return pd.DataFrame(rows).T
