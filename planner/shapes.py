"""Model shapes and exact parameter accounting.

Prunable weights follow the seed's released code: every linear weight in attention and the MLP, plus the LM head
when it is untied. Token embeddings and norm scales are never pruned. No biases anywhere (Llama style).

`param_counts` is the one formula; it broadcasts over numpy arrays so the search can count many shapes at once.
Counts are int64 there; a shape is validated with the same formula on exact Python integers, so a shape whose count
would overflow (or lose float64 exactness, past 2^53) is refused instead of reporting a wrapped-around N.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.io import Int

MAX_PARAMS = 2**53  # float64 holds every integer up to here: N_avg and the laws' arithmetic stay exact

def param_counts(n_layer, d_model, n_head, n_kv_head, head_dim, d_ff, vocab, tied=False, mlp="swiglu",
                 dtype=np.int64, prune_head=True):
    """Exact counts for a Llama-style decoder; every numeric argument may be a numpy array (broadcast).

    Returns a dict of arrays: total, embedding, prunable, fixed (= total - prunable), non_embedding, norm, and matmul
    (every linear weight, a tied LM head included: the weights that multiply). `prune_head=False` keeps an untied
    LM head dense: it counts as fixed, not prunable (a tied head is never prunable). `dtype=object` counts in Python
    integers, which never overflow.
    """
    n_layer, d_model, n_head, n_kv_head, head_dim, d_ff, vocab = (
        np.asarray(x, dtype=dtype) for x in (n_layer, d_model, n_head, n_kv_head, head_dim, d_ff, vocab))
    attn = d_model * head_dim * (2 * n_head + 2 * n_kv_head)  # q and o: n_head heads; k and v: n_kv_head heads
    mlp_mats = 3 if mlp == "swiglu" else 2
    per_layer = attn + mlp_mats * d_model * d_ff
    embedding = vocab * d_model
    lm_head = np.zeros_like(embedding) if tied else vocab * d_model
    norm = (2 * n_layer + 1) * d_model  # two RMSNorm scales per block plus the final norm
    total = n_layer * per_layer + lm_head + embedding + norm
    prunable = n_layer * per_layer + (lm_head if prune_head else 0)  # a dense head moves to fixed
    return {"total": total, "embedding": embedding, "prunable": prunable, "fixed": total - prunable,
            "non_embedding": total - embedding, "norm": norm, "matmul": n_layer * per_layer + vocab * d_model}


class ModelShape(BaseModel):
    """A Llama-style decoder: RMSNorm, RoPE, no biases, SwiGLU (or GELU) MLP, optional grouped KV heads."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_layer: Int = Field(gt=0)
    d_model: Int = Field(gt=0)
    n_head: Int = Field(gt=0)
    n_kv_head: Int | None = Field(None, gt=0, description="KV heads (grouped-query attention); default n_head")
    head_dim: Int | None = Field(None, gt=0, description="default d_model // n_head")
    d_ff: Int = Field(gt=0)
    vocab: Int = Field(gt=0)
    tied_embeddings: bool = False
    mlp: Literal["swiglu", "gelu"] = "swiglu"

    @model_validator(mode="after")
    def _check_heads(self):
        if self.head_dim is None and self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}; give head_dim")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head {self.n_head} is not a multiple of n_kv_head {self.kv_heads}")
        total = int(param_counts(self.n_layer, self.d_model, self.n_head, self.kv_heads, self.head_size, self.d_ff,
                                 self.vocab, self.tied_embeddings, self.mlp, dtype=object)["total"])
        if total > MAX_PARAMS:
            raise ValueError(f"{total:.3e} parameters is past the {MAX_PARAMS:.3e} this planner counts exactly")
        return self

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def head_size(self) -> int:
        return self.head_dim or self.d_model // self.n_head

    def counts(self, prune_head: bool = True) -> dict[str, int]:
        """`param_counts` of this shape; prune_head=False keeps an untied LM head dense (fixed)."""
        c = param_counts(self.n_layer, self.d_model, self.n_head, self.kv_heads, self.head_size, self.d_ff,
                         self.vocab, self.tied_embeddings, self.mlp, prune_head=prune_head)
        return {k: int(v) for k, v in c.items()}

    @property
    def total(self) -> int:
        return self.counts()["total"]

    @property
    def prunable(self) -> int:
        return self.counts()["prunable"]

    @property
    def fixed(self) -> int:
        return self.counts()["fixed"]

    @property
    def embedding(self) -> int:
        return self.counts()["embedding"]

    def n_params(self, convention: str = "total", prune_head: bool = True) -> tuple[int, int]:
        """(fixed, prunable) under a counting convention: 'total' or 'non_embedding'; prune_head=False counts an
        untied LM head as fixed.

        N(t) = fixed + prunable * density(t) under that convention.
        """
        c = self.counts(prune_head)
        fixed = c["fixed"] if convention == "total" else c["fixed"] - c["embedding"]
        if convention not in ("total", "non_embedding"):
            raise ValueError(f"unknown parameter convention {convention!r}: use 'total' or 'non_embedding'")
        return fixed, c["prunable"]


# The seed's reference configurations (llama2-70m and llama2-1b from its released code) and small CPU shapes.
PRESETS: dict[str, ModelShape] = {
    "llama2-70m": ModelShape(n_layer=6, d_model=512, n_head=8, d_ff=2048, vocab=32000),
    "llama2-1b": ModelShape(n_layer=16, d_model=2048, n_head=8, d_ff=8192, vocab=32000),
    "tiny": ModelShape(n_layer=2, d_model=64, n_head=4, d_ff=192, vocab=256),
    "cpu-small": ModelShape(n_layer=4, d_model=128, n_head=4, d_ff=384, vocab=256),
}


def matmul_params(model: ModelShape, prune_head: bool = True) -> tuple[int, int]:
    """(fixed, prunable) parameters doing matrix work, the cost model's N (planner.hardware.costs): the prunable
    linear weights,
    and the ones that multiply but are never pruned (a tied LM head, or an untied one kept dense by
    prune_head=False). Embedding lookups and norm scales do no matmuls."""
    c = model.counts(prune_head)
    return c["matmul"] - c["prunable"], c["prunable"]
