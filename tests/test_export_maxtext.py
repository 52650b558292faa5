"""Export to the seed's MaxText fork: its released 1B-80% run, compute windows on the fork's step grid, round trips."""
import math

import pytest
import yaml

from planner.cli import main
from planner.errors import PlannerInputError
from planner.export import export_plan, maxtext
from planner.ladder import tiny_plan
from planner.plan import Budget, derive, dump_plan, make_plan, resolve_schedule
from planner.schedules import compute_weighting, window_from_compute
from planner.search import build_plan
from planner.shapes import PRESETS

# The released sparsellm-1b-80p run, key by key, as the fork's files and the model card give it:
# configs/models/llama2-1b.yml (shape, per_device_batch_size 16.0 at batch 4096 on 256 chips, warm-up fraction 0.01,
# pruning_score/method/structure), base.yml (frequency 100, AdamW, clipping, cosine final fraction, max_target_length
# 2048), and the card (25,050 steps, window 2500 -> 12600, sparsity 0.8, LR 3e-4).
SEED_80P = {
    "base_emb_dim": 2048, "base_num_query_heads": 8, "base_num_kv_heads": 8, "base_mlp_dim": 8192,
    "base_num_decoder_layers": 16, "head_dim": 256, "mlp_activations": ["silu", "linear"], "vocab_size": 32000,
    "enable_dropout": False, "logits_via_embedding": False, "normalization_layer_epsilon": 1.0e-5,
    "decoder_block": "llama2", "steps": 25050, "per_device_batch_size": 16.0, "learning_rate": 3e-4,
    "warmup_steps_fraction": 0.01, "cosine_learning_rate_final_fraction": 0.1, "max_target_length": 2048,
    "gradient_accumulation_steps": 1, "opt_type": "adamw", "adam_b1": 0.9, "adam_b2": 0.95, "adam_weight_decay": 0.1,
    "gradient_clipping_threshold": 1.0,
    "sparsity": 0.8, "pruning_method": "global_gradual", "pruning_structure": "none", "pruning_score": "magnitude",
    "gmp_pruning_frequency": 100, "gmp_start_step": 2500, "gmp_end_step": 12600, "do_not_prune_kw": "",
}
BATCH, SEQ, STEPS = 4096, 2048, 25050


def seed_80p_plan():
    return build_plan(PRESETS["llama2-1b"], 0.8, "geometric", window_basis="steps", start=2500, end=12600,
                      every_steps=100, tokens=STEPS * BATCH * SEQ, batch_size=BATCH, seq_len=SEQ, lr=3e-4,
                      name="sparsellm-1b-80p")


def keys_of(ex):
    name = next(n for n in ex.files if n.endswith(".yml"))
    return yaml.safe_load(ex.files[name]), ex.files[name]


def test_the_seed_80p_run_exports_to_its_released_keys():
    ex = export_plan(seed_80p_plan(), "maxtext", devices=256)
    keys, _ = keys_of(ex)
    assert {k: keys[k] for k in SEED_80P} == SEED_80P
    assert keys["base_config"] == "base.yml"
    assert not any("window moved" in note for note in ex.approx)
    # the fork's 102 events at (1 - 0.8)^((k+1)/102) average to the card's linear density (0.3984) within 0.001
    assert abs(ex.n_avg - seed_80p_plan().derived.n_avg) < 1e-9 * ex.n_avg
    assert abs(seed_80p_plan().derived.mean_density - 0.3984) < 1e-3


def test_round_trip_gives_the_plans_model_and_n_avg():
    plan = seed_80p_plan()
    _, text = keys_of(export_plan(plan, "maxtext", devices=256))
    model, schedule, steps = maxtext.read_schedule(text)
    same = ("n_layer", "d_model", "n_head", "kv_heads", "head_size", "d_ff", "vocab", "tied_embeddings", "mlp")
    assert all(getattr(model, k) == getattr(plan.model, k) for k in same)
    assert steps == plan.budget.steps and schedule.n_events == 102
    n_avg = derive(model, schedule, plan.derived.n_convention).n_avg
    assert abs(n_avg / plan.derived.n_avg - 1) < 1e-9


@pytest.mark.parametrize("c0, c1, every", [(0.25, 0.75, 100), (0.1, 0.9, 100), (0.3, 0.6, 37)])
def test_compute_windows_land_within_one_pruning_interval_of_what_they_ask(c0, c1, every):
    model = PRESETS["llama2-1b"]
    plan = build_plan(model, 0.8, "geometric", window_basis="compute", start=c0, end=c1, every_steps=every,
                      tokens=STEPS * BATCH * SEQ, batch_size=BATCH, seq_len=SEQ)
    ex = export_plan(plan, "maxtext", devices=256)
    keys, text = keys_of(ex)
    t0, t1 = window_from_compute("geometric", 0.8, c0, c1, compute_weighting(model), every / STEPS)
    assert abs(keys["gmp_start_step"] - float(t0) * STEPS) <= every
    assert abs(keys["gmp_end_step"] - float(t1) * STEPS) <= every
    assert keys["gmp_start_step"] % every == 0 and (keys["gmp_end_step"] - keys["gmp_start_step"]) % every == 0
    assert (keys["gmp_end_step"] - keys["gmp_start_step"]) // every + 1 == plan.schedule.n_events
    # the README's N_avg is the one the fork runs, read back from the keys
    model_back, schedule, _ = maxtext.read_schedule(text)
    assert abs(derive(model_back, schedule).n_avg / ex.n_avg - 1) < 1e-12
    moved = [n for n in ex.approx if "window moved" in n]
    assert bool(moved) == (plan.schedule.start_step % every != 0)
    if moved:
        assert f"{ex.n_avg:,.0f} instead of the plan's {plan.derived.n_avg:,.0f}" in moved[0]


def _small_plan(shape, sparsity=0.6, **mask):
    model = PRESETS["tiny"]
    sched = resolve_schedule(model, 400, shape, sparsity, "steps", 100, 300, every_steps=20, **mask)
    return make_plan(model, sched, Budget(tokens=400 * 8 * 32, seq_len=32, batch_size=8, steps=400), name=shape)


@pytest.mark.parametrize("shape", ["geometric", "one_shot", "dense"])
def test_every_expressible_shape_round_trips_to_the_plans_n_avg(shape):
    plan = _small_plan(shape, 0.0 if shape == "dense" else 0.6)
    ex = export_plan(plan, "maxtext")
    keys, text = keys_of(ex)
    model, schedule, _ = maxtext.read_schedule(text)
    assert abs(derive(model, schedule).n_avg / plan.derived.n_avg - 1) < 1e-9
    assert keys["gmp_start_step"] % keys["gmp_pruning_frequency"] == 0
    if shape == "dense":  # no event fires: the window starts at `steps`, past the last step
        assert keys["gmp_start_step"] == plan.budget.steps and schedule.shape == "dense"


def test_2_4_exports_the_forks_2_4_structure_and_says_how_groups_differ():
    ex = export_plan(_small_plan("geometric", 0.5, pattern="2:4"), "maxtext")
    assert keys_of(ex)[0]["pruning_structure"] == "2:4"
    assert any("2:4 groups" in note for note in ex.approx)


@pytest.mark.parametrize("plan, words", [
    (_small_plan("cubic"), "only on a geometric schedule"),
    (_small_plan("linear"), "only on a geometric schedule"),
    (_small_plan("geometric", granularity="per_layer"), "one global magnitude threshold"),
])
def test_what_the_fork_cannot_run_is_refused_in_one_line(plan, words, tmp_path, capsys):
    with pytest.raises(PlannerInputError, match=words):
        export_plan(plan, "maxtext")
    path = dump_plan(plan, tmp_path / "p.yaml")
    assert main(["export", str(path), "--to", "maxtext", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_devices_set_the_per_device_batch_and_must_divide_it():
    plan = seed_80p_plan()
    assert keys_of(export_plan(plan, "maxtext", devices=64))[0]["per_device_batch_size"] == 64.0
    with pytest.raises(PlannerInputError, match="--devices 3"):
        export_plan(plan, "maxtext", devices=3)


def test_warm_up_fraction_is_the_shortest_decimal_maxtext_turns_back_into_the_plans_steps():
    for warmup, steps in [(250, 25050), (2000, 200000), (10, 200), (7, 999), (0, 50)]:
        f = maxtext._fraction_giving(warmup, steps)
        assert int(steps * f) == warmup
    assert maxtext._fraction_giving(250, 25050) == 0.01


def test_the_cli_writes_the_config_and_a_readme_with_the_launch_command(tmp_path, capsys):
    path = dump_plan(tiny_plan(), tmp_path / "tiny.yaml")
    assert main(["export", str(path), "--to", "maxtext", "--out", str(tmp_path / "mt")]) == 0
    readme = (tmp_path / "mt" / "README.md").read_text()
    assert "python3 MaxText/train.py tiny.yml run_name=tiny" in readme
    plan, keys = tiny_plan(), yaml.safe_load((tmp_path / "mt" / "tiny.yml").read_text())
    s = plan.schedule
    assert keys["gmp_start_step"] % s.every_steps == 0 and keys["gmp_end_step"] % s.every_steps == 0
    assert keys["gmp_end_step"] - keys["gmp_start_step"] == s.end_step - s.start_step  # same event count
    if s.start_step % s.every_steps:  # off the fork's grid: the README says where it moved and the N_avg it gives
        assert f"window moved from steps {s.start_step}->{s.end_step} to {keys['gmp_start_step']}->" in readme
        model, schedule, _ = maxtext.read_schedule((tmp_path / "mt" / "tiny.yml").read_text())
        assert f"N_avg {derive(model, schedule).n_avg:,.0f} instead of" in readme
    else:
        assert "window moved" not in readme
    assert math.isclose(yaml.safe_load((tmp_path / "mt" / "tiny.yml").read_text())["sparsity"], 0.5)


def test_the_70m_preset_exports_the_forks_llama2_70m_model_keys():
    # configs/models/llama2-70m.yml, shape keys as released
    released = {"base_emb_dim": 512, "base_num_query_heads": 8, "base_num_kv_heads": 8, "base_mlp_dim": 2048,
                "base_num_decoder_layers": 6, "head_dim": 64, "mlp_activations": ["silu", "linear"],
                "vocab_size": 32000, "enable_dropout": False, "logits_via_embedding": False,
                "normalization_layer_epsilon": 1.0e-5, "decoder_block": "llama2"}
    plan = build_plan(PRESETS["llama2-70m"], 0.6, tokens=2e9, batch_size=256, seq_len=2048)
    keys, _ = keys_of(export_plan(plan, "maxtext", devices=4))
    assert {k: keys[k] for k in released} == released and keys["per_device_batch_size"] == 64.0


def test_a_default_gpu_plan_exports_the_forks_frequency_on_its_grid():
    steps = 9950  # steps // 100 would be 99: the fork's runs all prune every 100 steps, on multiples of 100
    plan = build_plan(PRESETS["llama2-1b"], 0.8, "geometric", tokens=steps * 512 * 2048, batch_size=512, seq_len=2048,
                      name="gpu")
    ex = export_plan(plan, "maxtext")
    keys, _ = keys_of(ex)
    assert keys["gmp_pruning_frequency"] == 100 and keys["gmp_start_step"] % 100 == 0 and not ex.approx
    assert keys["dtype"] == "bfloat16"  # a GPU-scale plan's default
