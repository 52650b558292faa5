"""Hugging Face export: a LlamaForCausalLM folder (config.json + model.safetensors) from a run's checkpoint.

Our module names are HF's minus the `model.` prefix and our RoPE uses HF's rotate_half layout, so weights are copied
as they are (pruned zeros included); no q/k permutation is needed. The config is built by `transformers.LlamaConfig`.
A pruned model's plain folder states compressed-tensors' `sparsity_config` (structure unstructured or 2:4, global
sparsity over all parameters, the Linear targets) at the top level of config.json, for reading only: inside a
`quantization_config` without quantization it broke transformers 5.17 + compressed-tensors 0.19.

`compressed=True` stores every pruned matrix in compressed-tensors' sparse-bitmask layout under the names its
compressor writes (the module's: `...q_proj.compressed`, the non-zero values in row-major order; `.bitmask`, one bit
per weight packed by `compressed_tensors.utils.pack_bitmasks`; `.row_offsets`; `.shape`), about (4 d + 1/8) / 4 of the
float32 bytes at density d; a 2:4 model in its sparse-24-bitmask layout (two values of every four, (rows, cols / 2),
and the bitmask), what 2:4 kernels read; `quantization_config.sparsity_config` names the format. Beside the parts
each pruned matrix keeps an empty `.weight`: transformers 5 with compressed-tensors >= 0.15 no longer decompresses
sparse formats, and without it initialised those matrices randomly; with it, it refuses on their size. `load_hf`
decompresses with the package's `unpack_bitmasks` and hands transformers the dense weights (tests/integrations runs
both loaders, and the native one of transformers 4.57 + compressed-tensors 0.14).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from planner.errors import PlannerInputError
from planner.shapes import ModelShape
from train_backend.model import RMS_EPS, ROPE_THETA

PARTS = ("compressed", "bitmask", "row_offsets", "shape")  # the stored tensors of one compressed weight


def hf_config(shape: ModelShape, max_positions: int):
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.d_model, intermediate_size=shape.d_ff,
                       num_hidden_layers=shape.n_layer, num_attention_heads=shape.n_head,
                       num_key_value_heads=shape.kv_heads, head_dim=shape.head_size, hidden_act="silu",
                       max_position_embeddings=max_positions, rms_norm_eps=RMS_EPS,
                       rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
                       tie_word_embeddings=shape.tied_embeddings, attention_bias=False, mlp_bias=False,
                       bos_token_id=None, eos_token_id=None, architectures=["LlamaForCausalLM"], dtype="float32")


def _pruned(tensors: dict, shape: ModelShape) -> list[str]:
    """HF names of the matrices the planner counts as prunable (every projection, the untied LM head)."""
    return [k for k in tensors if k.endswith("_proj.weight") or (k == "lm_head.weight" and not shape.tied_embeddings)]


def _two_four(tensors: dict, names: list[str]) -> bool:
    """At most two non-zeros in every group of four consecutive inputs of every pruned matrix."""
    return all(tensors[k].shape[-1] % 4 == 0 and bool(((tensors[k].reshape(-1, 4) != 0).sum(1) <= 2).all())
               for k in names)


def sparsity_config(tensors: dict, shape: ModelShape, compressed: bool) -> dict | None:
    """compressed-tensors' sparsity_config (format dense, sparse-bitmask or sparse-24-bitmask); None for a model with
    no zeros."""
    from compressed_tensors.config import BitmaskConfig, DenseSparsityConfig, Sparse24BitMaskConfig
    names = _pruned(tensors, shape)
    zeros = sum(int((tensors[k] == 0).sum()) for k in names)
    if zeros == 0:
        return None
    two_four = _two_four(tensors, names)
    kind = DenseSparsityConfig if not compressed else Sparse24BitMaskConfig if two_four else BitmaskConfig
    sparsity = kind(global_sparsity=zeros / sum(v.numel() for v in tensors.values()),
                    sparsity_structure="2:4" if two_four else "unstructured", targets=["Linear"],
                    ignore=["lm_head"] if shape.tied_embeddings else [])
    return sparsity.model_dump(exclude={"registry_requires_subclass"})


def _bitmask(name: str, w: torch.Tensor, two_four: bool) -> dict:
    """One weight in compressed-tensors' sparse-bitmask layout, or sparse-24-bitmask for a 2:4 weight."""
    from compressed_tensors.utils import pack_bitmasks
    if two_four:  # the two largest of each four inputs, values as (rows, cols / 2): what 2:4 kernels read
        groups = w.reshape(-1, 4)
        kept = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, groups.abs().topk(2, dim=1).indices, True)
        kept = kept.view(w.shape)
        parts = {"shape": torch.tensor(list(w.shape)).reshape(-1, 1), "compressed": w[kept].reshape(w.shape[0], -1),
                 "bitmask": pack_bitmasks(kept)}
    else:
        nonzero = w != 0
        counts = nonzero.sum(dim=1)
        parts = {"compressed": w[nonzero], "bitmask": pack_bitmasks(nonzero),
                 "row_offsets": torch.cumsum(counts, 0) - counts, "shape": torch.tensor(list(w.shape))}
    base = name.removesuffix(".weight")  # the compressors key the parts by module: `...q_proj.compressed`
    # An empty `.weight` beside them: a loader that does not decompress sparse formats stops on its size instead of
    # initialising the matrix randomly; one that does replaces the module's weight by the parts and never reads it.
    return {name: w.new_empty(0)} | {f"{base}.{k}": v for k, v in parts.items()}


def export_hf(state_dict: dict, shape: ModelShape, out_dir: Path, max_positions: int = 2048,
              compressed: bool = False) -> Path:
    """Write config.json and model.safetensors with HF key names into out_dir."""
    if shape.mlp != "swiglu":
        raise PlannerInputError("export: Hugging Face Llama needs a SwiGLU MLP; this model uses GELU")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in state_dict.items():
        if key == "lm_head.weight" and shape.tied_embeddings:
            continue  # HF re-ties it to the embedding
        tensors[key if key == "lm_head.weight" else f"model.{key}"] = value.detach().to("cpu", torch.float32)
    config = hf_config(shape, max_positions)
    sparsity = sparsity_config(tensors, shape, compressed)
    if sparsity is not None and compressed:  # what compressed-tensors' ModelCompressor writes for a sparse model
        import compressed_tensors
        config.quantization_config = {"quant_method": "compressed-tensors", "version": compressed_tensors.__version__,
                                      "sparsity_config": sparsity}
        names = _pruned(tensors, shape)
        two_four = _two_four(tensors, names)
        for name in names:
            tensors |= _bitmask(name, tensors.pop(name), two_four)
    elif sparsity is not None:  # informational only: a quantization_config without quantization breaks loaders
        config.sparsity_config = sparsity
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    config.save_pretrained(out_dir)
    return out_dir


def load_hf(folder: str | Path):
    """LlamaForCausalLM from an exported folder: plain, or compressed (sparse-bitmask, sparse-24-bitmask)."""
    from compressed_tensors.utils import unpack_bitmasks
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaForCausalLM
    folder = Path(folder)
    quant = json.loads((folder / "config.json").read_text()).get("quantization_config") or {}
    if quant.get("sparsity_config", {}).get("format") not in ("sparse-bitmask", "sparse-24-bitmask"):
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    stored = load_file(str(folder / "model.safetensors"))
    dense = {k: v for k, v in stored.items() if k.rsplit(".", 1)[-1] not in PARTS}
    for prefix in {k.rsplit(".", 1)[0] for k in stored if k.endswith(".bitmask")}:
        shape = stored[f"{prefix}.shape"].flatten().tolist()
        w = torch.zeros(shape, dtype=stored[f"{prefix}.compressed"].dtype)
        w[unpack_bitmasks(stored[f"{prefix}.bitmask"], shape)] = stored[f"{prefix}.compressed"].flatten()
        dense[prefix if prefix.endswith(".weight") else f"{prefix}.weight"] = w
    config = AutoConfig.from_pretrained(folder)
    del config.quantization_config  # the weights arrive dense; compressed-tensors need not wrap the model
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(dense, strict=False)
    if unexpected or set(missing) - ({"lm_head.weight"} if config.tie_word_embeddings else set()):
        raise PlannerInputError(f"{folder}: weights do not match the config (missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]})")
    model.tie_weights()
    return model.eval()
