"""Hugging Face export: a LlamaForCausalLM folder (config.json + model.safetensors) from a run's checkpoint.

Our module names are HF's minus the `model.` prefix and our RoPE uses HF's rotate_half layout, so weights are copied
as they are (pruned zeros included); no q/k permutation is needed.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from planner.errors import PlannerInputError
from planner.shapes import ModelShape
from train_backend.model import RMS_EPS, ROPE_THETA


def hf_config(shape: ModelShape, max_positions: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": shape.vocab,
        "hidden_size": shape.d_model, "intermediate_size": shape.d_ff, "num_hidden_layers": shape.n_layer,
        "num_attention_heads": shape.n_head, "num_key_value_heads": shape.kv_heads, "head_dim": shape.head_size,
        "hidden_act": "silu", "max_position_embeddings": max_positions, "rms_norm_eps": RMS_EPS,
        "rope_theta": ROPE_THETA, "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA},
        "tie_word_embeddings": shape.tied_embeddings, "attention_bias": False, "mlp_bias": False,
        "torch_dtype": "float32", "bos_token_id": None, "eos_token_id": None,
    }


def export_hf(state_dict: dict, shape: ModelShape, out_dir: Path, max_positions: int = 2048) -> Path:
    """Write config.json and model.safetensors with HF key names into out_dir."""
    if shape.mlp != "swiglu":
        raise PlannerInputError("export: Hugging Face Llama needs a SwiGLU MLP; this model uses GELU")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in state_dict.items():
        if key == "lm_head.weight":
            if shape.tied_embeddings:
                continue  # HF re-ties it to the embedding
            tensors[key] = value
        else:
            tensors[f"model.{key}"] = value
    save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()},
              str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(hf_config(shape, max_positions), indent=2))
    return out_dir
