"""Fuzz both CLIs through main(argv), in-process: runs CSVs, plan documents (mutations of valid plans), flags.

Every case must end "ok", "exit2" (one line on stderr) or, for the trainer, "run_failed" (a diverged run, one line):
never a traceback, an internal error, an escaped warning, a non-finite value accepted, or a plan `check`
accepts and `train` cannot run (see tests/fuzz_support.py). 1,060 cases under the CI profile (CI=1: derandomized, a
red run replays); `HYPOTHESIS_PROFILE=thorough` multiplies every count by 20. A few subprocess runs at the end show
the real processes print the same single line.
"""
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_support import (GOOD, TRAINER_FLAGS, valid_runs, base_plans, fill_corpora, flag_value, invoke,
                          make_corpora, non_finite, planner_argv, plan_text, runs_csv, verdict)
from planner.cli import main as planner_main
from planner.ladder import tiny_plan
from planner.plan import dump_plan
from train_backend.cli import main as trainer_main

ROOT = Path(__file__).resolve().parents[1]
SCALE = max(1, settings().max_examples // 100)  # 1 under the default and CI profiles, 20 under `thorough`
NAMES = itertools.count()
BASES = base_plans()
NUMERIC_TRAINER_FLAGS = ("--max-steps", "--ckpt-every", "--threads")


def fuzz(n):
    return settings(max_examples=n * SCALE, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Files the cases point at: corpora of every kind, a valid runs CSV, a 4-step plan; the trainer's FLOP/s probe
    (0.3 s a run, only for the MFU column) is skipped."""
    tmp = tmp_path_factory.mktemp("fuzz")
    runs = tmp / "runs.csv"
    runs.write_text("loss,tokens,n_avg\n" + "\n".join(",".join(r) for r in valid_runs(8, 0.01)) + "\n")
    plan = dump_plan(tiny_plan(steps=4), tmp / "tiny.yaml")  # a --max-steps the fuzz makes large still ends soon
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("train_backend.train.peak_flops", lambda *a, **k: (1e12, "stubbed in the tests"))
        yield {"tmp": tmp, "corpora": make_corpora(tmp / "corpora"), "runs": runs, "plan": plan}


def _file(world, text: str, suffix: str) -> Path:
    path = world["tmp"] / f"case{next(NAMES)}.{suffix}"
    path.write_text(fill_corpora(text, world["corpora"]), errors="surrogateescape")
    return path


def _explain(o, argv):
    return f"{[str(a) for a in argv]}: rc={o.rc} err={o.err!r} exc={o.exc!r} warnings={o.warned}"


@fuzz(250)
@given(text=runs_csv())
def test_runs_csv(world, text):
    argv = ["fit", _file(world, text, "csv"), "--grid", "coarse", "--fix", "alpha=0.3478,beta=0.3658"]  # 27 starts
    o = invoke(planner_main, argv)
    assert verdict(o) in GOOD, _explain(o, argv)


@fuzz(350)
@given(case=plan_text(BASES))
def test_plan_documents(world, case):
    argv = ["check", _file(world, *case)]
    o = invoke(planner_main, argv)
    assert verdict(o) in GOOD, _explain(o, argv)


@fuzz(60)
@given(case=plan_text(BASES, trainer_fields_only=True))
def test_check_and_train_agree(world, case):
    """A plan `check` accepts is one `train` starts: one step and its evaluation, or a one-line divergence."""
    path = _file(world, *case)
    o = invoke(planner_main, ["check", path])
    assert verdict(o) in GOOD, _explain(o, ["check", path])
    if o.rc == 0:
        argv = ["train", path, "--runs-dir", world["tmp"] / "runs", "--max-steps", 1, "--threads", 1]
        t = invoke(trainer_main, argv)
        assert verdict(t) in ("ok", "run_failed"), _explain(t, argv)


@fuzz(300)
@given(case=planner_argv())
def test_planner_flags(world, case):
    argv, must_refuse = case
    places = {"{runs}": world["runs"], "{plan}": world["plan"], "{out}": world["tmp"] / "export"}
    argv = [places.get(a, a) for a in argv]
    o = invoke(planner_main, argv)
    assert verdict(o, must_refuse) in GOOD, _explain(o, argv)


@fuzz(100)
@given(pairs=st.lists(st.tuples(st.sampled_from(TRAINER_FLAGS), flag_value), min_size=1, max_size=2),
       cmd=st.sampled_from(["train", "train", "runs", "export"]))
def test_trainer_flags(world, pairs, cmd):
    tmp = world["tmp"]
    argv = {"train": ["train", world["plan"], "--max-steps", 1], "runs": ["runs"],
            "export": ["export", "nope", "--hf", tmp / "hf"]}[cmd] + ["--runs-dir", tmp / "trainer-runs"]
    for flag, value in pairs:
        argv += [flag, value]
    o = invoke(trainer_main, argv)
    must_refuse = any(non_finite(v) for f, v in pairs if f in NUMERIC_TRAINER_FLAGS)
    assert verdict(o, must_refuse) in GOOD, _explain(o, argv)


def test_real_processes_print_the_same_one_line(world, tmp_path):
    """Sampled cases as real processes (both CLIs, in parallel): exit 2, one line, identical to in-process."""
    deep = tmp_path / "deep.yaml"
    deep.write_text("schema_version: 1\nnotes: " + "[" * 5000 + "]" * 5000 + "\n")
    fifo_plan = tmp_path / "fifo.yaml"
    fifo_plan.write_text(world["plan"].read_text().replace("corpus: bible", f"corpus: {world['corpora']['fifo']}"))
    assert "fifo" in fifo_plan.read_text()
    cases = [("planner", ["check", deep]), ("planner", ["frontier", "--target-loss", "inf"]),
             ("train_backend", ["train", fifo_plan, "--runs-dir", tmp_path / "runs"])]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", module, *map(str, argv)], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for module, argv in cases]
    for (module, argv), proc in zip(cases, procs):
        _, err = proc.communicate()
        inproc = invoke(planner_main if module == "planner" else trainer_main, argv)
        assert proc.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)
        assert err == inproc.err, (argv, err, inproc.err)
