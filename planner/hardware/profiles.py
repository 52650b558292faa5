"""Accelerator profiles: dense peak FLOP/s, memory and bandwidth from the vendors' data sheets, illustrative prices,
each sparsity pattern's defaults, and "this machine" measured.

Peaks are dense (no structured-sparsity doubling) BF16 tensor-core figures; memory is the capacity the data sheet
states (GiB where the vendor's "GB" is a power of two), bandwidth its peak memory bandwidth. Prices are
illustrative on-demand cloud rates per GPU-hour: override them.
"""
from __future__ import annotations

import functools
import re
import time
from pathlib import Path

import numpy as np

from planner.errors import PlannerInputError
from planner.plan import Hardware

GiB = 2**30
# key: (name, dense BF16 FLOP/s, memory bytes, bandwidth bytes/s, $/GPU-hour, source)
GPU_SPECS: dict[str, tuple[str, float, float, float, float, str]] = {
    "a100-40": ("A100 SXM 40GB", 312e12, 40 * GiB, 1555e9, 1.3, "NVIDIA A100 Tensor Core GPU data sheet (2021)"),
    "a100": ("A100 SXM 80GB", 312e12, 80 * GiB, 2039e9, 1.8, "NVIDIA A100 Tensor Core GPU data sheet (2021)"),
    "h100": ("H100 SXM", 989e12, 80 * GiB, 3.35e12, 2.5, "NVIDIA H100 Tensor Core GPU data sheet (2023)"),
    "h100-pcie": ("H100 PCIe", 756e12, 80 * GiB, 2.0e12, 2.0, "NVIDIA H100 Tensor Core GPU data sheet (2023)"),
    "h200": ("H200 SXM", 989e12, 141e9, 4.8e12, 3.5, "NVIDIA H200 Tensor Core GPU data sheet (2024)"),
    "l4": ("L4", 121e12, 24 * GiB, 300e9, 0.8, "NVIDIA L4 Tensor Core GPU data sheet (2023)"),
    "l40s": ("L40S", 362e12, 48 * GiB, 864e9, 1.0, "NVIDIA L40S GPU data sheet (2023)"),
    "rtx4090": ("GeForce RTX 4090", 165.2e12, 24 * GiB, 1008e9, 0.4,
                "NVIDIA Ada Lovelace architecture whitepaper v2.1 (2023), appendix A"),
}
HARDWARE: dict[str, Hardware] = {
    key: Hardware(name=name, peak_flops=peak, memory_bytes=mem, hbm_bandwidth=bw, usd_per_gpu_hour=usd)
    for key, (name, peak, mem, bw, usd, _) in GPU_SPECS.items()}
SOURCES = {key: spec[-1] for key, spec in GPU_SPECS.items()}

# Dense peaks by the exact device name CUDA reports, per training dtype: bfloat16 on tensor cores, float32 without
# TF32 (PyTorch's default for matmuls), from the same data sheets (structured-sparsity figures halved). The trainer
# reports MFU against these and reports none for a GPU not listed.
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
# Per pattern: sparse-phase speedups (train, prefill, decode) of the compute, and whether a kernel reads the sparse
# layout by default. Unstructured masks run on dense GEMMs, and vLLM decompresses compressed-tensors' sparse-bitmask
# to dense at load, so by default unstructured moves dense bytes (switch `sparse_kernel` on for a load-as-sparse
# kernel such as Flash-LLM's, Xia et al. 2024). 2:4 runs on sparse tensor cores (cuSPARSELt / CUTLASS, which vLLM
# uses for compressed-tensors' sparse-24 checkpoints) at about 1.2x for compute-bound phases, reading half the values
# plus their metadata.
PATTERN_SPEEDUPS: dict[str, tuple[float, float, float]] = {"unstructured": (1.0, 1.0, 1.0), "2:4": (1.2, 1.2, 1.0)}
PATTERN_KERNEL = {"unstructured": False, "2:4": True}
PATTERN_LAYOUT = {"unstructured": "sparse-bitmask", "2:4": "sparse-24"}
KERNELS = {"unstructured": "a load-as-sparse kernel that reads values and bitmask from HBM (Flash-LLM style); vLLM "
                           "itself decompresses sparse-bitmask to dense at load",
           "2:4": "2:4 sparse tensor-core GEMMs (cuSPARSELt / CUTLASS, vLLM's sparse-24 path)"}


def pattern_defaults(pattern: str) -> dict:
    if pattern not in PATTERN_SPEEDUPS:
        raise KeyError(f"unknown sparsity pattern {pattern!r}; choose one of {sorted(PATTERN_SPEEDUPS)}")
    return {**dict(zip(("speedup_train", "speedup_prefill", "speedup_decode"), PATTERN_SPEEDUPS[pattern])),
            "sparse_kernel": PATTERN_KERNEL[pattern], "sparse_layout": PATTERN_LAYOUT[pattern]}


def hardware_profile(name: str, pattern: str = "unstructured", **overrides) -> Hardware:
    """A named accelerator (see GPU_SPECS) with the pattern's defaults; any Hardware field overrides."""
    key = name.lower()
    if key not in HARDWARE:
        raise KeyError(f"unknown hardware {name!r}; choose one of {sorted(HARDWARE)}")
    return Hardware(**{**HARDWARE[key].model_dump(), **pattern_defaults(pattern), **overrides})  # validated


def measure_matmul_flops(n: int = 1024, repeats: int = 5, dtype=np.float32) -> float:
    """Best-of-`repeats` FLOP/s of an n x n numpy matmul (2 n^3 FLOPs) on this machine's BLAS."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    a @ b  # warm-up: thread pool start, page faults
    return 2.0 * n**3 / _best_seconds(lambda: a @ b, repeats)


@functools.cache
def measure_bandwidth(mib: int = 64, repeats: int = 5) -> float:
    """Best-of-`repeats` memory bandwidth, bytes/s: a copy of `mib` MiB (past every cache) reads and writes each byte
    once. Measured once per process: every "this machine" profile shares it."""
    src = np.ones(mib * 2**20 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # warm-up: page faults
    return 2.0 * src.nbytes / _best_seconds(lambda: np.copyto(dst, src), repeats)


def _best_seconds(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return max(best, 1e-12)


def memory_total() -> float | None:
    """This machine's RAM from /proc/meminfo (Linux), else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def this_machine(peak: float | None = None, pattern: str = "unstructured", bandwidth: float | None = None,
                 **overrides) -> Hardware:
    """This machine as a Hardware profile: a measured matmul peak and copy bandwidth (measured now when not given),
    its RAM; free unless a price is given."""
    peak = measure_matmul_flops() if peak is None else peak
    bandwidth = measure_bandwidth() if bandwidth is None else bandwidth
    return Hardware(**{"name": "this machine", "peak_flops": peak, "hbm_bandwidth": bandwidth,
                       "memory_bytes": memory_total(), "usd_per_gpu_hour": 0.0, **pattern_defaults(pattern),
                       **overrides})


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else 'unknown CPU': the machine a measured figure belongs to."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def parse_gpus(text: str, flag: str) -> tuple[str, int]:
    """'h100x8' -> ('h100', 8); 'h100' -> ('h100', 1). Raises PlannerInputError naming `flag`."""
    key, count = text.lower(), 1
    match = re.fullmatch(r"(.+)x(\d+)", key)
    if key not in HARDWARE and match:
        key, count = match.group(1), int(match.group(2))
    if key not in HARDWARE:
        raise PlannerInputError(f"{flag} {text!r}: unknown GPU {key!r}; choose one of {', '.join(HARDWARE)} "
                                f"with a count, e.g. h100x8")
    if count < 1:
        raise PlannerInputError(f"{flag} {text!r}: the count after 'x' must be positive (e.g. h100x8)")
    return key, count
