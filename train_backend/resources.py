"""What a run needs and what the machine has: a memory estimate checked before allocation, and peak FLOP/s for MFU."""
from __future__ import annotations

import time

import torch

from planner.costs import HARDWARE
from planner.plan import TrainingPlan


def estimate_memory(plan: TrainingPlan, world_size: int = 1) -> int:
    """Bytes one rank needs: fp32 weights + grads + AdamW's two moments (+ DDP's gradient buckets), masks, and the
    activations autograd keeps for one micro-batch (per token and layer: ~10 d_model + 4 d_ff + n_head * seq_len
    floats, the last for attention probabilities when no fused kernel is used) plus the logits and their gradient.
    """
    m, b = plan.model, plan.budget
    c = m.counts()
    params = c["total"]
    state = 4 * params * (4 + (1 if world_size > 1 else 0)) + c["prunable"]
    rows = b.batch_size // b.grad_accum
    tokens = rows * b.seq_len
    per_token = m.n_layer * (10 * m.d_model + 4 * m.d_ff + m.n_head * b.seq_len) + 3 * m.vocab
    return int(state + 4 * tokens * per_token)


def available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def mm_peak(device: torch.device, size: int = 1024, seconds: float = 0.3, reps: int = 1) -> float:
    """Peak FLOP/s: the bf16 table on known GPUs; on CPU the best fp32 torch.mm rate measured now, over samples of
    `reps` back-to-back products (longer samples are less flattered by brief quiet moments on a shared machine)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        # The planner's hardware table holds the dense bf16 peaks; match "H100" in "NVIDIA H100 80GB HBM3".
        return next((hw.peak_flops for key, hw in HARDWARE.items() if key.upper() in name.upper()),
                    HARDWARE["h100"].peak_flops)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        best = max(best, reps * 2 * size**3 / (time.perf_counter() - t0))
    return best
