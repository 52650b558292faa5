"""The validation ladder keeps the plan's proportions: the LM head's share of the prunable weights, the MLP ratio,
at least four layers; the dense partner keeps depth and d_model; the N_final and width-changed partners on request."""
from __future__ import annotations

import pytest

from planner.ladder import (MIN_DEPTH, SHARE_TOLERANCE, head_share, mlp_ratio, partner_shapes, rung_shapes,
                            scale_down)
from planner.search import build_plan
from planner.shapes import PRESETS


@pytest.fixture(scope="module")
def llama_1b_80():
    return build_plan(PRESETS["llama2-1b"], 0.8, tokens_per_param=50, name="p")


def test_rungs_of_a_llama2_1b_80_percent_plan_keep_its_proportions(llama_1b_80):
    parent = llama_1b_80.model
    ladder = scale_down(llama_1b_80, budget_minutes=120)
    sparse = [p for p in ladder if p.pair.role == "sparse"]
    assert len(sparse) == 3 and len({p.model.total for p in sparse}) == 3
    for p in sparse:
        assert abs(head_share(p.model) - head_share(parent)) <= SHARE_TOLERANCE
        assert mlp_ratio(p.model) == pytest.approx(mlp_ratio(parent), rel=0.02)
        assert p.model.n_layer >= MIN_DEPTH
        assert f"(parent {head_share(parent):.2%})" in " ".join(p.notes)
        assert f"(parent {mlp_ratio(parent):.2f})" in " ".join(p.notes)
        assert any(n.startswith("power: a +-1% verdict on this pair needs") for n in p.notes)  # the bundled law's noise
    for p in ladder:
        partner_of = next(s for s in sparse if s.pair.id == p.pair.id)
        assert p.budget.tokens == partner_of.budget.tokens and p.run.seed == partner_of.run.seed
        if p.pair.role == "dense_n_avg":
            assert (p.model.n_layer, p.model.d_model) == (partner_of.model.n_layer, partner_of.model.d_model)
            assert p.model.d_ff < partner_of.model.d_ff  # N_avg reached by d_ff alone


def test_extras_add_an_n_final_and_a_width_changed_partner(llama_1b_80):
    ladder = scale_down(llama_1b_80, rungs=2, budget_minutes=120, extras=("final", "width"))
    for pid in {p.pair.id for p in ladder}:
        rung = {p.pair.role: p for p in ladder if p.pair.id == pid}
        assert set(rung) == {"sparse", "dense_n_avg", "dense_n_final", "dense_n_avg_width"}
        s = rung["sparse"].derived
        assert abs(rung["dense_n_final"].derived.n_total / s.n_final - 1) < 0.005
        assert abs(rung["dense_n_avg_width"].derived.n_total / s.n_avg - 1) < 0.005
        assert rung["dense_n_avg_width"].model.d_model != rung["sparse"].model.d_model
        assert rung["dense_n_final"].model.n_layer == rung["sparse"].model.n_layer


def test_partner_shapes_notes_an_extra_partner_no_width_reaches_and_refuses_an_unreachable_n_avg(llama_1b_80):
    model = scale_down(llama_1b_80, rungs=1, budget_minutes=120)[0].model
    partners, missing = partner_shapes(model, 0.5 * model.total, 1.0, extras=("final", "width"))
    assert [(suffix, role) for suffix, role, _, _ in partners] == [("dense", "dense_n_avg"),
                                                                  ("dense-width", "dense_n_avg_width")]
    assert len(missing) == 1 and missing[0].startswith("no dense partner at N_final: no width of")
    with pytest.raises(ValueError, match="no dense partner"):
        partner_shapes(model, 1.0, 1.0)


def test_a_head_share_the_byte_vocabulary_cannot_reach_is_the_closest_and_said_so():
    parent = PRESETS["llama2-70m"]  # 39% of its prunable weights in the head: no byte-level shape of >= 4 layers
    shapes = rung_shapes(parent)
    assert not any(ok for _, ok in shapes)
    first = shapes[0][0]
    assert head_share(first) == max(head_share(m) for m, _ in shapes)  # the closest: fewest layers, narrowest
    plan = build_plan(parent, 0.8, tokens_per_param=20, name="p")
    notes = " ".join(scale_down(plan, rungs=1, budget_minutes=60)[0].notes)
    assert "the closest a 256-token vocabulary allows" in notes


def test_plan_cli_writes_the_extra_partners_on_request(tmp_path):
    from planner.cli import main
    args = ["plan", "--model", "llama2-70m", "--final-sparsity", "0.8", "--tokens-per-param", "20", "--out",
            str(tmp_path / "p.yaml"), "--budget-minutes", "60", "--ladder", str(tmp_path / "l")]
    assert main(args + ["--ladder-partners", "final", "width"]) == 0
    names = sorted(p.stem for p in (tmp_path / "l").iterdir())
    assert [n for n in names if n.endswith("-dense-final")] and [n for n in names if n.endswith("-dense-width")]
    assert len(names) == 12  # three rungs of four runs
