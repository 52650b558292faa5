"""Llama-style decoder from a planner ModelShape: RMSNorm, RoPE, SwiGLU (or GELU) MLP, grouped KV heads, no biases.

Module names follow Hugging Face's LlamaForCausalLM (embed_tokens, layers.i.self_attn.q_proj, ...) and RoPE uses the
HF rotate_half layout, so export is a rename with no weight permutation. Parameter counts equal ModelShape.counts().
"""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F

from planner.shapes import ModelShape

ROPE_THETA = 10000.0
RMS_EPS = 1e-5


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, RMS_EPS)


def rope_tables(seq_len: int, head_dim: int, device=None):
    """cos/sin of shape (seq_len, head_dim), HF layout: frequencies repeated over the two halves."""
    inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, s: ModelShape):
        super().__init__()
        self.n_head, self.n_kv, self.hd = s.n_head, s.kv_heads, s.head_size
        self.q_proj = nn.Linear(s.d_model, self.n_head * self.hd, bias=False)
        self.k_proj = nn.Linear(s.d_model, self.n_kv * self.hd, bias=False)
        self.v_proj = nn.Linear(s.d_model, self.n_kv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.n_head * self.hd, s.d_model, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_head, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin).to(v.dtype), apply_rope(k, cos, sin).to(v.dtype)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv != self.n_head)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.n_head * self.hd))


class MLP(nn.Module):
    def __init__(self, s: ModelShape):
        super().__init__()
        self.swiglu = s.mlp == "swiglu"
        if self.swiglu:
            self.gate_proj = nn.Linear(s.d_model, s.d_ff, bias=False)
        self.up_proj = nn.Linear(s.d_model, s.d_ff, bias=False)
        self.down_proj = nn.Linear(s.d_ff, s.d_model, bias=False)

    def forward(self, x):
        h = F.silu(self.gate_proj(x)) * self.up_proj(x) if self.swiglu else F.gelu(self.up_proj(x))
        return self.down_proj(h)


class Block(nn.Module):
    def __init__(self, s: ModelShape):
        super().__init__()
        self.input_layernorm = RMSNorm(s.d_model)
        self.self_attn = Attention(s)
        self.post_attention_layernorm = RMSNorm(s.d_model)
        self.mlp = MLP(s)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Transformer(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        self.embed_tokens = nn.Embedding(shape.vocab, shape.d_model)
        self.layers = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.norm = RMSNorm(shape.d_model)
        self.lm_head = nn.Linear(shape.d_model, shape.vocab, bias=False)
        if shape.tied_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self._rope_len = 0
        # Hugging Face Llama's init, as in the seed's models: N(0, 0.02) for every matrix, with no depth scaling of
        # the residual writes (GPT-2 style). One global magnitude threshold compares weights across matrices, so a
        # smaller init on o_proj/down_proj would bias the pruning toward them.
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def _rope(self, t, device):
        if self._rope_len < t or self._cos.device != device:
            self._cos, self._sin = rope_tables(t, self.shape.head_size, device)
            self._rope_len = t
        return self._cos[:t], self._sin[:t]

    def forward(self, idx, targets=None):
        cos, sin = self._rope(idx.shape[1], idx.device)
        x = self.embed_tokens(idx)
        for block in self.layers:
            x = block(x, cos, sin)
        logits = self.lm_head(self.norm(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))


def prunable_weights(model: nn.Module, head: bool = True) -> list[tuple[str, nn.Parameter]]:
    """The weights the seed prunes: every attention and MLP matrix, plus the LM head when it is not tied (and `head`)."""
    model = getattr(model, "module", model)  # unwrap DDP
    out = [(n, p) for n, p in model.named_parameters() if n.endswith("_proj.weight")]
    if head and not model.shape.tied_embeddings:
        out.append(("lm_head.weight", model.lm_head.weight))
    return out


def count_params(model: nn.Module) -> dict[str, int]:
    """total / embedding / prunable counted from the module (tied weights once), to hold against ModelShape."""
    model = getattr(model, "module", model)
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "embedding": model.embed_tokens.weight.numel(),
            "prunable": sum(p.numel() for _, p in prunable_weights(model))}
