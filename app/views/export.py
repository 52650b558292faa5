"""Export: the selected plan as YAML / JSON, and its scaled-down validation ladder."""
import streamlit as st

from app.ui import export_view as ev, state
from app.ui.common import human, user_errors

st.title("Export")
with user_errors():
    plan = state.current_plan()
st.markdown(f"**{plan.name}** — {plan.model.n_layer} layers × d_model {plan.model.d_model}, final sparsity "
            f"{plan.schedule.final_sparsity:.0%} ({plan.schedule.shape}), {human(plan.budget.tokens)} tokens, "
            f"predicted loss {plan.prediction.loss:.3f}. Select another plan on the Pareto planner page.")
p = plan.prediction  # the working law (state.working_law) is the plan's law; a fitted one bounds the prediction
st.caption(f"Law: {state.working_law().label}"
           + ("" if p.ci_low is None else f"; 95% CI [{p.ci_low:.3f}, {p.ci_high:.3f}]"))

c1, c2 = st.columns(2)
c1.download_button("Download plan (YAML)", ev.plan_yaml_bytes(plan), f"{plan.name}.yaml", "application/x-yaml",
                   key="dl_yaml", on_click="ignore", type="primary")
c2.download_button("Download plan (JSON)", ev.plan_json_bytes(plan), f"{plan.name}.json", "application/json",
                   key="dl_json", on_click="ignore")
with st.expander("Plan YAML", expanded=False):
    st.code(ev.plan_yaml_bytes(plan).decode(), language="yaml")

st.subheader("Validation ladder")
st.caption("Scaled-down sparse runs with dense partners at the same N_avg, small enough for this machine's CPU: "
           "if N_avg is the right quantity, each pair's losses match.")
rungs = st.slider("Rungs", 1, 3, 3, key="export_rungs")
with user_errors():
    ladder = ev.ladder(plan, rungs)
st.dataframe(ev.ladder_table(ladder), hide_index=True, width="stretch")
c1, c2 = st.columns(2)
c1.download_button("Download ladder (zip of YAML)", ev.ladder_zip_bytes(ladder), f"{plan.name}-ladder.zip",
                   "application/zip", key="dl_ladder_zip", on_click="ignore")
c2.download_button("Download ladder (multi-document YAML)", ev.ladder_yaml_bytes(ladder),
                   f"{plan.name}-ladder.yaml", "application/x-yaml", key="dl_ladder_yaml", on_click="ignore")
