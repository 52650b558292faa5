"""What a run needs and what the machine has: a memory estimate checked before allocation, the CPU threads a run
uses (from its GEMM sizes and the idle cores), and the peak FLOP/s that MFU divides by (a data-sheet table on known
GPUs, a measurement at the model's own GEMM shapes on CPU, cached per machine outside any runs folder)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from planner.hardware.costs import GPU_PEAKS, cpu_model
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
    """This process's peak resident set so far, bytes: VmHWM of its own memory map. Not ru_maxrss, which Linux
    carries over exec from the parent (a child of a 600 MB process reports 600 MB before it allocates anything)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    except (OSError, StopIteration):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def gemm_shapes(plan: TrainingPlan, cap: int | None = 2048) -> list[tuple[int, int, int]]:
    """(m, k, n) of the step's matmuls at one micro-batch: each linear forward, its input gradient and its weight
    gradient. Dimensions are capped (a rate at 2048 rows is the rate at 8192; the sample stays short); None: exact."""
    cap = cap or 2**62
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


# A GEMM shares out among threads only past this many multiply-adds per thread: below it the OpenMP hand-off and
# the small element-wise ops between GEMMs (rms_norm on 16 x 128 x 64: 4.8 ms with two threads, most of it spinning)
# cost more than a thread saves. The tiny preset's largest GEMM is 34M (2048 x 64 x 256): one thread, which ran its
# 100 steps in 18.0 s against 20.6 s with two on a quiet 2-core VM.
MACS_PER_THREAD = 2**26


def idle_cores(window: float = 0.1) -> float:
    """Cores the rest of the machine left idle over the last `window` seconds (/proc/stat; where that is missing,
    the 1-minute load average), out of this process's allowed cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        before = _cpu_times()
        time.sleep(window)
        idle, total = (b - a for a, b in zip(before, _cpu_times()))
        return cores * idle / total if total > 0 else float(cores)
    except (OSError, ValueError):
        return max(0.0, cores - os.getloadavg()[0])


def _cpu_times() -> tuple[int, int]:
    """(idle + iowait, total) jiffies of all CPUs since boot (guest time is inside user time: not counted twice)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return fields[3] + fields[4], sum(fields)


def choose_threads(plan: TrainingPlan, requested: int | None = None) -> tuple[int, str]:
    """Intra-op threads for a CPU run and why: `requested` (--threads), else OMP_NUM_THREADS when set, else one per
    MACS_PER_THREAD of the model's largest GEMM, never more than the idle cores (shared by the ranks torchrun put on
    this host), at least one."""
    if requested:
        return requested, "--threads"
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    largest = max(m * k * n for m, k, n in gemm_shapes(plan, cap=None))
    by_size, idle = max(1, largest // MACS_PER_THREAD), idle_cores() / int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    threads = max(1, min(by_size, int(idle + 0.1)))
    return threads, (f"chosen: the largest GEMM has {largest / 1e6:.0f}M multiply-adds ({by_size} thread(s) at "
                     f"{MACS_PER_THREAD / 2**20:.0f}M each), {idle:.1f} cores idle; --threads overrides")


CACHE_ENV = "SPARSEPLAN_CACHE_DIR"


def machine_cache() -> Path:
    """This machine's cache folder (the CPU peak): $SPARSEPLAN_CACHE_DIR, else $XDG_CACHE_HOME/sparseplan, else
    ~/.cache/sparseplan. Outside any runs folder: a fresh runs folder does not measure the machine again."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sparseplan"

# Runs on one machine that sample the CPU peak before its cache is trusted: this VM's speed drifts by 10-30% over tens
# of seconds, so one sample may fall in a slow phase (and MFU then reads high); the best of samples taken by
# different runs, minutes apart, is the peak.
PEAK_MEASUREMENTS = 3


def cpu_peak(plan: TrainingPlan, cache_dir: Path | None = None, samples: int = 10, seconds: float = 0.1,
             measurements: int | None = None) -> tuple[float, str]:
    """The CPU's peak FLOP/s for this plan: the fastest of its GEMM shapes at the run's thread count and dtype, the
    best of the first `measurements` runs' samples on this machine, then cached; returns (FLOP/s, how obtained)."""
    threads, dtype = torch.get_num_threads(), plan.run.dtype
    measurements = measurements or PEAK_MEASUREMENTS
    shapes = gemm_shapes(plan)
    key = f"{cpu_model()} | torch {torch.__version__} | {threads} threads | {dtype} | {shapes}"
    path = Path(cache_dir or machine_cache()) / "peak_flops.json"
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
        cached = _write_cache(path, cache)
    else:
        cached = f"cached in {path}"
    how = (f"measured: best single torch.mm of {samples}+ samples at each of the model's {len(shapes)} GEMM shapes "
           f"(forward and both gradients, one micro-batch), {threads} threads, {dtype}; best of "
           f"{entry['measurements']} measurement(s) by runs on this machine, the last at {entry['measured_at']}; "
           f"{cached}")
    return entry["flops"], how


def _write_cache(path: Path, cache: dict) -> str:
    """Write the peak cache whole (concurrent runs: the last writer wins); a read-only or full disk costs only the
    cache, never the run."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the folder itself could not be made
            pass
        return f"not cached ({path}: {exc.strerror or exc})"
    return f"cached in {path}"


def gpu_peak(device: torch.device, dtype: str) -> tuple[float | None, str]:
    """The data-sheet dense peak for this GPU's exact name and the run's dtype; None (no MFU) for any other GPU."""
    name = torch.cuda.get_device_properties(device).name
    peak = GPU_PEAKS.get(name, {}).get(dtype)
    if peak is None:
        return None, f"unknown GPU {name!r} for {dtype}: MFU not reported"
    return peak, f"data sheet: {name} dense {dtype} peak"


def peak_flops(plan: TrainingPlan, device: torch.device, cache_dir: Path | None = None) -> tuple[float | None, str]:
    return gpu_peak(device, plan.run.dtype) if device.type == "cuda" else cpu_peak(plan, cache_dir)
