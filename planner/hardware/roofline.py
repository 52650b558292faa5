"""Serving time per token by roofline (Williams et al. 2009; as LLM-Viewer applies it to LLM inference).

A pass takes max(FLOPs / peak, bytes / bandwidth) / efficiency seconds: the efficiency is the share of that bound a
real engine reaches (the planner's per-phase MFU inputs). Per token:

* prefill: `batch` prompts of `context` tokens in one pass: the weights are read once for batch x context tokens and
  every token writes its K and V; compute-bound from a few hundred tokens on.
* decode: one new token for each of `batch` sequences: the weights are read once per step for `batch` tokens, and
  each token reads its sequence's KV cache at `context`; bandwidth-bound at small batch, compute-bound once
  batch x 2 FLOPs per weight byte passes the ridge point peak / bandwidth.

FLOPs are those the GPU executes (`planner.hardware.costs`): the dense shape's GEMMs with the pruned ones divided by
the phase's speedup, plus attention at the context. Bytes are the weights in their serving layout
(`planner.hardware.memory.weight_bytes`: sparse only with a kernel that reads the layout) plus the KV traffic.
Without a bandwidth (a bare profile) the bytes term drops and time is FLOPs over peak.
"""
from __future__ import annotations

import numpy as np


def roofline_seconds(flops, bytes_, peak_flops: float, bandwidth: float | None, efficiency: float):
    """(seconds, compute-bound?) of a pass moving `bytes_` and executing `flops`."""
    compute = np.asarray(flops, float) / peak_flops
    memory = np.asarray(bytes_, float) / bandwidth if bandwidth else np.zeros_like(compute)
    return np.maximum(compute, memory) / efficiency, compute >= memory


def serving_seconds(flops_prefill, flops_decode, moved_bytes, kv_per_token, context, hardware, batch=None) -> dict:
    """Seconds per token of prefill and decode and which bound each hits, at hardware.serve_batch (or `batch`)
    sequences and `context` tokens. flops_*: executed FLOPs per token of each phase; moved_bytes: weight bytes one
    pass reads; kv_per_token: K and V bytes of one token."""
    batch = np.asarray(hardware.serve_batch if batch is None else batch, float)
    context = np.asarray(context, float)
    peak, bw = hardware.peak_flops, hardware.hbm_bandwidth
    prompt = batch * np.maximum(context, 1.0)  # tokens one prefill pass reads the weights for (context 0: no prompt)
    prefill, prefill_compute = roofline_seconds(flops_prefill, moved_bytes / prompt + kv_per_token, peak, bw,
                                                hardware.mfu_prefill)
    decode, decode_compute = roofline_seconds(flops_decode, moved_bytes / batch + context * kv_per_token, peak, bw,
                                              hardware.mfu_decode)
    return {"prefill": prefill, "decode": decode, "prefill_compute_bound": prefill_compute,
            "decode_compute_bound": decode_compute}
