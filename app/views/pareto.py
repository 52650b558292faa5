"""Pareto planner: every candidate plan's training cost against its inference cost, and the frontier."""
import dataclasses

import streamlit as st

from app.ui import charts, pareto_view as pv, state
from app.ui.common import user_errors
from app.ui.inputs import planner_inputs
from planner.costs import measure_matmul_flops


@st.cache_resource(show_spinner="Measuring this machine's matmul speed…")
def _machine_peak():
    return measure_matmul_flops()


st.title("Pareto planner")
inputs = planner_inputs(state.saved_inputs())
if inputs.hardware == pv.THIS_MACHINE:
    inputs = dataclasses.replace(inputs, machine_peak=_machine_peak())
state.save_inputs(inputs)
st.caption("Law: Epoch AI's replication of Chinchilla applied with N_avg (the unified law). "
           + ("Every point reaches the target loss; " if inputs.mode == "loss" else
              "Every point spends the training budget; ") + "hollow triangles lie outside the validated regime.")

with user_errors():
    comp = state.search(inputs)
df, front = comp.candidates, comp.frontier
ax = pv.axes(inputs)
ids = front["plan_id"].tolist()
clicked = pv.clicked_plan(st.session_state.get("pareto_chart"))
if clicked and clicked != st.session_state.get("pareto_last_click"):  # a new click wins over the selectbox
    st.session_state["pareto_last_click"] = clicked
    state.select(clicked)
if state.selected_id() not in set(df["plan_id"]):  # first visit, or the inputs changed the candidates
    state.select(comp.best["plan_id"])  # the lifetime-optimal (or lowest-loss) plan
selected = state.selected_id()
chart_col, side = st.columns([3, 2], gap="large")
with chart_col:
    st.vega_lite_chart(charts.pareto_spec(df, front, ax, pv.view_domain(front, ax), selected),
                       on_select="rerun", selection_mode=charts.SELECTION, key="pareto_chart", width="stretch")
    options = ids if selected in ids else [selected, *ids]
    st.session_state["pareto_pick"] = selected
    st.selectbox("Selected plan (frontier; or click any point)", options, key="pareto_pick",
                 on_change=lambda: state.select(st.session_state["pareto_pick"]))
with side:
    plans, savings = pv.versus_baselines(comp, selected, inputs.units)
    st.subheader("Selected plan vs dense baselines")
    headline = savings.columns[len(savings.columns) // 2]  # lifetime cost (loss mode) or loss (budget mode), in %
    st.caption(f"{headline} against each baseline; positive: the selected plan is cheaper (or better).")
    for col, (name, pct) in zip(st.columns(len(savings)), savings[headline].items()):
        col.metric(f"vs {name}", f"{pct:+.1f}%")
    st.table(pv.side_by_side(plans))
    with user_errors(stop=False):
        plan = state.current_plan()
        for warning in plan.prediction.warnings:
            st.warning(warning)
