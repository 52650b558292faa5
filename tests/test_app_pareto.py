"""Pareto planner page (the default page): frontier drawn with no input, chart spec, inputs, plan selection, the
fixes of issue 10 (2:4 round trip, unpriced machine, visible validation, baseline note, one default search)."""
import numpy as np

from app.ui.common import human
from app.ui.pareto_view import PATTERN_SPARSITIES, PlannerInputs, axes, baseline_note, clicked_plan, cost_units, \
    search, versus_baselines, view_domain
from planner.laws import default_law
from planner.pareto import pareto_front
from planner.search import DEFAULT_SCHEDULES, lifetime_optimal
from test_app_common import assert_clean, chart_specs, encodings, metrics, open_page

LOSS = "predicted loss (nats/token)"


def summary(at) -> dict[str, str]:
    """The selected plan's column of the side-by-side table."""
    return at.table[0].value["selected"].to_dict()


def test_opens_with_a_frontier_and_no_input():
    at = open_page()
    assert at.title[0].value == "Pareto planner"
    spec = chart_specs(at)[0]
    enc = encodings(spec)
    assert enc["x"]["scale"]["type"] == "log" and enc["y"]["scale"]["type"] == "log"
    assert enc["x"]["title"] == "Training compute, effective (FLOP)"
    assert enc["y"]["title"] == "Lifetime inference compute (FLOP)"
    assert "'.0e'" in enc["x"]["axis"]["labelExpr"] and "'.0e'" in enc["y"]["axis"]["labelExpr"]  # 1e20, not 100E
    assert enc["color"]["field"] == "final_sparsity" and enc["shape"]["field"] == "validated"
    params = {p["name"]: p for p in spec["params"]}
    assert params["pick"]["select"]["type"] == "point" and params["zoom"]["bind"] == "scales"
    assert {"line", "point"} <= {layer["mark"]["type"] for layer in spec["layer"]}
    # the planner's default search (the CLI's too), on the lifetime-optimal plan; frontier in the selectbox
    inputs = PlannerInputs()
    assert inputs.schedules == DEFAULT_SCHEDULES
    comp = search(inputs)
    direct = lifetime_optimal(default_law(), inputs.target_loss, lifetime_tokens=inputs.lifetime_tokens)
    assert summary(at)["N_avg (parameters)"] == human(direct.best["n_avg"], 4)
    assert summary(at)["schedule"] == direct.best["schedule"] and summary(at)["final sparsity"] != "0%"
    assert summary(at)[LOSS] == f"{inputs.target_loss:.3f}"
    front = pareto_front(comp.candidates, ["train_flops_effective", "lifetime_inference_flops"])
    assert set(front["plan_id"]) <= set(at.selectbox(key="pareto_pick").options)
    # savings against the dense baselines, as planner.search tabulates them
    table = at.table[0].value
    assert list(table.columns) == ["selected", "dense inference-aware", "dense Chinchilla-optimal"]
    pct = direct.savings.loc["dense Chinchilla-optimal", "saved_lifetime_flops_pct"]
    assert metrics(at)["vs Chinchilla-optimal"] == f"{pct:+.1f}%"
    assert metrics(at)["Selected plan: predicted loss"] == "2.600"
    assert "epoch-replication preset" in at.sidebar.caption[0].value  # the law in force, on every page


def test_changing_inputs_updates_numbers_and_axes():
    at = open_page()
    at.number_input(key="p_target").set_value(2.8).run()
    assert_clean(at)
    assert summary(at)[LOSS] == "2.800"
    at.radio(key="p_units").set_value("usd").run()
    enc = encodings(chart_specs(at)[0])
    assert enc["x"]["title"] == "Training cost (US$)" and enc["y"]["title"] == "Lifetime inference cost (US$)"
    assert "'$'" in enc["x"]["axis"]["labelExpr"]
    at.radio(key="p_mode").set_value("budget").run()
    assert_clean(at)
    enc = encodings(chart_specs(at)[0])
    assert enc["y"]["field"] == "loss" and enc["y"]["scale"]["type"] == "linear"
    assert enc["x"]["scale"]["type"] == "log"


def test_selectbox_selects_a_plan():
    at = open_page()
    box = at.selectbox(key="pareto_pick")
    choice = box.options[2]
    box.set_value(choice).run()
    assert_clean(at)
    assert at.selectbox(key="pareto_pick").value == choice
    plans, savings = versus_baselines(search(PlannerInputs()), choice, "flops")
    assert summary(at)["N_avg (parameters)"] == human(plans.iloc[0]["n_avg"], 4)
    assert metrics(at)["vs inference-aware"] == f"{savings.iloc[0, 3]:+.1f}%"
    ring = chart_specs(at)[0]["layer"][-1]  # the ring layer marks the selected plan
    assert ring["mark"]["size"] == 400
    # a new target is a new search: the selection returns to its lifetime-optimal plan
    at.number_input(key="p_target").set_value(2.7).run()
    best = search(PlannerInputs(target_loss=2.7)).best
    assert summary(at)["plan"] == best["plan_id"] and at.selectbox(key="pareto_pick").value == best["plan_id"]


def test_two_four_and_back_restores_the_search():
    at = open_page()
    before = summary(at)
    at.radio(key="p_pattern").set_value("2:4").run()
    assert_clean(at)
    assert summary(at)["final sparsity"] in ("0%", "50%")
    at.radio(key="p_pattern").set_value("unstructured").run()
    assert_clean(at)
    assert summary(at) == before  # same optimum as before the round trip, not a 0%/50% sweep
    assert PlannerInputs(pattern="unstructured").sparsities == PATTERN_SPARSITIES["unstructured"]


def test_unpriced_machine_in_dollars_falls_back_to_flop():
    at = open_page()
    at.selectbox(key="p_hw").set_value("this machine")
    at.radio(key="p_units").set_value("usd").run()
    assert_clean(at)
    assert any("no price per hour" in w.value for w in at.warning)
    assert all("nan" not in m for m in metrics(at).values())
    assert encodings(chart_specs(at)[0])["x"]["title"] == "Training compute, effective (FLOP)"
    assert "training cost" not in at.table[0].value.index  # no column of $0
    at.number_input(key="p_price").set_value(1.5).run()  # a price makes dollars meaningful
    assert not any("no price per hour" in w.value for w in at.warning)
    assert encodings(chart_specs(at)[0])["x"]["title"] == "Training cost (US$)"
    assert all(np.isfinite(float(m.rstrip("%"))) for k, m in metrics(at).items() if k.startswith("vs "))


def test_unpriced_machine_costs_zero_dollars_without_nan():
    inputs = PlannerInputs(hardware="this machine", units="usd", machine_peak=1e11)
    assert cost_units(inputs) == "flops"
    comp = search(inputs)
    assert (comp.candidates["train_usd"] == 0).all() and np.isfinite(comp.savings.to_numpy()).all()


def test_target_at_the_law_floor_is_explained():
    at = open_page()
    at.number_input(key="p_target").set_value(1.5).run()
    assert_clean(at)
    assert "Target loss 1.5 is at or below the law's irreducible loss 1.817" in at.error[0].value
    assert not chart_specs(at)
    at.number_input(key="p_target").set_value(1.85).run()  # above E, below the largest family model's floor
    assert at.error and "raise the target" in at.error[0].value


def test_bad_numbers_are_named():
    at = open_page()
    at.number_input(key="p_mfu_MFU decode").set_value(1.5).run()
    assert_clean(at)
    assert at.error[0].value == "MFU decode: 1.5 is not a fraction in (0, 1]."


def test_a_plan_equal_to_its_baselines_says_so():
    at = open_page()
    at.select_slider(key="p_lifetime").set_value(1e9).run()
    assert_clean(at)
    assert metrics(at)["vs inference-aware"] == "+0.0%"
    note = at.info[0].value
    assert "is both the dense inference-aware and the dense Chinchilla-optimal plan" in note
    comp = search(PlannerInputs(lifetime_tokens=1e11))
    assert baseline_note(comp, comp.best["plan_id"]) is None


def test_downloads_are_offered():
    at = open_page()
    labels = [b.label for b in at.main.get("download_button")]
    assert labels == ["Frontier (CSV)", "All candidates (CSV)", "Comparison (CSV)", "Chart (PNG)", "Chart (SVG)"]
    assert [b.label for b in at.sidebar.get("download_button")] == ["Save session (JSON)"]


def test_clicked_plan_reads_the_chart_selection():
    assert clicked_plan({"selection": {"pick": [{"plan_id": "d2048 · 50% · geometric 25-75"}]}}) == \
        "d2048 · 50% · geometric 25-75"
    assert clicked_plan({"selection": {"pick": []}}) is None and clicked_plan(None) is None


def test_frontier_is_non_dominated():
    inputs = PlannerInputs(units="usd")
    front = search(inputs).frontier
    ax = axes(inputs)
    assert front[ax.x].is_monotonic_increasing and front[ax.y].is_monotonic_decreasing


def test_chart_and_table_downloads_are_real_files():
    from app.ui import charts, downloads

    inputs = PlannerInputs()
    comp = search(inputs)
    ax = axes(inputs)
    spec = charts.pareto_spec(comp.candidates, comp.frontier, ax, view_domain(comp.frontier, ax), comp.best["plan_id"])
    assert downloads.chart_png(spec).startswith(b"\x89PNG")
    svg = downloads.chart_svg(spec).decode()
    assert svg.startswith("<svg") and "Training compute, effective (FLOP)" in svg and "1e20" in svg
    csv = downloads.csv_bytes(comp.frontier).decode().splitlines()
    assert len(csv) == len(comp.frontier) + 1 and "plan_id" in csv[0]
