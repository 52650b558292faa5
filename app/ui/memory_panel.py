"""Memory panel: a plan's training memory per GPU and serving memory as stacked bars by part, with the verdicts
(fits, fewest GPUs, largest serving batch) and roofline time per token. Numbers from planner.hardware.report."""
from __future__ import annotations

import altair as alt
import pandas as pd

from planner.hardware.profiles import hardware_profile
from planner.hardware.report import GB, memory_report, summary_lines
from planner.plan import TrainingPlan

PART_LABELS = {"weights": "weights", "grads": "gradients", "optimizer": "AdamW state", "masks": "masks",
               "ddp_buckets": "DDP buckets", "autocast_weights": "bf16 weight copies", "activations": "activations",
               "kv_cache": "KV cache"}


def report(plan: TrainingPlan, gpu: str = "h100", devices: int = 8, precision: str = "bf16-mixed",
           sharding: str = "zero3", checkpointing: bool = False, micro_batch: int | None = 1) -> dict:
    """planner.hardware.report.memory_report on a named GPU with the plan's sparsity pattern (its kernel default)."""
    hardware = hardware_profile(gpu, plan.schedule.pattern)
    return memory_report(plan, hardware, devices, precision=precision, sharding=sharding,
                         checkpointing=checkpointing, micro_batch=micro_batch)


def parts_frame(r: dict) -> pd.DataFrame:
    """Long table (bar, part, GB) of the panel's two bars: training per GPU, serving in the served layout."""
    t, s = r["training"], r["serving"]
    serve = s["layouts"][s["layout"]]
    rows = [("training, per GPU", PART_LABELS[k], v / GB) for k, v in t["parts"].items() if v > 0]
    rows += [(f"serving ({s['layout']})", PART_LABELS.get(k, k), serve[k] / GB) for k in ("weights", "kv_cache")]
    return pd.DataFrame(rows, columns=["bar", "part", "GB"])


def chart(frame: pd.DataFrame, gpu_gb: float, usable_gb: float) -> alt.Chart:
    """Stacked horizontal bars by part; the axis title states the GPU's capacity and what the head-room leaves."""
    return alt.Chart(frame).mark_bar().encode(
        y=alt.Y("bar:N", title=None, axis=alt.Axis(labelLimit=220)),
        x=alt.X("sum(GB):Q", title=f"GB (1e9 bytes); one GPU holds {gpu_gb:.3g}, {usable_gb:.3g} with head-room"),
        color=alt.Color("part:N", title="Part", legend=alt.Legend(orient="bottom", columns=4)),
        tooltip=["bar:N", "part:N", alt.Tooltip("GB:Q", format=".3g")]).properties(height=alt.Step(36))


def show(st, plan: TrainingPlan, key: str, label: str) -> None:
    """The panel behind a toggle (computed only when opened): GPU, count, precision, sharding and micro-batch
    pickers, the stacked bars and the verdict lines."""
    if not st.toggle(label, key=f"{key}_mem_show"):
        return
    from planner.hardware.memory import PRECISIONS, SHARDINGS
    from planner.hardware.profiles import HARDWARE
    c1, c2, c3, c4 = st.columns(4)
    gpu = c1.selectbox("GPU", list(HARDWARE), index=list(HARDWARE).index("h100"), key=f"{key}_mem_gpu",
                       format_func=lambda g: HARDWARE[g].name)
    devices = c2.number_input("Training GPUs", 1, 65536, 8, key=f"{key}_mem_devices")
    precision = c3.selectbox("Precision", sorted(PRECISIONS), index=sorted(PRECISIONS).index("bf16-mixed"),
                             key=f"{key}_mem_precision")
    sharding = c4.selectbox("Sharding", list(SHARDINGS), index=list(SHARDINGS).index("zero3"),
                            key=f"{key}_mem_sharding")
    c5, c6 = st.columns(2)
    micro = c5.number_input("Sequences per GPU (micro-batch)", 1, 65536, 1, key=f"{key}_mem_micro",
                            help="the rest of the batch by gradient accumulation")
    checkpointing = c6.checkbox("Activation checkpointing", key=f"{key}_mem_ckpt")
    r = report(plan, gpu, int(devices), precision, sharding, checkpointing, int(micro))
    st.altair_chart(chart(parts_frame(r), r["gpu_memory_bytes"] / GB, r["gpu_memory_bytes"] * (1 - r["headroom"]) / GB),
                    width="stretch")
    for line in summary_lines(r):
        st.caption(line)
