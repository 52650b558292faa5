"""The plan schema: exact YAML/JSON round trips, hand-typed numbers, stale derived fields, the validation ladder."""
import json

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from planner.errors import PlannerInputError
from planner.ladder import scale_down, tiny_plan
from planner.plan import (Budget, RunConfig, dump_plan, load_plan, make_plan, plan_from_text, plan_to_dict,
                          plan_to_json, plan_to_yaml, resolve_schedule)
from planner.search import build_plan
from planner.shapes import PRESETS, ModelShape

SMALL = ModelShape(n_layer=2, d_model=64, n_head=4, d_ff=192, vocab=256)


@st.composite
def plans(draw):
    shape = draw(st.sampled_from(["dense", "one_shot", "linear", "cubic", "geometric"]))
    steps = draw(st.integers(20, 5000))
    basis = draw(st.sampled_from(["tokens", "compute"]))
    start = draw(st.floats(0.0, 0.6))
    end = draw(st.floats(start, 1.0))
    s_f = draw(st.floats(0.0, 0.95))
    every = draw(st.one_of(st.none(), st.integers(1, 50))) if shape == "geometric" else None
    sched = resolve_schedule(SMALL, steps, shape, s_f, basis, start, end, every_steps=every)
    batch = draw(st.integers(1, 32))
    budget = Budget(tokens=steps * batch * 64, seq_len=64, batch_size=batch, steps=steps,
                    lr=draw(st.floats(1e-6, 1e-1)))
    return make_plan(SMALL, sched, budget, draw(st.sampled_from(["total", "non_embedding"])), name="h")


@settings(max_examples=40, deadline=None)
@given(plans())
def test_yaml_and_json_round_trips_are_exact(plan):
    assert plan_from_text(plan_to_yaml(plan)) == plan
    assert plan_from_text(plan_to_json(plan), fmt="json") == plan


def test_a_full_plan_round_trips_through_files(tmp_path):
    plan = build_plan(PRESETS["llama2-70m"], 0.6, tokens=2e9, lifetime_tokens=1e11, name="full")
    assert plan.law and plan.prediction and plan.hardware and plan.costs
    for suffix in (".yaml", ".json"):
        assert load_plan(dump_plan(plan, tmp_path / f"p{suffix}")) == plan
    assert json.loads((tmp_path / "p.json").read_text())["schema_version"] == 2


def test_hand_typed_exponents_load_as_numbers():
    data = plan_to_dict(tiny_plan())
    text = plan_to_yaml(tiny_plan())
    text = text.replace(f"tokens: {data['budget']['tokens']}", "tokens: 1e18")
    per_step = data["budget"]["batch_size"] * data["budget"]["seq_len"]
    text = text.replace(f"steps: {data['budget']['steps']}", f"steps: {10**18 // per_step}")
    text = text.replace(f"lr: {data['budget']['lr']}", "lr: 3e-3")
    assert "1e18" in text and "3e-3" in text
    plan = plan_from_text(text)
    assert plan.budget.tokens == 10**18 and isinstance(plan.budget.tokens, int)
    assert plan.budget.lr == 3e-3
    assert yaml.safe_load("x: 1e18")["x"] == "1e18"  # why the loader needs its resolver


def test_stale_derived_n_avg_is_rejected_naming_the_field():
    data = plan_to_dict(tiny_plan())
    data["derived"]["n_avg"] *= 1.01
    with pytest.raises(PlannerInputError, match=r"derived\.n_avg"):
        plan_from_text(yaml.safe_dump(data), "edited.yaml")


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["schedule"].update(final_sparsity=1.0), "schedule.final_sparsity"),
    (lambda d: d["budget"].update(tokens=123), "budget"),
    (lambda d: d["model"].update(colour="red"), "model.colour"),
    (lambda d: d.update(schema_version=3), "schema_version"),
])
def test_bad_fields_give_one_line_naming_them(edit, field):
    data = plan_to_dict(tiny_plan())
    edit(data)
    with pytest.raises(PlannerInputError) as err:
        plan_from_text(yaml.safe_dump(data), "bad.yaml")
    assert field in str(err.value) and "\n" not in str(err.value) and str(err.value).startswith("bad.yaml")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(PlannerInputError, match="no such plan file"):
        load_plan(tmp_path / "absent.yaml")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(PlannerInputError, match="not valid YAML"):
        load_plan(tmp_path / "broken.yaml")


def test_compute_window_is_recorded_in_all_three_bases():
    sched = resolve_schedule(PRESETS["llama2-1b"], 25050, "geometric", 0.8, "compute", 0.25, 0.75, every_steps=100)
    assert sched.start == sched.start_step / 25050 and sched.end == sched.end_step / 25050
    assert sched.compute_start == pytest.approx(0.25, abs=0.005) and sched.compute_end == pytest.approx(0.75, abs=0.005)
    assert (sched.end_step - sched.start_step) % 100 == 0


@pytest.mark.parametrize("plan", [tiny_plan(), build_plan(PRESETS["llama2-1b"], 0.8, tokens_per_param=50)],
                         ids=["tiny", "llama2-1b-80p"])
def test_scale_down_gives_dense_partners_at_matched_n_avg(plan):
    ladder = scale_down(plan)
    assert len(ladder) == 6
    for sparse, dense in zip(ladder[::2], ladder[1::2]):
        assert dense.schedule.shape == "dense" and dense.derived.n_avg == dense.derived.n_total
        assert (dense.model.n_layer, dense.model.d_model) == (sparse.model.n_layer, sparse.model.d_model)
        miss = [abs(dense.model.model_copy(update={"d_ff": dense.model.d_ff + k}).total - sparse.derived.n_avg)
                for k in (-1, 0, 1)]
        assert miss[1] == min(miss) and miss[1] < 0.02 * sparse.derived.n_avg  # the closest d_ff to N_avg
        assert dense.budget.tokens == sparse.budget.tokens
        assert sparse.schedule.final_sparsity == plan.schedule.final_sparsity


def gpu_plan(**fields):
    model = PRESETS["llama2-1b"]
    steps = 9950
    sched = resolve_schedule(model, steps, "geometric", 0.8)
    return make_plan(model, sched, Budget(tokens=steps * 512 * 2048, seq_len=2048, batch_size=512, steps=steps),
                     name="gpu", **fields)


def test_run_defaults_follow_the_models_scale_and_explicit_fields_win():
    gpu = gpu_plan()
    assert (gpu.run.dtype, gpu.run.corpus, gpu.run.tokenizer) == ("bfloat16", "yours", "yours")
    laptop = tiny_plan()
    assert (laptop.run.dtype, laptop.run.corpus, laptop.run.tokenizer) == ("float32", "bible", "byte")
    mine = gpu_plan(run=RunConfig(seed=7, corpus="tokens.bin"))
    assert (mine.run.seed, mine.run.corpus, mine.run.tokenizer, mine.run.dtype) == (7, "tokens.bin", "yours", "bfloat16")
    assert plan_from_text(plan_to_yaml(gpu)) == gpu


def test_a_schema_1_file_keeps_the_laptop_defaults_it_meant():
    data = plan_to_dict(gpu_plan())
    del data["run"]
    assert plan_from_text(yaml.safe_dump(data)).run.dtype == "bfloat16"  # schema 2: by scale
    data["schema_version"] = 1
    old = plan_from_text(yaml.safe_dump(data))
    assert (old.schema_version, old.run.dtype, old.run.corpus, old.run.tokenizer) == (1, "float32", "bible", "byte")


def test_the_trainer_refuses_a_corpus_or_tokenizer_left_to_the_user(tmp_path):
    from planner.preflight import preflight
    with pytest.raises(PlannerInputError, match="^plan field 'run.corpus' is 'yours'"):
        preflight(gpu_plan())
    text = tmp_path / "a.txt"
    text.write_text("x" * 1000)
    with pytest.raises(PlannerInputError, match="^plan field 'run.tokenizer' is 'yours'.*a.txt is text"):
        preflight(gpu_plan(run=RunConfig(corpus=str(text))))


def test_a_default_geometric_window_prunes_every_100_steps_on_multiples_of_100():
    plan = gpu_plan()  # 9,950 steps: a frequency of steps // 100 would be 99, which the seed's fork never runs
    s = plan.schedule
    assert s.every_steps == 100 and s.start_step % 100 == 0 and (s.end_step - s.start_step) % 100 == 0
    assert abs(s.compute_start - 0.25) < 0.01 and abs(s.compute_end - 0.75) < 0.01
    seed = resolve_schedule(PRESETS["llama2-1b"], 25050, "geometric", 0.8)  # 25% -> 75% of compute
    assert (seed.start_step, seed.end_step) == (2500, 12600)  # the seed's released 1B window, exactly
    assert resolve_schedule(PRESETS["tiny"], 300, "geometric", 0.5).every_steps == 3  # a laptop plan: 1% of steps


def test_a_dense_head_moves_the_embeddings_count_from_prunable_to_fixed_in_every_count():
    """`prune_head=False` is one definition (`shapes.param_counts`) that the plan's N, the compute weighting and the
    ladder all read: an untied head of the embedding's shape becomes fixed; a tied head is never prunable anyway."""
    from planner.schedules import compute_weighting
    from planner.shapes import matmul_params
    untied = PRESETS["llama2-70m"]
    tied = untied.model_copy(update={"tied_embeddings": True})
    e = untied.embedding
    fixed, prunable = untied.n_params()
    assert untied.n_params(prune_head=False) == (fixed + e, prunable - e)
    fixed_ne, _ = untied.n_params("non_embedding")
    assert untied.n_params("non_embedding", prune_head=False) == (fixed_ne + e, prunable - e)
    assert matmul_params(untied, prune_head=False) == (e, prunable - e)
    assert compute_weighting(untied) == 0 and compute_weighting(untied, False) == e / (prunable - e)
    assert tied.n_params(prune_head=False) == tied.n_params() and matmul_params(tied) == (e, tied.prunable)
    schedule = resolve_schedule(untied, 1000, "geometric", 0.5, prune_head=False)
    plan = make_plan(untied, schedule, Budget(tokens=1000 * 8 * 256, seq_len=256, batch_size=8, steps=1000))
    assert (plan.derived.n_fixed, plan.derived.n_prunable) == (fixed + e, prunable - e)
