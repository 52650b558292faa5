"""Bytes per device: training (weights, gradients, AdamW state, masks, activations; DDP or ZeRO sharding) and
serving (weights in a storage layout, KV cache), and the device counts and batches that fit.

Every function broadcasts over numpy arrays of shape dimensions (`dims`), so the search sizes every candidate at once;
the trainer's own memory check (`train_backend.resources.estimate_memory`) is `training_parts` plus its transients.

* **Training states** per parameter (bytes: weights, grads, optimizer): fp32 4 + 4 + 8 (AdamW's two moments);
  bf16 mixed precision 2 + 2 + 12 (fp32 master copy and moments: 16 in all, as EleutherAI's Transformer Math);
  bf16 autocast (the trainer's `bfloat16`): fp32 states plus a bf16 copy of every matmul weight for the forward.
  ZeRO-1 shards the optimizer state over K devices, ZeRO-2 the gradients too, ZeRO-3 / FSDP the weights and masks too;
  DDP shards nothing and keeps a gradient-sized bucket (Rajbhandari et al. 2020).
* **Masks as the trainer stores them**: a bool mask and a copy in the weights' dtype per prunable weight.
* **Activations** (Korthikanti et al. 2022 style, derived from `train_backend/model.py` and checked against what
  autograd saves): per token and layer, each RMSNorm keeps its input and its normalised input (the residual stream's
  dtype: `F.rms_norm` is composite on CPU) and its output feeds the next matmul; q, k, v after RoPE and SDPA's output,
  which o_proj reads head-merged without a copy (SDPA keeps no s x s attention matrix, only a log-sum-exp per head);
  the MLP's gate, SiLU, up and product (GELU: up and GELU). Per layer that is s b h c bytes with
  c = 4 r + a (2 + 2 d_attn / h + 2 d_kv / h + 4 d_ff / h), a the activations' bytes and r the residual's: with
  d_attn = d_kv = h and d_ff = 8/3 h, c = 49.3 for bf16 activations on an fp32 residual (the trainer's autocast) and
  41.3 in pure bf16 — against GPT's 34 + 5 a s / h, whose softmax term SDPA removes. Activation checkpointing keeps
  each block's input and recomputes one block at a time.
* **Serving weights**: dense at 2 (bf16, fp16) or 1 (fp8) byte; compressed-tensors' sparse-bitmask per matrix of
  (rows, cols): the non-zero values, a bit per weight packed by row (rows x ceil(cols / 8) bytes), int64 row offsets
  (8 bytes per row) and the int64 shape (16 bytes); sparse-24-bitmask: half the values, the same bitmask and shape.
  Token embeddings are lookups: held in memory, not read per token.
* **KV cache**: 2 n_layer context batch n_kv_head head_dim bytes (grouped-query attention stores n_kv_head heads).
"""
from __future__ import annotations

import numpy as np

from planner.shapes import ModelShape, param_counts

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8": 1, "int8": 1}
LAYOUTS = ("dense", "sparse-bitmask", "sparse-24")
# precision: (weight, gradient, optimizer-state, activation, residual-stream) bytes
PRECISIONS = {"fp32": (4, 4, 8, 4, 4), "bf16-mixed": (2, 2, 12, 2, 2), "bf16-autocast": (4, 4, 8, 2, 4)}
SHARDINGS = {"ddp": 0, "zero1": 1, "zero2": 2, "zero3": 3, "fsdp": 3}  # the ZeRO stage each one is
DEFAULT_HEADROOM = 0.1  # share of a device's memory kept free: CUDA context, allocator fragmentation, NCCL buffers
_SHAPE_KEYS = ("n_layer", "d_model", "n_head", "n_kv_head", "head_dim", "d_ff", "vocab")


def dims(model) -> dict:
    """A ModelShape (or a dict of broadcastable arrays with the same keys, plus `tied` and `swiglu`) as arrays."""
    if isinstance(model, ModelShape):
        return {"n_layer": model.n_layer, "d_model": model.d_model, "n_head": model.n_head,
                "n_kv_head": model.kv_heads, "head_dim": model.head_size, "d_ff": model.d_ff, "vocab": model.vocab,
                "tied": model.tied_embeddings, "swiglu": model.mlp == "swiglu"}
    return model


def _counts(d: dict) -> dict:
    c = param_counts(*(np.asarray(d[k], np.int64) for k in _SHAPE_KEYS), bool(np.all(d["tied"])),
                     "swiglu" if np.all(d["swiglu"]) else "gelu")
    return {k: np.asarray(v, float) for k, v in c.items()}


def _matrix_rows(d: dict):
    """(rows, packed bitmask bytes, matrices) over the prunable matrices, each stored (out_features, in_features)."""
    L, h, q, kv, ff = (np.asarray(d[k], float) for k in ("n_layer", "d_model", "n_head", "n_kv_head", "d_ff"))
    q, kv = q * d["head_dim"], kv * d["head_dim"]
    up = np.where(d["swiglu"], 2.0, 1.0)  # gate and up, or up alone
    bits_h, bits_q, bits_ff = np.ceil(h / 8), np.ceil(q / 8), np.ceil(ff / 8)
    head = np.where(d["tied"], 0.0, 1.0)
    rows = L * (q + 2 * kv + h + up * ff + h) + head * d["vocab"]
    packed = L * ((q + 2 * kv + up * ff) * bits_h + h * bits_q + h * bits_ff) + head * d["vocab"] * bits_h
    return rows, packed, L * (4 + up + 1) + head


def weight_bytes(model, density=1.0, layout: str = "dense", dtype: str = "bfloat16"):
    """(stored, moved) bytes of the model's weights in a layout: stored is what memory holds, moved what one forward
    step reads (the stored bytes less untied token embeddings, which are looked up). Broadcasts over density."""
    if layout not in LAYOUTS:
        raise KeyError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    d = dims(model)
    b, c = DTYPE_BYTES[dtype], _counts(d)
    density = np.asarray(density, float)
    fixed = (c["total"] - c["prunable"]) * b
    if layout == "dense":
        stored = c["total"] * b + 0 * density
    else:
        rows, packed, matrices = _matrix_rows(d)
        values = np.round(c["prunable"] * density) if layout == "sparse-bitmask" else c["prunable"] / 2 + 0 * density
        offsets = 8 * rows if layout == "sparse-bitmask" else 0.0
        stored = fixed + values * b + packed + offsets + 16 * matrices
    lookups = np.where(d["tied"], 0.0, c["embedding"] * b)
    return stored, stored - lookups


def serving_layout(final_density, hardware) -> np.ndarray:
    """The layout weights are served in: hardware.sparse_layout only for a pruned model read by a sparse kernel
    (without one, vLLM decompresses a sparse checkpoint to dense at load, so memory and traffic are dense)."""
    sparse = (np.asarray(final_density) < 1) & hardware.sparse_kernel
    return np.where(sparse, hardware.sparse_layout, "dense")


def kv_bytes_per_token(model, dtype: str = "bfloat16"):
    """K and V of one token in every layer: 2 n_layer n_kv_head head_dim bytes."""
    d = dims(model)
    return 2.0 * np.asarray(d["n_layer"], float) * d["n_kv_head"] * d["head_dim"] * DTYPE_BYTES[dtype]


def serving_memory(model, density, layout: str, context, batch, dtype: str = "bfloat16", gpu_bytes=None,
                   headroom: float = DEFAULT_HEADROOM) -> dict:
    """Serving bytes (weights, KV cache at context x batch, total), and with `gpu_bytes`: the largest batch one GPU
    holds (0 when the weights alone overflow it) and the fewest GPUs (tensor-parallel shards) for `batch`."""
    weights, _ = weight_bytes(model, density, layout, dtype)
    kv_seq = kv_bytes_per_token(model, dtype) * np.asarray(context, float)
    out = {"weights": weights, "kv_cache": kv_seq * batch, "kv_per_sequence": kv_seq}
    out["total"] = out["weights"] + out["kv_cache"]
    if gpu_bytes is not None:
        usable = gpu_bytes * (1 - headroom)
        out["max_batch_per_gpu"] = np.maximum(np.floor((usable - weights) / kv_seq), 0)
        out["min_gpus"] = np.ceil(out["total"] / usable)
    return out


def _layer_bytes(d: dict, precision: str):
    """(the s b h c part, SDPA's fp32 log-sum-exp per head and the norms' 1/rms) per token of one layer."""
    act, res = PRECISIONS[precision][3:]
    h = np.asarray(d["d_model"], float)
    q, kv = np.asarray(d["n_head"], float) * d["head_dim"], np.asarray(d["n_kv_head"], float) * d["head_dim"]
    mlp = np.where(d["swiglu"], 4.0, 2.0) * d["d_ff"]
    return 4 * res * h + act * (2 * h + 2 * q + 2 * kv + mlp), 4.0 * (np.asarray(d["n_head"], float) + 2)


def activation_bytes_per_token(model, precision: str = "fp32", checkpointing: bool = False):
    """Activation bytes autograd keeps per token of the micro-batch: every layer's (see the module docstring), the
    final norm's (input, normalised input, output) and the fp32 logits path (logits, log-softmax and its gradient:
    12 vocab)."""
    d = dims(model)
    act, res = PRECISIONS[precision][3:]
    h, L = np.asarray(d["d_model"], float), np.asarray(d["n_layer"], float)
    layer = sum(_layer_bytes(d, precision))
    kept = L * res * h + layer if checkpointing else L * layer  # checkpointing: block inputs, one block recomputed
    return kept + 2 * res * h + act * h + 12.0 * d["vocab"]


def korthikanti_coefficient(model, precision: str = "bf16-mixed") -> float:
    """This block's c in activations = s b h c per layer (GPT's is 34 + 5 a s / h with 16-bit activations)."""
    d = dims(model)
    return float(_layer_bytes(d, precision)[0] / d["d_model"])


def sequences_per_device(batch_size: int, grad_accum: int, devices: int) -> int:
    """Sequences one device holds per micro-batch, as the trainer splits a step: batch_size / devices rows per rank,
    in max(1, grad_accum / devices) micro-batches (grad_accum counts micro-batches over all ranks)."""
    rows = -(-batch_size // devices)
    return max(1, -(-rows // max(1, grad_accum // devices)))


def training_parts(model, tokens_per_device, sparse, precision: str = "fp32", sharding: str = "ddp", devices=1,
                   checkpointing: bool = False, ddp_buckets: bool | None = None) -> dict:
    """Bytes per device by part during a training step (forward and backward) at `tokens_per_device` micro-batch
    tokens; `ddp_buckets` defaults to DDP over more than one device."""
    if precision not in PRECISIONS:
        raise KeyError(f"unknown precision {precision!r}; choose one of {sorted(PRECISIONS)}")
    if sharding not in SHARDINGS:
        raise KeyError(f"unknown sharding {sharding!r}; choose one of {sorted(SHARDINGS)}")
    d = dims(model)
    c = _counts(d)
    wb, gb, ob = PRECISIONS[precision][:3]
    stage, k = SHARDINGS[sharding], np.asarray(devices, float)
    params, prunable = c["total"], c["prunable"]
    matmul = prunable + np.where(d["tied"], c["embedding"], 0.0)
    buckets = (sharding == "ddp" and np.asarray(devices) > 1) if ddp_buckets is None else ddp_buckets
    return {
        "weights": params * wb / (k if stage >= 3 else 1),
        "grads": params * gb / (k if stage >= 2 else 1),
        "optimizer": params * ob / (k if stage >= 1 else 1),
        "masks": np.where(sparse, prunable * (1 + wb), 0.0) / (k if stage >= 3 else 1),
        "ddp_buckets": np.where(buckets, params * gb, 0.0),
        "autocast_weights": 2.0 * matmul if precision == "bf16-autocast" else 0.0 * params,
        "activations": np.asarray(tokens_per_device, float) * activation_bytes_per_token(d, precision, checkpointing),
    }


def min_devices(model, tokens_per_device, sparse, gpu_bytes, headroom: float = DEFAULT_HEADROOM,
                max_devices: int = 65536, **kw):
    """The fewest devices whose per-device training memory fits `gpu_bytes` less the head-room (the micro-batch per
    device held fixed); NaN where none up to `max_devices` does (DDP: 1 or none)."""
    one, two = (training_parts(model, tokens_per_device, sparse, devices=k, **kw) for k in (1, 2))
    total1, total2 = sum(one.values()), sum(two.values())
    sharded = 2 * (total1 - total2)  # the bytes divided by K (the bucket term switches on at K > 1: DDP only)
    fixed = total1 - sharded
    usable = gpu_bytes * (1 - headroom)
    if kw.get("sharding", "ddp") == "ddp":
        k = np.where(total1 <= usable, 1.0, np.nan)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where(fixed < usable, np.maximum(np.ceil(sharded / (usable - fixed)), 1), np.nan)
    return np.where(k <= max_devices, k, np.nan)


def final_model_memory(model: ModelShape, final_sparsity, dtype: str = "bfloat16", index_bytes: int | None = None,
                       pointer_bytes: int = 4) -> dict[str, np.ndarray]:
    """Bytes to store the final model per format (broadcast over final_sparsity); unpruned weights stay dense.

    dense, bitmask (compressed-tensors' sparse-bitmask) and two_four (its sparse-24-bitmask; NaN unless the final
    sparsity is 0.5) as `weight_bytes` stores them; csr: per matrix the non-zeros plus a column index of
    `index_bytes` each (default 2, uint16, when every in_features <= 65536, else 4) and out_features + 1 row pointers
    of `pointer_bytes`.
    """
    if dtype not in DTYPE_BYTES:
        raise KeyError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPE_BYTES)}")
    b, s = DTYPE_BYTES[dtype], np.asarray(final_sparsity, float)
    d, c = dims(model), model.counts()
    rows, _, matrices = _matrix_rows(d)
    if index_bytes is None:
        index_bytes = 2 if max(model.d_model, model.d_ff, model.n_head * model.head_size) <= 2**16 else 4
    nnz = np.round(c["prunable"] * (1.0 - s))
    return {
        "dense": weight_bytes(model, 1.0 - s, "dense", dtype)[0],
        "bitmask": weight_bytes(model, 1.0 - s, "sparse-bitmask", dtype)[0],
        "csr": (c["total"] - c["prunable"]) * b + nnz * (b + index_bytes) + (rows + matrices) * pointer_bytes,
        "two_four": np.where(np.isclose(s, 0.5), weight_bytes(model, 0.5, "sparse-24", dtype)[0], np.nan),
    }
