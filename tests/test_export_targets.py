"""Export to llm-compressor (a per-layer recipe on the plan's events and its driver) and litgpt (the dense partner and
the shape, with a byte-level tokenizer for byte plans)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from planner.cli import main
from planner.errors import PlannerInputError
from planner.export import TARGETS, export_plan, litgpt
from planner.ladder import tiny_plan
from planner.plan import Budget, dump_plan, make_plan, resolve_schedule
from planner.shapes import PRESETS
from test_export_maxtext import seed_80p_plan


def small(shape="geometric", sparsity=0.6, **mask):
    model = PRESETS["tiny"]
    sched = resolve_schedule(model, 300, shape, sparsity, "tokens", 0.25, 0.75,
                             every_steps=10 if shape == "geometric" else None, **mask)
    return make_plan(model, sched, Budget(tokens=300 * 8 * 32, seq_len=32, batch_size=8, steps=300), name=shape)


def modifier(ex):
    text = next(t for n, t in ex.files.items() if n.endswith(".recipe.yaml"))
    return yaml.safe_load(text)["sparsity_stage"]["sparsity_modifiers"]["MagnitudePruningModifier"], text


def test_recipe_steps_are_the_plans_events_and_it_is_labelled_per_layer():
    plan = seed_80p_plan()
    ex = export_plan(plan, "llm-compressor")
    mod, text = modifier(ex)
    steps = np.array(mod["scheduler_args"]["steps"])
    assert np.array_equal(steps[:, 0], np.arange(2500, 12601, 100))  # indices are optimizer steps
    planned = plan.schedule.schedule().density_at_step(steps[:, 0], plan.budget.steps)
    assert np.allclose(1 - steps[:, 1], planned, rtol=0, atol=1e-15)
    assert mod["update_scheduler"] == "multi_step" and mod["final_sparsity"] == 0.8
    assert mod["start"] == 2500 and mod["end"] == plan.budget.steps  # masks stay on through the last step
    assert "apply_globally" not in mod and mod["mask_structure"] == "unstructured"
    assert "re:lm_head" in mod["targets"]
    # llm-compressor re.match-es targets against module names and full parameter names: both must hit
    for name in ("model.layers.3.self_attn.k_proj", "model.layers.3.mlp.down_proj", "lm_head"):
        assert all(any(re.match(t[3:], n) for t in mod["targets"]) for n in (name, f"{name}.weight"))
    assert not any(re.match(t[3:], "model.embed_tokens.weight") for t in mod["targets"])
    assert "PER-LAYER" in text and any("per-layer instead of the plan's global" in n for n in ex.approx)
    # per-layer keeps every step's total density, so N_avg is the plan's
    assert abs(ex.n_avg / plan.derived.n_avg - 1) < 1e-9


def test_the_driver_names_its_recipe_and_passes_the_step_in_every_event():
    plan = small()
    ex = export_plan(plan, "llm-compressor")
    driver = ex.files["geometric_llmcompressor.py"]
    compile(driver, "geometric_llmcompressor.py", "exec")
    assert 'with_name("geometric.recipe.yaml")' in driver and f"TOTAL_STEPS = {plan.budget.steps}" in driver
    assert "Event(type_=kind, global_step=step)" in driver and "apply_mask_weight" in driver
    assert "from geometric_llmcompressor import PlanPruning" in ex.launch


def test_recipe_refuses_2_4_and_dense_plans():
    with pytest.raises(PlannerInputError, match="no 2:4 mask structure"):
        export_plan(small(sparsity=0.5, pattern="2:4"), "llm-compressor")
    with pytest.raises(PlannerInputError, match="dense, nothing to prune"):
        export_plan(small("dense", 0.0), "llm-compressor")


def test_a_per_layer_plan_needs_no_label_and_a_tied_head_is_not_targeted():
    model = PRESETS["tiny"].model_copy(update={"tied_embeddings": True})
    sched = resolve_schedule(model, 300, "geometric", 0.6, "tokens", 0.25, 0.75, every_steps=10,
                             granularity="per_layer")
    plan = make_plan(model, sched, Budget(tokens=300 * 8 * 32, seq_len=32, batch_size=8, steps=300), name="t")
    ex = export_plan(plan, "llm-compressor")
    assert "re:lm_head" not in modifier(ex)[0]["targets"]
    assert not any("global" in n for n in ex.approx)


def test_litgpt_exports_the_dense_partner_at_matched_n_avg_and_the_plans_shape():
    plan = seed_80p_plan()
    ex = export_plan(plan, "litgpt", devices=8)
    partner = yaml.safe_load(ex.files["sparsellm-1b-80p-dense-partner.yaml"])
    same = yaml.safe_load(ex.files["sparsellm-1b-80p-same-shape.yaml"])
    mc = partner["model_config"]
    shape = PRESETS["llama2-1b"].model_copy(update={"d_model": mc["n_embd"], "d_ff": mc["intermediate_size"]})
    assert mc["n_layer"] == 16 and mc["vocab_size"] == 32000 and mc["head_size"] * mc["n_head"] == mc["n_embd"]
    assert abs(shape.total / plan.derived.n_avg - 1) < 5e-3 and ex.n_avg == shape.total
    assert same["model_config"]["n_embd"] == 2048 and same["model_config"]["intermediate_size"] == 8192
    for cfg in (partner, same):
        t = cfg["train"]
        assert t["max_tokens"] == plan.budget.tokens and t["global_batch_size"] == 4096
        assert t["micro_batch_size"] * 8 == 4096 and t["max_seq_length"] == 2048 and t["lr_warmup_steps"] == 250
        assert cfg["optimizer"]["init_args"]["lr"] == 3e-4 and t["min_lr"] == pytest.approx(3e-5)
    assert any("litgpt has no pruning" in n for n in ex.approx)


def test_litgpt_exports_a_dense_plan_as_itself():
    plan = small("dense", 0.0)
    ex = export_plan(plan, "litgpt")
    assert sorted(ex.files) == ["README.md", "dense.yaml", "tokenizer.json", "tokenizer_config.json"]
    assert ex.n_avg == plan.derived.n_avg
    cfg = yaml.safe_load(ex.files["dense.yaml"])
    assert cfg["model_config"]["n_embd"] == plan.model.d_model and cfg["model_name"] == "dense"
    assert cfg["tokenizer_dir"] == "." and cfg["data"]["class_path"] == "litgpt.data.TextFiles"


def test_litgpts_byte_tokenizer_gives_each_byte_its_own_id_and_other_vocabularies_bring_theirs():
    tokenizers = pytest.importorskip("tokenizers")
    files = export_plan(small(), "litgpt").files
    tok = tokenizers.Tokenizer.from_str(files["tokenizer.json"])
    text = "Ünïcode\n\t and\x00 bytes ~"
    assert tok.encode(text).ids == list(text.encode()) and tok.decode(list(text.encode())) == text
    assert tok.get_vocab_size() == 256
    bos = json.loads(files["tokenizer_config.json"])["bos_token"]
    assert tok.token_to_id(bos) == litgpt.BOS_BYTE
    seed = export_plan(seed_80p_plan(), "litgpt")  # vocab 32,000: the user's tokenizer
    assert "tokenizer.json" not in seed.files and "--tokenizer_dir <your tokenizer folder>" in seed.launch
    assert any("bring your own with vocabulary 32000" in n for n in seed.notes)


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_writes_its_files_and_a_readme_naming_the_launch(target, tmp_path):
    path = dump_plan(tiny_plan(), tmp_path / "tiny.yaml")
    assert main(["export", str(path), "--to", target, "--out", str(tmp_path / target)]) == 0
    ex = export_plan(tiny_plan(), target)
    assert sorted(p.name for p in (tmp_path / target).iterdir()) == sorted(ex.files)
    readme = (tmp_path / target / "README.md").read_text()
    assert ex.launch in readme and "## Differs from the plan" in readme


def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys):
    path = dump_plan(tiny_plan(), tmp_path / "tiny.yaml")
    assert main(["export", str(path), "--to", "megatron"]) == 2
    assert main(["export", str(path), "--to", "litgpt", "--devices", "0"]) == 2
    assert main(["export", str(tmp_path / "missing.yaml"), "--to", "litgpt"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and "--to" in lines[0] and "--devices 0" in lines[1] and "missing.yaml" in lines[2]


def test_the_exporters_stay_pure_and_odd_plan_names_make_safe_file_names(tmp_path):
    code = "import sys, planner.cli, planner.export.torchao; assert 'torch' not in sys.modules"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=root).returncode == 0
    plan = tiny_plan().model_copy(update={"name": "my plan/v2"})
    for target in TARGETS:
        ex = export_plan(plan, target, tmp_path / target)
        assert all("/" not in n and " " not in n for n in ex.files)
        assert sorted(p.name for p in (tmp_path / target).iterdir()) == sorted(ex.files)


def test_exact_refuses_any_approximation_of_the_pruning(tmp_path, capsys):
    tiny = dump_plan(tiny_plan(), tmp_path / "tiny.yaml")  # window at step 35, off its 4-step grid; global
    assert main(["export", str(tiny), "--to", "maxtext", "--exact", "--out", str(tmp_path / "m")]) == 2
    assert main(["export", str(tiny), "--to", "llm-compressor", "--exact", "--out", str(tmp_path / "l")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "would be approximated: window moved" in err[0] and "per-layer instead" in err[1]
    assert not (tmp_path / "m").exists() and not (tmp_path / "l").exists()
    assert main(["export", str(tiny), "--to", "torchao", "--exact", "--out", str(tmp_path / "t")]) == 0
    seed = dump_plan(seed_80p_plan(), tmp_path / "seed.yaml")
    assert main(["export", str(seed), "--to", "maxtext", "--exact", "--devices", "256", "--out", str(tmp_path)]) == 0
