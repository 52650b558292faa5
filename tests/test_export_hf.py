"""Hugging Face export: LlamaConfig, compressed-tensors' sparsity_config, and the sparse-bitmask folder.

Both folders load through transformers with identical logits; the compressed one is smaller by exactly the bytes the
format stores (4 per non-zero value, one bit per weight, 8 per row offset, 16 per shape).
"""
import json
import struct

import pytest
import torch

from planner.ladder import tiny_plan
from planner.plan import resolve_schedule
from planner.shapes import ModelShape
from train_backend.cli import main
from train_backend.export import export_hf, load_hf
from train_backend.model import Transformer, prunable_weights
from train_backend.pruning import Pruner

transformers = pytest.importorskip("transformers")
SHAPE = ModelShape(n_layer=2, d_model=64, n_head=4, n_kv_head=2, d_ff=192, vocab=256)


def pruned_model(density, shape=SHAPE, pattern="unstructured"):
    torch.manual_seed(0)
    model = Transformer(shape).eval()
    sched = resolve_schedule(shape, 100, "geometric", 1 - density if pattern == "unstructured" else 0.5, "tokens",
                             0.2, 0.6, every_steps=10, pattern=pattern)
    Pruner(prunable_weights(model), sched, 100).prune(density)
    return model


def payload_bytes(folder):
    """Tensor bytes of model.safetensors: the file minus its 8-byte length and JSON header."""
    path = folder / "model.safetensors"
    with open(path, "rb") as f:
        header = struct.unpack("<Q", f.read(8))[0]
    return path.stat().st_size - 8 - header


def config_of(folder):
    return json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("density, tied, pattern", [(0.5, False, "unstructured"), (0.2, True, "unstructured"),
                                                    (0.5, False, "2:4")])
def test_dense_and_compressed_folders_load_with_identical_logits(density, tied, pattern, tmp_path, one_torch_thread):
    shape = SHAPE.model_copy(update={"tied_embeddings": tied})
    model = pruned_model(density, shape, pattern)
    dense = export_hf(model.state_dict(), shape, tmp_path / "dense", max_positions=64)
    packed = export_hf(model.state_dict(), shape, tmp_path / "packed", max_positions=64, compressed=True)
    x = torch.randint(0, shape.vocab, (2, 24))
    plain = transformers.AutoModelForCausalLM.from_pretrained(dense, dtype=torch.float32).eval()  # no helper
    with torch.no_grad():
        ours, a, b = model(x), plain(x).logits, load_hf(packed)(x).logits
    assert torch.equal(a, b)
    assert torch.allclose(ours, a, atol=1e-4)
    # the plain folder's sparsity is informational: a quantization_config without quantization breaks loaders
    assert "quantization_config" not in config_of(dense) and config_of(dense)["sparsity_config"]["format"] == "dense"
    fmt = "sparse-24-bitmask" if pattern == "2:4" else "sparse-bitmask"
    assert config_of(packed)["quantization_config"]["sparsity_config"]["format"] == fmt
    # transformers 5 with compressed-tensors >= 0.15 does not decompress sparse formats: it must refuse, not
    # initialise the pruned matrices randomly
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        transformers.AutoModelForCausalLM.from_pretrained(packed, dtype=torch.float32)


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_compressed_keys_are_what_compressed_tensors_writes(pattern, tmp_path, one_torch_thread):
    from safetensors.torch import load_file
    packed = export_hf(pruned_model(0.5, pattern=pattern).state_dict(), SHAPE, tmp_path / "hf", max_positions=64,
                       compressed=True)
    stored = load_file(str(packed / "model.safetensors"))
    parts = ("bitmask", "compressed", "shape") + (() if pattern == "2:4" else ("row_offsets",))
    for base in ("model.layers.1.self_attn.q_proj", "model.layers.0.mlp.down_proj", "lm_head"):
        assert {k for k in stored if k.startswith(f"{base}.")} == {f"{base}.{p}" for p in parts} | {f"{base}.weight"}
        assert stored[f"{base}.weight"].numel() == 0  # the empty guard, never read by a decompressing loader
    assert stored["model.embed_tokens.weight"].shape == (SHAPE.vocab, SHAPE.d_model)


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_compressed_folder_is_smaller_by_the_formats_exact_bytes(pattern, tmp_path, one_torch_thread):
    model = pruned_model(0.3 if pattern == "unstructured" else 0.5, pattern=pattern)
    sd = model.state_dict()
    dense = export_hf(sd, SHAPE, tmp_path / "dense", max_positions=64)
    packed = export_hf(sd, SHAPE, tmp_path / "packed", max_positions=64, compressed=True)
    pruned = [w.detach() for _, w in prunable_weights(model)]
    total = sum(v.numel() for v in sd.values())
    n = sum(w.numel() for w in pruned)
    mask_bytes = sum(w.shape[0] * -(-w.shape[1] // 8) for w in pruned)
    if pattern == "2:4":  # two float32 values of every four, the bitmask, a (2, 1) int64 shape
        stored = 4 * n // 2 + mask_bytes + 16 * len(pruned)
    else:  # the non-zero values, the bitmask, one int64 offset per row, a (2,) int64 shape
        nnz = sum(int(w.count_nonzero()) for w in pruned)
        stored = 4 * nnz + mask_bytes + 8 * sum(w.shape[0] for w in pruned) + 16 * len(pruned)
    assert payload_bytes(dense) == 4 * total
    assert payload_bytes(packed) == 4 * (total - n) + stored
    assert payload_bytes(packed) < 0.6 * payload_bytes(dense)  # here 0.44 (30% dense) and 0.59 (2:4)


def test_sparsity_config_states_structure_global_sparsity_and_targets(tmp_path, one_torch_thread):
    tied = SHAPE.model_copy(update={"tied_embeddings": True})
    model = pruned_model(0.5, tied, pattern="2:4")
    cfg = config_of(export_hf(model.state_dict(), tied, tmp_path / "hf", max_positions=64, compressed=True))
    sparsity = cfg["quantization_config"]["sparsity_config"]
    zeros = sum(int((w == 0).sum()) for _, w in prunable_weights(model))
    total = sum(p.numel() for p in model.parameters())
    assert sparsity["sparsity_structure"] == "2:4" and sparsity["targets"] == ["Linear"]
    assert sparsity["ignore"] == ["lm_head"] and sparsity["global_sparsity"] == pytest.approx(zeros / total)
    assert cfg["quantization_config"]["quant_method"] == "compressed-tensors"
    assert cfg["model_type"] == "llama" and cfg["tie_word_embeddings"] is True and cfg["num_key_value_heads"] == 2
    assert transformers.LlamaConfig.from_pretrained(tmp_path / "hf").head_dim == SHAPE.head_size


def test_an_unpruned_model_carries_no_sparsity_config(tmp_path, one_torch_thread):
    torch.manual_seed(0)
    cfg = config_of(export_hf(Transformer(SHAPE).state_dict(), SHAPE, tmp_path / "hf", max_positions=64,
                              compressed=True))
    assert "quantization_config" not in cfg


def test_the_trainer_cli_exports_a_compressed_run(tmp_path, capsys, one_torch_thread):
    from planner.plan import dump_plan
    plan = dump_plan(tiny_plan(steps=12), tmp_path / "tiny.yaml")
    runs = str(tmp_path / "runs")
    assert main(["train", str(plan), "--runs-dir", runs, "--threads", "1"]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["export", run_id, "--hf", str(tmp_path / "hf"), "--compressed", "--runs-dir", runs]) == 0
    model = load_hf(tmp_path / "hf")
    pruned = [w for n, w in model.named_parameters() if n.endswith("_proj.weight") or n == "lm_head.weight"]
    zeros = sum(int((w == 0).sum()) for w in pruned)
    assert zeros == round(0.5 * sum(w.numel() for w in pruned))  # the plan's final density, exactly
    total = sum(p.numel() for p in model.parameters())
    assert config_of(tmp_path / "hf")["quantization_config"]["sparsity_config"]["global_sparsity"] == zeros / total
