"""Export page: the bytes behind the download buttons parse back into the selected plan and its ladder."""
import io
import json
import zipfile

import yaml

from app.ui import export_view as ev
from app.ui.pareto_view import PlannerInputs, search, selected_plan
from planner.export import maxtext, torchao
from planner.plan import derive, plan_from_text
from test_app_common import assert_clean, open_page

PAGE = "views/export.py"


GEOMETRIC = PlannerInputs(schedules=("geometric 25-75",))  # the MaxText fork prunes only on a geometric schedule


def default_plan():
    comp = search(GEOMETRIC)
    return selected_plan(GEOMETRIC, comp, comp.best["plan_id"])


def export_page():
    at = open_page()
    at.session_state["planner_inputs"] = GEOMETRIC
    at.switch_page(PAGE).run()
    assert_clean(at)
    return at


def test_page_exports_the_selected_plan():
    at = export_page()
    plan = default_plan()
    assert plan.name in at.markdown[0].value
    labels = [b.label for b in at.main.get("download_button")]  # the sidebar holds the session's
    assert labels == ["Download plan (YAML)", "Download plan (JSON)", "MaxText fork (seed) (zip)",
                      "PyTorch torch.ao (zip)", "llm-compressor (zip)", "litgpt (zip)",
                      "Download ladder (zip of YAML)", "Download ladder (multi-document YAML)"]
    # each target's caveats sit beside its button: llm-compressor cannot prune globally
    assert any("per-layer instead of the plan's global threshold" in m.value for m in at.markdown)
    assert at.dataframe[0].value["plan"].tolist()[0] == f"{plan.name}-r0-sparse"


def test_selection_on_the_pareto_page_carries_over():
    at = open_page()
    box = at.selectbox(key="pareto_pick")
    choice = next(o for o in box.options if o != box.value)
    box.set_value(choice).run()
    at.switch_page(PAGE).run()
    assert_clean(at)
    assert selected_plan(PlannerInputs(), search(PlannerInputs()), choice).name in at.markdown[0].value


def test_plan_bytes_round_trip():
    plan = default_plan()
    assert plan_from_text(ev.plan_yaml_bytes(plan).decode()) == plan
    assert plan_from_text(ev.plan_json_bytes(plan).decode(), fmt="json") == plan
    # whole optimizer steps move the loss off the target by a hair
    assert abs(plan.prediction.loss - GEOMETRIC.target_loss) < 1e-3 and plan.costs is not None


def test_ladder_bytes_hold_every_rung():
    plan = default_plan()
    ladder = ev.ladder(plan, rungs=2)
    docs = list(yaml.safe_load_all(ev.ladder_yaml_bytes(ladder)))
    parsed = [plan_from_text(json.dumps(d), fmt="json") for d in docs]
    assert parsed == ladder and [p.name for p in parsed][:2] == [f"{plan.name}-r0-sparse", f"{plan.name}-r0-dense"]
    # dense partners match their sparse rung's N_avg: the ladder tests the unified law
    assert abs(parsed[1].derived.n_avg / parsed[0].derived.n_avg - 1) < 5e-3
    with zipfile.ZipFile(io.BytesIO(ev.ladder_zip_bytes(ladder))) as zf:
        assert sorted(zf.namelist()) == sorted(f"{p.name}.yaml" for p in ladder)
        assert all(plan_from_text(zf.read(n).decode(), n) in ladder for n in zf.namelist())


def test_target_downloads_hold_the_files_the_cli_writes(tmp_path):
    from planner.cli import main
    from planner.plan import dump_plan
    plan = default_plan()
    exports = ev.target_exports(plan)
    path = dump_plan(plan, tmp_path / "plan.yaml")
    for target, ex in exports.items():
        assert main(["export", str(path), "--to", target, "--out", str(tmp_path / target)]) == 0
        with zipfile.ZipFile(io.BytesIO(ex.zip_bytes())) as zf:
            assert sorted(zf.namelist()) == sorted(p.name for p in (tmp_path / target).iterdir())
            assert all(zf.read(n).decode() == (tmp_path / target / n).read_text() for n in zf.namelist())
    model, schedule, _ = maxtext.read_schedule(exports["maxtext"].files[f"{plan.name}.yml"])
    assert abs(derive(model, schedule).n_avg / exports["maxtext"].n_avg - 1) < 1e-12
    densities, steps = torchao.read_schedule(exports["torch-ao"].files[f"{torchao.module_name(plan)}.py"])
    assert steps == plan.budget.steps and densities[-1] == 1 - plan.schedule.final_sparsity


def test_a_device_count_that_does_not_divide_the_batch_is_shown_not_raised():
    at = export_page()
    at.number_input(key="export_devices").set_value(3).run()
    assert_clean(at)
    warnings = [w.value for w in at.warning]
    assert any("maxtext --devices 3" in w for w in warnings) and any("litgpt --devices 3" in w for w in warnings)
    labels = [b.label for b in at.get("download_button")]
    assert "PyTorch torch.ao (zip)" in labels and "litgpt (zip)" not in labels
