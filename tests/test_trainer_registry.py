"""The SQLite run registry: concurrent writers lose nothing; metrics are read safely while being written."""
import json
import multiprocessing as mp
import subprocess
import sys

import pytest

from planner.errors import PlannerInputError
from planner.ladder import tiny_plan
from planner.plan import plan_to_json
from train_backend import registry

UPDATES = 300


def _writer(runs_dir, tag):
    registry.create_run(runs_dir, f"run-{tag}", tag, "{}", runs_dir, UPDATES)
    for i in range(1, UPDATES + 1):
        registry.update_run(runs_dir, f"run-{tag}", step=i, status="running")
        if i % 10 == 0:
            registry.create_run(runs_dir, f"extra-{tag}-{i}", tag, "{}", runs_dir, 0)


def test_two_processes_lose_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, tag)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    runs = {r["run_id"]: r for r in registry.list_runs(tmp_path)}
    assert len(runs) == 2 + 2 * UPDATES // 10
    assert runs["run-a"]["step"] == runs["run-b"]["step"] == UPDATES
    assert registry.get_run(tmp_path, "run-a")["status"] == "running"
    assert registry.get_run(tmp_path, "nope") is None


def test_read_metrics_ignores_partial_last_line(tmp_path):
    lines = [json.dumps({"step": i, "loss": 1.0 / (i + 1)}) for i in range(3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 3, "lo')
    assert [m["step"] for m in registry.read_metrics(tmp_path)] == [0, 1, 2]
    assert registry.read_metrics(tmp_path / "missing") == []


def test_cancel_sends_sigint_to_a_running_pid(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                              "signal.signal(signal.SIGINT, lambda *a: sys.exit(7))\n"
                              "print('ready', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"ready"
    registry.create_run(tmp_path, "r", "r", "{}", tmp_path, 10)
    assert not registry.cancel(tmp_path, "r")  # queued, no pid: nothing to cancel
    registry.update_run(tmp_path, "r", status="running", pid=child.pid)
    assert registry.get_run(tmp_path, "r")["alive"]
    assert registry.cancel(tmp_path, "r")
    assert child.wait(30) == 7
    assert not registry.get_run(tmp_path, "r")["alive"]  # still marked running, but its process is gone
    assert not registry.cancel(tmp_path, "r")  # the pid is gone


def test_failures_are_recorded_or_the_reason_is_returned(tmp_path):
    registry.create_run(tmp_path, "r", "r", "{}", tmp_path, 10, status="running", pid=1)
    note = registry.record_failure(tmp_path, "r", OSError(28, "No space left on device"))
    row = registry.get_run(tmp_path, "r")
    assert note.startswith("recorded in") and row["status"] == "failed" and "No space left" in row["error"]
    (tmp_path / "gone").write_text("a file where the runs folder should be")
    note = registry.record_failure(tmp_path / "gone", "r", RuntimeError("x"))
    assert note.startswith("NOT recorded in the registry:") and "\n" not in note


def test_a_run_is_finished_only_with_every_step_of_its_plan_and_its_plan_reads_back(tmp_path):
    plan = tiny_plan(steps=20)
    registry.create_run(tmp_path, "r", plan.name, plan_to_json(plan), tmp_path / "r", plan.budget.steps)
    assert not registry.is_finished(registry.get_run(tmp_path, "r")) and not registry.is_finished(None)
    registry.update_run(tmp_path, "r", status="finished", step=12)  # stopped by --max-steps: not the whole plan
    assert not registry.is_finished(registry.get_run(tmp_path, "r"))
    registry.update_run(tmp_path, "r", step=20)
    row = registry.get_run(tmp_path, "r")
    assert registry.is_finished(row) and registry.run_plan(row) == plan
    with pytest.raises(PlannerInputError, match="run r"):
        registry.run_plan({**row, "plan_json": "{"})
