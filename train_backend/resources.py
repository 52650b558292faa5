"""What a run needs and what the machine has: a memory estimate checked before allocation, and the peak FLOP/s that
MFU divides by (a data-sheet table on known GPUs, a cached measurement at the model's own GEMM shapes on CPU)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from planner.costs import GPU_PEAKS, cpu_model
from planner.hardware.memory import sequences_per_device, training_parts
from planner.hardware.report import TRAINER_PRECISION
from planner.plan import TrainingPlan

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _linears(m) -> list[tuple[int, int, int]]:
    """(in, out, count) of every linear layer of one model: attention, MLP, LM head."""
    q, kv = m.n_head * m.head_size, m.kv_heads * m.head_size
    mlp = [(m.d_model, m.d_ff, 2 if m.mlp == "swiglu" else 1), (m.d_ff, m.d_model, 1)]
    layer = [(m.d_model, q, 1), (m.d_model, kv, 2), (q, m.d_model, 1), *mlp]
    return [(i, o, c * m.n_layer) for i, o, c in layer] + [(m.d_model, m.vocab, 1)]


# glibc keeps the blocks a step frees in its heap (the mmap threshold grows with the tensors freed), so a CPU run's
# peak RSS sits above its peak live bytes: 1.43-1.75x of this estimate's live count measured for four shapes
# (d_model 128-512, 2-8 layers) on this project's VM, and 0.93-0.95x with MALLOC_MMAP_THRESHOLD_=65536 (glibc then
# returns every freed tensor): the live count is right, the rest is the allocator.
CPU_HEAP_RETENTION = 1.6


def estimate_memory(plan: TrainingPlan, world_size: int = 1, device: str = "cpu", ddp: bool | None = None
                    ) -> dict[str, int]:
    """Bytes one rank adds to its process, by part; `live` is the largest of the loop's three phases and `total`
    what the device must have (on CPU: live times glibc's heap retention).

    * step (forward/backward): `planner.hardware.memory.training_parts` — the planner's own definitions — at this
      rank's micro-batch under DDP: weights, grads, AdamW's moments, DDP's gradient buckets (`ddp`, by default
      world_size > 1), masks (a bool mask and a weights'-dtype copy), activations, and under bfloat16 autocast a
      bf16 copy of every matmul weight.
    * pruning event (grads freed): the old masks and the new ones side by side, and one tensor's scores and keys.
    * checkpoint (grads freed): the serialised state (weights, moments, masks) in one buffer, in host memory (so
      not on a GPU's bill).
    """
    m, b = plan.model, plan.budget
    c = m.counts()
    params, prunable = c["total"], c["prunable"]
    sparse = plan.schedule.schedule().final_density < 1
    per_rank = sequences_per_device(b.batch_size, b.grad_accum, world_size)  # as _train splits the step
    parts = {k: int(v) for k, v in training_parts(
        m, per_rank * b.seq_len, sparse, TRAINER_PRECISION[plan.run.dtype], "ddp", world_size,
        ddp_buckets=world_size > 1 if ddp is None else ddp).items()}
    largest = max(i * o for i, o, _ in _linears(m))
    parts["event_transient"] = (5 * prunable + 12 * largest) if sparse else 0
    parts["checkpoint_buffer"] = 12 * params + (prunable if sparse else 0) if device == "cpu" else 0
    kept = parts["weights"] + parts["optimizer"] + parts["masks"] + parts["ddp_buckets"]
    step = kept + parts["grads"] + parts["activations"] + parts["autocast_weights"]
    parts["live"] = max(step, kept + parts["event_transient"], kept + parts["checkpoint_buffer"])
    parts["total"] = int(parts["live"] * (CPU_HEAP_RETENTION if device == "cpu" else 1))
    return parts


def available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def peak_rss() -> int:
    """This process's peak resident set so far, bytes (Linux reports kilobytes)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def gemm_shapes(plan: TrainingPlan, cap: int = 2048) -> list[tuple[int, int, int]]:
    """(m, k, n) of the step's matmuls at one micro-batch: each linear forward, its input gradient and its weight
    gradient. Dimensions are capped (a rate at 2048 rows is the rate at 8192; the sample stays short)."""
    tokens = plan.budget.batch_size // plan.budget.grad_accum * plan.budget.seq_len
    shapes = set()
    for i, o, _ in _linears(plan.model):
        shapes |= {(tokens, i, o), (tokens, o, i), (o, tokens, i)}
    return sorted({tuple(min(x, cap) for x in s) for s in shapes})


def _best_rate(mkn: tuple[int, int, int], dtype: torch.dtype, samples: int, seconds: float) -> float:
    """Best FLOP/s of single products: short samples, so some of them run between other jobs' time slices."""
    mm, k, n = mkn
    a, b = torch.randn(mm, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    torch.mm(a, b)  # warm-up: thread pool, page faults, kernel choice
    best, count, end = float("inf"), 0, time.perf_counter() + seconds
    while count < samples or time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
        count += 1
    return 2.0 * mm * k * n / best


# Runs on one machine that sample the CPU peak before its cache is trusted: this VM's speed drifts by 10-30% over tens
# of seconds, so one sample may fall in a slow phase (and MFU then reads high); the best of samples taken by
# different runs, minutes apart, is the peak.
PEAK_MEASUREMENTS = 3


def cpu_peak(plan: TrainingPlan, cache_dir: Path, samples: int = 10, seconds: float = 0.1,
             measurements: int | None = None) -> tuple[float, str]:
    """The CPU's peak FLOP/s for this plan: the fastest of its GEMM shapes at the run's thread count and dtype, the
    best of the first `measurements` runs' samples on this machine, then cached; returns (FLOP/s, how obtained)."""
    threads, dtype = torch.get_num_threads(), plan.run.dtype
    measurements = measurements or PEAK_MEASUREMENTS
    shapes = gemm_shapes(plan)
    key = f"{cpu_model()} | torch {torch.__version__} | {threads} threads | {dtype} | {shapes}"
    path = Path(cache_dir) / "peak_flops.json"
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(key) or {"flops": 0.0, "measurements": 0}
    if entry.get("measurements", 0) < measurements:
        rate = max(_best_rate(s, DTYPES[dtype], samples, seconds) for s in shapes)
        entry = {"flops": max(rate, entry["flops"]), "measurements": entry.get("measurements", 0) + 1,
                 "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        cache[key] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)  # concurrent runs: the last writer wins, each entry is whole
    how = (f"measured: best single torch.mm of {samples}+ samples at each of the model's {len(shapes)} GEMM shapes "
           f"(forward and both gradients, one micro-batch), {threads} threads, {dtype}; best of "
           f"{entry['measurements']} measurement(s) by runs on this machine, the last at {entry['measured_at']}; "
           f"cached in {path}")
    return entry["flops"], how


def gpu_peak(device: torch.device, dtype: str) -> tuple[float | None, str]:
    """The data-sheet dense peak for this GPU's exact name and the run's dtype; None (no MFU) for any other GPU."""
    name = torch.cuda.get_device_properties(device).name
    peak = GPU_PEAKS.get(name, {}).get(dtype)
    if peak is None:
        return None, f"unknown GPU {name!r} for {dtype}: MFU not reported"
    return peak, f"data sheet: {name} dense {dtype} peak"


def peak_flops(plan: TrainingPlan, device: torch.device, cache_dir: Path) -> tuple[float | None, str]:
    return gpu_peak(device, plan.run.dtype) if device.type == "cuda" else cpu_peak(plan, cache_dir)
