"""Pareto planner page (the default page): frontier drawn with no input, chart spec, inputs, plan selection."""
from app.ui.pareto_view import PlannerInputs, axes, clicked_plan, search, versus_baselines
from planner.laws import default_law
from planner.pareto import pareto_front
from planner.search import lifetime_optimal
from test_app_common import assert_clean, chart_specs, encodings, metrics, open_page


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
    assert enc["color"]["field"] == "final_sparsity" and enc["shape"]["field"] == "validated"
    params = {p["name"]: p for p in spec["params"]}
    assert params["pick"]["select"]["type"] == "point" and params["zoom"]["bind"] == "scales"
    assert {"line", "point"} <= {layer["mark"]["type"] for layer in spec["layer"]}
    # opens on the lifetime-optimal plan of planner.search for the default inputs, frontier in the selectbox
    inputs = PlannerInputs()
    comp = search(inputs)
    direct = lifetime_optimal(default_law(), inputs.target_loss, lifetime_tokens=inputs.lifetime_tokens,
                              schedules=("geometric 25-75",))
    assert summary(at)["N_avg"] == f"{direct.best['n_avg']:.4g}" and summary(at)["final sparsity"] != "0%"
    assert summary(at)["predicted loss"] == f"{inputs.target_loss:.3f}"
    front = pareto_front(comp.candidates, ["train_flops_effective", "lifetime_inference_flops"])
    assert set(front["plan_id"]) <= set(at.selectbox(key="pareto_pick").options)
    # savings against the dense baselines, as planner.search tabulates them
    table = at.table[0].value
    assert list(table.columns) == ["selected", "dense inference-aware", "dense Chinchilla-optimal"]
    pct = direct.savings.loc["dense Chinchilla-optimal", "saved_lifetime_flops_pct"]
    assert metrics(at)["vs dense Chinchilla-optimal"] == f"{pct:+.1f}%"


def test_changing_inputs_updates_numbers_and_axes():
    at = open_page()
    at.number_input(key="p_target").set_value(2.8).run()
    assert_clean(at)
    assert summary(at)["predicted loss"] == "2.800"
    at.radio(key="p_units").set_value("usd").run()
    enc = encodings(chart_specs(at)[0])
    assert enc["x"]["title"] == "Training cost (US$)" and enc["y"]["title"] == "Lifetime inference cost (US$)"
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
    assert summary(at)["N_avg"] == f"{plans.iloc[0]['n_avg']:.4g}"
    assert metrics(at)["vs dense inference-aware"] == f"{savings.iloc[0, 3]:+.1f}%"
    # the ring layer marks the selected plan
    ring = chart_specs(at)[0]["layer"][-1]
    assert ring["mark"]["size"] == 400
    # a new target is a new search: the selection returns to its lifetime-optimal plan
    at.number_input(key="p_target").set_value(2.7).run()
    best = search(PlannerInputs(target_loss=2.7)).best
    assert summary(at)["plan"] == best["plan_id"] and at.selectbox(key="pareto_pick").value == best["plan_id"]


def test_unreachable_target_is_explained():
    at = open_page()
    at.number_input(key="p_target").set_value(1.85).run()  # below the floor of the largest family model (1.876)
    assert_clean(at)
    assert at.error and "raise the target" in at.error[0].value


def test_clicked_plan_reads_the_chart_selection():
    assert clicked_plan({"selection": {"pick": [{"plan_id": "d2048 · 50% · geometric 25-75"}]}}) == \
        "d2048 · 50% · geometric 25-75"
    assert clicked_plan({"selection": {"pick": []}}) is None and clicked_plan(None) is None


def test_frontier_is_non_dominated():
    inputs = PlannerInputs(units="usd")
    front = search(inputs).frontier
    ax = axes(inputs)
    assert front[ax.x].is_monotonic_increasing and front[ax.y].is_monotonic_decreasing
