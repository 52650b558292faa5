"""Schedule designer page: numbers shown agree with the planner, chart spec, bad settings explained."""
from planner.costs import cost_ledgers, final_model_memory, hardware_profile
from planner.shapes import PRESETS

from app.ui.common import human
from app.ui.schedule_view import design_plan, n_curves
from test_app_common import assert_clean, chart_specs, encodings, metrics, open_page

PAGE = "views/schedule.py"


def test_defaults_match_planner():
    at = open_page(PAGE)
    plan = design_plan(PRESETS["llama2-1b"], 11_200, "geometric", 0.6, "compute", 0.25, 0.75, 100, 2048, 4096)
    shown = metrics(at)
    assert shown["N_avg"] == human(plan.derived.n_avg)
    assert shown["N_final"] == human(plan.derived.n_final)
    assert shown["Compression"] == f"{plan.derived.n_avg / plan.derived.n_final:.3f}×"
    costs = cost_ledgers(plan, hardware_profile("h100"))
    assert shown["effective"] == f"{costs.train_flops_effective:.3g}"
    assert shown["dense-equivalent"] == f"{costs.train_flops_dense_equivalent:.3g}"
    assert costs.train_flops_effective < costs.train_flops_dense_equivalent
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
    assert enc["color"]["field"] == "run"
    # the dense partner's flat line is the sparse curve's average: N_avg is the mean of N(t)
    curves = n_curves(plan, points=20_000)
    sparse = curves[curves.run == "sparse run N(t)"].params.to_numpy()
    assert abs(sparse[:-1].mean() - plan.derived.n_avg) / plan.derived.n_avg < 1e-3


def test_window_in_steps_and_dense_shape():
    at = open_page(PAGE)
    at.radio(key="sched_basis").set_value("steps").run()
    at.slider(key="sched_window_steps").set_value((1000, 9000)).run()
    assert_clean(at)
    assert "steps 1000→9000" in at.caption[-1].value
    at.selectbox(key="sched_shape").set_value("dense").run()
    assert_clean(at)
    assert metrics(at)["Compression"] == "1.000×"


def test_bad_custom_shape_is_an_error_not_a_traceback():
    at = open_page(PAGE)
    at.selectbox(key="sched_preset").set_value("custom").run()
    at.number_input(key="sched_n_head").set_value(7).run()  # 2048 is not divisible by 7
    assert_clean(at)
    assert any("not divisible by n_head 7" in e.value for e in at.error)
