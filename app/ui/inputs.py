"""Input widgets shared by several pages (model shape). Widgets live here, numbers come from planner."""
from __future__ import annotations

import streamlit as st

from app.ui.pareto_view import HARDWARE_CHOICES, SCHEDULE_CHOICES, THIS_MACHINE, PlannerInputs, pattern_speedups
from planner.hardware.profiles import KERNELS, PATTERN_KERNEL
from planner.search import DEFAULT_SCHEDULES
from planner.shapes import PRESETS, ModelShape

CUSTOM = "custom"


def model_shape_input(key: str, default: str = "llama2-1b") -> ModelShape:
    """A preset shape, or a custom one from every field a Llama-style shape has (bad combinations raise
    ValueError naming the field)."""
    names = [*PRESETS, CUSTOM]
    choice = st.selectbox("Model shape", names, index=names.index(default), key=f"{key}_preset",
                          help="Llama-style decoder; presets are the seed's 70M and 1B configurations and CPU sizes")
    if choice != CUSTOM:
        return PRESETS[choice]
    base = PRESETS[default]
    c1, c2 = st.columns(2)
    n_layer = c1.number_input("Layers", 1, 256, base.n_layer, key=f"{key}_n_layer")
    d_model = c2.number_input("d_model", 8, 65536, base.d_model, step=64, key=f"{key}_d_model")
    n_head = c1.number_input("Query heads", 1, 512, base.n_head, key=f"{key}_n_head")
    n_kv = c2.number_input("KV heads", 0, 512, 0, key=f"{key}_n_kv_head",
                           help="grouped-query attention: query heads must be a multiple; 0: as many as query heads")
    head_dim = c1.number_input("head_dim", 0, 1024, 0, key=f"{key}_head_dim",
                               help="0: d_model / query heads (needs d_model divisible by the heads)")
    d_ff = c2.number_input("d_ff", 8, 262144, base.d_ff, step=64, key=f"{key}_d_ff")
    vocab = c1.number_input("Vocabulary", 2, 1_000_000, base.vocab, key=f"{key}_vocab")
    mlp = c2.selectbox("MLP", ["swiglu", "gelu"], key=f"{key}_mlp")
    tied = st.checkbox("Tied embeddings (the LM head reuses the embedding and is not pruned)", key=f"{key}_tied")
    return ModelShape(n_layer=n_layer, d_model=d_model, n_head=n_head, n_kv_head=n_kv or None,
                      head_dim=head_dim or None, d_ff=d_ff, vocab=vocab, tied_embeddings=tied, mlp=mlp)


def planner_inputs(saved: PlannerInputs, floor: float, generation: str = "") -> PlannerInputs:
    """The Pareto page's sidebar. Defaults come from `saved` so settings survive a visit to another page. Numbers
    are not clamped by the widgets (a clamped value is rejected silently): `pareto_view.input_problems` explains
    any the search cannot use. `floor` is the working law's irreducible loss. A new `generation` (a loaded session)
    makes new widgets, which show `saved` rather than what the old ones held."""
    sb = st.sidebar

    def gen(key: str) -> str:
        return key + generation
    sb.header("Plan target")
    mode = sb.radio("Goal", ["loss", "budget"], index=["loss", "budget"].index(saved.mode), key=gen("p_mode"),
                    format_func={"loss": "Reach a target loss", "budget": "Spend a training budget"}.get)
    target, budget = saved.target_loss, saved.budget_flops
    if mode == "loss":
        target = sb.number_input("Target loss (nats/token)", value=saved.target_loss, step=0.05, format="%.3f",
                                 key=gen("p_target"), help=f"Must lie above the working law's irreducible loss "
                                                      f"{floor:.3f}")
    else:
        budget = sb.select_slider("Training budget (effective FLOP)", BUDGETS, value=saved.budget_flops,
                                  format_func=_sci, key=gen("p_budget"))
    lifetime = sb.select_slider("Lifetime inference tokens", LIFETIMES, value=saved.lifetime_tokens,
                                format_func=_sci, key=gen("p_lifetime"))
    units = sb.radio("Costs in", ["flops", "usd"], index=["flops", "usd"].index(saved.units), horizontal=True,
                     key=gen("p_units"), format_func={"flops": "FLOP", "usd": "US$"}.get)

    sb.header("Hardware")
    hw = sb.selectbox("Accelerator", HARDWARE_CHOICES, index=HARDWARE_CHOICES.index(saved.hardware), key=gen("p_hw"),
                      format_func=lambda h: h if h == THIS_MACHINE else h.upper())
    price = sb.number_input("$ per GPU-hour (0: the profile's rate)", value=saved.usd_per_gpu_hour or 0.0,
                            step=0.1, key=gen("p_price"), help="'this machine' has no rate of its own: give one to "
                                                          "cost it in US$")
    c1, c2, c3 = sb.columns(3)
    mfu = tuple(c.number_input(label, value=value, step=0.01, key=gen(f"p_mfu_{label}")) for c, label, value in
                zip((c1, c2, c3), ("MFU train", "MFU prefill", "MFU decode"),
                    (saved.mfu_train, saved.mfu_prefill, saved.mfu_decode)))

    sb.header("Sparsity")
    pattern = sb.radio("Pattern", ["unstructured", "2:4"], index=["unstructured", "2:4"].index(saved.pattern),
                       horizontal=True, key=gen("p_pattern"),
                       help="unstructured searches 0-90% final sparsity; 2:4 ends at exactly 50% and runs on sparse "
                            "tensor cores")
    defaults = (saved.speedups if saved.pattern == pattern else None) or pattern_speedups(pattern)
    c1, c2, c3 = sb.columns(3)
    speedups = tuple(c.number_input(label, value=float(value), step=0.05, key=gen(f"p_speed_{label}_{pattern}"))
                     for c, label, value in zip((c1, c2, c3), ("Speedup train", "prefill", "decode"), defaults))
    kernel = sb.checkbox("Serving kernel reads the sparse weights", key=f"p_kernel_{pattern}",
                         value=PATTERN_KERNEL[pattern] if saved.sparse_kernel is None or saved.pattern != pattern
                         else saved.sparse_kernel, help=f"{KERNELS[pattern]}. Off: weights move as dense bytes")
    schedules = sb.multiselect("Schedules (window in training compute)", SCHEDULE_CHOICES, default=saved.schedules,
                               key=gen("p_schedules"), help="default: the planner's default search (as the CLI's)")
    if not schedules:
        sb.warning("No schedule picked: searching the planner's default schedules.")
        schedules = DEFAULT_SCHEDULES
    return PlannerInputs(mode=mode, target_loss=target, budget_flops=budget, lifetime_tokens=lifetime, hardware=hw,
                         usd_per_gpu_hour=price or None, mfu_train=mfu[0], mfu_prefill=mfu[1], mfu_decode=mfu[2],
                         pattern=pattern, speedups=None if speedups == pattern_speedups(pattern) else speedups,
                         sparse_kernel=None if kernel == PATTERN_KERNEL[pattern] else kernel,
                         schedules=tuple(schedules), units=units, machine_peak=saved.machine_peak, law=saved.law)


def _sci(v: float) -> str:
    return f"{v:.0e}".replace("e+", "e")


BUDGETS = tuple(float(f"1e{k}") for k in range(18, 27))
LIFETIMES = tuple(float(f"1e{k}") for k in range(9, 17))
