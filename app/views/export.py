"""Export: the selected plan as YAML / JSON, as other stacks' files, and its scaled-down validation ladder."""
import streamlit as st

from app.ui import export_view as ev, state
from app.ui.common import human, user_errors



# The exports and the ladder depend on the plan alone (keyed by its JSON): a revisit reuses them.
@st.cache_resource(show_spinner="Writing each stack's files…", max_entries=16)
def _exports(plan_json: str, devices: int, _plan):
    return ev.target_exports(_plan, devices)


@st.cache_resource(show_spinner=False, max_entries=16)
def _ladder(plan_json: str, rungs: int, minutes: float, _plan):
    return ev.ladder(_plan, rungs, minutes)


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

st.subheader("Train it elsewhere")
st.caption("The plan as each stack's own files, with a README giving the launch command; what each cannot express "
           "exactly is listed beside its button (the same export as `python -m planner export PLAN --to TARGET`).")
devices = st.columns([1, 3])[0].number_input("Devices the batch is split over", 1, 1 << 20, 1, key="export_devices",
                                            help="sets MaxText's per_device_batch_size and litgpt's micro_batch_size")
key = ev.plan_json_bytes(plan).decode()
for target, ex in _exports(key, int(devices), plan).items():
    left, right = st.columns([2, 3])
    if isinstance(ex, str):
        left.button(ev.LABELS[target], disabled=True, key=f"dl_{target}")
        right.warning(ex)
        continue
    left.download_button(f"{ev.LABELS[target]} (zip)", ex.zip_bytes, f"{plan.name}-{target}.zip",
                         "application/zip", key=f"dl_{target}", on_click="ignore")
    right.markdown(ev.caveats_markdown(ex))
    with right.expander("Launch, and what is preserved exactly"):
        st.code(ex.launch)
        st.markdown("\n".join(f"- {x}" for x in ex.exact))

st.subheader("Validation ladder")
st.caption("Scaled-down sparse runs with dense partners at the same N_avg, small enough for this machine's CPU: "
           "if N_avg is the right quantity, each pair's losses match.")
rungs = st.slider("Rungs", 1, 3, 3, key="export_rungs")
minutes = st.number_input("CPU budget of the whole ladder (one-thread minutes)", 1.0, 10_000.0, ev.LADDER_MINUTES,
                          step=10.0, key="export_ladder_minutes",
                          help="Rungs keep the plan's tokens per N_avg; the largest sizes that fit this budget are chosen.")
with user_errors():
    ladder = _ladder(key, rungs, minutes, plan)
st.dataframe(ev.ladder_table(ladder), hide_index=True, width="stretch")
c1, c2 = st.columns(2)
c1.download_button("Download ladder (zip of YAML)", lambda: ev.ladder_zip_bytes(ladder),
                   f"{plan.name}-ladder.zip",
                   "application/zip", key="dl_ladder_zip", on_click="ignore")
c2.download_button("Download ladder (multi-document YAML)", lambda: ev.ladder_yaml_bytes(ladder),
                   f"{plan.name}-ladder.yaml", "application/x-yaml", key="dl_ladder_yaml", on_click="ignore")
