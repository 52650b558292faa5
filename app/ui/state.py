"""What the pages share through st.session_state: the planner's inputs, the selected plan's id and the working law.

Plain keys rather than widget keys, because Streamlit drops a widget's state when its page is not shown.
"""
from __future__ import annotations

import dataclasses

import streamlit as st

from app.ui import pareto_view
from app.ui.pareto_view import PlannerInputs
from app.ui.working_law import DEFAULT, WorkingLaw
from planner.plan import TrainingPlan

INPUTS, SELECTED, LAW = "planner_inputs", "selected_plan_id", "working_law"


def working_law() -> WorkingLaw:
    """The law every page plans with: the one made the working law on the Scaling laws page, else the default
    preset (Epoch AI's replication of Chinchilla applied with N_avg)."""
    return st.session_state.get(LAW, DEFAULT)


def set_working_law(working: WorkingLaw) -> None:
    st.session_state[LAW] = working


def saved_inputs() -> PlannerInputs:
    """The Pareto page's inputs, searched under the working law."""
    inputs = st.session_state.get(INPUTS, PlannerInputs())
    return dataclasses.replace(inputs, law=working_law().key)


def save_inputs(inputs: PlannerInputs) -> None:
    st.session_state[INPUTS] = inputs


def selected_id() -> str | None:
    """The plan picked for the current inputs; a pick made under other inputs named a different plan."""
    inputs, plan_id = st.session_state.get(SELECTED, (None, None))
    return plan_id if inputs == saved_inputs() else None


def select(plan_id: str | None) -> None:
    st.session_state[SELECTED] = (saved_inputs(), plan_id)


# cache_resource, not cache_data: the answers are read, never changed, and a hit then costs no unpickling copy.
@st.cache_resource(show_spinner=False, max_entries=32)
def _search(inputs: PlannerInputs, _working: WorkingLaw):  # inputs.law is _working.key: the cache key
    return pareto_view.search(inputs, _working)


@st.cache_resource(show_spinner=False, max_entries=64)
def _plan(inputs: PlannerInputs, plan_id: str, _working: WorkingLaw):
    return pareto_view.selected_plan(inputs, _search(inputs, _working), plan_id, _working)


def search(inputs: PlannerInputs):
    """The Pareto search for these inputs under the working law, cached across pages and reruns."""
    working = working_law()
    return _search(dataclasses.replace(inputs, law=working.key), working)


def plan(inputs: PlannerInputs, plan_id: str) -> TrainingPlan:
    """A candidate's full plan (law, prediction with interval, costs), cached."""
    working = working_law()
    return _plan(dataclasses.replace(inputs, law=working.key), plan_id, working)


def current_plan() -> TrainingPlan:
    """The plan selected on the Pareto page, or the default search's lifetime-optimal plan before any visit."""
    inputs = saved_inputs()
    comp = search(inputs)
    plan_id = selected_id()
    if plan_id not in set(comp.candidates["plan_id"]):
        plan_id = comp.best["plan_id"]
    return plan(inputs, plan_id)
