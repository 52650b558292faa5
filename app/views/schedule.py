"""Schedule designer: shape, sparsity and window of the pruning schedule, and what it does to N(t)."""
import streamlit as st

from app.ui import charts
from app.ui.common import human, user_errors
from app.ui.inputs import model_shape_input
from app.ui.schedule_view import BASES, SHAPES, design_plan, final_memory_gb, n_curves, training_ledgers, \
    window_tokens

st.title("Schedule designer")
st.caption("Gradual magnitude pruning during pre-training: loss follows the average parameter count N_avg, "
           "inference cost the final count N_final.")

left, right = st.columns([1, 2.2], gap="large")
with left:
    with user_errors():
        model = model_shape_input("sched")
    shape = st.selectbox("Schedule shape", SHAPES, key="sched_shape")
    sparsity = st.slider("Final sparsity (fraction of prunable weights removed)", 0.0, 0.95, 0.6, 0.05,
                         key="sched_sparsity", disabled=shape == "dense")
    c1, c2, c3 = st.columns(3)
    steps = c1.number_input("Total steps", 10, 10_000_000, 11_200, step=100, key="sched_steps")
    batch = c2.number_input("Batch (sequences)", 1, 1_000_000, 4096, key="sched_batch")
    seq_len = c3.number_input("Sequence length", 1, 1_000_000, 2048, key="sched_seq")
    basis = st.radio("Window given in", BASES, horizontal=True, key="sched_basis",
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

with right, user_errors():
    plan = design_plan(model, int(steps), shape, 0.0 if shape == "dense" else sparsity, basis, start, end,
                       int(every), int(seq_len), int(batch))
    d = plan.derived
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("N_avg", human(d.n_avg), help="average parameter count over training: sets loss and training compute")
    m2.metric("N_final", human(d.n_final), help="parameters left at the end: sets inference cost")
    m3.metric("Compression", f"{d.n_avg / d.n_final:.3f}×", help="N_avg / N_final")
    m4.metric("Training tokens", human(plan.budget.tokens))
    st.markdown("**Training compute** in three ledgers (FLOP)")
    for col, (label, value) in zip(st.columns(3), training_ledgers(plan, speedup).items()):
        col.metric(label, f"{value:.3g}")
    st.markdown("**Final model memory** (bf16 values; sparse formats add their index overhead)")
    for col, (label, gb) in zip(st.columns(4), final_memory_gb(plan).items()):
        col.metric(f"{label} (GB)", f"{gb:.3g}")
    st.altair_chart(charts.schedule_chart(n_curves(plan), window_tokens(plan)), width="stretch")
    s = plan.schedule
    st.caption(f"Window: steps {s.start_step}→{s.end_step} = tokens {s.start:.1%}→{s.end:.1%} = "
               f"compute {s.compute_start:.1%}→{s.compute_end:.1%}.")
