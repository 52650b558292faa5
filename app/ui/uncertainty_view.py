"""The Scaling laws page's interval lines: the compute-optimal exponent's profile interval, the selected plan's loss
interval (or why there is none), and why a fit is not offered as the working law."""
from __future__ import annotations

from app.ui.laws_view import FormFit, form_prediction
from app.ui.working_law import caption
from planner.identify import cannot_plan
from planner.plan import TrainingPlan


def exponent_caption(result: FormFit, preset: str | None) -> str:
    """The line under the compute-optimal exponent: held, its 95% profile interval, or unidentified and why."""
    p = result.profiles["optimal_n_exponent"]
    if p.status == "held":
        return f"set by the held exponents ({preset})"
    if p.identified:
        return f"95% profile interval [{p.low:.3f}, {p.high:.3f}]"
    return f"unidentified, no interval: {p.note}"


def loss_caption(result: FormFit, plan: TrainingPlan) -> str:
    """The line under the selected plan's predicted loss: its 95% interval, or why there is none."""
    return caption(form_prediction(result, plan), result.no_interval)


def use_note(result: FormFit, in_force: bool) -> str:
    """What stands beside the 'Use as the working law' button: why it is disabled, or nothing."""
    if in_force:
        return "In force on every page."
    problems = cannot_plan(result.fit.degenerate)
    if problems:
        return f"Not offered: this fit cannot plan ({'; '.join(problems)}; see the warning above)."
    return ""
