"""The app's memory panel and break-even figures: what the pages show, called directly."""
import pytest

from app.ui import memory_panel as mp, pareto_view as pv, schedule_view as sv
from planner.hardware.breakeven import format_speedup
from planner.hardware.memory import training_parts
from planner.hardware.report import summary_lines
from planner.shapes import PRESETS


@pytest.fixture(scope="module")
def design():
    return sv.design_plan(PRESETS["llama2-1b"], 11200, "geometric", 0.6, "compute", 0.25, 0.75, 100, 2048, 4096)


def test_memory_bars_add_up_to_the_planners_parts(design):
    r = mp.report(design, "h100", 8, micro_batch=2)
    frame = mp.parts_frame(r)
    train = frame[frame["bar"] == "training, per GPU"]["GB"].sum() * 1e9
    parts = training_parts(design.model, 2 * 2048, True, "bf16-mixed", "zero3", 8)
    assert train == pytest.approx(sum(parts.values()))
    serve = frame[frame["bar"].str.startswith("serving")]
    assert set(serve["part"]) == {"weights", "KV cache"}
    spec = mp.chart(frame, 80, 72).to_dict()
    assert spec["mark"]["type"] == "bar" and spec["encoding"]["color"]["field"] == "part"  # stacked by part
    lines = summary_lines(r)  # what the panel shows under its bars
    assert lines[0].startswith("Training (bf16-mixed, zero3 over 8 × H100 SXM)") and "fits" in lines[0]


def test_designer_breakeven_is_against_the_same_shape_at_the_same_loss(design):
    even = sv.breakeven(design)
    assert even is not None and even["breakeven_all"] > 1
    dense = sv.design_plan(PRESETS["llama2-1b"], 11200, "dense", 0.0, "compute", 0.25, 0.75, 100, 2048, 4096)
    assert sv.breakeven(dense) is None
    table = sv.comparison({"this": design, "dense": dense})
    assert table.loc["break-even speedup, every phase", "dense"] == "—"
    assert table.loc["break-even speedup, every phase", "this"] == format_speedup(even["breakeven_all"])


def test_dollar_advice_at_the_largest_lifetime_is_followable():
    inputs = pv.PlannerInputs(units="usd", lifetime_tokens=1e16)
    comp = pv.search(inputs)
    assert comp.best["final_sparsity"] == 0
    note = pv.baseline_note(comp, comp.best["plan_id"], "usd", 1e16, 1e16)
    assert "larger lifetime" not in note and "when it runs faster than on dense kernels by" in note
    assert format_speedup(float("inf")) == "unreachable" and format_speedup(float("nan")) == "—"


def test_sparse_kernel_switch_reaches_the_hardware():
    assert pv.hardware(pv.PlannerInputs(pattern="2:4")).sparse_kernel  # 2:4 kernels exist: on by default
    assert not pv.hardware(pv.PlannerInputs(pattern="2:4", sparse_kernel=False)).sparse_kernel
    assert not pv.hardware(pv.PlannerInputs()).sparse_kernel and pv.hardware(pv.PlannerInputs(sparse_kernel=True))\
        .sparse_kernel


def test_budget_mode_never_points_at_lifetime_demand():
    comp = pv.search(pv.PlannerInputs(mode="budget", budget_flops=1e19, units="usd"))
    best = comp.best
    assert best["final_sparsity"] == 0  # the dense compute-optimal plan has the lowest loss at 1e19 FLOP
    assert pv.baseline_note(comp, best["plan_id"], "usd", 1e12, 1e16).endswith(pv.BUDGET_DENSE)
