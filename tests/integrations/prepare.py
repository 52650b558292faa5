"""Write what the integration checks feed the real tools (run in the project's .venv): `prepare.py OUT`.

OUT/llm-compressor/<plan>/  the export and expect.json (the planner's density at every step, the HF Llama shape)
OUT/hf/<case>/              plain/ and packed/ HF folders of a pruned model, and reference.safetensors (ids, logits)
OUT/litgpt/                 the export of the tiny plan, with two text files in data/
OUT/torch-ao/               the export of the tiny plan
The checks themselves (check_*.py) import only their tool, torch and the standard library.
"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from planner.export import export_plan
from planner.export.base import step_densities
from planner.ladder import tiny_plan
from planner.plan import Budget, make_plan, resolve_schedule
from planner.shapes import ModelShape
from train_backend.export import export_hf
from train_backend.model import Transformer, prunable_weights
from train_backend.pruning import Pruner

SHAPE = ModelShape(n_layer=2, d_model=64, n_head=4, n_kv_head=2, d_ff=192, vocab=256)


def hf_shape(m: ModelShape) -> dict:
    """LlamaConfig keyword arguments for the plan's shape (the checks build the model from them)."""
    return {"vocab_size": m.vocab, "hidden_size": m.d_model, "intermediate_size": m.d_ff,
            "num_hidden_layers": m.n_layer, "num_attention_heads": m.n_head, "num_key_value_heads": m.kv_heads,
            "head_dim": m.head_size, "tie_word_embeddings": m.tied_embeddings, "max_position_embeddings": 64}


def llm_compressor(out: Path) -> None:
    steps = 40
    for shape, granularity in (("geometric", "global"), ("cubic", "per_layer")):
        sched = resolve_schedule(SHAPE, steps, shape, 0.7, "tokens", 0.2, 0.7,
                                 every_steps=4 if shape == "geometric" else None, granularity=granularity)
        plan = make_plan(SHAPE, sched, Budget(tokens=steps * 4 * 16, seq_len=16, batch_size=4, steps=steps),
                         name=f"lc-{shape}")
        folder = out / plan.name
        export_plan(plan, "llm-compressor", folder)
        expect = {"steps": steps, "densities": step_densities(plan).tolist(), "llama": hf_shape(SHAPE)}
        (folder / "expect.json").write_text(json.dumps(expect))


def hf(out: Path) -> None:
    for case, pattern, density, tied in (("unstructured", "unstructured", 0.3, False), ("2-4-tied", "2:4", 0.5, True)):
        shape = SHAPE.model_copy(update={"tied_embeddings": tied})
        torch.manual_seed(0)
        model = Transformer(shape).eval()
        sched = resolve_schedule(shape, 100, "geometric", 1 - density, "tokens", 0.2, 0.6, every_steps=10,
                                 pattern=pattern)
        Pruner(prunable_weights(model), sched, 100).prune(density)
        export_hf(model.state_dict(), shape, out / case / "plain", max_positions=64)
        export_hf(model.state_dict(), shape, out / case / "packed", max_positions=64, compressed=True)
        ids = torch.randint(0, shape.vocab, (2, 24))
        with torch.no_grad():
            save_file({"ids": ids, "logits": model(ids)}, str(out / case / "reference.safetensors"))


def litgpt(out: Path) -> None:
    plan = tiny_plan(steps=20)
    ex = export_plan(plan, "litgpt", out)
    params = {f"{plan.name}-dense-partner.yaml": int(ex.n_avg), f"{plan.name}-same-shape.yaml": plan.model.total}
    (out / "expect.json").write_text(json.dumps({"params": params}))
    text = Path(__file__).resolve().parents[2].joinpath("README.md").read_text(encoding="utf-8")
    (out / "data").mkdir(exist_ok=True)
    for i, part in enumerate((text[:20_000], text[20_000:])):  # TextFiles: the first file is the validation split
        (out / "data" / f"part{i}.txt").write_text(part, encoding="utf-8")


def main(out: str) -> None:
    torch.set_num_threads(1)
    root = Path(out)
    llm_compressor(root / "llm-compressor")
    hf(root / "hf")
    litgpt(root / "litgpt")
    export_plan(tiny_plan(steps=60), "torch-ao", root / "torch-ao")


if __name__ == "__main__":
    main(sys.argv[1])
