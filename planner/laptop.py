"""The laptop: what a run of the laptop recipe costs on one CPU thread, and the laptop law fitted by the validation
study (`python -m train_backend study --preset quick`), bundled in planner/data/.

CPU time model, measured with the trainer at one thread on a shared 2-core machine (batch 16 x 128, byte-level):
seconds per token = 1.3e-5 per layer (framework overhead, dominant below ~100k parameters) + training FLOPs per
token / 37 GFLOP/s. It reproduced 29k / 24k / 20k / 8.3k / 4.5k tokens/s of L2-d32 / L2-d48 / L2-d64 / L3-d96 /
L4-d128 within 10%.
"""
from __future__ import annotations

from planner.costs import model_train_flops_per_token
from planner.shapes import ModelShape

CPU_LAYER_SECONDS_PER_TOKEN = 1.3e-5
CPU_FLOPS = 37e9


def cpu_tokens_per_s(model: ModelShape, seq_len: int) -> float:
    """Training tokens per second of the bundled trainer at one CPU thread (the model above)."""
    per_token = CPU_LAYER_SECONDS_PER_TOKEN * model.n_layer + model_train_flops_per_token(model, seq_len) / CPU_FLOPS
    return 1.0 / per_token


def cpu_seconds(model: ModelShape, tokens: float, seq_len: int) -> float:
    return tokens / cpu_tokens_per_s(model, seq_len)
