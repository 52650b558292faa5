"""Pareto page under a fitted working law: P(reach target) in the tooltips, shading by it, and the plan at a
confidence level (app/ui/decide_view)."""
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app.ui import charts, decide_view
from app.ui.laws_view import fit_form
from app.ui.pareto_view import PlannerInputs, axes, search, view_domain
from app.ui.working_law import DEFAULT, fitted_law, preset_law
from planner.laws import default_law
from test_app_common import MAIN, assert_clean, chart_specs


@pytest.fixture(scope="module")
def working():
    rng = np.random.default_rng(0)
    n_avg = np.geomspace(5e7, 5e8, 12)
    tokens = n_avg * rng.uniform(10, 100, 12)
    loss = default_law().predict(n_avg, tokens) * (1 + rng.normal(0, 0.003, 12))
    runs = pd.DataFrame({"loss": loss, "tokens": tokens, "n_avg": n_avg, "n_final": n_avg, "sparsity": 0.0})
    r = fit_form(runs, "unified", "coarse", 60)
    return fitted_law(r.fit, r.posterior, r.profiles, r.table, "noisy runs")


def test_probability_only_with_draws_and_a_target(working):
    inputs = PlannerInputs(law=working.key)
    comp = decide_view.with_probability(search(inputs, working), working, inputs)
    p = comp.candidates["p_reach"].to_numpy()
    assert np.all((p >= 0) & (p <= 1)) and p.std() > 0
    assert "p_reach" in comp.frontier and "p_reach" in comp.table
    preset = decide_view.with_probability(search(PlannerInputs()), DEFAULT, PlannerInputs())
    assert preset.candidates["p_reach"].between(0, 1).all()  # the default preset's published uncertainty
    hoffmann = preset_law("chinchilla-approach3-published")  # no published parameter uncertainty
    inputs = PlannerInputs(law=hoffmann.key)
    assert "p_reach" not in decide_view.with_probability(search(inputs, hoffmann), hoffmann, inputs).candidates
    budget = PlannerInputs(mode="budget", law=working.key)
    assert "p_reach" not in decide_view.with_probability(search(budget, working), working, budget).candidates


def test_chart_tooltip_and_shading(working):
    inputs = PlannerInputs(law=working.key)
    comp = decide_view.with_probability(search(inputs, working), working, inputs)
    ax = axes(inputs)
    spec = charts.pareto_spec(comp.candidates, comp.frontier, ax, view_domain(comp.frontier, ax))
    plain, shaded = (decide_view.chart(spec, comp.candidates, s) for s in (False, True))
    points = [next(layer for layer in s["layer"] if layer["data"]["name"] == "candidates") for s in (plain, shaded)]
    assert all("p_reach" in [t["field"] for t in p["encoding"]["tooltip"]] for p in points)
    assert points[0]["encoding"]["color"]["field"] == "final_sparsity"
    assert points[1]["encoding"]["color"]["field"] == "p_reach"
    assert points[1]["encoding"]["fill"]["condition"]["test"] == "datum.extrapolated"  # hollow stays hollow
    data = shaded["datasets"]["candidates"]
    assert np.array_equal(data["p_reach"].to_numpy(), comp.candidates["p_reach"].to_numpy())
    assert "p_reach" not in spec["datasets"]["candidates"]  # the cached spec is left alone


def test_page_offers_the_plan_at_a_confidence_level(working):
    at = AppTest.from_file(MAIN, default_timeout=240)
    at.session_state["working_law"] = working
    at.run()
    assert_clean(at)
    at.toggle(key="pareto_shade").set_value(True).run()
    assert_clean(at)
    points = next(layer for layer in chart_specs(at)[0]["layer"] if layer["mark"]["type"] == "point"
                  and "tooltip" in layer["encoding"])
    assert points["encoding"]["color"]["field"] == "p_reach"
    assert not any("P(reach target)" in t.value.index for t in at.table)  # searched only on request
    at.toggle(key="pareto_confident").set_value(True).run()
    assert_clean(at)
    table = next(t.value for t in at.table if "P(reach target)" in t.value.index)
    assert list(table.columns) == ["at 90%", "median"]
    assert table.loc["P(reach target)"].tolist() == ["90%", "50%"]
    assert any("extra certainty costs" in c.value for c in at.caption)
