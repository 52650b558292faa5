"""Schedule designer page: numbers shown agree with the planner, chart spec, custom shapes with every field, the
piecewise shape, kept designs side by side, bad settings explained without losing the page."""
import pandas as pd
import pyarrow as pa
import pytest

from app.ui.common import human
from app.ui.schedule_view import LEDGER_HELP, design_plan, n_curves, parse_knots
from planner.hardware.costs import cost_ledgers, final_model_memory, hardware_profile
from planner.errors import PlannerInputError
from planner.laws import default_law
from planner.shapes import PRESETS, ModelShape
from test_app_common import assert_clean, chart_specs, encodings, metrics, open_page

PAGE = "views/schedule.py"


def ledgers(at) -> dict[str, str]:
    return at.table[0].value["FLOP"].to_dict()


def test_defaults_match_planner():
    at = open_page(PAGE)
    plan = design_plan(PRESETS["llama2-1b"], 11_200, "geometric", 0.6, "compute", 0.25, 0.75, 100, 2048, 4096)
    shown = metrics(at)
    assert shown["N_avg"] == human(plan.derived.n_avg)
    assert shown["N_final"] == human(plan.derived.n_final)
    assert shown["Compression"] == f"{plan.derived.n_avg / plan.derived.n_final:.3f}×"
    costs = cost_ledgers(plan, hardware_profile("h100"))
    assert ledgers(at)["effective"] == f"{costs.train_flops_effective:.3g}".replace("e+", "e")
    assert ledgers(at)["dense-equivalent"] == f"{costs.train_flops_dense_equivalent:.3g}".replace("e+", "e")
    assert costs.train_flops_effective < costs.train_flops_dense_equivalent
    assert at.table[0].value["what it counts"].to_dict() == LEDGER_HELP  # every ledger says what it counts
    # the working law's loss at (N_avg, D)
    assert shown["Predicted loss"] == f"{default_law().predict(plan.derived.n_avg, plan.budget.tokens):.3f}"
    memory = final_model_memory(plan.model, 0.6)
    assert shown["dense (GB)"] == f"{float(memory['dense']) / 1e9:.3g}"
    assert shown["bitmask (GB)"] == f"{float(memory['bitmask']) / 1e9:.3g}"
    assert shown["CSR (GB)"] == f"{float(memory['csr']) / 1e9:.3g}"
    assert "2:4 (GB)" not in shown  # 2:4 storage exists only at exactly 50% sparsity


def test_inputs_change_numbers_and_chart():
    at = open_page(PAGE)
    at.selectbox(key="sched_preset").set_value("llama2-70m")
    at.slider(key="sched_sparsity").set_value(0.8)
    at.radio(key="sched_basis").set_value("tokens").run()
    assert_clean(at)
    plan = design_plan(PRESETS["llama2-70m"], 11_200, "geometric", 0.8, "tokens", 0.25, 0.75, 100, 2048, 4096)
    assert metrics(at)["N_final"] == human(plan.derived.n_final)
    (spec,) = chart_specs(at)
    enc = encodings(spec)
    assert enc["x"]["title"] == "Training tokens" and "count" in enc["y"]["title"]
    assert enc["color"]["field"] == "design" and enc["strokeDash"]["field"] == "line"
    # the dense partner's flat line is the sparse curve's average: N_avg is the mean of N(t)
    curves = n_curves({"d": plan}, points=20_000)
    sparse = curves[curves.line == "N(t)"].params.to_numpy()
    assert abs(sparse[:-1].mean() - plan.derived.n_avg) / plan.derived.n_avg < 1e-3


def test_window_in_steps_and_dense_shape():
    at = open_page(PAGE)
    at.radio(key="sched_basis").set_value("steps").run()
    at.slider(key="sched_window_steps").set_value((1000, 9000)).run()
    assert_clean(at)
    assert any("steps 1000→9000" in c.value for c in at.caption)
    at.selectbox(key="sched_shape").set_value("dense").run()
    assert_clean(at)
    assert metrics(at)["Compression"] == "1.000×"


def test_custom_shape_has_head_dim_and_kv_heads():
    at = open_page(PAGE)
    at.selectbox(key="sched_preset").set_value("custom").run()
    at.number_input(key="sched_n_head").set_value(7).run()  # 2048 is not divisible by 7
    assert_clean(at)
    assert any("not divisible by n_head 7" in e.value for e in at.error)
    assert at.slider(key="sched_sparsity")  # the rest of the inputs stay on the page
    at.number_input(key="sched_head_dim").set_value(256).run()  # the field the message asks for
    assert_clean(at)
    assert not at.error
    at.number_input(key="sched_n_head").set_value(8)
    at.number_input(key="sched_n_kv_head").set_value(2).run()
    gqa = ModelShape(n_layer=16, d_model=2048, n_head=8, n_kv_head=2, head_dim=256, d_ff=8192, vocab=32000)
    assert metrics(at)["N_final"] == human(design_plan(gqa, 11_200, "geometric", 0.6, "compute", 0.25, 0.75, 100,
                                                       2048, 4096).derived.n_final)


def test_piecewise_shape_from_knots():
    at = open_page(PAGE)
    at.selectbox(key="sched_shape").set_value("piecewise").run()
    assert_clean(at)
    at.text_input(key="sched_knots").set_value("0:1, 0.3:1, 0.6:0.5, 1:0.5").run()
    assert_clean(at)
    plan = design_plan(PRESETS["llama2-1b"], 11_200, "piecewise", 0, "tokens", 0, 0, None, 2048, 4096,
                       knots=[(0, 1), (0.3, 1), (0.6, 0.5), (1, 0.5)])
    # mean density 0.3 + 0.3 * 0.75 + 0.4 * 0.5 = 0.725 of the prunable weights
    assert plan.derived.mean_density == pytest.approx(0.725)
    assert metrics(at)["N_avg"] == human(plan.derived.n_avg)
    assert plan.schedule.start == 0.3 and plan.schedule.end == 0.6
    at.text_input(key="sched_knots").set_value("0:1, 0.5:0.4, 0.7:0.6").run()  # weights would regrow
    assert_clean(at)
    assert any(e.value.startswith("Knots: piecewise densities must be non-increasing") for e in at.error)


def test_parse_knots_names_the_bad_item():
    assert parse_knots("0:1, 0.5:0.6; 1:0.4") == [(0, 1), (0.5, 0.6), (1, 0.4)]
    with pytest.raises(PlannerInputError, match="Knots: '0.5' is not t:density"):
        parse_knots("0:1, 0.5")


def test_kept_designs_overlay_and_sit_side_by_side():
    at = open_page(PAGE)
    at.button(key="sched_keep").click().run()
    at.slider(key="sched_sparsity").set_value(0.8).run()
    at.button(key="sched_keep").click().run()
    at.selectbox(key="sched_shape").set_value("cubic").run()
    at.button(key="sched_keep").click().run()
    assert_clean(at)
    table = at.table[-1].value
    # the current design is the last one kept: one column and one line, marked, not an identical copy
    assert list(table.columns) == ["1: 2048d geometric 60% @ 25%→75%", "2: 2048d geometric 80% @ 25%→75%",
                                   "3: 2048d cubic 80% @ 25%→75% (this design)"]
    assert {"N_avg (parameters)", "N_final (parameters)", "training FLOP, effective"} <= set(table.index)
    assert at.button(key="sched_keep").disabled  # three at most
    frames = [pa.ipc.open_stream(d.data.data).read_pandas() for d in at.get("vega_lite_chart")[0].proto.datasets]
    assert set(pd.concat([f for f in frames if "design" in f])["design"]) == set(table.columns)  # one line each
    at.selectbox(key="sched_shape").set_value("linear").run()  # a new design beside the kept ones
    assert list(at.table[-1].value.columns)[-1] == "this design" and len(at.table[-1].value.columns) == 4
    at.button(key="sched_clear").click().run()
    assert list(at.table[-1].value.columns) == ["this design"]


def test_a_piecewise_designs_compute_window_is_the_planners_for_a_tied_model():
    """The designer's compute fractions come from the planner's weighting (matmul parameters: a tied head multiplies
    unpruned), so a piecewise design equals the planner's linear plan with the same window; the page's former
    expression (fixed - embedding) / prunable counted norm scales instead of the tied head, and disagreed."""
    import numpy as np

    from planner.plan import resolve_schedule
    from planner.schedules import Schedule
    tied = ModelShape(n_layer=4, d_model=256, n_head=4, d_ff=768, vocab=32000, tied_embeddings=True)
    knots = [(0, 1), (0.3, 1), (0.6, 0.5), (1, 0.5)]  # linear 0 -> 50% sparsity over tokens 0.3 -> 0.6
    design = design_plan(tied, 11_200, "piecewise", 0, "tokens", 0, 0, None, 256, 8, knots=knots).schedule
    plan = resolve_schedule(tied, 11_200, "linear", 0.5, "tokens", 0.3, 0.6)
    assert (design.start, design.end) == (plan.start, plan.end) == (0.3, 0.6)
    assert design.compute_start == pytest.approx(plan.compute_start, rel=1e-12)
    assert design.compute_end == pytest.approx(plan.compute_end, rel=1e-12)
    old_phi = (tied.fixed - tied.embedding) / tied.prunable
    old = Schedule(shape="piecewise", final_sparsity=0.5, points=knots).compute_fraction(np.array([0.3, 0.6]), old_phi)
    assert abs(old[0] - plan.compute_start) > 0.01 and abs(old[1] - plan.compute_end) > 0.01
