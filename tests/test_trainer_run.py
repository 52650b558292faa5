"""End-to-end trainer runs through the real CLI in subprocesses: plan -> train, SIGKILL + resume bit for bit,
SIGINT cancel, divergence, corrupt checkpoint fallback, bad input, DDP equivalence, export."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from planner.ladder import tiny_plan
from planner.plan import Budget, dump_plan, make_plan
from train_backend import checkpoint, registry
from train_backend.cli import main

ROOT = Path(__file__).resolve().parents[1]
# One thread per trainer: the suite runs under `pytest -n 2` on two cores, and oversubscribed OpenMP threads spin.
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
SUMMARY_KEYS = {"run_id", "final_val_loss", "final_train_loss", "n_avg_measured", "n_final", "tokens",
                "wall_seconds", "predicted_loss"}


def _plan(path, steps=60, **budget):
    plan = tiny_plan(steps=steps)
    if budget:
        b = Budget(**{**plan.budget.model_dump(), **budget})
        plan = make_plan(plan.model, plan.schedule, b, name=plan.name, run=plan.run)
    return dump_plan(plan, path)


def _train(tmp_path, *args, wait=True, prefix=()):
    cmd = [*prefix, "-m", "train_backend", "train", *map(str, args), "--runs-dir", str(tmp_path / "runs")]
    proc = subprocess.Popen([sys.executable, *cmd] if not prefix else cmd, cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate()
    return proc.returncode, out.strip(), err.strip()


def _metrics(tmp_path, run_id):
    return registry.read_metrics(tmp_path / "runs" / run_id)


def _final_state(tmp_path, run_id):
    return checkpoint.load(tmp_path / "runs" / run_id)


def _wait_lines(path, n, proc):
    """Until the run has written n metrics lines; fails if it ends first (no clock: a busy machine is only slow)."""
    while proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.005)
    raise AssertionError(f"{path} never reached {n} lines (exit {proc.poll()})")


def test_plan_to_train_end_to_end(tmp_path):
    plan = _plan(tmp_path / "plan.yaml", steps=60)
    rc, out, err = _train(tmp_path, plan)
    assert rc == 0, err
    run_dir = tmp_path / "runs" / out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["status"] == "finished"
    lines = _metrics(tmp_path, out)
    assert [m["step"] for m in lines] == list(range(60))
    assert lines[-1]["loss"] < lines[0]["loss"] - 1.0
    assert summary["final_val_loss"] < lines[0]["loss"] - 1.0
    assert summary["n_final"] == tiny_plan(steps=60).derived.n_final
    assert summary["n_avg_measured"] == pytest.approx(tiny_plan(steps=60).derived.n_avg, rel=1e-4)
    row = registry.get_run(tmp_path / "runs", out)
    assert row["status"] == "finished" and row["final_val_loss"] == summary["final_val_loss"]
    assert main(["runs", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert main(["export", out, "--hf", str(tmp_path / "hf"), "--runs-dir", str(tmp_path / "runs")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").exists() and (tmp_path / "hf" / "config.json").exists()


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    plan = _plan(tmp_path / "plan.yaml", steps=80)
    flags = ("--ckpt-every", 10, "--threads", 1)
    rc, whole, err = _train(tmp_path, plan, *flags)
    assert rc == 0, err
    killed = "killed"
    proc = _train(tmp_path, plan, *flags, "--run-id", killed, wait=False)
    _wait_lines(tmp_path / "runs" / killed / "metrics.jsonl", 25, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _final_state(tmp_path, killed)["step"] < 80
    rc, out, err = _train(tmp_path, "--resume", killed, *flags)
    assert rc == 0 and out == killed, err
    a, b = _metrics(tmp_path, whole), _metrics(tmp_path, killed)
    assert [m["step"] for m in b] == list(range(80))
    assert [m["loss"] for m in a] == [m["loss"] for m in b]
    assert [m["measured_density"] for m in a] == [m["measured_density"] for m in b]
    sa, sb = _final_state(tmp_path, whole), _final_state(tmp_path, killed)
    assert sa["step"] == sb["step"] == 80
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])


def test_a_stop_signal_blocked_by_the_launcher_still_cancels(tmp_path):
    """A launcher that blocks SIGINT (a signal mask is inherited through fork and exec) must not make the app's
    cancel a no-op: the run trained to its end, exit 0, when its mask was the launcher's."""
    plan = _plan(tmp_path / "plan.yaml", steps=2000)
    proc = subprocess.Popen([sys.executable, "-m", "train_backend", "train", str(plan), "--runs-dir",
                             str(tmp_path / "runs"), "--run-id", "r", "--ckpt-every", "1000"], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}))
    _wait_lines(tmp_path / "runs" / "r" / "metrics.jsonl", 5, proc)
    assert registry.cancel(tmp_path / "runs", "r")
    out, err = proc.communicate()
    assert proc.returncode == 128 + signal.SIGINT and "cancelled by SIGINT at step" in err, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_cancels_with_checkpoint(tmp_path, sig):
    """The app's cancel (SIGINT), a scheduler's stop (SIGTERM) and a closed terminal (SIGHUP) alike: checkpoint at
    the end of the step, row cancelled, one line, exit 128 + the signal's number."""
    plan = _plan(tmp_path / "plan.yaml", steps=2000)
    run_id = "cancel-me"
    proc = _train(tmp_path, plan, "--ckpt-every", 1000, "--run-id", run_id, wait=False)
    _wait_lines(tmp_path / "runs" / run_id / "metrics.jsonl", 5, proc)
    if sig == signal.SIGINT:
        assert registry.cancel(tmp_path / "runs", run_id)
    else:
        proc.send_signal(sig)
    out, err = proc.communicate()
    assert proc.returncode == 128 + sig and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"cancelled by {signal.Signals(sig).name} at step" in err and f"resume with --resume {run_id}" in err
    row = registry.get_run(tmp_path / "runs", run_id)
    state = _final_state(tmp_path, run_id)
    assert row["status"] == "cancelled" and 5 <= state["step"] < 2000
    assert len(_metrics(tmp_path, run_id)) == state["step"] == row["step"]


def test_divergence_marks_failed_and_keeps_checkpoint(tmp_path):
    plan = _plan(tmp_path / "plan.yaml", steps=40, lr=1e30)
    rc, out, err = _train(tmp_path, plan, "--ckpt-every", 1)
    assert rc == 1 and len(err.splitlines()) == 1 and "non-finite" in err
    row = registry.list_runs(tmp_path / "runs")[0]
    assert row["status"] == "failed"
    failed_step = int(row["error"].rsplit("step ", 1)[1])
    state = _final_state(tmp_path, row["run_id"])
    assert 1 <= state["step"] <= failed_step
    assert f"the last good checkpoint (step {state['step']}) is kept" in err
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path):
    plan = _plan(tmp_path / "plan.yaml", steps=60)
    rc, run_id, err = _train(tmp_path, plan, "--ckpt-every", 5, "--max-steps", 20, "--threads", 1)
    assert rc == 0, err
    first = _metrics(tmp_path, run_id)
    ckpt = tmp_path / "runs" / run_id / "ckpt.pt"
    blob = bytearray(ckpt.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(blob))
    rc, out, err = _train(tmp_path, "--resume", run_id, "--ckpt-every", 5, "--max-steps", 25, "--threads", 1)
    assert rc == 0, err
    assert "corrupt" in err and "Traceback" not in err
    lines = _metrics(tmp_path, run_id)
    assert [m["step"] for m in lines] == list(range(25))
    assert [m["loss"] for m in lines[:20]] == [m["loss"] for m in first]  # steps 15..19 replayed identically


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    good = _plan(tmp_path / "plan.yaml", steps=20)
    big = tiny_plan(steps=20)
    big = make_plan(big.model.model_copy(update={"d_model": 65536, "n_head": 64}), big.schedule, big.budget,
                    name="huge", run=big.run)
    dump_plan(big, tmp_path / "huge.yaml")
    nocorpus = tiny_plan(steps=20)
    dump_plan(nocorpus.model_copy(update={"run": nocorpus.run.model_copy(update={"corpus": "missing.txt"})}),
              tmp_path / "nocorpus.yaml")
    runs = ["--runs-dir", str(tmp_path / "runs")]
    cases = [(["train", str(tmp_path / "bad.yaml")], "not valid YAML"),
             (["train", str(tmp_path / "none.yaml")], "no such plan file"),
             (["train", str(tmp_path / "huge.yaml")], "GiB"),
             (["train", str(tmp_path / "nocorpus.yaml")], "missing.txt"),
             (["train", str(good), "--resume", "no-such-run"], "no such run"),
             (["train", str(good), "--max-steps", "0"], "must be positive"),
             (["export", "no-such-run", "--hf", str(tmp_path / "hf")], "no run"),
             (["train", "--bogus"], "unrecognized")]
    for argv, message in cases:
        try:
            rc = main([*argv, *runs])
        except SystemExit as exc:  # argparse's own errors
            rc = exc.code
        err = capsys.readouterr().err.strip()
        assert rc == 2 and message in err and len(err.splitlines()) == 1, (argv, err)
    assert not (tmp_path / "runs").exists() or registry.list_runs(tmp_path / "runs") == []
    assert main(["runs", *runs]) == 0 and "run_id" in capsys.readouterr().out  # an empty registry lists fine
    rc, out, err = _train(tmp_path, tmp_path / "bad.yaml")  # the same through a real process
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err


def test_ddp_two_ranks_match_one_process(tmp_path):
    plan = _plan(tmp_path / "plan.yaml", steps=12, grad_accum=2)
    flags = ("--threads", 1)
    rc, single, err = _train(tmp_path, plan, *flags)
    assert rc == 0, err
    rc, multi, err = _train(tmp_path, plan, *flags, prefix=(
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    assert rc == 0, err
    a, b = _metrics(tmp_path, single), _metrics(tmp_path, multi.splitlines()[-1])
    assert len(a) == len(b) == 12 and a[-1]["measured_density"] < 1
    assert all(abs(x["loss"] - y["loss"]) < 1e-5 for x, y in zip(a, b))
    ma = _final_state(tmp_path, single)["pruner"]["masks"]
    mb = _final_state(tmp_path, multi.splitlines()[-1])["pruner"]["masks"]
    assert all(torch.equal(x, y) for x, y in zip(ma, mb))
