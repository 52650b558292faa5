"""Runs page: a real trainer subprocess launched from the page, watched, cancelled; the concurrency limit."""
import os
import time

import pytest

from app.ui import runs_view as rv
from planner.ladder import tiny_plan
from test_app_common import assert_clean, chart_specs, encodings, metrics, open_page
from train_backend import registry

PAGE = "views/runs.py"


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(rv.RUNS_DIR_ENV, str(tmp_path))
    return tmp_path


def wait_for(folder, predicate, timeout=240):
    """Poll the registry until some run satisfies predicate; returns that run."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for run in registry.list_runs(folder):
            if predicate(run):
                return run
        time.sleep(0.5)
    raise AssertionError(f"no run reached the expected state: {registry.list_runs(folder)}")


def test_launch_from_the_page_and_read_back_after_restart(runs_dir):
    at = open_page(PAGE)
    assert at.info[0].value == "No runs yet."
    assert at.selectbox(key="runs_choice").value.startswith("tiny preset")
    at.button(key="runs_launch").click().run()
    assert_clean(at)
    assert "Started tiny" in at.success[0].value
    run = wait_for(runs_dir, lambda r: r["status"] in ("finished", "failed"))
    assert run["status"] == "finished", run["error"]
    at = open_page(PAGE)  # a fresh session: the run comes back from the registry
    assert at.dataframe[0].value["status"].tolist() == ["finished"]
    assert metrics(at)["Measured validation loss"] == f"{run['final_val_loss']:.4f}"
    loss_spec, density_spec = chart_specs(at)
    assert encodings(loss_spec)["y"]["title"] == "Loss (nats/token)"
    assert encodings(density_spec)["x"]["title"] == "Optimizer step"
    curves = rv.density_curves(rv.metrics_frame(run))
    final = curves[curves.series == "masks (measured)"]["density"].iloc[-1]
    assert final == pytest.approx(1 - tiny_plan().schedule.final_sparsity, abs=0.02)


def test_cancel_a_running_run(runs_dir):
    rv.launch(tiny_plan(steps=20_000), runs_dir)
    # the registry's step moves at checkpoints; the metrics file shows training has begun
    wait_for(runs_dir, lambda r: r["status"] == "running" and not rv.metrics_frame(r).empty)
    at = open_page(PAGE)
    assert at.dataframe[0].value["status"].tolist() == ["running"]
    at.button(key=f"cancel_{at.selectbox(key='runs_watch').value}").click().run()
    assert_clean(at)
    run = wait_for(runs_dir, lambda r: r["status"] != "running", timeout=120)
    assert run["status"] == "cancelled" and run["step"] < 20_000


def test_at_most_two_runs_at_once(runs_dir):
    for i in range(rv.MAX_CONCURRENT):  # two registered runs whose process (this one) is alive
        registry.create_run(runs_dir, f"busy{i}", f"busy{i}", tiny_plan().model_dump_json(), runs_dir / f"busy{i}",
                            200, status="running")
        registry.update_run(runs_dir, f"busy{i}", pid=os.getpid())
    at = open_page(PAGE)
    at.button(key="runs_launch").click().run()
    assert_clean(at)
    assert "at most 2 at once" in at.error[0].value
    assert not list((runs_dir / "plans").glob("*.yaml")) if (runs_dir / "plans").exists() else True
