"""Runs: train validation plans in subprocesses, watch them live, cancel them, compare loss with prediction."""
import streamlit as st

from app.ui import charts, runs_view as rv, state
from app.ui.common import human, user_errors
from train_backend import registry

folder = rv.runs_dir()
st.title("Runs")
st.caption(f"Runs folder `{folder}` (set ${rv.RUNS_DIR_ENV} to change it). Each run is its own process and is read "
           f"back from the registry, so runs survive an app restart. At most {rv.MAX_CONCURRENT} train at once.")

with user_errors():
    choices = rv.launch_choices(state.current_plan())
c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
label = c1.selectbox("Plan to train", list(choices), key="runs_choice")
if c2.button("Launch", type="primary", key="runs_launch"):
    try:
        proc = rv.launch(choices[label], folder)
        st.success(f"Started {choices[label].name} (process {proc.pid}); it appears below once registered.")
    except RuntimeError as exc:
        st.error(str(exc))

table = rv.runs_table(folder)
if table.empty:
    st.info("No runs yet.")
    st.stop()
st.dataframe(table, hide_index=True, width="stretch")
run_id = st.selectbox("Watch run", table["run_id"].tolist(), key="runs_watch")
was_active = rv.is_active(registry.get_run(folder, run_id))


@st.fragment(run_every=2.0 if was_active else None)
def watch(run_id: str):
    """Polls the run folder while the run is active; a full rerun refreshes the table once it ends."""
    run = registry.get_run(folder, run_id)
    if was_active and not rv.is_active(run):
        st.rerun()
    metrics = rv.metrics_frame(run)
    step = rv.steps_done(run, metrics)
    st.progress(min(1.0, step / run["total_steps"]), text=f"{rv.status(run)}: step {step} of {run['total_steps']}")
    if rv.is_active(run) and st.button("Cancel run", key=f"cancel_{run_id}"):
        st.toast("Cancelling: the trainer checkpoints and stops." if rv.cancel(folder, run_id) else
                 "The run is not running any more.")
    pred = cached_prediction(run_id, run["status"])
    m1, m2, m3 = st.columns(3)
    m1.metric("Measured validation loss", "—" if run["final_val_loss"] is None else f"{run['final_val_loss']:.4f}")
    if pred is None:
        m2.metric("Predicted loss", "—", help="no prediction: the plan has none and fewer than 5 other runs finished")
    else:
        loss, low, high, source = pred
        m2.metric("Predicted loss", f"{loss:.4f}", help=f"from {source}")
        m2.caption(f"95% CI [{low:.4f}, {high:.4f}] ({source})" if low is not None else f"no interval ({source})")
    if not metrics.empty:
        m3.metric("N_avg so far (measured)", human(metrics["n_avg"].iloc[-1]))
        left, right = st.columns(2)
        left.altair_chart(charts.loss_chart(rv.loss_curves(metrics), None if pred is None else pred[0]),
                          width="stretch")
        right.altair_chart(charts.density_chart(rv.density_curves(metrics)), width="stretch")


@st.cache_data(show_spinner="Fitting the unified law on the other runs…", max_entries=32)
def cached_prediction(run_id: str, status: str):  # status: refit once the registry's finished runs change
    with user_errors(stop=False):
        return rv.prediction(registry.get_run(folder, run_id), folder)


watch(run_id)
