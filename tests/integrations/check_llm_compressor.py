"""llm-compressor check (its own venv): `check_llm_compressor.py EXPORT_DIR`.

Trains a random Hugging Face Llama of the plan's shape with the exported PlanPruning driving the recipe's
MagnitudePruningModifier, and asserts that the forward of every step sees the plan's density in every pruned tensor
(within one weight per tensor), that all 7 projections per layer and the untied head are pruned, and that pruned
weights stay zero. It also runs the same recipe through llm-compressor's session callbacks and reports that they
leave the model dense (what the export's README says about them).
"""
import importlib
import json
import sys
from pathlib import Path

import torch
from llmcompressor import __version__ as version
from llmcompressor.core import callbacks, create_session
from transformers import LlamaConfig, LlamaForCausalLM


def model_of(expect):
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**expect["llama"]))


def pruned_tensors(model):
    return {n: p for n, p in model.named_parameters() if n.endswith("_proj.weight") or n == "lm_head.weight"}


def train(model, optimizer, pruning, steps, expect):
    """Per step, the worst gap (in weights) between a tensor's non-zeros and d x n."""
    worst, dead = [], None
    for step in range(steps):
        pruning.batch_start(step)
        d = expect["densities"][step]
        tensors = pruned_tensors(model)
        worst.append(max(abs(int(p.count_nonzero()) - d * p.numel()) for p in tensors.values()))
        zero = torch.cat([p.detach().flatten() == 0 for p in tensors.values()])
        assert dead is None or not (dead & ~zero).any(), f"step {step}: a pruned weight came back"
        dead = zero
        ids = torch.randint(0, model.config.vocab_size, (4, 16))
        model(ids, labels=ids).loss.backward()
        pruning.optim_pre_step(step)
        optimizer.step()
        pruning.optim_post_step(step)
        optimizer.zero_grad()
        pruning.batch_end(step)
    pruning.finalize()
    return worst


def session_density(folder, expect, steps):
    """Density after `steps` steps driven by llm-compressor's own session callbacks."""
    model = model_of(expect)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    recipe = next(folder.glob("*.recipe.yaml"))
    with create_session() as session:
        session.initialize(recipe=str(recipe), model=model, optimizer=optimizer, steps_per_epoch=steps)
        for _ in range(steps):
            callbacks.batch_start()
            ids = torch.randint(0, model.config.vocab_size, (4, 16))
            loss = model(ids, labels=ids).loss
            callbacks.loss_calculated(loss=loss)
            loss.backward()
            callbacks.optim_pre_step()
            optimizer.step()
            callbacks.optim_post_step()
            optimizer.zero_grad()
            callbacks.batch_end()
    tensors = pruned_tensors(model).values()
    return sum(int(p.count_nonzero()) for p in tensors) / sum(p.numel() for p in tensors)


def main(folder):
    folder = Path(folder).resolve()
    expect = json.loads((folder / "expect.json").read_text())
    steps = expect["steps"]
    torch.set_num_threads(1)
    sys.path.insert(0, str(folder))
    driver = importlib.import_module(next(folder.glob("*_llmcompressor.py")).stem)
    model = model_of(expect)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    pruning = driver.PlanPruning(model, optimizer)
    names = {n for mod in pruning.modifiers for n in mod.parameterized_layers_}
    assert len(names) == 7 * model.config.num_hidden_layers + (not model.config.tie_word_embeddings), sorted(names)
    worst = train(model, optimizer, pruning, steps, expect)
    assert max(worst) <= 1.0 + 1e-9, f"worst gap {max(worst):.2f} weights at step {worst.index(max(worst))}"
    final = expect["densities"][-1]
    dense = session_density(folder, expect, steps)
    print(f"llmcompressor {version} {folder.name}: {steps} steps, {len(names)} tensors, density within "
          f"{max(worst):.2f} weights per tensor of the plan's at every step (final {final:.4f}); "
          f"session callbacks alone: density {dense:.4f} after {steps} steps")


if __name__ == "__main__":
    main(sys.argv[1])
