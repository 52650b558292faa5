"""Runs: train validation plans in subprocesses, watch them live, cancel them, compare loss with prediction."""
import streamlit as st

from app.ui import charts, downloads, next_runs_view, runs_view as rv, state
from app.ui.common import human, user_errors
from train_backend import registry

folder = rv.runs_dir()
st.title("Runs")
st.caption(f"Runs folder `{folder}` (set ${rv.RUNS_DIR_ENV} to change it). Each run is its own process and is read "
           f"back from the registry, so runs survive an app restart. At most {rv.MAX_CONCURRENT} train at once.")

choices, ladder_error = rv.launch_choices(state.current_plan())
choices |= next_runs_view.section(state.current_plan(), folder)  # runs that narrow the plan's prediction most
if ladder_error:
    st.warning(ladder_error)
c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
label = c1.selectbox("Plan to train", list(choices), key="runs_choice",
                     help="the tiny preset, or a rung of the selected plan's validation ladder (sparse runs and their "
                          "dense partners at the same N_avg)")
if c2.button("Launch", type="primary", key="runs_launch", width="stretch"):
    try:
        proc = rv.launch(choices[label], folder)
        st.session_state["runs_message"] = ("success", f"Started {choices[label].name} (process {proc.pid}).")
    except RuntimeError as exc:
        st.session_state["runs_message"] = ("error", str(exc))
    st.rerun()  # the table shows the new run (as 'starting' until it registers) and starts polling
kind, message = st.session_state.pop("runs_message", (None, None))
if kind:
    getattr(st, kind)(message)

polling = rv.anything_active(folder)


@st.fragment(run_every=2.0 if polling else None)
def live():
    """The table and the watched run, polled every 2 s while anything trains; a full rerun once all have ended
    stops the polling."""
    if polling and not rv.anything_active(folder):
        st.rerun()
    table = rv.runs_table(folder)
    if table.empty:
        st.info("No runs yet: pick a plan and press Launch.")
        return
    st.dataframe(table, hide_index=True, width="stretch", column_config=rv.TABLE_FORMAT,
                 column_order=rv.SHOWN_COLUMNS)
    registered = table[~table["run_id"].str.startswith("pid ")]
    if registered.empty:
        st.caption("The trainer is starting (importing torch takes a few seconds).")
        return
    names = dict(zip(registered["run_id"], registered["run"]))
    run_id = st.selectbox("Watch run", list(names), format_func=lambda i: f"{names[i]} ({i})", key="runs_watch")
    watch(registry.get_run(folder, run_id))
    pairs = rv.pair_table(folder)
    if not pairs.empty:
        st.subheader("Validation pairs")
        st.caption("Ladder rungs linked by their plans' `pair` field: a sparse run and its dense partner at the same "
                   "N_avg train on the same tokens; if N_avg is the right quantity, their losses match. Verdict: "
                   "*holds* when the gap's 95% interval lies within ±1% of loss, *fails* when wholly outside, "
                   f"*cannot tell* otherwise (more seeds needed). Noise: {pairs.attrs.get(rv.NOISE) or 'none yet'}.")
        st.dataframe(rv.pair_display(pairs), hide_index=True, width="stretch")
        downloads.csv_button("Pairs (CSV)", pairs, "runs-pairs")


def watch(run: dict):
    done, total = rv.progress(run)
    st.progress(min(1.0, done / total) if total else 0.0, text=f"{rv.status(run)}: step {done:,} of {total:,}")
    if rv.is_active(run) and st.button("Cancel run", key=f"cancel_{run['run_id']}"):
        st.toast("Cancelling: the trainer checkpoints and stops." if rv.cancel(folder, run["run_id"]) else
                 "The run is not running any more.")
    pred = cached_prediction(run["run_id"], run["status"])
    m1, m2, m3 = st.columns(3)
    m1.metric("Measured validation loss", "—" if run["final_val_loss"] is None else f"{run['final_val_loss']:.4f}",
              help="nats/token on the held-out split at the end of training")
    if pred is None:
        m2.metric("Predicted loss", "—", help="no prediction: the plan has none and fewer than 5 other runs finished")
    else:
        loss, low, high, source = pred
        m2.metric("Predicted loss", f"{loss:.4f}", help=f"from {source}")
        m2.caption(f"95% CI [{low:.4f}, {high:.4f}] ({source})" if low is not None else f"no interval ({source})")
        note = rv.law_note(registry.run_plan(run).law, state.working_law().law)
        if note and source.startswith("the plan's"):
            st.caption(note)
    metrics = rv.metrics_frame(run)
    if metrics.empty:
        return
    m3.metric("N_avg so far (measured)", human(metrics["n_avg"].iloc[-1], 4))
    loss_chart = charts.loss_chart(rv.loss_curves(metrics), None if pred is None else pred[:3])
    density_chart = charts.density_chart(rv.density_curves(metrics))
    for name, chart in (("loss", loss_chart), ("density", density_chart)):  # stacked: readable at laptop widths
        st.altair_chart(chart, width="stretch")
        if not rv.is_active(run):  # downloads of a finished run (a live chart changes every poll)
            downloads.chart_buttons(chart, f"run-{run['run_id']}-{name}")


@st.cache_data(show_spinner="Fitting the unified law on the other runs…", max_entries=32)
def cached_prediction(run_id: str, status: str):  # status: refit once the registry's finished runs change
    with user_errors(stop=False):
        return rv.prediction(registry.get_run(folder, run_id), folder)


live()
