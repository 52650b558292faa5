"""Pure logic behind issue #20's app changes (the browser checks are in test_browser_views.py): the Pareto frame,
the flag on the sparsity grid's edge, the CSVs' numbers, the tooltip's text, pins, sessions and links, the shipped
study as a source, the name of a run's law, and the assumptions panel."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.ui import charts, pareto_view as pv, pins, schedule_view as sv, session
from app.ui.assumptions import assumptions
from app.ui.laws_view import FORMS, STUDY, fit_form, heldout_note, study_runs
from app.ui.runs_view import law_name, law_note
from app.ui.working_law import DEFAULT, fitted_law, loss_interval, preset_law
from planner.errors import PlannerInputError
from planner.shapes import PRESETS as SHAPES

# The previous quick study's 24 runs, shipped with the laptop law fitted to them: a finished study for the fits (the
# shipped study, bench/study/quick, may be in progress)
FINISHED = Path(__file__).resolve().parents[1] / "planner/data/laptop_law_runs.csv"

EDGE = pv.PlannerInputs(target_loss=2.2, lifetime_tokens=1e16)  # its optimum sits at 90%, the grid's largest


def labelled_tick(v: float) -> bool:
    mantissa = v / 10 ** math.floor(math.log10(v) + 1e-9)
    return any(math.isclose(mantissa, m) for m in (1, 3))


@pytest.mark.parametrize("inputs", [pv.PlannerInputs(), pv.PlannerInputs(units="usd"), EDGE,
                                    pv.PlannerInputs(mode="budget")])
def test_frame_ends_on_labelled_ticks_and_draws_whole_points(inputs):
    comp = pv.search(inputs)
    ax = pv.axes(inputs)
    best = comp.candidates[comp.candidates["plan_id"] == comp.best["plan_id"]]
    domain = pv.view_domain(comp.frontier, ax, also=best)
    for (lo, hi), col in zip(domain, (ax.x, ax.y)):
        if col != "loss":
            assert labelled_tick(lo) and labelled_tick(hi)
    shown = pv.in_view(comp.candidates, ax, domain)
    assert pv.in_view(comp.frontier, ax, domain).all() and pv.in_view(best, ax, domain).all()
    inside = comp.candidates[shown]
    for (lo, hi), col in zip(domain, (ax.x, ax.y)):
        assert inside[col].between(lo, hi).all()
    assert 0 < shown.sum() <= len(comp.candidates)


def test_ticks_round_outward():
    assert pv._tick(4.2e21, True) == pytest.approx(1e22) and pv._tick(2e21, True) == pytest.approx(3e21)
    assert pv._tick(3e21, True) == pytest.approx(3e21) and pv._tick(2.9e19, False) == pytest.approx(1e19)
    assert pv._tick(3.5e19, False) == pytest.approx(3e19)


def test_optimum_on_the_sparsity_grids_edge_is_flagged():
    comp = pv.search(EDGE)
    assert comp.best["final_sparsity"] == max(EDGE.sparsities)
    assert "largest the search tries" in pv.edge_note(comp, comp.best["plan_id"], EDGE)
    default = pv.search(pv.PlannerInputs())
    assert pv.edge_note(default, default.best["plan_id"], pv.PlannerInputs()) is None
    two_four = pv.PlannerInputs(pattern="2:4")
    comp = pv.search(two_four)
    assert pv.edge_note(comp, comp.best["plan_id"], two_four) is None  # 50% by construction, not a grid edge


def test_csvs_hold_numbers_and_warnings():
    inputs = pv.PlannerInputs()
    comp = pv.search(inputs)
    plans, _ = pv.versus_baselines(comp, comp.best["plan_id"], "flops")
    frame = pv.comparison_frame(plans, {name: (2.5, 2.7) for name in plans.index})
    for col in ("n_avg", "n_final", "tokens", "loss", "loss_ci_low", "train_flops_effective"):
        assert pd.api.types.is_numeric_dtype(frame[col]), col
    assert list(frame.columns[frame.columns.get_loc("loss"):][:3]) == ["loss", "loss_ci_low", "loss_ci_high"]
    assert frame.loc["selected", "n_avg"] == comp.best["n_avg"]
    candidates = pv.candidates_frame(comp.candidates)
    warned = candidates.set_index("plan_id").loc[comp.frontier["plan_id"], "schedule_warning"]
    assert warned.tolist() == comp.frontier["schedule_warning"].tolist()  # as the frontier CSV says it


def test_tooltip_reads_as_the_table_and_the_legend_lists_the_searched_sparsities():
    for inputs in (pv.PlannerInputs(), pv.PlannerInputs(pattern="2:4")):
        comp = pv.search(inputs)
        ax = pv.axes(inputs)
        spec = charts.pareto_spec(comp.candidates, comp.frontier, ax, pv.view_domain(comp.frontier, ax),
                                  comp.best["plan_id"])
        data = spec["datasets"]["candidates"].set_index("plan_id").loc[comp.best["plan_id"]]
        plans, _ = pv.versus_baselines(comp, comp.best["plan_id"], "flops")
        table = pv.side_by_side(plans)["selected"]
        assert data["n_avg_text"] == table["N_avg (parameters)"] and data["tokens_text"] == table["training tokens"]
        legend = spec["layer"][1]["encoding"]["color"]["legend"]["values"]
        assert legend == list(inputs.sparsities)


def test_a_kept_design_equal_to_the_current_one_is_shown_once():
    model = SHAPES["llama2-1b"]
    a = sv.design_plan(model, 1000, "geometric", 0.6, "compute", 0.25, 0.75, 100, 2048, 64)
    b = sv.design_plan(model, 1000, "cubic", 0.6, "compute", 0.25, 0.75, None, 2048, 64)
    kept = {"1: a": a, "2: b": b}
    assert list(sv.shown_designs(kept, b)) == ["1: a", "2: b (this design)"]
    c = sv.design_plan(model, 1000, "linear", 0.6, "compute", 0.25, 0.75, None, 2048, 64)
    assert list(sv.shown_designs(kept, c)) == ["1: a", "2: b", sv.THIS_DESIGN]
    frame = sv.comparison_frame(sv.shown_designs(kept, c))
    assert frame.loc["2: b", "n_avg"] == b.derived.n_avg and len(frame) == 3


def pinned(inputs_list, working=DEFAULT) -> dict:
    out = {}
    for inputs in inputs_list:
        comp = pv.search(inputs, working)
        plan_id = comp.best["plan_id"]
        out[pins.label(plan_id, inputs)] = pins.Pin(pv.row(comp, plan_id),
                                                    pv.selected_plan(inputs, comp, plan_id, working))
    return out


def test_pins_compare_plans_made_under_other_inputs():
    pinned_plans = pinned([pv.PlannerInputs(), pv.PlannerInputs(target_loss=2.8, lifetime_tokens=1e13)])
    frame = pins.frame(pinned_plans)
    assert frame["loss"].round(3).tolist() == [2.6, 2.8]
    assert frame["lifetime_inference_tokens"].tolist() == [1e12, 1e13]
    assert list(pins.table(pinned_plans).columns) == list(pinned_plans)
    assert set(pins.curves(pinned_plans)["design"]) == set(pinned_plans)


def test_a_session_round_trips_with_a_fitted_law_and_its_intervals():
    runs = study_runs(FINISHED)
    r = fit_form(runs, "unified", n_draws=20)
    working = fitted_law(r.fit, r.posterior, r.profiles, r.table, "the study", r.no_interval)
    floor = float(working.law.predict(float("inf"), float("inf")))
    inputs = dataclasses.replace(pv.PlannerInputs(target_loss=round(floor + 0.2, 2)), law=working.key)
    pinned_plans = pinned([inputs], working)
    data = session.session_json(inputs, working, "some plan", pinned_plans)
    got_inputs, got_law, selected, got_pins = session.load_session(data, "s.json")
    assert got_inputs == inputs and got_law.key == working.key and selected == "some plan"
    mid = runs.iloc[len(runs) // 2]  # one of the fitted runs: inside the region
    args = (mid["n_avg"], mid["n_final"], mid["sparsity"], mid["tokens"])
    assert None not in loss_interval(working, *args)  # inside the study's region: an interval to survive the trip
    assert loss_interval(got_law, *args) == pytest.approx(loss_interval(working, *args))
    assert list(got_pins) == list(pinned_plans)
    assert got_pins[list(got_pins)[0]].plan == pinned_plans[list(pinned_plans)[0]].plan


@pytest.mark.parametrize("data, message", [
    (b"{", "s.json: Expecting property name"), (b"[]", "s.json: not a saved session"),
    (b'{"sparseplan_session": 2, "working_law": {}}', "s.json: missing field"),
])
def test_a_bad_session_file_is_one_line_naming_it(data, message):
    with pytest.raises(PlannerInputError, match=message):
        session.load_session(data, "s.json")


def test_a_link_reproduces_the_inputs():
    inputs = dataclasses.replace(pv.PlannerInputs(), mode="budget", budget_flops=1e22, hardware="a100",
                                 mfu_decode=0.1, pattern="2:4", speedups=(1.1, 1.5, 1.5),
                                 schedules=("cubic 25-75",), units="usd", usd_per_gpu_hour=2.5)
    query = session.to_query(inputs, "d1 · 0% · dense")
    assert session.from_query(query) == (inputs, "d1 · 0% · dense")
    assert session.to_query(pv.PlannerInputs(), None) == {}  # defaults: a bare address
    for bad, name in (({"target": "nan"}, "target"), ({"hw": "tpu"}, "hw"), ({"mfu": "0.4,0.5"}, "mfu"),
                      ({"schedules": "spiral"}, "schedules")):
        with pytest.raises(PlannerInputError, match=f"link parameter '{name}'"):
            session.from_query(bad)


def test_the_shipped_study_is_fitted_on_the_reports_runs():
    shipped = pd.read_csv(STUDY)
    runs = study_runs()  # the study may be in progress: whatever has finished, as its report fits it
    assert list(runs["name"]) == list(shipped.loc[~shipped["kind"].isin(["tiny", "ablation"]), "name"])
    runs = study_runs(FINISHED)  # a finished study's runs for the fits
    assert not runs["name"].str.contains("tiny|per-layer").any()
    fits = {f: fit_form(runs, f, n_draws=10) for f in FORMS}
    rmse = {f: r.heldout["heldout_rmse"] for f, r in fits.items()}
    best = min(rmse, key=rmse.get)
    assert heldout_note(fits, best) is None
    assert all(heldout_note(fits, f) for f in FORMS if rmse[f] > rmse[best])


def test_a_runs_law_is_named_as_the_sidebar_names_laws():
    law = preset_law("chinchilla-approach3-published").law
    assert law_name(law) == "chinchilla-approach3-published preset, unified form"
    assert DEFAULT.label.startswith(law_name(DEFAULT.law))
    assert law_note(law, DEFAULT.law) and law_note(DEFAULT.law, DEFAULT.law) is None


def test_assumptions_state_the_validated_region():
    lines = assumptions(DEFAULT)
    text = " ".join(lines)
    for phrase in ("dataset and tokenizer", "repeated data", "Validated region", "80% final sparsity"):
        assert phrase in text
    runs = study_runs(FINISHED)
    r = fit_form(runs, "unified", n_draws=10)
    fitted = " ".join(assumptions(fitted_law(r.fit, r.posterior, r.profiles, r.table, "the study", r.no_interval)))
    assert f"{len(runs)} fitted runs" in fitted and f"{runs['sparsity'].max():.0%} final sparsity" in fitted
    assert np.isfinite(runs["n_avg"]).all()
