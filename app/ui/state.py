"""What the pages share through st.session_state: the planner's inputs, the selected plan's id and the working law.

Plain keys rather than widget keys, because Streamlit drops a widget's state when its page is not shown.
"""
from __future__ import annotations

import dataclasses

import streamlit as st

from app.ui import pareto_view, session
from app.ui.pareto_view import PlannerInputs
from app.ui.pins import Pin
from app.ui.working_law import DEFAULT, WorkingLaw
from planner.errors import PlannerInputError
from planner.plan import TrainingPlan

INPUTS, SELECTED, LAW, PINS = "planner_inputs", "selected_plan_id", "working_law", "pareto_pins"
LINK_ERROR, GENERATION = "link_error", "inputs_generation"


def working_law() -> WorkingLaw:
    """The law every page plans with: the one made the working law on the Scaling laws page, else the default
    preset (Epoch AI's replication of Chinchilla applied with N_avg)."""
    return st.session_state.get(LAW, DEFAULT)


def set_working_law(working: WorkingLaw) -> None:
    st.session_state[LAW] = working


def saved_inputs() -> PlannerInputs:
    """The Pareto page's inputs, searched under the working law (a new session opened from a link: the link's)."""
    if INPUTS not in st.session_state:
        _from_link()
    return dataclasses.replace(st.session_state[INPUTS], law=working_law().key)


def _from_link() -> None:
    try:
        inputs, plan_id = session.from_query(st.query_params.to_dict())
    except PlannerInputError as exc:
        st.session_state[LINK_ERROR] = str(exc)
        inputs, plan_id = PlannerInputs(), None
    st.session_state[INPUTS] = inputs
    if plan_id:
        st.session_state[SELECTED] = (dataclasses.replace(inputs, law=working_law().key), plan_id)


def link(inputs: PlannerInputs, plan_id: str | None) -> dict[str, str]:
    """Query parameters that reproduce this view of the Pareto page."""
    return session.to_query(inputs, plan_id)


def pins() -> dict[str, Pin]:
    """Plans pinned on the Pareto page, by label (app.ui.pins)."""
    return st.session_state.setdefault(PINS, {})


def session_file():
    """This session as a file, made when the Save button is clicked: the working law, the Pareto page's inputs,
    the pick and the pins (read now, in the script's run)."""
    inputs, working, plan_id, pinned = saved_inputs(), working_law(), selected_id(), dict(pins())
    return lambda: session.session_json(inputs, working, plan_id, pinned)


def load_upload() -> None:
    """The Load button's callback: the uploaded session replaces this one, or a one-line error says why not."""
    upload = st.session_state.get("session_upload")
    if upload is None:
        return
    try:
        load(upload.getvalue(), upload.name)
        st.session_state["session_message"] = ("success", f"Loaded {upload.name}.")
    except PlannerInputError as exc:
        st.session_state["session_message"] = ("error", str(exc))


def load(data: bytes, name: str) -> None:
    """Replace this session by a saved one; a bad file raises PlannerInputError naming it. The Pareto page's
    widgets are made anew so they show the loaded inputs."""
    inputs, working, plan_id, pinned = session.load_session(data, name)
    st.session_state[LAW], st.session_state[INPUTS], st.session_state[PINS] = working, inputs, pinned
    st.session_state[SELECTED] = (inputs, plan_id)
    st.session_state[GENERATION] = st.session_state.get(GENERATION, 0) + 1


def widget_generation() -> str:
    """'' until a session is loaded, then '~1', '~2'...: the suffix of the Pareto page's widget keys."""
    n = st.session_state.get(GENERATION, 0)
    return f"~{n}" if n else ""


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
