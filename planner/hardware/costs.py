"""Cost model: FLOPs per token, the three training ledgers, inference, GPU-hours and dollars.

Conventions (every ledger below follows them):

* **Which N does FLOPs.** Only matrix multiplies count: the non-embedding linear weights of attention and the MLP
  plus the LM head (``matmul params``). For an untied model these are exactly the prunable weights of
  `planner.shapes`; a tied model's LM head is the embedding matrix, which multiplies but is never pruned. Token
  embeddings are lookups and do no FLOPs; norm scales and other element-wise work are ignored.
* **Weight FLOPs.** 2 FLOPs per multiply-add: a forward pass costs 2 N per token, training (forward + backward)
  6 N per token.
* **Attention FLOPs.** The QK^T and AV matmuls: a token attending to `ctx` keys costs 2 ctx d_attn for the logits and
  2 ctx d_attn for the weighted sum per layer, forward, with d_attn = n_head * head_dim (query heads; grouped KV heads
  change memory, not these FLOPs). No causal halving: every token is charged the full context, as in Hoffmann et al.
  (2022, appendix F). Training is 3x forward: 12 n_layer seq_len d_attn per token. Inference at context c:
  4 n_layer c d_attn per token, prefill and decode alike. Pruning never touches attention FLOPs.
* **Training ledgers** (D training tokens, d(t) the schedule's density, t_f the token fraction where the final mask
  takes force, i.e. the pruning window's end):
  - dense-equivalent: masked training executes dense GEMMs: D (6 N_matmul_dense + attention);
  - effective: the non-zero FLOPs: D (6 N_matmul_avg + attention), N_avg the schedule's average count;
  - wall-clock-equivalent: dense-equivalent with the pruned GEMMs of the sparse phase (t >= t_f, final mask in
    force) divided by the pattern's hardware speedup; inside the window masks change every few steps and run dense.
* **Inference.** FLOPs per token: 2 N_matmul_final + attention at the stated context (the non-zero FLOPs, what ideal
  sparse kernels execute). GPU time is a roofline (`planner.hardware.roofline`): the dense shape's FLOPs with the
  pruned GEMMs divided by the phase's speedup, against the weights' bytes in the serving layout and the KV traffic,
  at the hardware's serving batch, times that phase's efficiency. Lifetime demand is a token count split into
  prefill and decode.
* **Money.** GPU-hours: training = wall-clock-equivalent FLOPs / (peak * MFU) / 3600, inference as above; dollars =
  GPU-hours * $/GPU-hour. Each phase's hours on dense kernels (no pattern speedup, dense bytes) are kept too: the
  break-even speedups (`planner.hardware.breakeven`) divide them.

`ledger_arrays` is the one formula (vectorised numpy); `cost_ledgers` fills a plan's `CostLedgers` through it, and
the search calls it on arrays of candidates.
"""
from __future__ import annotations

import numpy as np

from planner.hardware.memory import (DTYPE_BYTES, dims, final_model_memory, kv_bytes_per_token,  # noqa: F401
                                     serving_layout, weight_bytes)
from planner.hardware.profiles import (GPU_PEAKS, HARDWARE, PATTERN_SPEEDUPS, cpu_model,  # noqa: F401 (re-exported)
                                       hardware_profile, measure_matmul_flops, this_machine)
from planner.hardware.roofline import serving_seconds
from planner.plan import CostLedgers, Hardware
from planner.schedules import Schedule
from planner.shapes import ModelShape, matmul_params  # noqa: F401  (matmul_params: the cost model's N)

# UI labels of the three training ledgers, and the CostLedgers / DataFrame column each one is.
DENSE_EQUIVALENT = "dense-equivalent"
EFFECTIVE = "effective"
WALLCLOCK_EQUIVALENT = "wall-clock-equivalent"
LEDGER_COLUMNS = {DENSE_EQUIVALENT: "train_flops_dense_equivalent", EFFECTIVE: "train_flops_effective",
                  WALLCLOCK_EQUIVALENT: "train_flops_wallclock_equivalent"}

# Share of lifetime inference tokens that are prompt (prefill) tokens; the rest are generated (decode). A 3:1
# prompt-to-completion ratio, typical of chat and retrieval workloads.
PREFILL_SHARE = 0.75


def attention_flops_per_token(n_layer, d_attn, context, passes=1):
    """QK^T and AV FLOPs of one token attending `context` keys: 4 n_layer context d_attn per forward pass.

    passes = 3 for training (forward + backward), 1 for inference.
    """
    return 4.0 * passes * np.asarray(n_layer, float) * np.asarray(d_attn, float) * np.asarray(context, float)


def train_flops_per_token(n_fixed, n_prunable, density, n_layer, d_attn, seq_len):
    """Training FLOPs per token: 6 (n_fixed + n_prunable * density) + attention (forward and backward)."""
    return 6.0 * (n_fixed + n_prunable * density) + attention_flops_per_token(n_layer, d_attn, seq_len, passes=3)


def model_train_flops_per_token(model: ModelShape, seq_len: int, density: float = 1.0) -> float:
    """`train_flops_per_token` of a shape; density 1 gives what masked training executes (dense GEMMs)."""
    fixed, prunable = matmul_params(model)
    return float(train_flops_per_token(fixed, prunable, density, model.n_layer, model.n_head * model.head_size,
                                       seq_len))


def ledger_arrays(tokens, n_fixed, n_prunable, mean_density, final_density, sparse_fraction, n_layer, d_attn,
                  seq_len, hardware: Hardware, lifetime_tokens=0.0, context=None, prefill_share=PREFILL_SHARE,
                  serving: dict | None = None):
    """Every CostLedgers field as numpy arrays (all numeric arguments broadcast).

    n_fixed, n_prunable: matmul parameters that are never / may be pruned (see `matmul_params`). mean_density and
    final_density: the schedule's average and final density of the prunable weights. sparse_fraction: share of the
    training tokens with the final mask in force (1 - window end; 0 for a dense run). context: inference context,
    default seq_len. serving (`serving_bytes`): weight bytes a pass reads in the serving layout (`moved`) and dense
    (`moved_dense`), and K and V bytes per token; default dense weights and one KV head per query head.
    """
    tokens, n_fixed, n_prunable, mean_density, final_density, sparse_fraction = (
        np.asarray(x, float) for x in (tokens, n_fixed, n_prunable, mean_density, final_density, sparse_fraction))
    context = seq_len if context is None else context
    sparse = final_density < 1.0  # a pattern's speedup only applies to a model that is actually pruned
    def per_token(density):
        return train_flops_per_token(n_fixed, n_prunable, density, n_layer, d_attn, seq_len)

    dense_eq = tokens * per_token(1.0)
    effective = tokens * per_token(mean_density)
    # Wall-clock: the pruned GEMMs of the sparse phase run `speedup` times faster, as if that share were missing.
    wallclock = tokens * per_token(np.where(sparse, 1.0 - sparse_fraction + sparse_fraction / hardware.speedup_train,
                                            1.0))

    attn_infer = attention_flops_per_token(n_layer, d_attn, context)
    infer_per_token = 2.0 * (n_fixed + n_prunable * final_density) + attn_infer

    if serving is None:  # no shape at hand: dense weights, as many KV heads as query heads (K, V d_attn wide)
        b = DTYPE_BYTES[hardware.serve_dtype]
        serving = {"moved": (n_fixed + n_prunable) * b, "moved_dense": (n_fixed + n_prunable) * b,
                   "kv_per_token": kv_bytes_per_token({"n_layer": n_layer, "n_kv_head": 1, "head_dim": d_attn},
                                                      hardware.serve_dtype)}
    lifetime = np.asarray(lifetime_tokens, float)

    def phase_hours(speed_prefill, speed_decode, moved):  # lifetime GPU-hours of prefill and of decode (roofline)
        t = serving_time(n_fixed, n_prunable, final_density, n_layer, d_attn, context, hardware, moved,
                         serving["kv_per_token"], (speed_prefill, speed_decode))
        return (lifetime * prefill_share * t["prefill"] / 3600.0,
                lifetime * (1.0 - prefill_share) * t["decode"] / 3600.0)

    prefill_hours, decode_hours = phase_hours(hardware.speedup_prefill, hardware.speedup_decode, serving["moved"])
    prefill_dense, decode_dense = phase_hours(1.0, 1.0, serving["moved_dense"])
    train_hours = wallclock / (hardware.peak_flops * hardware.mfu_train) / 3600.0
    infer_hours = prefill_hours + decode_hours
    shape = np.broadcast(tokens, infer_per_token, lifetime, dense_eq, infer_hours).shape
    out = {
        "train_flops_dense_equivalent": dense_eq, "train_flops_effective": effective,
        "train_flops_wallclock_equivalent": wallclock, "inference_flops_per_token": infer_per_token,
        "inference_context": context, "lifetime_inference_tokens": lifetime,
        "lifetime_inference_flops": lifetime * infer_per_token, "train_gpu_hours": train_hours,
        "inference_gpu_hours": infer_hours, "train_usd": _usd(train_hours, hardware.usd_per_gpu_hour),
        "inference_usd": _usd(infer_hours, hardware.usd_per_gpu_hour),
        "prefill_gpu_hours": prefill_hours, "decode_gpu_hours": decode_hours,
        "train_gpu_hours_dense_kernels": dense_eq / (hardware.peak_flops * hardware.mfu_train) / 3600.0,
        "prefill_gpu_hours_dense_kernels": prefill_dense, "decode_gpu_hours_dense_kernels": decode_dense,
        "train_days": train_hours / hardware.devices / 24.0,
    }
    return {k: np.broadcast_to(v, shape) for k, v in out.items()}


def executed_inference_flops(n_fixed, n_prunable, final_density, n_layer, d_attn, context, speedup):
    """FLOPs the accelerator runs per inference token: dense GEMMs, the pruned ones over the phase's speedup (only
    for a pruned model), plus attention at the context."""
    sparse = np.asarray(final_density) < 1.0
    return (2.0 * (n_fixed + n_prunable / np.where(sparse, speedup, 1.0))
            + attention_flops_per_token(n_layer, d_attn, context))


def serving_time(n_fixed, n_prunable, final_density, n_layer, d_attn, context, hardware: Hardware, moved, kv_per_token,
                 speedups=None, batch=None) -> dict:
    """`roofline.serving_seconds` of the FLOPs the accelerator executes (`executed_inference_flops`) with the phases'
    speedups (prefill, decode; default the hardware's), `moved` weight bytes and `kv_per_token` K and V bytes."""
    prefill, decode = (hardware.speedup_prefill, hardware.speedup_decode) if speedups is None else speedups
    args = (n_fixed, n_prunable, final_density, n_layer, d_attn, context)
    return serving_seconds(executed_inference_flops(*args, prefill), executed_inference_flops(*args, decode), moved,
                           kv_per_token, context, hardware, batch)


def model_serving_time(model: ModelShape, final_density: float, hardware: Hardware, context: int,
                       batch: int | None = None) -> dict:
    """`serving_time` of a shape in its serving layout (`serving_bytes`), as the cost ledgers price it."""
    fixed, prunable = matmul_params(model)
    serving = serving_bytes(model, final_density, hardware)
    return serving_time(fixed, prunable, final_density, model.n_layer, model.n_head * model.head_size, context,
                        hardware, serving["moved"], serving["kv_per_token"], batch=batch)


def _usd(hours, usd_per_hour: float):
    """Dollars for GPU-hours; a free machine costs $0 even for the infinite hours of an unreachable target."""
    return hours * usd_per_hour if usd_per_hour else np.zeros_like(hours)


def final_mask_fraction(schedule: Schedule) -> float:
    """Share of training tokens with the final mask in force (from `Schedule.final_mask_start` on); 0 for a dense
    schedule."""
    return 0.0 if schedule.final_density >= 1.0 else 1.0 - schedule.final_mask_start


def cost_ledgers(plan, hardware: Hardware, lifetime_tokens: float = 0.0, context: int | None = None,
                 prefill_share: float = PREFILL_SHARE) -> CostLedgers:
    """The plan's CostLedgers. `plan` is anything with .model (ModelShape), .schedule (a Schedule or PlanSchedule)
    and .budget (tokens, seq_len): a TrainingPlan or a stand-in."""
    model, budget = plan.model, plan.budget
    schedule = plan.schedule.schedule() if hasattr(plan.schedule, "schedule") else plan.schedule
    fixed, prunable = matmul_params(model)
    out = ledger_arrays(budget.tokens, fixed, prunable, schedule.mean_density(), schedule.final_density,
                        final_mask_fraction(schedule), model.n_layer, model.n_head * model.head_size, budget.seq_len,
                        hardware, lifetime_tokens, context, prefill_share,
                        serving_bytes(model, schedule.final_density, hardware))
    return CostLedgers(**{k: (int(v) if k == "inference_context" else float(v)) for k, v in out.items()})


def serving_bytes(model, final_density, hardware: Hardware) -> dict:
    """What `ledger_arrays` reads per pass: weight bytes in the serving layout and dense, K and V bytes per token.
    `model` is a ModelShape or `memory.dims` arrays (broadcast with final_density)."""
    final_density = np.asarray(final_density, float)
    layouts = serving_layout(final_density, hardware)
    dtype = hardware.serve_dtype
    dense = weight_bytes(model, final_density, "dense", dtype)[1]
    moved = dense
    for layout in set(np.ravel(layouts)) - {"dense"}:
        moved = np.where(layouts == layout, weight_bytes(model, final_density, layout, dtype)[1], moved)
    return {"moved": moved, "moved_dense": dense, "kv_per_token": kv_bytes_per_token(dims(model), dtype)}
