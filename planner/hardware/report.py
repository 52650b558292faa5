"""One plan on one GPU: training memory per device by part and the fewest devices that fit, serving memory per
layout with the largest batch per GPU and the fewest GPUs for a batch, and roofline time per token — what
`python -m planner memory`, a plan's `derived.memory`/`derived.roofline` and the app's memory panel show."""
from __future__ import annotations

import math

import numpy as np

from planner.hardware.costs import model_serving_time
from planner.hardware.memory import (DEFAULT_HEADROOM, LAYOUTS, min_devices, sequences_per_device, serving_layout,
                                     serving_memory, training_parts)
from planner.hardware.profiles import KERNELS
from planner.plan import Hardware, MemoryFigures, RooflineFigures, TrainingPlan

TRAINER_PRECISION = {"float32": "fp32", "bfloat16": "bf16-autocast"}  # the trainer's run.dtype as a precision
GB = 1e9  # the unit memory is reported in


def _layout_ok(layout: str, final_density: float) -> bool:
    return layout == "dense" or (final_density < 1 and (layout != "sparse-24" or math.isclose(final_density, 0.5)))


def memory_report(plan: TrainingPlan, hardware: Hardware, devices: int | None = None, batch: int | None = None,
                  context: int | None = None, precision: str | None = None, sharding: str = "zero3",
                  checkpointing: bool = False, headroom: float = DEFAULT_HEADROOM, micro_batch: int | None = None
                  ) -> dict:
    """Everything as plain numbers (JSON-ready). devices: training GPUs (default hardware.devices), the plan's
    micro-batch (batch_size / grad_accum sequences) split over them; batch, context: serving (default
    hardware.serve_batch and the plan's seq_len); precision: default the trainer's for the plan's dtype;
    micro_batch: sequences per GPU instead (the rest of the batch by gradient accumulation)."""
    model, budget = plan.model, plan.budget
    devices = devices or hardware.devices
    batch, context = batch or hardware.serve_batch, context or budget.seq_len
    precision = precision or TRAINER_PRECISION[plan.run.dtype]
    density = plan.schedule.schedule().final_density
    per_device = micro_batch or sequences_per_device(budget.batch_size, budget.grad_accum, devices)
    tokens = per_device * budget.seq_len
    kw = dict(precision=precision, sharding=sharding, checkpointing=checkpointing)
    parts = {k: float(v) for k, v in training_parts(model, tokens, density < 1, devices=devices, **kw).items()}
    gpu = hardware.memory_bytes
    usable = None if gpu is None else gpu * (1 - headroom)
    need = None if gpu is None else min_devices(model, tokens, density < 1, gpu, headroom, **kw)
    training = {"precision": precision, "sharding": sharding, "devices": devices, "checkpointing": checkpointing,
                "sequences_per_device": per_device, "parts": parts, "total": sum(parts.values()),
                "fits": None if usable is None else sum(parts.values()) <= usable,
                "min_devices": None if need is None or np.isnan(need) else int(need)}
    layout = str(serving_layout(density, hardware))
    layouts = {}
    for name in LAYOUTS:
        if _layout_ok(name, density):
            mem = serving_memory(model, density, name, context, batch, hardware.serve_dtype, gpu, headroom)
            layouts[name] = {k: float(v) for k, v in mem.items()}
    serving = {"dtype": hardware.serve_dtype, "layout": layout, "pattern": plan.schedule.pattern,
               "sparse_kernel": hardware.sparse_kernel, "batch": batch, "context": context, "layouts": layouts}
    return {"plan": plan.name, "gpu": hardware.name, "gpu_memory_bytes": gpu, "headroom": headroom,
            "training": training, "serving": serving, "roofline": roofline(plan, hardware, batch, context)}


def summary_lines(r: dict) -> list[str]:
    """The verdicts of a `memory_report` on a GPU with a memory size, one line each: training fit and the fewest GPUs
    that fit, serving in the served layout (largest batch per GPU, GPUs for the batch), roofline time per token. What
    `python -m planner memory` ends with and the app's memory panel shows."""
    t, s, roof = r["training"], r["serving"], r["roofline"]
    serve = s["layouts"][s["layout"]]
    fewest = (f"fewest GPUs that fit at {t['sequences_per_device']} sequences each: {t['min_devices']}"
              if t["min_devices"] else
              "no GPU count fits at this micro-batch (shrink it, checkpoint activations, or shard more)")
    kernel = "" if s["layout"] == "dense" else f", read by {KERNELS[s['pattern']]}"
    return [
        f"Training ({t['precision']}, {t['sharding']} over {t['devices']} × {r['gpu']}): {t['total'] / GB:.3g} GB per "
        f"GPU, {'fits' if t['fits'] else 'does not fit'}; {fewest}.",
        f"Serving ({s['layout']}{kernel}): weights {serve['weights'] / GB:.3g} GB + KV {serve['kv_cache'] / GB:.3g} GB "
        f"for {s['batch']} × {s['context']} tokens; largest batch per GPU {serve['max_batch_per_gpu']:.0f}, "
        f"GPUs for {s['batch']} sequences: {serve['min_gpus']:.0f}.",
        f"Roofline per token: prefill {roof['prefill_seconds_per_token']:.3g} s ({roof['prefill_bound']}-bound), "
        f"decode {roof['decode_seconds_per_token']:.3g} s ({roof['decode_bound']}-bound).",
    ]


def roofline(plan: TrainingPlan, hardware: Hardware, batch: int, context: int) -> dict:
    """Per-token prefill and decode seconds at batch x context in the serving layout, and each phase's bound."""
    t = model_serving_time(plan.model, plan.schedule.schedule().final_density, hardware, context, batch)
    bound = {True: "compute", False: "bandwidth"}
    return {"batch": batch, "context": context, "prefill_seconds_per_token": float(t["prefill"]),
            "decode_seconds_per_token": float(t["decode"]),
            "prefill_bound": bound[bool(t["prefill_compute_bound"])],
            "decode_bound": bound[bool(t["decode_compute_bound"])]}


def derived_figures(plan: TrainingPlan, hardware: Hardware, context: int | None = None) -> dict:
    """`derived.memory` and `derived.roofline` of a plan on its hardware (memory only when the profile has one)."""
    r = memory_report(plan, hardware, context=context)
    out = {"roofline": RooflineFigures(**r["roofline"])}
    if hardware.memory_bytes is not None:
        t, s = r["training"], r["serving"]
        mem = s["layouts"][s["layout"]]
        out["memory"] = MemoryFigures(
            gpu_memory_bytes=hardware.memory_bytes, headroom=r["headroom"], train_sharding=t["sharding"],
            train_devices=t["devices"], train_bytes_per_device=t["total"], train_fits=t["fits"],
            train_min_devices=t["min_devices"], serve_layout=s["layout"], serve_weight_bytes=mem["weights"],
            kv_bytes_per_sequence=mem["kv_per_sequence"], serve_max_batch_per_gpu=int(mem["max_batch_per_gpu"]),
            serve_min_gpus=int(mem["min_gpus"]))
    return out
