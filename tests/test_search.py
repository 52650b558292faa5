"""Pareto search: vectorised candidates equal per-plan evaluation, exact Pareto sets, lifetime-optimal and budget
modes, extrapolation and schedule flags, build_plan."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from planner.hardware.costs import cost_ledgers, hardware_profile
from planner.errors import PlannerInputError
from planner.uncertainty import LawPosterior
from planner.laws import PARAM_NAMES, default_law, get_law
from planner.plan import load_plan, dump_plan
from planner.runs import seed_pairs
from planner.schedules import Schedule, compute_weighting
from planner.pareto import pareto_front, pareto_mask
from planner.regime import (SCHEDULE_DENSE_BEFORE, SCHEDULE_OK, SCHEDULE_PRUNING, SCHEDULE_RECOVERY, schedule_flag,
                            schedule_warning, validated_region)
from planner.search import (DEFAULT_SCHEDULES, DENSE_CHINCHILLA, DENSE_INFERENCE_AWARE, LIFETIME_OPTIMAL,
                            SCHEDULE_OPTIONS, budget_optimal, build_plan, candidates, family_shape, lifetime_optimal,
                            plan_from_candidate)
from planner.shapes import PRESETS

SMALL = dict(d_models=(512, 1024, 2048), sparsities=(0.0, 0.5, 0.8), schedules=("geometric 25-75", "cubic 25-75"))


def brute_force(points):
    le = (points[:, None, :] <= points[None, :, :]).all(-1)
    lt = (points[:, None, :] < points[None, :, :]).any(-1)
    keep = ~(le & lt).any(axis=0)
    _, first = np.unique(points, axis=0, return_index=True)  # duplicates: the first row stays
    return keep & np.isin(np.arange(len(points)), first)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(0, 600), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_pareto_mask_equals_brute_force_with_ties(k, n, levels, seed):
    points = np.random.default_rng(seed).integers(0, levels, (n, k)).astype(float)  # few levels: ties, duplicates
    mask = pareto_mask(points)
    if k == 1:
        assert mask.sum() == (n > 0) and (n == 0 or points[mask, 0] == points.min())
    else:
        assert np.array_equal(mask, brute_force(points))


@pytest.mark.parametrize("k, kind", [(2, "random"), (3, "random"), (3, "plane"), (3, "burst")])
def test_pareto_mask_on_continuous_points(k, kind):
    rng = np.random.default_rng(k)
    points = rng.lognormal(size=(1500, k))
    if kind == "plane":  # every point non-dominated: blocks fill up and the sweep must carry over
        points /= points.sum(axis=1, keepdims=True)
    if kind == "burst":  # mostly dominated first (the sweep's blocks grow), then 600 non-dominated at once
        f2 = rng.random(600)
        points = np.r_[rng.random((2000, 3)) + [0, 1, 1], np.c_[1 + rng.random(600), f2, 1 - f2]]
    assert np.array_equal(pareto_mask(points), brute_force(points))
    with pytest.raises(ValueError):
        pareto_mask(np.zeros((3, 4)))


def test_family_shape_rules():
    big = family_shape(4096)  # Llama 2 7B's width: 32 layers, 32 heads of 128, d_ff 11008
    assert (big.n_layer, big.n_head, big.head_size, big.d_ff, big.vocab) == (32, 32, 128, 11008, 32000)
    small = family_shape(512)
    assert (small.n_layer, small.head_size, small.d_ff, small.tied_embeddings) == (4, 64, 1536, False)
    with pytest.raises(PlannerInputError, match="d-model"):
        family_shape(1000)


def test_candidate_grid_equals_per_plan_evaluation():
    law, hw = default_law(), hardware_profile("h100", "2:4")
    df = candidates(law, tokens_per_param=(10, 100), hardware=hw, lifetime_tokens=1e12, context=4096, **SMALL)
    assert len(df) == 3 * (1 + 2 * 2) * 2
    for _, row in df.sample(8, random_state=0).iterrows():
        model = family_shape(int(row["d_model"]))
        phi = compute_weighting(model)
        sched = Schedule(shape="dense") if row["final_sparsity"] == 0 else Schedule.from_compute(
            str(row["schedule_shape"]), row["final_sparsity"], row["compute_start"], row["compute_end"], phi)
        n_avg = sched.n_avg(*model.n_params(law.n_convention))
        assert row["n_avg"] == pytest.approx(n_avg, rel=1e-12)
        assert row["loss"] == pytest.approx(float(law.predict(n_avg, row["tokens"])), rel=1e-12)
        plan = SimpleNamespace(model=model, schedule=sched, budget=SimpleNamespace(tokens=row["tokens"], seq_len=2048))
        for field, value in cost_ledgers(plan, hw, 1e12, 4096).model_dump().items():
            if field in row:
                assert row[field] == pytest.approx(value, rel=1e-9), field


def test_target_mode_hits_the_target_and_drops_unreachable():
    df = candidates(target_loss=2.6, **SMALL)
    assert np.allclose(df["loss"], 2.6, rtol=1e-10, atol=0)
    assert set(df["d_model"]) < {512, 1024, 2048}  # the smallest model cannot reach 2.6 under the law


def test_budget_mode_spends_the_budget():
    df = candidates(budget_flops=1e21, budget_ledger="dense-equivalent", **SMALL)
    assert np.allclose(df["train_flops_dense_equivalent"], 1e21, rtol=1e-12)
    with pytest.raises(PlannerInputError):
        candidates(budget_flops=1e21, budget_ledger="cheap", **SMALL)


def test_pareto_front_is_sorted_and_non_dominated():
    df = candidates(tokens_per_param=np.geomspace(5, 500, 12), lifetime_tokens=1e12, **SMALL)
    front = pareto_front(df, ["loss", "lifetime_flops"])
    assert front["loss"].is_monotonic_increasing and front["lifetime_flops"].is_monotonic_decreasing
    three = pareto_front(df, ["train_flops_effective", "inference_flops_per_token", "loss"])
    assert len(three) >= len(front) and three["train_flops_effective"].is_monotonic_increasing


def test_lifetime_optimal_beats_both_dense_baselines():
    comp = lifetime_optimal(target_loss=2.5, lifetime_tokens=1e13, **SMALL)
    table = comp.table
    assert list(table.index) == [LIFETIME_OPTIMAL, DENSE_INFERENCE_AWARE, DENSE_CHINCHILLA]
    best = comp.best
    assert best["final_sparsity"] > 0  # heavy inference demand rewards a small final model
    assert (table["lifetime_flops"] >= best["lifetime_flops"]).all()
    dense = comp.candidates[comp.candidates["final_sparsity"] == 0]
    assert table.loc[DENSE_CHINCHILLA, "train_flops_effective"] == dense["train_flops_effective"].min()
    saved = table.loc[DENSE_CHINCHILLA, "lifetime_flops"] - best["lifetime_flops"]
    assert comp.savings.loc[DENSE_CHINCHILLA, "saved_lifetime_flops"] == pytest.approx(saved)
    assert comp.savings.loc[DENSE_CHINCHILLA, "saved_lifetime_flops_pct"] == pytest.approx(
        100 * saved / table.loc[DENSE_CHINCHILLA, "lifetime_flops"])
    assert comp.objectives == ("train_flops_effective", "lifetime_inference_flops")


def test_without_inference_demand_the_optimum_is_chinchilla():
    comp = lifetime_optimal(target_loss=2.5, lifetime_tokens=0.0, **SMALL)
    assert comp.best["train_flops_effective"] == pytest.approx(
        comp.table.loc[DENSE_CHINCHILLA, "train_flops_effective"])


def test_lifetime_optimal_rejects_unreachable_targets_and_bad_objectives():
    with pytest.raises(PlannerInputError, match="raise the target"):
        lifetime_optimal(target_loss=1.0, **SMALL)
    with pytest.raises(PlannerInputError, match="objective"):
        lifetime_optimal(target_loss=2.5, objective="joules", **SMALL)


def test_budget_optimal():
    comp = budget_optimal(budget_flops=1e21, lifetime_tokens=1e12, **SMALL)
    assert comp.best["loss"] <= comp.table.iloc[1]["loss"]
    assert comp.objectives == ("loss", "lifetime_inference_flops")
    assert np.allclose(comp.candidates["train_flops_effective"], 1e21)


def test_validated_region():
    seed = validated_region()
    assert seed.contains(200e6, 200e6 * 100) and not seed.contains(10e9, 10e9 * 20)
    assert not seed.contains(200e6, 200e6 * 2)
    pairs = seed_pairs()
    assert seed.contains(pairs["n_avg"].to_numpy(), pairs["tokens"].to_numpy()).all()
    runs = pd.DataFrame({"n_avg": [1e7, 1e8, 1e7, 1e8], "tokens": [1e8, 1e9, 1e10, 1e11]})
    fitted = validated_region(runs)
    assert fitted.contains([3e7, 3e7], [3e7 * 50, 3e7 * 5000]).tolist() == [True, False]
    line = validated_region(runs.iloc[:2])  # two points: the log-space bounding box
    assert line.contains(3e7, 3e7 * 10) and not line.contains(3e8, 3e9)


def test_schedule_flags_judge_each_compute_share():
    c0 = [0.25, 0.20, 0.30, 0.50, 0.25, 0.50, 0.0, 0.25, 0.0]
    c1 = [0.75, 0.80, 0.70, 0.75, 0.50, 0.50, 0.75, 1.0, 1.0]
    flags = schedule_flag(c0, c1, [0.5] * 8 + [0.0])
    B, P, R = SCHEDULE_DENSE_BEFORE, SCHEDULE_PRUNING, SCHEDULE_RECOVERY
    assert flags.tolist() == [SCHEDULE_OK, SCHEDULE_OK, SCHEDULE_OK, B | P, P | R, B | P | R, B | P, P | R,
                              SCHEDULE_OK]  # the last is dense: no window to judge
    text = schedule_warning(0.5, 0.75, B | P)  # 50% dense first, then only 25% of compute to prune in
    assert "dense share before 50%" in text and "pruning share 25%" in text and "recovery" not in text
    assert schedule_warning(0.25, 0.75, SCHEDULE_OK) == ""


def test_default_schedules_are_the_validated_options_and_the_rest_warn():
    inside = {k for k, o in SCHEDULE_OPTIONS.items() if schedule_flag(o.compute_start, o.compute_end, 0.5) == 0}
    assert set(DEFAULT_SCHEDULES) == inside and "geometric 25-75" in inside and "geometric 50-75" not in inside
    comp = lifetime_optimal(target_loss=2.5, lifetime_tokens=1e13, d_models=(1024, 2048), sparsities=(0.0, 0.8),
                            schedules=("geometric 50-75",))
    assert comp.best["schedule"] == "geometric 50-75" and comp.best["schedule_flag"] == SCHEDULE_DENSE_BEFORE | SCHEDULE_PRUNING
    assert "dense share before 50%" in comp.table.loc[LIFETIME_OPTIMAL, "schedule_warning"]
    assert (comp.frontier["schedule_warning"] != "").any()
    plan = plan_from_candidate(comp.best, lifetime_tokens=1e13)
    assert any("dense share before" in w for w in plan.prediction.warnings)


def test_build_plan_fills_every_section(tmp_path):
    law = default_law()
    plan = build_plan(family_shape(1024), 0.5, tokens_per_param=100, law=law, lifetime_tokens=1e11,
                      batch_size=64, seq_len=1024)
    d = plan.derived
    assert plan.budget.tokens / d.n_avg == pytest.approx(100, rel=0.01)
    assert plan.prediction.loss == pytest.approx(float(law.predict(d.n_avg, plan.budget.tokens)))
    assert not plan.prediction.extrapolated and plan.prediction.warnings == []
    assert plan.costs.lifetime_inference_tokens == 1e11 and plan.hardware.name == "H100 SXM"
    assert plan.schedule.compute_start == pytest.approx(0.25, abs=0.01)
    assert load_plan(dump_plan(plan, tmp_path / "p.yaml")) == plan


def test_build_plan_warns_outside_the_validated_regimes():
    plan = build_plan(PRESETS["llama2-1b"], 0.8, start=0.0, end=0.6, tokens=1e13)
    assert plan.prediction.extrapolated
    text = " ".join(plan.prediction.warnings)
    assert "extrapolation, no interval" in text and "N_avg alone is not known" in text
    dense = build_plan(PRESETS["llama2-70m"], 0.0, "dense", tokens=5e9)
    assert dense.prediction.warnings == []


def test_build_plan_input_errors():
    with pytest.raises(PlannerInputError, match="exactly one"):
        build_plan(PRESETS["tiny"], 0.5)
    with pytest.raises(PlannerInputError, match="final-sparsity"):
        build_plan(PRESETS["tiny"], 1.0, tokens=1e6)


def test_build_plan_with_a_posterior_interval():
    law = default_law()
    rng = np.random.default_rng(0)
    draws = np.column_stack([law.params[k] * (1 + 0.01 * rng.standard_normal(200)) for k in PARAM_NAMES[law.form]])
    plan = build_plan(family_shape(1024), 0.5, tokens_per_param=100, law=law, posterior=LawPosterior(law, draws))
    p = plan.prediction
    assert p.ci_low < p.loss < p.ci_high


def test_plan_from_candidate_reproduces_the_candidate():
    comp = lifetime_optimal(target_loss=2.5, lifetime_tokens=1e13, **SMALL)
    plan = plan_from_candidate(comp.best, lifetime_tokens=1e13, name="best")
    assert plan.name == "best" and plan.derived.n_avg == pytest.approx(comp.best["n_avg"], rel=0.01)
    assert plan.prediction.loss == pytest.approx(2.5, abs=2e-3)
    chinchilla = plan_from_candidate(comp.table.loc[DENSE_CHINCHILLA])
    assert chinchilla.schedule.shape == "dense" and chinchilla.derived.n_avg == chinchilla.derived.n_total


def test_frantar_law_uses_the_final_count():
    law = get_law("epoch-replication").model_copy(update={"form": "frantar", "params": {
        "a": 400.0, "b": 1.0, "c": 80.0, "d": 0.34, "e": 2085.43, "f": 0.3658, "g": 1.8169}})
    df = candidates(law, tokens_per_param=(50,), **SMALL)
    sparse = df[df["final_sparsity"] > 0].iloc[0]
    expected = law.predict(sparse["n_final"], sparse["tokens"], sparse["final_sparsity"])
    assert sparse["loss"] == pytest.approx(float(expected))


@pytest.mark.parametrize("convention", ["total", "non_embedding"])
def test_the_seeds_released_1b_runs_are_inside_the_validated_region(convention):
    """Exact shapes, steps and windows of the released runs, at the 4096 x 2048 batch; N in the law's convention."""
    from planner.regime import SEED_1B_RUNS
    law = default_law().model_copy(update={"n_convention": convention})
    for s_f, (start, end, steps, every) in SEED_1B_RUNS.items():
        plan = build_plan(PRESETS["llama2-1b"], s_f, window_basis="steps", start=start, end=end, every_steps=every,
                          tokens=steps * 4096 * 2048, batch_size=4096, seq_len=2048, law=law)
        assert plan.budget.steps == steps and not plan.prediction.extrapolated, (s_f, plan.prediction.warnings)
        assert plan.prediction.warnings == []  # 25% -> 75% of compute: inside the schedule regime too


def test_a_law_on_n_final_is_judged_on_n_final():
    """A Chinchilla law fed N_final: the seed's region in final counts holds the released runs' exact N_final."""
    from planner.regime import SEED_1B_RUNS
    law = get_law("epoch-replication")  # form chinchilla: N = N_final
    for s_f, (start, end, steps, every) in SEED_1B_RUNS.items():
        plan = build_plan(PRESETS["llama2-1b"], s_f, window_basis="steps", start=start, end=end, every_steps=every,
                          tokens=steps * 4096 * 2048, batch_size=4096, seq_len=2048, law=law)
        assert not plan.prediction.extrapolated
        assert validated_region(n_column="n_final").contains(plan.derived.n_final, plan.budget.tokens)
    assert not validated_region(n_column="n_avg").contains(plan.derived.n_final, plan.budget.tokens)


def test_the_region_counts_n_in_the_laws_convention():
    small = PRESETS["llama2-70m"]
    n_non_embedding = small.total - small.embedding
    assert validated_region(n_convention="non_embedding").contains(n_non_embedding, 20 * n_non_embedding)
    assert not validated_region(n_convention="total").contains(n_non_embedding, 20 * n_non_embedding)


def test_when_every_candidate_extrapolates_it_is_said_once_with_the_nearest_plan_inside():
    comp = lifetime_optimal(target_loss=2.3, lifetime_tokens=1e12)
    assert comp.candidates["extrapolated"].all() and len(comp.notes) == 1
    assert "every one of the" in comp.notes[0] and "nearest plan inside it" in comp.notes[0]
    near = comp.nearest_in_region
    assert validated_region().contains(near["n_avg"], near["tokens"]) and not near["extrapolated"]
    assert near["loss"] > 2.3  # the region cannot reach 2.3: the nearest plan gets as close as it can
    inside = candidates(tokens_per_param=np.geomspace(5, 1000, 48), d_models=range(1024, 4097, 128))
    inside = inside[~inside["extrapolated"]]
    assert near["loss"] <= inside["loss"].min() + 1e-9
    assert lifetime_optimal(target_loss=2.6, lifetime_tokens=1e12).notes == ()  # some candidates are inside


def test_a_budget_beyond_the_region_names_the_in_region_plan_that_spends_most_nearly_that():
    comp = budget_optimal(budget_flops=1e24, lifetime_tokens=1e12, sparsities=(0.0, 0.5, 0.9))
    near = comp.nearest_in_region
    assert len(comp.notes) == 1 and not near["extrapolated"]
    inside = candidates(tokens_per_param=np.geomspace(5, 1000, 48), d_models=range(512, 3585, 128),
                        sparsities=(0.0, 0.5, 0.9), lifetime_tokens=1e12)
    inside = inside[~inside["extrapolated"]]
    assert near["train_flops_effective"] >= inside["train_flops_effective"].max() * (1 - 1e-9)  # closest to 1e24
