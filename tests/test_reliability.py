"""Reliability: one validation (schema + planner.preflight), the error boundary, and nothing lost on faults.

Fault injection: a full disk (a 2 MiB tmpfs where mount is allowed, else RLIMIT_FSIZE), read-only folders (a tmpfs
remounted read-only; chmod when not root), a registry that is not a database or is a folder, run ids that are
paths, processes killed without a word (reconciled on the next start), and finished children the app must reap.
"""
import json
import os
import resource
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import one_line_stderr
from planner.cli import main as planner_main
from planner.errors import PlannerInputError, guarded
from planner.ladder import tiny_plan
from planner.plan import dump_plan, plan_from_text, plan_to_dict, plan_to_yaml
from planner.preflight import corpus_tokens, preflight
from planner.shapes import MAX_PARAMS, ModelShape, param_counts
from train_backend import registry
from train_backend.cli import main as trainer_main
from train_backend.launch import spawn

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _mount(path: Path, opts: str):
    path.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")


@contextmanager
def small_disk(path: Path, size: str = "2m"):
    _mount(path, f"size={size}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def read_only(path: Path):
    """`path` with whatever it holds, made read-only: chmod for a normal user, a tmpfs remount for root."""
    if os.geteuid() != 0:
        os.chmod(path, 0o555)
        yield path
        os.chmod(path, 0o755)
        return
    keep = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    _mount(path, "size=8m")
    try:
        for rel, data in keep.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_bytes(data)
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def fifos_never_opened(*paths: Path):
    """Fail if the code under test opens one of these FIFOs for reading: a watcher thread opens each for writing
    without blocking, which succeeds only once a reader has it open; it then closes it (the reader sees the end of
    the file, so nothing blocks) and records the event. A verdict from events, not from a clock."""
    import threading
    opened, done = [], threading.Event()

    def watch():
        while not done.is_set():
            for path in paths:
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                    opened.append(path)
                except OSError:  # ENXIO: no reader
                    pass
            done.wait(0.001)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
    assert not opened, f"opened for reading: {sorted(set(map(str, opened)))}"


def _byte_corpus(path: Path, n: int = 200_000) -> str:
    """A .bin corpus of byte ids outside the runs folder, so a tiny runs disk holds only what the run writes."""
    (np.frombuffer(np.random.default_rng(0).bytes(n), np.uint8).astype(np.uint16)).tofile(path)
    return str(path)


def _tiny(tmp_path: Path, corpus: str = "bible", steps: int = 4, **run) -> Path:
    plan = tiny_plan(steps=steps)
    plan = plan.model_copy(update={"run": plan.run.model_copy(update={"corpus": corpus, **run})})
    return dump_plan(plan, tmp_path / f"plan-{steps}-{len(run)}.yaml")


# --- one validation -------------------------------------------------------------------------------------------------

def test_duplicate_yaml_key_is_refused_naming_key_and_both_lines():
    text = plan_to_yaml(tiny_plan())
    i = text.index("  lr: ")
    line = text[:i].count("\n") + 1
    with pytest.raises(PlannerInputError, match=rf"line {line + 1}: duplicate key 'lr' \(first on line {line}\)"):
        plan_from_text(text[:i] + "  lr: 0.1\n" + text[i:], "p.yaml")
    with pytest.raises(PlannerInputError, match="duplicate key 'name'"):
        plan_from_text(json.dumps(plan_to_dict(tiny_plan()))[:-1] + ', "name": "x"}', "p.json", "json")


@pytest.mark.parametrize("version", ["true", "'1'", "1.0"])
def test_schema_version_must_be_the_integer(version):
    text = plan_to_yaml(tiny_plan()).replace("schema_version: 2", f"schema_version: {version}")
    with pytest.raises(PlannerInputError, match="schema_version"):
        plan_from_text(text)


@pytest.mark.parametrize("path, value, field", [
    (("budget", "betas"), [0.9, 1.0], "budget.betas.1"), (("budget", "betas"), [-0.1, 0.9], "budget.betas.0"),
    (("run", "seed"), -1, "run.seed"), (("run", "seed"), 2**64, "run.seed"), (("budget", "lr"), "nan", "budget.lr"),
    (("budget", "lr"), float("inf"), "budget.lr"), (("model", "n_layer"), True, "model.n_layer"),
    (("budget", "steps"), "100", "budget.steps"), (("budget", "warmup_steps"), 10**6, "budget"),
    (("name",), "", "name"),
])
def test_out_of_range_fields_name_the_field(path, value, field):
    doc = plan_to_dict(tiny_plan())
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(PlannerInputError, match=rf"field '{field}"):
        plan_from_text(json.dumps(doc), "p.json", "json")


def test_parameter_counts_never_wrap_around():
    """int64 counts wrap past 2^63: such a shape is refused, and every accepted one counts exactly."""
    wide = dict(n_layer=2, d_model=64, n_head=4, vocab=256)
    wraps = 2**62  # 3 * 2 layers * 64 * d_ff wraps int64
    assert int(param_counts(2, 64, 4, 4, 16, wraps, 256)["total"]) != int(
        param_counts(2, 64, 4, 4, 16, wraps, 256, dtype=object)["total"])
    with pytest.raises(ValueError, match="parameters is past"):
        ModelShape(**wide, d_ff=wraps)
    d_ff = (MAX_PARAMS - ModelShape(**wide, d_ff=1).total) // (3 * 2 * 64)  # the largest shape accepted
    shape = ModelShape(**wide, d_ff=d_ff)
    assert shape.total == int(param_counts(2, 64, 4, 4, 16, d_ff, 256, dtype=object)["total"]) <= MAX_PARAMS


def test_corpus_kinds_are_checked_without_reading(tmp_path):
    """FIFOs and devices are refused from stat alone (opening a FIFO would block, /dev/zero never ends)."""
    os.mkfifo(tmp_path / "fifo.txt")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("hello " * 50)
    os.mkfifo(tmp_path / "docs" / "b.txt")
    (tmp_path / "dir.bin").mkdir()
    with fifos_never_opened(tmp_path / "fifo.txt", tmp_path / "docs" / "b.txt"):  # an open() would block
        for corpus, message in [(tmp_path / "fifo.txt", "is a FIFO"), ("/dev/zero", "character device"),
                                (tmp_path / "docs", "b.txt is a FIFO"), (tmp_path / "dir.bin", "is a folder"),
                                (tmp_path / "nope.txt", "no such file")]:
            with pytest.raises(PlannerInputError, match=message):
                corpus_tokens(str(corpus), 256)


def test_files_that_would_block_are_refused(tmp_path, capsys):
    os.mkfifo(tmp_path / "p.yaml")
    os.mkfifo(tmp_path / "r.csv")
    with fifos_never_opened(tmp_path / "p.yaml", tmp_path / "r.csv"):
        for main, argv, message in [
                (planner_main, ["check", tmp_path / "p.yaml"], "is a FIFO, not a plan file"),
                (planner_main, ["check", "/dev/zero"], "is a character device"),
                (planner_main, ["frontier", "--target-loss", "3", "--law", tmp_path / "p.yaml"], "not a law file"),
                (planner_main, ["fit", tmp_path / "r.csv"], "is a FIFO, not a runs file"),
                (trainer_main, ["train", tmp_path / "p.yaml", "--runs-dir", tmp_path / "runs"], "not a plan file")]:
            assert main([str(a) for a in argv]) == 2
            assert message in one_line_stderr(capsys)


def test_preflight_counts_what_the_trainer_reads(tmp_path):
    from train_backend.data import open_tokens
    (tmp_path / "docs").mkdir()
    for i in range(3):
        (tmp_path / "docs" / f"{i}.txt").write_text("abc " * (100 + i))
    for corpus in ("bible", str(tmp_path / "docs")):
        assert corpus_tokens(corpus, 256)[0] == len(open_tokens(corpus, tmp_path / "cache", 256))


def test_eval_batches_are_bounded_by_the_validation_split(tmp_path):
    plan = plan_from_text(_tiny(tmp_path, eval_batches=4).read_text())
    val = preflight(plan)["val_tokens"]
    b = plan.budget
    rows = b.batch_size // b.grad_accum  # evaluation runs micro-batches of this many rows
    most = (val - b.seq_len - 1) // rows  # start positions of seq_len + 1 token windows, `rows` a batch
    ok = plan.model_copy(update={"run": plan.run.model_copy(update={"eval_batches": most})})
    assert preflight(ok)["val_tokens"] == val
    too_many = plan.model_copy(update={"run": plan.run.model_copy(update={"eval_batches": most + 1})})
    with pytest.raises(PlannerInputError, match=rf"run.eval_batches' is {most + 1}.*at most {most} batches of {rows}$"):
        preflight(too_many)


def test_check_refuses_what_train_refuses(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo.txt")
    plan = _tiny(tmp_path, corpus=str(tmp_path / "fifo.txt"))
    for main, argv in [(planner_main, ["check", plan]), (trainer_main, ["train", plan, "--runs-dir", tmp_path / "r"])]:
        assert main([str(a) for a in argv]) == 2
        assert "is a FIFO" in one_line_stderr(capsys)
    assert not (tmp_path / "r").exists() or registry.list_runs(tmp_path / "r") == []


# --- error boundary -------------------------------------------------------------------------------------------------

def test_flags_from_the_issue_are_refused_inone_line_stderr(capsys):
    for argv, message in [(["frontier", "--target-loss", "inf"], "--target-loss: must be finite"),
                          (["frontier", "--budget-flops", "inf"], "--budget-flops: must be finite"),
                          (["plan", "--model", "tiny", "--tokens", "0"], "--tokens: must be >= 1"),
                          (["schedule", "--final-sparsity", "nan"], "--final-sparsity: must be finite"),
                          (["plan", "--preset", "tiny", "--tokens", "1e9"], "--tokens would be ignored")]:
        assert planner_main(argv) == 2
        assert message in one_line_stderr(capsys)


def test_internal_errors_exit_1_in_one_line_saying_where(tmp_path, capsys, monkeypatch):
    def boom(_):
        raise RuntimeError("a bug\nover two lines")
    monkeypatch.setattr("planner.cli._run_check", boom)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert planner_main(["check", "x.yaml"]) == 1
    line = one_line_stderr(capsys)
    log = Path(line.split("traceback in ")[1].rstrip(")"))
    assert "internal error: RuntimeError: a bug (traceback in" in line and "Traceback" in log.read_text()
    with read_only(tmp_path):
        assert planner_main(["check", "x.yaml"]) == 1
        assert "the traceback could not be written: Read-only file system" in one_line_stderr(capsys)
    for exc in (RecursionError(), MemoryError(), KeyboardInterrupt()):
        def raise_it(e=exc):
            raise e
        assert guarded(raise_it) == (130 if isinstance(exc, KeyboardInterrupt) else 1)
        one_line_stderr(capsys)


def test_a_reader_that_leaves_is_not_an_error():
    """`python -m planner ... | head`: the pipe closes; exit 141 (SIGPIPE's code), nothing on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "planner", "schedule", "--model", "tiny"], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 141 and err == b""


# --- nothing lost on faults -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("run_id", ["..", ".", ".cache", "a/b", "runs.db", "-x", "x" * 201])
def test_run_ids_that_are_not_plain_new_folders_are_refused(tmp_path, capsys, run_id):
    runs = tmp_path / "runs"
    registry.create_run(runs, "other", "x", "{}", runs / "other", 1)  # creates runs.db
    assert trainer_main(["train", str(_tiny(tmp_path)), "--runs-dir", str(runs), "--run-id", run_id]) == 2
    assert "--run-id" in one_line_stderr(capsys)
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith("runs.db")) == []


def test_registry_that_is_not_a_database_says_how_to_rebuild(tmp_path, capsys):
    for runs, make in [(tmp_path / "a", lambda d: (d / "runs.db").write_text("garbage " * 100)),
                       (tmp_path / "b", lambda d: (d / "runs.db").mkdir())]:
        runs.mkdir()
        make(runs)
        assert trainer_main(["runs", "--runs-dir", str(runs)]) == 2
        assert str(runs / "runs.db") in one_line_stderr(capsys)
    assert trainer_main(["runs", "--runs-dir", str(tmp_path / "a")]) == 2
    assert "runs --rebuild" in one_line_stderr(capsys)


def test_rebuild_restores_runs_from_their_folders(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("train_backend.train.peak_flops", lambda *a, **k: (1e12, "stubbed in the tests"))
    runs = tmp_path / "runs"
    plan = _tiny(tmp_path, corpus=_byte_corpus(tmp_path / "c.bin"))
    assert trainer_main(["train", str(plan), "--runs-dir", str(runs), "--run-id", "done", "--threads", "1"]) == 0
    registry.create_run(runs, "halfway", "tiny", (runs / "done" / "plan.json").read_text(), runs / "halfway", 4)
    (runs / "halfway").mkdir()
    (runs / "halfway" / "plan.json").write_text((runs / "done" / "plan.json").read_text())
    before = {r["run_id"]: r for r in registry.list_runs(runs)}
    (runs / "runs.db").write_bytes(b"\0" * 4096)
    for extra in ("runs.db-wal", "runs.db-shm"):
        (runs / extra).unlink(missing_ok=True)
    capsys.readouterr()
    assert trainer_main(["runs", "--runs-dir", str(runs), "--rebuild"]) == 0
    assert "from 2 run folders; the old registry is kept as" in capsys.readouterr().err
    after = {r["run_id"]: r for r in registry.list_runs(runs)}
    assert after["done"]["status"] == "finished" and after["halfway"]["status"] == "failed"
    for key in ("final_val_loss", "final_train_loss", "n_avg_measured", "tokens", "plan_json", "step"):
        assert after["done"][key] == before["done"][key], key
    assert list(runs.glob("runs.db.broken-*"))
    assert trainer_main(["runs", "--runs-dir", str(runs), "--rebuild"]) == 0  # a readable registry keeps its rows
    assert [r for r in registry.list_runs(runs)] == list(after.values())


def test_rebuild_swaps_in_a_complete_registry_and_names_folders_it_skips(tmp_path, capsys):
    """A hostile plan.json (nested past the recursion limit) or an unreadable folder is skipped with one line
    naming it; the others' rows are kept, and the old registry is replaced only by the complete new one."""
    runs = tmp_path / "runs"
    plan_json = plan_to_yaml(tiny_plan())
    doc = json.dumps(plan_to_dict(tiny_plan()))
    for run_id, text in [("good", doc), ("deep", "[" * 100_000 + "]" * 100_000), ("torn", doc[:50])]:
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / "plan.json").write_text(text)
    (runs / "nodir").mkdir()  # no plan.json
    registry.create_run(runs, "listed", "tiny", plan_json, runs / "listed", 4, status="finished")
    capsys.readouterr()
    assert trainer_main(["runs", "--runs-dir", str(runs), "--rebuild"]) == 0
    out, err = capsys.readouterr()
    skipped = [line for line in err.splitlines() if line.startswith("skipped run folder")]
    assert sorted(line.split()[3].rstrip(":") for line in skipped) == [str(runs / n) for n in ("deep", "nodir", "torn")]
    assert "RecursionError" in err and "from 2 run folders" in err and "Traceback" not in err, err
    assert {r["run_id"] for r in registry.list_runs(runs)} == {"good", "listed"}
    assert not list(runs.glob(".rebuild-*"))


def test_failed_rebuild_leaves_the_old_registry_in_place(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    registry.create_run(runs, "listed", "tiny", "{}", runs / "listed", 4, status="finished")
    (runs / "good").mkdir()
    (runs / "good" / "plan.json").write_text(json.dumps(plan_to_dict(tiny_plan())))

    def full(*_):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(registry.os, "replace", full)  # the swap itself fails
    assert trainer_main(["runs", "--runs-dir", str(runs), "--rebuild"]) == 2
    assert "cannot rebuild the registry (No space left on device); the old one is untouched" in one_line_stderr(capsys)
    monkeypatch.undo()
    assert [r["run_id"] for r in registry.list_runs(runs)] == ["listed"]
    assert not list(runs.glob(".rebuild-*")) and not list(runs.glob("runs.db.broken-*"))


def test_runs_dir_that_is_not_a_folder_is_refused(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    for path, what in [("/dev/null", "is a character device"), (tmp_path / "f", "is a file")]:
        assert trainer_main(["runs", "--runs-dir", str(path)]) == 2
        assert f"--runs-dir {path}: {what}, not a runs folder" in one_line_stderr(capsys)


def test_dead_running_rows_are_reconciled_on_next_start(tmp_path):
    runs = tmp_path / "runs"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for run_id, pid in [("killed", gone.pid), ("alive", os.getpid())]:
        registry.create_run(runs, run_id, "x", "{}", runs / run_id, 10, status="running", pid=pid)
    assert registry.reconcile(runs) == ["killed"]
    rows = {r["run_id"]: r for r in registry.list_runs(runs)}
    assert rows["killed"]["status"] == "failed" and "--resume killed" in rows["killed"]["error"]
    assert rows["alive"]["status"] == "running"
    assert registry.reconcile(runs) == []


def _train_process(tmp_path, plan, runs, limit=None):
    """The trainer as a real process, optionally with a file-size limit (writes past it fail with EFBIG)."""
    def preexec():
        if limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, "-m", "train_backend", "train", str(plan), "--runs-dir", str(runs),
                           "--run-id", "full", "--threads", "1"], cwd=tmp_path, env=ENV, capture_output=True,
                          text=True, preexec_fn=preexec)


@pytest.mark.parametrize("fault", ["tmpfs", "rlimit"])
def test_full_disk_fails_the_run_in_one_line_and_records_it(tmp_path, fault):
    """Checkpoints (1.7 MB for the tiny model) do not fit: exit 1, one line naming the error, where the traceback
    went, and whether the registry recorded it; the row is failed now or after the next start reconciles it."""
    plan = _tiny(tmp_path, corpus=_byte_corpus(tmp_path / "c.bin"))
    runs = tmp_path / "runs"
    if fault == "tmpfs":
        with small_disk(runs, "1m"):
            proc = _train_process(tmp_path, plan, runs)
            assert not list((runs / "full").glob("*.tmp"))  # the failed write gave its space back
            row = registry.get_run(runs, "full")
            registry.reconcile(runs)
            reconciled = registry.get_run(runs, "full")
            listed = subprocess.run([sys.executable, "-m", "train_backend", "runs", "--runs-dir", str(runs)],
                                    cwd=tmp_path, env=ENV, capture_output=True, text=True)
            assert listed.returncode == 0 and "full" in listed.stdout and listed.stderr == "", listed
    else:
        proc = _train_process(tmp_path, plan, runs, limit=1_000_000)
        row = reconciled = registry.get_run(runs, "full")
    err = proc.stderr.strip()
    assert proc.returncode == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "run full failed" in err and ("No space left" in err or "File too large" in err), err
    assert ("recorded in" in err and row["status"] == "failed") or "NOT recorded" in err, (err, row)
    assert reconciled["status"] == "failed", reconciled


def test_read_only_runs_folder_lists_and_exports(tmp_path, capsys, monkeypatch):
    """A finished run's folder on a read-only disk (an archive, a shared mount): `runs` lists it and `export`
    writes its Hugging Face folder elsewhere."""
    monkeypatch.setattr("train_backend.train.peak_flops", lambda *a, **k: (1e12, "stubbed in the tests"))
    runs = tmp_path / "runs"
    plan = _tiny(tmp_path, corpus=_byte_corpus(tmp_path / "c.bin"))
    assert trainer_main(["train", str(plan), "--runs-dir", str(runs), "--run-id", "done", "--threads", "1"]) == 0
    capsys.readouterr()
    with read_only(runs):
        assert trainer_main(["runs", "--runs-dir", str(runs)]) == 0
        out, err = capsys.readouterr()
        assert "done" in out and "finished" in out and err == "", err
        assert trainer_main(["export", "done", "--hf", str(tmp_path / "hf"), "--runs-dir", str(runs)]) == 0, \
            capsys.readouterr().err
        assert (tmp_path / "hf" / "model.safetensors").exists()


def test_read_only_runs_folder_is_one_line(tmp_path, capsys):
    plan = _tiny(tmp_path)
    runs = tmp_path / "runs"
    runs.mkdir()
    with read_only(runs):
        assert trainer_main(["train", str(plan), "--runs-dir", str(runs)]) == 2
        assert str(runs) in one_line_stderr(capsys)
        assert planner_main(["plan", "--preset", "tiny", "--out", str(runs / "p.yaml")]) == 2
        assert "Read-only file system" in one_line_stderr(capsys)


# --- the app's children ---------------------------------------------------------------------------------------------

def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def _join_reapers(procs):
    """Wait for the threads that reap these children (they end when the child has been waited for)."""
    import threading
    names = {f"reap-{p.pid}" for p in procs}
    for t in [t for t in threading.enumerate() if t.name in names]:  # one that has gone has reaped already
        t.join()


def test_spawned_children_are_reaped_without_anyone_waiting(tmp_path):
    procs = [spawn([sys.executable, "-c", "pass"], tmp_path / f"{i}.log") for i in range(3)]
    _join_reapers(procs)
    assert [_state(p.pid) for p in procs] == [None] * 3  # gone from the process table: no zombie ('Z') left
    assert [p.returncode for p in procs] == [0, 0, 0]


def test_launch_runs_the_trainer_and_its_line_reaches_the_log(tmp_path):
    from train_backend.launch import launch
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"schema_version": 1}))
    proc = launch(bad, tmp_path / "runs", log_path=tmp_path / "train.log")
    _join_reapers([proc])  # returncode is set by the reaper thread, not by us
    assert proc.returncode == 2 and _state(proc.pid) is None
    log = (tmp_path / "train.log").read_text()
    assert log.count("\n") == 1 and "field 'model'" in log

