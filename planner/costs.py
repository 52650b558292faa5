"""Cost model: FLOPs per token, the three training ledgers, inference, GPU-hours, dollars and model memory.

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
  sparse kernels execute). GPU time executes the dense shape's FLOPs with the pruned GEMMs divided by the phase's
  speedup (prefill or decode), at that phase's MFU. Lifetime demand is a token count split into prefill and decode.
* **Money.** GPU-hours = executed FLOPs / (peak * MFU) / 3600: training from the wall-clock-equivalent ledger,
  inference as above; dollars = GPU-hours * $/GPU-hour.

`ledger_arrays` is the one formula (vectorised numpy); `cost_ledgers` fills a plan's `CostLedgers` through it, and
the search calls it on arrays of candidates.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from planner.plan import CostLedgers, Hardware
from planner.schedules import Schedule
from planner.shapes import ModelShape, matmul_params  # noqa: F401  (matmul_params: the cost model's N)

# UI labels of the three training ledgers, and the CostLedgers / DataFrame column each one is.
DENSE_EQUIVALENT = "dense-equivalent"
EFFECTIVE = "effective"
WALLCLOCK_EQUIVALENT = "wall-clock-equivalent"
LEDGER_COLUMNS = {DENSE_EQUIVALENT: "train_flops_dense_equivalent", EFFECTIVE: "train_flops_effective",
                  WALLCLOCK_EQUIVALENT: "train_flops_wallclock_equivalent"}

# Public dense (no structured-sparsity) BF16 tensor-core peaks of one SXM accelerator, from the vendor data sheets.
# Prices are illustrative on-demand cloud rates per GPU-hour: override them.
HARDWARE: dict[str, Hardware] = {
    "a100": Hardware(name="A100 SXM 80GB", peak_flops=312e12, usd_per_gpu_hour=1.8),
    "h100": Hardware(name="H100 SXM", peak_flops=989e12, usd_per_gpu_hour=2.5),
    "h200": Hardware(name="H200 SXM", peak_flops=989e12, usd_per_gpu_hour=3.5),
}
# Dense peaks by the exact device name CUDA reports, per training dtype: bfloat16 on tensor cores, float32 without
# TF32 (PyTorch's default for matmuls), from the vendor data sheets (structured-sparsity figures halved). The trainer
# reports MFU against these and reports none for a GPU not listed; the planning profiles above share their numbers.
_A100 = {"bfloat16": HARDWARE["a100"].peak_flops, "float32": 19.5e12}
_H100_SXM = {"bfloat16": HARDWARE["h100"].peak_flops, "float32": 66.9e12}
_NVL = {"bfloat16": 835e12, "float32": 60e12}
GPU_PEAKS: dict[str, dict[str, float]] = {
    "NVIDIA A100-SXM4-40GB": _A100, "NVIDIA A100-SXM4-80GB": _A100,
    "NVIDIA A100-PCIE-40GB": _A100, "NVIDIA A100 80GB PCIe": _A100,
    "NVIDIA H100 80GB HBM3": _H100_SXM, "NVIDIA H100 PCIe": {"bfloat16": 756e12, "float32": 51.2e12},
    "NVIDIA H100 NVL": _NVL,
    "NVIDIA H200": {**_H100_SXM, "bfloat16": HARDWARE["h200"].peak_flops}, "NVIDIA H200 NVL": _NVL,
    "NVIDIA L4": {"bfloat16": 121e12, "float32": 30.3e12},
    "NVIDIA L40S": {"bfloat16": 362e12, "float32": 91.6e12},
    "NVIDIA A10": {"bfloat16": 125e12, "float32": 31.2e12},
    "NVIDIA GeForce RTX 4090": {"bfloat16": 165.2e12, "float32": 82.6e12},
}
# Sparse-phase speedups (train, prefill, decode) by sparsity pattern. Unstructured masks run on dense GEMMs; 2:4 runs
# on sparse tensor cores at about 1.2x end to end for compute-bound phases, and gains nothing at batch-1 decode,
# which is bound by memory traffic.
PATTERN_SPEEDUPS: dict[str, tuple[float, float, float]] = {"unstructured": (1.0, 1.0, 1.0), "2:4": (1.2, 1.2, 1.0)}
# Share of lifetime inference tokens that are prompt (prefill) tokens; the rest are generated (decode). A 3:1
# prompt-to-completion ratio, typical of chat and retrieval workloads.
PREFILL_SHARE = 0.75
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8": 1, "int8": 1}


def hardware_profile(name: str, pattern: str = "unstructured", **overrides) -> Hardware:
    """A named accelerator (a100, h100, h200) with the pattern's default speedups; any Hardware field overrides."""
    key = name.lower()
    if key not in HARDWARE:
        raise KeyError(f"unknown hardware {name!r}; choose one of {sorted(HARDWARE)}")
    return Hardware(**{**HARDWARE[key].model_dump(), **_pattern_speedups(pattern), **overrides})  # validated


def _pattern_speedups(pattern: str) -> dict[str, float]:
    if pattern not in PATTERN_SPEEDUPS:
        raise KeyError(f"unknown sparsity pattern {pattern!r}; choose one of {sorted(PATTERN_SPEEDUPS)}")
    return dict(zip(("speedup_train", "speedup_prefill", "speedup_decode"), PATTERN_SPEEDUPS[pattern]))


def measure_matmul_flops(n: int = 1024, repeats: int = 5, dtype=np.float32) -> float:
    """Best-of-`repeats` FLOP/s of an n x n numpy matmul (2 n^3 FLOPs) on this machine's BLAS."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    a @ b  # warm-up: thread pool start, page faults
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / max(best, 1e-12)


def this_machine(peak: float | None = None, pattern: str = "unstructured", **overrides) -> Hardware:
    """This machine as a Hardware profile from a measured matmul peak (measured now when `peak` is None); free."""
    peak = measure_matmul_flops() if peak is None else peak
    return Hardware(**{"name": "this machine", "peak_flops": peak, "usd_per_gpu_hour": 0.0,
                       **_pattern_speedups(pattern), **overrides})  # a given price overrides the free default


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
                  seq_len, hardware: Hardware, lifetime_tokens=0.0, context=None, prefill_share=PREFILL_SHARE):
    """Every CostLedgers field as numpy arrays (all numeric arguments broadcast).

    n_fixed, n_prunable: matmul parameters that are never / may be pruned (see `matmul_params`). mean_density and
    final_density: the schedule's average and final density of the prunable weights. sparse_fraction: share of the
    training tokens with the final mask in force (1 - window end; 0 for a dense run). context: inference context,
    default seq_len.
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

    def executed(speedup):  # FLOPs the accelerator runs per inference token: dense GEMMs over the pattern's speedup
        return 2.0 * (n_fixed + n_prunable / np.where(sparse, speedup, 1.0)) + attn_infer

    lifetime = np.asarray(lifetime_tokens, float)
    infer_seconds = lifetime * (
        prefill_share * executed(hardware.speedup_prefill) / (hardware.peak_flops * hardware.mfu_prefill)
        + (1.0 - prefill_share) * executed(hardware.speedup_decode) / (hardware.peak_flops * hardware.mfu_decode))
    train_hours = wallclock / (hardware.peak_flops * hardware.mfu_train) / 3600.0
    infer_hours = infer_seconds / 3600.0
    shape = np.broadcast(tokens, infer_per_token, lifetime, dense_eq).shape
    out = {
        "train_flops_dense_equivalent": dense_eq, "train_flops_effective": effective,
        "train_flops_wallclock_equivalent": wallclock, "inference_flops_per_token": infer_per_token,
        "inference_context": context, "lifetime_inference_tokens": lifetime,
        "lifetime_inference_flops": lifetime * infer_per_token, "train_gpu_hours": train_hours,
        "inference_gpu_hours": infer_hours, "train_usd": _usd(train_hours, hardware.usd_per_gpu_hour),
        "inference_usd": _usd(infer_hours, hardware.usd_per_gpu_hour),
    }
    return {k: np.broadcast_to(v, shape) for k, v in out.items()}


def _usd(hours, usd_per_hour: float):
    """Dollars for GPU-hours; a free machine costs $0 even for the infinite hours of an unreachable target."""
    return hours * usd_per_hour if usd_per_hour else np.zeros_like(hours)


def final_mask_fraction(schedule: Schedule) -> float:
    """Share of training tokens with the final mask in force: after the window (or the last piecewise knot above the
    final density); 0 for a dense schedule."""
    if schedule.final_density >= 1.0:
        return 0.0
    if schedule.shape == "piecewise":
        ts, ds = np.array(schedule.points, dtype=float).T
        return 1.0 - float(ts[np.argmax(ds <= ds[-1])])
    return 1.0 - schedule.end


def cost_ledgers(plan, hardware: Hardware, lifetime_tokens: float = 0.0, context: int | None = None,
                 prefill_share: float = PREFILL_SHARE) -> CostLedgers:
    """The plan's CostLedgers. `plan` is anything with .model (ModelShape), .schedule (a Schedule or PlanSchedule)
    and .budget (tokens, seq_len): a TrainingPlan or a stand-in."""
    model, budget = plan.model, plan.budget
    schedule = plan.schedule.schedule() if hasattr(plan.schedule, "schedule") else plan.schedule
    fixed, prunable = matmul_params(model)
    out = ledger_arrays(budget.tokens, fixed, prunable, schedule.mean_density(), schedule.final_density,
                        final_mask_fraction(schedule), model.n_layer, model.n_head * model.head_size, budget.seq_len,
                        hardware, lifetime_tokens, context, prefill_share)
    return CostLedgers(**{k: (int(v) if k == "inference_context" else float(v)) for k, v in out.items()})


def final_model_memory(model: ModelShape, final_sparsity, dtype: str = "bfloat16", index_bytes: int | None = None,
                       pointer_bytes: int = 4) -> dict[str, np.ndarray]:
    """Bytes to store the final model (broadcast over final_sparsity). Unpruned weights are always stored dense.

    * dense: every parameter at `dtype`.
    * bitmask: non-zeros at `dtype` plus one bit per prunable position.
    * csr: per linear weight stored as (out_features, in_features): non-zeros at `dtype` plus a column index of
      `index_bytes` each (default 2, uint16, when every in_features <= 65536, else 4), plus (out_features + 1) row
      pointers of `pointer_bytes`.
    * two_four: NVIDIA's 2:4 format: half the prunable weights at `dtype` plus 2 bits of position metadata per kept
      value; NaN unless the final sparsity is 0.5.
    """
    if dtype not in DTYPE_BYTES:
        raise KeyError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPE_BYTES)}")
    b = DTYPE_BYTES[dtype]
    s = np.asarray(final_sparsity, float)
    c = model.counts()
    q, kv = model.n_head * model.head_size, model.kv_heads * model.head_size
    mlp_rows = (2 if model.mlp == "swiglu" else 1) * model.d_ff + model.d_model
    rows = model.n_layer * (q + 2 * kv + model.d_model + mlp_rows) + (0 if model.tied_embeddings else model.vocab)
    if index_bytes is None:
        index_bytes = 2 if max(model.d_model, model.d_ff, q) <= 2**16 else 4
    unpruned = (c["total"] - c["prunable"]) * b
    nnz = np.round(c["prunable"] * (1.0 - s))
    return {
        "dense": np.full(s.shape, float(c["total"] * b)),
        "bitmask": unpruned + nnz * b + np.ceil(c["prunable"] / 8),
        "csr": unpruned + nnz * (b + index_bytes) + _row_pointers(model, rows) * pointer_bytes,
        "two_four": np.where(np.isclose(s, 0.5), unpruned + c["prunable"] / 2 * (b + 0.25), np.nan),
    }


def _row_pointers(model: ModelShape, rows: int) -> int:
    """CSR keeps out_features + 1 pointers per matrix: 7 matrices per layer with SwiGLU (6 with GELU), plus the head."""
    matrices = model.n_layer * (7 if model.mlp == "swiglu" else 6) + (0 if model.tied_embeddings else 1)
    return rows + matrices


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else 'unknown CPU': the machine a measured figure belongs to."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
