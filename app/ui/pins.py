"""Plans pinned on the Pareto page to compare side by side (up to four): each keeps the candidate row it was pinned
from and its full plan, so pins made under different targets, lifetimes or hardware still sit together."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from app.ui import pareto_view as pv, schedule_view as sv
from planner.plan import TrainingPlan

MAX_PINS = 4


@dataclass(frozen=True)
class Pin:
    row: pd.Series  # the candidate row (pareto_view columns): what the comparison table reads
    plan: TrainingPlan  # its full plan: N(t) and the loss interval


def label(plan_id: str, inputs: pv.PlannerInputs) -> str:
    """The plan and the goal it was pinned under (the same plan_id names another plan at another target)."""
    goal = f"loss {inputs.target_loss:g}" if inputs.mode == "loss" else f"{pv.sci(inputs.budget_flops)} FLOP"
    return f"{plan_id} ({goal}, {pv.sci(inputs.lifetime_tokens)} tokens served)"


def frame(pins: dict[str, Pin]) -> pd.DataFrame:
    """The pinned plans as numbers, one row each (index: the pin's label): the Pareto comparison's fields, the loss
    interval, the lifetime inference tokens. Other panels add columns here."""
    rows = pd.DataFrame([p.row for p in pins.values()], index=list(pins))
    out = pv.comparison_frame(rows, intervals(pins))
    out["lifetime_inference_tokens"] = [p.plan.costs.lifetime_inference_tokens for p in pins.values()]
    return out


def intervals(pins: dict[str, Pin]) -> dict[str, tuple[float | None, float | None]]:
    return {name: (p.plan.prediction.ci_low, p.plan.prediction.ci_high) for name, p in pins.items()}


def table(pins: dict[str, Pin], dollars: bool = True) -> pd.DataFrame:
    """The pins formatted as the selected-vs-baselines table is (one column per pin)."""
    rows = pd.DataFrame([p.row for p in pins.values()], index=list(pins))
    return pv.side_by_side(rows, intervals(pins), dollars=dollars)


def curves(pins: dict[str, Pin]) -> pd.DataFrame:
    """N(t) of every pin and its flat N_avg, for the schedule chart's overlay."""
    return sv.n_curves({name: p.plan for name, p in pins.items()})
