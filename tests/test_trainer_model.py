"""The trainer's model: parameter counts equal the planner's, and the Hugging Face export gives the same logits."""
import pytest
import torch

from planner.ladder import tiny_plan
from planner.shapes import ModelShape
from train_backend.export import export_hf
from train_backend.model import Transformer, count_params, prunable_weights
from train_backend.pruning import Pruner

SHAPES = {
    "tiny": ModelShape(n_layer=2, d_model=64, n_head=4, d_ff=192, vocab=256),
    "gqa": ModelShape(n_layer=3, d_model=96, n_head=6, n_kv_head=2, d_ff=256, vocab=300),
    "tied": ModelShape(n_layer=2, d_model=64, n_head=4, d_ff=160, vocab=256, tied_embeddings=True),
    "gelu": ModelShape(n_layer=2, d_model=48, n_head=4, d_ff=200, vocab=256, mlp="gelu"),
    "head_dim": ModelShape(n_layer=1, d_model=64, n_head=4, n_kv_head=1, head_dim=24, d_ff=128, vocab=260),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", SHAPES)
def test_counts_match_planner(name):
    shape = SHAPES[name]
    model = Transformer(shape)
    want = shape.counts()
    got = count_params(model)
    assert got == {k: want[k] for k in ("total", "embedding", "prunable")}
    names = [n for n, _ in prunable_weights(model)]
    assert ("lm_head.weight" in names) == (not shape.tied_embeddings)
    assert not any("embed" in n or "norm" in n for n in names)


def test_forward_is_causal():
    model = Transformer(SHAPES["gqa"]).eval()
    x = torch.randint(0, 300, (2, 16))
    y = x.clone()
    y[:, 10:] = torch.randint(0, 300, (2, 6))
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :10], model(y)[:, :10], atol=1e-6)


@pytest.mark.parametrize("name", ["gqa", "tied"])
def test_hf_export_same_logits_and_zeros(name, tmp_path):
    transformers = pytest.importorskip("transformers")
    shape = SHAPES[name]
    torch.manual_seed(0)
    model = Transformer(shape).eval()
    with torch.no_grad():  # non-trivial norm scales, so a swapped norm would show
        for n, p in model.named_parameters():
            if n.endswith("layernorm.weight") or n == "norm.weight":
                p.add_(0.3 * torch.randn_like(p))
    pruner = Pruner(prunable_weights(model), tiny_plan().schedule, 200)
    pruner.prune(0.5)
    out = export_hf(model.state_dict(), shape, tmp_path / "hf", max_positions=64)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    x = torch.randint(0, shape.vocab, (2, 24))
    with torch.no_grad():
        ours, theirs = model(x), hf(x).logits
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    q = hf.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(q == 0, model.layers[0].self_attn.q_proj.weight == 0)
    assert (q == 0).any()
