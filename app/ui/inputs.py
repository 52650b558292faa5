"""Input widgets shared by several pages (model shape). Widgets live here, numbers come from planner."""
from __future__ import annotations

import streamlit as st

from app.ui.pareto_view import HARDWARE_CHOICES, SCHEDULE_CHOICES, SEED_SCHEDULE, THIS_MACHINE, PlannerInputs, \
    pattern_speedups
from planner.shapes import PRESETS, ModelShape

CUSTOM = "custom"


def model_shape_input(key: str, default: str = "llama2-1b") -> ModelShape:
    """A preset shape, or a custom one from five numbers (bad combinations raise ValueError naming the field)."""
    names = [*PRESETS, CUSTOM]
    choice = st.selectbox("Model shape", names, index=names.index(default), key=f"{key}_preset",
                          help="Llama-style decoder; presets are the seed's 70M and 1B configurations and CPU sizes")
    if choice != CUSTOM:
        return PRESETS[choice]
    base = PRESETS[default]
    c1, c2 = st.columns(2)
    n_layer = c1.number_input("Layers", 1, 256, base.n_layer, key=f"{key}_n_layer")
    d_model = c2.number_input("d_model", 8, 65536, base.d_model, step=64, key=f"{key}_d_model")
    n_head = c1.number_input("Heads", 1, 512, base.n_head, key=f"{key}_n_head")
    d_ff = c2.number_input("d_ff", 8, 262144, base.d_ff, step=64, key=f"{key}_d_ff")
    vocab = st.number_input("Vocabulary", 2, 1_000_000, base.vocab, key=f"{key}_vocab")
    return ModelShape(n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=d_ff, vocab=vocab)


def planner_inputs(saved: PlannerInputs) -> PlannerInputs:
    """The Pareto page's sidebar. Defaults come from `saved` so settings survive a visit to another page."""
    sb = st.sidebar
    sb.header("Plan target")
    mode = sb.radio("Goal", ["loss", "budget"], index=["loss", "budget"].index(saved.mode), key="p_mode",
                    format_func={"loss": "Reach a target loss", "budget": "Spend a training budget"}.get)
    target, budget = saved.target_loss, saved.budget_flops
    if mode == "loss":
        target = sb.number_input("Target loss (nats/token)", 1.82, 5.0, saved.target_loss, 0.05, format="%.2f",
                                 key="p_target", help="Must lie above the law's irreducible loss E = 1.82")
    else:
        budget = sb.select_slider("Training budget (effective FLOP)", BUDGETS, value=saved.budget_flops,
                                  format_func=lambda v: f"{v:.0e}", key="p_budget")
    lifetime = sb.select_slider("Lifetime inference tokens", LIFETIMES, value=saved.lifetime_tokens,
                                format_func=lambda v: f"{v:.0e}", key="p_lifetime")
    units = sb.radio("Costs in", ["flops", "usd"], index=["flops", "usd"].index(saved.units), horizontal=True,
                     key="p_units", format_func={"flops": "FLOP", "usd": "US$"}.get)

    sb.header("Hardware")
    hw = sb.selectbox("Accelerator", HARDWARE_CHOICES, index=HARDWARE_CHOICES.index(saved.hardware), key="p_hw",
                      format_func=lambda h: h if h == THIS_MACHINE else h.upper())
    price = sb.number_input("$ per GPU-hour (0: the profile's rate)", 0.0, 100.0, saved.usd_per_gpu_hour or 0.0,
                            0.1, key="p_price")
    c1, c2, c3 = sb.columns(3)
    mfu = tuple(c.number_input(label, 0.01, 1.0, value, 0.01, key=f"p_mfu_{label}") for c, label, value in
                zip((c1, c2, c3), ("MFU train", "MFU prefill", "MFU decode"),
                    (saved.mfu_train, saved.mfu_prefill, saved.mfu_decode)))

    sb.header("Sparsity")
    pattern = sb.radio("Pattern", ["unstructured", "2:4"], index=["unstructured", "2:4"].index(saved.pattern),
                       horizontal=True, key="p_pattern", help="2:4 ends at 50% sparsity and runs on sparse tensor cores")
    defaults = saved.speedups or pattern_speedups(pattern)
    c1, c2, c3 = sb.columns(3)
    speedups = tuple(c.number_input(label, 1.0, 8.0, float(value), 0.05, key=f"p_speed_{label}_{pattern}") for c, label, value
                     in zip((c1, c2, c3), ("Speedup train", "prefill", "decode"), defaults))
    schedules = sb.multiselect("Schedules (window in training compute)", SCHEDULE_CHOICES, default=saved.schedules,
                               key="p_schedules")
    if not schedules:
        sb.warning(f"No schedule picked: using the seed's {SEED_SCHEDULE}.")
        schedules = [SEED_SCHEDULE]
    sparsities = (0.0, 0.5) if pattern == "2:4" else saved.sparsities
    return PlannerInputs(mode=mode, target_loss=target, budget_flops=budget, lifetime_tokens=lifetime, hardware=hw,
                         usd_per_gpu_hour=price or None, mfu_train=mfu[0], mfu_prefill=mfu[1], mfu_decode=mfu[2],
                         pattern=pattern, speedups=None if speedups == pattern_speedups(pattern) else speedups,
                         sparsities=sparsities, schedules=tuple(schedules), units=units,
                         machine_peak=saved.machine_peak)


BUDGETS = tuple(float(f"1e{k}") for k in range(18, 27))
LIFETIMES = tuple(float(f"1e{k}") for k in range(9, 17))
