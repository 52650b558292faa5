"""Start-up and end of a run: a stop signal (SIGINT, SIGTERM, SIGHUP) at any moment exits 128 + its number in one
line, a fresh run checkpoints at step 0 (so it
resumes from its start bit for bit), a failure says truthfully which checkpoint is kept."""
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
from train_backend import checkpoint, registry, train
from train_backend.cli import main
from train_backend.runtime import Stop
from train_backend.train import Cancelled, Options, run

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _interrupt_at(monkeypatch, name, signals=(signal.SIGINT,)):
    """Send this very process `signals` when the trainer calls `train.<name>` (a moment of its start-up)."""
    real = getattr(train, name)

    def interrupted(*args, **kwargs):
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # all pending at once: the second arrives while the
        for sig in signals:                                 # first is being handled
            os.kill(os.getpid(), sig)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        return real(*args, **kwargs)
    monkeypatch.setattr(train, name, interrupted)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("moment, outcome", [("load_batches", "during start-up; no run was created"),
                                             ("Transformer", "during start-up; run r has no checkpoint to resume"),
                                             ("forward_backward", "at step 1; resume with --resume r")])
def test_stop_signal_during_start_up_or_first_step(tmp_path, monkeypatch, capsys, moment, outcome, sig):
    """Before the loop a stop signal stops at once (checking the plan: no run yet; building the model: a cancelled
    run with no checkpoint); in the first step it checkpoints at the end of the step and cancels. Exit 128 + the
    signal's number, as a shell reports a process the signal ended."""
    _interrupt_at(monkeypatch, moment, (sig,))
    dump_plan(tiny_plan(steps=20), tmp_path / "plan.yaml")
    callers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    rc = main(["train", str(tmp_path / "plan.yaml"), "--runs-dir", str(tmp_path / "runs"), "--run-id", "r"])
    err = capsys.readouterr().err.strip()
    name = signal.Signals(sig).name
    assert rc == 128 + sig and len(err.splitlines()) == 1 and f"cancelled by {name} {outcome}" in err, err
    row = registry.get_run(tmp_path / "runs", "r")
    if moment == "load_batches":
        assert row is None
    else:
        assert row["status"] == "cancelled" and row["error"].startswith(name)
    if moment == "forward_backward":
        assert checkpoint.load(tmp_path / "runs" / "r")["step"] == 1 and row["step"] == 1
    assert {s: signal.getsignal(s) for s in callers} == callers  # the caller's handlers are back


@pytest.mark.parametrize("moment", ["Transformer", "forward_backward"])
def test_a_second_signal_still_leaves_the_run_resumable(tmp_path, monkeypatch, capsys, moment):
    """SIGTERM and SIGINT pending at once (a scheduler's stop, then an impatient Ctrl-C): one line naming the one
    handled first (the kernel and Python order pending signals themselves) with its exit code, the row cancelled, and
    the run resumes to its end."""
    _interrupt_at(monkeypatch, moment, (signal.SIGTERM, signal.SIGINT))
    dump_plan(tiny_plan(steps=4), tmp_path / "plan.yaml")
    runs = str(tmp_path / "runs")
    rc = main(["train", str(tmp_path / "plan.yaml"), "--runs-dir", runs, "--run-id", "r", "--threads", "1"])
    err = capsys.readouterr().err.strip()
    first = [sig for sig in (signal.SIGTERM, signal.SIGINT) if f"cancelled by {sig.name}" in err]
    assert len(first) == 1 and rc == 128 + first[0] and len(err.splitlines()) == 1, err
    assert registry.get_run(tmp_path / "runs", "r")["status"] == "cancelled"
    monkeypatch.undo()
    if moment == "Transformer":  # nothing was checkpointed: the run is not resumable, and says so
        assert "has no checkpoint to resume" in err
        return
    assert main(["train", "--resume", "r", "--runs-dir", runs, "--threads", "1"]) == 0
    assert registry.get_run(tmp_path / "runs", "r")["status"] == "finished"


def test_cancelled_names_the_run_in_process(tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, "Transformer")
    with pytest.raises(Cancelled) as info:
        run(tiny_plan(steps=20), Options(runs_dir=tmp_path / "runs", run_id="c"))
    assert info.value.run_id == "c" and not info.value.resumable
    monkeypatch.undo()
    summary = run(tiny_plan(steps=5), Options(runs_dir=tmp_path / "runs"))  # an earlier cancel leaves no flag set
    assert summary["status"] == "finished" and summary["steps"] == 5


def _wait_until_importing_torch(proc):
    """Until the child maps torch's library (/proc/PID/maps): it is then inside `from train_backend.cli import main`,
    the import the CLI guards. Earlier the interpreter itself is starting (a SIGINT then is Python's own fatal error
    or the OS default), which no program can turn into one line."""
    while proc.poll() is None:
        try:  # between fork and exec the child's map is this process's own, torch included: wait for the exec
            if (b"train_backend" in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
                    and "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()):
                return
        except OSError:  # it ended meanwhile: poll() says so next
            pass
        time.sleep(0.001)
    raise AssertionError(f"process {proc.pid} ended (exit {proc.returncode}) before it loaded torch")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the child's memory map in /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_while_importing_is_one_line(tmp_path, sig):
    dump_plan(tiny_plan(steps=20), tmp_path / "plan.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "train_backend", "train", str(tmp_path / "plan.yaml"),
                             "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_until_importing_torch(proc)
    proc.send_signal(sig)  # while importing: torch's Python modules take a second or more
    out, err = proc.communicate()
    assert proc.returncode == 128 + sig and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_signal_inside_an_import_waits_for_the_import(tmp_path, monkeypatch):
    """A stop signal that lands while a module is being imported is acted on after the import, not inside it: raised
    there it could be swallowed or leave a half-initialised module (torch imports sympy lazily at start-up; a SIGINT
    sent at random moments then ended 2 of 50 runs with "module 'sympy' has no attribute 'core'" and one with the
    signal lost)."""
    (tmp_path / "slow_module.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n"
                                             "for _ in range(1000):\n    pass\nFINISHED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with Stop.installed():
        import slow_module  # the signal arrives inside it
        assert slow_module.FINISHED and Stop.requested and Stop.signum == signal.SIGTERM
        with pytest.raises(Cancelled):
            Stop.check()
        Stop.check()  # raised once only


def test_step_zero_checkpoint_resumes_bit_identically(tmp_path):
    """A fresh run saves step 0 before any update: losing every later checkpoint, the run resumes from its start
    and replays exactly the uninterrupted run."""
    plan = tiny_plan(steps=30)
    whole = run(plan, Options(runs_dir=tmp_path / "runs", threads=1))
    part = run(plan, Options(runs_dir=tmp_path / "runs", threads=1, max_steps=1, ckpt_every=10**6))
    run_dir = Path(part["run_dir"])
    assert checkpoint.load(run_dir)["step"] == 1
    os.replace(run_dir / checkpoint.PREVIOUS, run_dir / checkpoint.LATEST)  # only the step-0 checkpoint is left
    state = checkpoint.load(run_dir)
    assert state["step"] == 0 and state["metrics_offset"] == 0
    fresh = torch.manual_seed(plan.run.seed) and train.Transformer(plan.model)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in state["model"].items())  # before any update
    resumed = run(None, Options(runs_dir=tmp_path / "runs", threads=1, resume=part["run_id"]))
    a, b = registry.read_metrics(Path(whole["run_dir"])), registry.read_metrics(run_dir)
    assert [m["step"] for m in b] == list(range(30))
    assert [m["loss"] for m in a] == [m["loss"] for m in b]
    assert resumed["final_val_loss"] == whole["final_val_loss"]


def test_failure_before_any_later_checkpoint_says_step_0(tmp_path, capsys):
    plan = tiny_plan(steps=40)
    b = Budget(**{**plan.budget.model_dump(), "lr": 1e30})
    dump_plan(make_plan(plan.model, plan.schedule, b, name="nan", run=plan.run), tmp_path / "plan.yaml")
    rc = main(["train", str(tmp_path / "plan.yaml"), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "non-finite" in err
    assert "the last good checkpoint (step 0) is kept" in err


@pytest.mark.parametrize("fails", [False, True])
def test_a_run_gives_back_the_callers_torch_settings(tmp_path, monkeypatch, fails):
    """run() trains deterministically with its own thread count, then restores the process's settings, also when
    the run fails."""
    seen = {}

    def step(*args, _real=train.forward_backward):
        seen.update(deterministic=torch.are_deterministic_algorithms_enabled(), threads=torch.get_num_threads())
        if fails:
            raise RuntimeError("boom")
        return _real(*args)
    monkeypatch.setattr(train, "forward_backward", step)
    torch.use_deterministic_algorithms(False)
    try:
        if fails:
            with pytest.raises(train.RunFailed):
                run(tiny_plan(steps=2), Options(runs_dir=tmp_path / "runs", threads=2))
        else:
            assert run(tiny_plan(steps=2), Options(runs_dir=tmp_path / "runs", threads=2))["threads"] == 2
        assert seen == {"deterministic": True, "threads": 2}
        assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
    finally:
        torch.use_deterministic_algorithms(False)
