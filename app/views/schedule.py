"""Schedule designer: shape, sparsity and window of the pruning schedule, what it does to N(t), and up to three
designs side by side."""
import streamlit as st

from app.ui import charts, downloads, memory_panel, schedule_view as sv, state
from app.ui.common import human, user_errors
from app.ui.inputs import model_shape_input
from app.ui.working_law import interval_caption

COMPARED = "sched_compared"  # {label: plan} of the designs kept for comparison

st.title("Schedule designer")
st.caption("Gradual magnitude pruning during pre-training: loss follows the average parameter count N_avg, "
           "inference cost the final count N_final.")
working = state.working_law()

with st.sidebar:
    st.header("Design")
    model = None
    with user_errors(stop=False):  # a bad custom shape is explained here; the other inputs stay
        model = model_shape_input("sched")
    shape = st.selectbox("Schedule shape", sv.SHAPES, key="sched_shape",
                         help="piecewise: your own density knots; the others are closed forms over a window")
    steps = st.number_input("Total steps", 10, 10_000_000, 11_200, step=100, key="sched_steps")
    c1, c2 = st.columns(2)
    batch = c1.number_input("Batch (sequences)", 1, 1_000_000, 4096, key="sched_batch")
    seq_len = c2.number_input("Sequence length", 1, 1_000_000, 2048, key="sched_seq")
    knots, sparsity, basis, start, end, every = None, 0.0, "compute", 0.25, 0.75, None
    if shape == "piecewise":
        text = st.text_input("Knots (fraction of training tokens : density kept)", sv.DEFAULT_KNOTS,
                             key="sched_knots", help="linear between knots, held outside; densities never rise")
        with user_errors(stop=False):
            knots = sv.parse_knots(text)
    else:
        sparsity = st.slider("Final sparsity (fraction of prunable weights removed)", 0.0, 0.95, 0.6, 0.05,
                             key="sched_sparsity", disabled=shape == "dense")
        basis = st.radio("Window given in", sv.BASES, horizontal=True, key="sched_basis",
                         help="compute: fractions of training FLOPs (the seed's 25%→75% default); tokens: fractions "
                              "of training tokens; steps: optimizer steps")
        if basis == "steps":
            start, end = st.slider("Pruning window (steps)", 0, int(steps), (int(steps) // 4, 3 * int(steps) // 4),
                                   key="sched_window_steps")
        else:
            start, end = st.slider(f"Pruning window (fraction of {basis})", 0.0, 1.0, (0.25, 0.75), 0.01,
                                   key="sched_window")
        every = st.number_input("Prune every (steps)", 1, int(steps), min(100, int(steps)), key="sched_every",
                                disabled=shape != "geometric", help="geometric: spacing of the pruning events")
    speedup = st.number_input("Sparse-phase training speedup", 1.0, 4.0, 1.0, 0.1, key="sched_speedup",
                              help="GEMM speedup once the final mask is in force (1.0: unstructured masks run dense)")

if model is None or (shape == "piecewise" and knots is None):
    st.info("Fix the input in the sidebar to see the schedule.")
    st.stop()
with user_errors():
    plan = sv.design_plan(model, int(steps), shape, 0.0 if shape == "dense" else sparsity, basis, start, end,
                          every and int(every), int(seq_len), int(batch), knots=knots, working=working,
                          speedup_train=speedup)
d, pred = plan.derived, plan.prediction
m1, m2, m3 = st.columns(3)
m1.metric("N_avg", human(d.n_avg), help="average parameter count over training: sets loss and training compute")
m2.metric("N_final", human(d.n_final), help="parameters left at the end: sets inference cost")
m3.metric("Compression", f"{d.n_avg / d.n_final:.3f}×", help="N_avg / N_final")
m4, m5, _ = st.columns(3)
m4.metric("Training tokens", human(plan.budget.tokens))
m5.metric("Predicted loss", f"{pred.loss:.3f}", help=f"nats/token under the working law: {working.label}")
m5.caption(interval_caption(working, d.n_avg, d.n_final, plan.schedule.final_sparsity, plan.budget.tokens))
st.markdown("**Training compute** in three ledgers")
st.table(sv.ledger_table(plan))
st.markdown("**Final model memory** (bf16 values; sparse formats add their index overhead)")
for col, (label, gb) in zip(st.columns(4), sv.final_memory_gb(plan).items()):
    col.metric(f"{label} (GB)", f"{gb:.3g}")
even = sv.breakeven(plan, working)
if even:
    st.markdown(f"**Break-even speedups** against the dense model of this shape at the same predicted loss "
                f"(US$, {sv.DESIGN_LIFETIME:.0e} lifetime inference tokens on an H100)")
    for col, c in zip(st.columns(4), sv.BREAKEVEN_COLUMNS):
        col.metric(c.removeprefix("breakeven_").replace("all", "every phase"), sv.format_speedup(even[c]))
    st.caption(sv.FLOP_VS_DOLLAR)
memory_panel.show(st, plan, "sched", "Memory: does this design fit, for training and for serving?")
for warning in pred.warnings:
    st.caption(f"Prediction {warning}.")
s = plan.schedule
steps_note = f"steps {s.start_step}→{s.end_step} = " if s.start_step is not None else ""
st.caption(f"Window: {steps_note}tokens {s.start:.1%}→{s.end:.1%} = compute {s.compute_start:.1%}→"
           f"{s.compute_end:.1%}.")

compared = st.session_state.setdefault(COMPARED, {})
label = f"{len(compared) + 1}: {sv.describe(plan)}"
shown = sv.shown_designs(compared, plan)
chart = charts.schedule_chart(sv.n_curves(shown), sv.window_tokens(plan))
st.altair_chart(chart, width="stretch")

st.subheader("Compare designs")
b1, b2 = st.columns(2)
b1.button("Keep this design", key="sched_keep", width="stretch",
          disabled=len(compared) >= sv.MAX_COMPARED or plan in compared.values(),
          on_click=lambda: compared.update({label: plan}),
          help=f"up to {sv.MAX_COMPARED} designs overlay the chart and sit side by side below")
b2.button("Clear kept designs", key="sched_clear", disabled=not compared, on_click=compared.clear, width="stretch")
table = sv.comparison(shown, working)
st.table(table)
d = downloads.row()
downloads.csv_button("Comparison (CSV)", lambda: sv.comparison_frame(shown), "schedule-comparison", d, index=True)
downloads.chart_buttons(chart, "schedule-chart", d)
