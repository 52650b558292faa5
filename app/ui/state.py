"""What the pages share through st.session_state: the planner's inputs and the selected plan's id.

Plain keys rather than widget keys, because Streamlit drops a widget's state when its page is not shown.
"""
from __future__ import annotations

import streamlit as st

from app.ui.pareto_view import PlannerInputs

INPUTS, SELECTED = "planner_inputs", "selected_plan_id"


def saved_inputs() -> PlannerInputs:
    return st.session_state.get(INPUTS, PlannerInputs())


def save_inputs(inputs: PlannerInputs) -> None:
    st.session_state[INPUTS] = inputs


def selected_id() -> str | None:
    return st.session_state.get(SELECTED)


def select(plan_id: str | None) -> None:
    st.session_state[SELECTED] = plan_id
