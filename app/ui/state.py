"""What the pages share through st.session_state: the planner's inputs and the selected plan's id.

Plain keys rather than widget keys, because Streamlit drops a widget's state when its page is not shown.
"""
from __future__ import annotations

import streamlit as st

from app.ui import pareto_view
from app.ui.pareto_view import PlannerInputs
from planner.plan import TrainingPlan

INPUTS, SELECTED = "planner_inputs", "selected_plan_id"


def saved_inputs() -> PlannerInputs:
    return st.session_state.get(INPUTS, PlannerInputs())


def save_inputs(inputs: PlannerInputs) -> None:
    st.session_state[INPUTS] = inputs


def selected_id() -> str | None:
    """The plan picked for the current inputs; a pick made under other inputs named a different plan."""
    inputs, plan_id = st.session_state.get(SELECTED, (None, None))
    return plan_id if inputs == saved_inputs() else None


def select(plan_id: str | None) -> None:
    st.session_state[SELECTED] = (saved_inputs(), plan_id)


@st.cache_data(show_spinner=False, max_entries=32)
def _search(inputs: PlannerInputs):
    return pareto_view.search(inputs)


@st.cache_data(show_spinner=False, max_entries=64)
def _plan(inputs: PlannerInputs, plan_id: str):
    return pareto_view.selected_plan(inputs, _search(inputs), plan_id)


def search(inputs: PlannerInputs):
    """The Pareto search for these inputs, cached across pages and reruns."""
    return _search(inputs)


def current_plan() -> TrainingPlan:
    """The plan selected on the Pareto page, or the default search's lifetime-optimal plan before any visit."""
    inputs = saved_inputs()
    comp = _search(inputs)
    plan_id = selected_id()
    if plan_id not in set(comp.candidates["plan_id"]):
        plan_id = comp.best["plan_id"]
    return _plan(inputs, plan_id)
