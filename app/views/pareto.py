"""Pareto planner: every candidate plan's training cost against its inference cost, and the frontier."""
import dataclasses

import streamlit as st

from app.ui import charts, decide_view, downloads, memory_panel, pareto_view as pv, pins, state
from app.ui.assumptions import assumptions
from app.ui.common import user_errors
from app.ui.inputs import LIFETIMES, planner_inputs
from app.ui.working_law import interval_caption, loss_interval
from planner.hardware.costs import measure_matmul_flops


@st.cache_resource(show_spinner="Measuring this machine's matmul speed…")
def _machine_peak():
    return measure_matmul_flops()


st.title("Pareto planner")
working = state.working_law()
inputs = planner_inputs(state.saved_inputs(), float(working.law.predict(float("inf"), float("inf"))),
                        state.widget_generation())
if inputs.hardware == pv.THIS_MACHINE:
    inputs = dataclasses.replace(inputs, machine_peak=_machine_peak())
state.save_inputs(inputs)
problems = pv.input_problems(inputs, working)
for problem in problems:
    st.error(problem)
if problems:
    st.stop()
if inputs.units == "usd" and not pv.priced(inputs):
    st.warning("This machine has no price per hour, so every dollar cost would be $0: costs are in FLOP. Enter a "
               "$ per GPU-hour in the sidebar to cost it in US$.")
st.caption(("Every point reaches the target loss; " if inputs.mode == "loss" else
            "Every point spends the training budget; ") + "hollow triangles lie outside the validated regime. "
           f"Searched: {len(inputs.schedules)} schedules × {len(inputs.sparsities)} sparsities.")

with user_errors():
    comp = decide_view.with_probability(state.search(inputs), working, inputs)  # p_reach when the law has draws
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
units = pv.cost_units(inputs)
plans, savings = pv.versus_baselines(comp, selected, units)

# Headline first: the numbers a target change moves (read off the candidate row: no plan is built before them),
# then the chart they come from.
headline = savings.columns[len(savings.columns) // 2]  # lifetime cost (loss mode) or loss (budget mode), in %
cols = st.columns([1.3] + [1] * len(savings))
chosen = plans.iloc[0]
cols[0].metric("Selected plan: predicted loss", f"{chosen['loss']:.3f}", help="nats/token under the working law")
cols[0].caption(interval_caption(working, chosen["n_avg"], chosen["n_final"], chosen["final_sparsity"],
                                 chosen["tokens"]))
for col, (name, pct) in zip(cols[1:], savings[headline].items()):
    col.metric(f"vs {name.removeprefix('dense ')}", f"{pct:+.1f}%",
               help=f"{headline} against the {name} plan: positive means the selected plan is cheaper (or better)")
# said once about the whole search, then the pick
for note in (*comp.notes, pv.baseline_note(comp, selected, units, inputs.lifetime_tokens, LIFETIMES[-1])):
    if note:
        st.info(note)
edge = pv.edge_note(comp, selected, inputs)
if edge:
    st.warning(edge)

domain = pv.view_domain(front, ax, also=df[df["plan_id"] == selected])
shown = pv.in_view(df, ax, domain)
spec = charts.pareto_spec(df[shown], front, ax, domain, selected)
shade = "p_reach" in df and st.toggle("Shade by probability of reaching the target", key="pareto_shade")
spec = decide_view.chart(spec, df[shown], shade)
st.vega_lite_chart(spec, on_select="rerun", selection_mode=charts.SELECTION, key="pareto_chart", width="stretch")
if not shown.all():
    st.caption(f"{(~shown).sum():,} of {len(df):,} candidates lie far from the frontier, outside this frame: they are "
               f"in the All candidates CSV.")
options = ids if selected in ids else [selected, *ids]
st.session_state["pareto_pick"] = selected
st.selectbox("Selected plan (frontier; or click any point)", options, key="pareto_pick",
             on_change=lambda: state.select(st.session_state["pareto_pick"]))

st.subheader("Selected plan vs dense baselines")
st.caption(f"{headline} against each baseline; positive: the selected plan is cheaper (or better).")
intervals = {name: loss_interval(working, r["n_avg"], r["n_final"], r["final_sparsity"], r["tokens"])
             for name, r in plans.iterrows()}
table = pv.side_by_side(plans, intervals, dollars=pv.priced(inputs))
st.table(table)
if pv.breakeven_caption(comp):
    st.caption(pv.breakeven_caption(comp))
with user_errors():
    plan = state.plan(inputs, selected)  # the full plan the Export and Runs pages use: its warnings
for warning in plan.prediction.warnings:
    st.warning(warning)
memory_panel.show(st, plan, "pareto", "Memory: does the selected plan fit, for training and for serving?")
decide_view.section(inputs, working)

st.markdown("**Downloads**")
d = downloads.row()
downloads.csv_button("Frontier (CSV)", front, "pareto-frontier", d)
downloads.csv_button("All candidates (CSV)", lambda: pv.candidates_frame(df), "pareto-candidates", d)
downloads.csv_button("Comparison (CSV)", lambda: pv.comparison_frame(plans, intervals), "pareto-comparison", d,
                     index=True)
downloads.chart_buttons(spec, "pareto-chart", d)

st.subheader("Pinned plans side by side")
pinned = state.pins()
label = pins.label(selected, inputs)
b1, b2 = st.columns(2)
b1.button("Pin the selected plan", key="pareto_pin", width="stretch",
          disabled=label in pinned or len(pinned) >= pins.MAX_PINS,
          on_click=lambda: pinned.update({label: pins.Pin(pv.row(comp, selected), plan)}),
          help=f"up to {pins.MAX_PINS} plans, kept when the target, lifetime or hardware change")
b2.button("Clear pinned plans", key="pareto_unpin", disabled=not pinned, on_click=pinned.clear, width="stretch")
if pinned:
    st.table(pins.table(pinned, dollars=pv.priced(inputs)))
    overlay = charts.schedule_chart(pins.curves(pinned))
    st.altair_chart(overlay, width="stretch")
    d = downloads.row()
    downloads.csv_button("Pinned plans (CSV)", lambda: pins.frame(pinned), "pareto-pinned", d, index=True)
    downloads.chart_buttons(overlay, "pareto-pinned-chart", d)
else:
    st.caption(f"Pin up to {pins.MAX_PINS} plans (from this search or after changing the inputs) to compare them "
               f"here: their numbers side by side and their N(t) overlaid.")

with st.expander("Assumptions of the working law"):
    st.markdown("\n".join(f"- {line}" for line in assumptions(working)))
st.query_params.from_dict(state.link(inputs, selected))  # the address reproduces this view
