"""Run a study's plans, K single-threaded trainers side by side; resumable and with progress on the terminal.

Each plan trains under the run id of its name in the study's runs folder (a registry like any other, so the app
lists the runs). Re-running the study skips finished runs, resumes interrupted ones from their checkpoint (the
trainer's resume is bit-identical on CPU), and restarts a run that died before its first checkpoint under
`<name>.2`, `.3`, ... A run that failed with a non-finite loss is not retried (it would fail again).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from planner.laptop import cpu_seconds, cpu_tokens_per_s
from planner.errors import PlannerInputError
from planner.plan import dump_plan, load_plan
from train_backend import checkpoint, registry
from train_backend.study.design import StudyRun
from train_backend.train import NonFinite, Options, run

POLL_S = 10.0


def latest_attempt(runs: list[dict], name: str) -> dict | None:
    rows = [r for r in runs if r["name"] == name]
    return max(rows, key=lambda r: r["created_at"]) if rows else None


def next_action(row: dict | None, name: str) -> tuple[str, str]:
    """('done' | 'skip' | 'new' | 'resume', run_id) for a plan given its latest registry row."""
    if row is None:
        return "new", name
    if registry.is_finished(row):
        return "done", row["run_id"]
    if row["alive"]:
        return "skip", row["run_id"]  # another study process is training it
    if row["status"] == "failed" and "non-finite" in (row["error"] or ""):
        return "skip", row["run_id"]
    run_dir = Path(row["run_dir"])
    if (run_dir / checkpoint.LATEST).exists() or (run_dir / checkpoint.PREVIOUS).exists():
        return "resume", row["run_id"]
    tries = row["run_id"].rsplit(".", 1)
    attempt = int(tries[1]) + 1 if len(tries) == 2 and tries[1].isdigit() else 2
    return "new", f"{name}.{attempt}"


def _ckpt_every(r: StudyRun) -> int:
    return max(1, r.plan.budget.steps // 10)


def _command(r: StudyRun, action: str, run_id: str, runs_dir: Path, plan_path: Path) -> list[str]:
    cmd = [sys.executable, "-m", "train_backend", "train", "--runs-dir", str(runs_dir), "--threads", "1",
           "--ckpt-every", str(_ckpt_every(r))]
    return cmd + (["--resume", run_id] if action == "resume" else [str(plan_path), "--run-id", run_id])


def _tail(run_dir: Path) -> dict:
    """The last complete metrics line of a run (read from the file's end: runs write thousands of lines)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return {}
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        lines = f.read().split(b"\n")[:-1]
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return {}


def _fmt_s(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s"


class Progress:
    """One line per poll: finished count, each running run's step and tokens/s, and the whole study's ETA.

    The ETA spreads the remaining CPU seconds over the jobs: the laptop CPU model (`planner.laptop`), rescaled by
    how fast the runs so far actually went on this (possibly shared) machine.
    """

    def __init__(self, runs: list[StudyRun], jobs: int):
        self.runs, self.jobs, self.t0 = runs, jobs, time.time()
        self.speed = []  # measured / modelled tokens per second of finished or running runs

    def line(self, done: set[str], running: dict[str, tuple[StudyRun, Path]]) -> str:
        parts, remaining = [], 0.0
        for name, (r, run_dir) in running.items():
            m = _tail(run_dir)
            if m.get("tokens_per_s"):
                self.speed.append(m["tokens_per_s"] / cpu_tokens_per_s(r.plan.model, r.plan.budget.seq_len))
                self.speed = self.speed[-50:]
            step = m.get("step", -1) + 1
            parts.append(f"{name} {step}/{r.plan.budget.steps} {m.get('tokens_per_s', 0) / 1e3:.1f}k tok/s")
        scale = sorted(self.speed)[len(self.speed) // 2] if self.speed else 1.0
        for r in self.runs:
            if r.name in done:
                continue
            left = r.plan.budget.tokens
            if r.name in running:
                left -= _tail(running[r.name][1]).get("tokens", 0)
            remaining += cpu_seconds(r.plan.model, max(left, 0), r.plan.budget.seq_len) / scale
        eta = remaining / self.jobs
        return (f"[{len(done)}/{len(self.runs)} done, {_fmt_s(time.time() - self.t0)} elapsed, ETA {_fmt_s(eta)}] "
                + " | ".join(parts))


def check_plans(runs: list[StudyRun], plans_dir: Path):
    """Refuse a study whose preset changed since it started: its finished runs would not be the plans analysed."""
    for r in runs:
        path = plans_dir / f"{r.name}.json"
        # the schema version labels the file format, not the run: a study started before a schema bump resumes
        if path.exists() and load_plan(path).model_copy(update={"schema_version": r.plan.schema_version}) != r.plan:
            raise PlannerInputError(f"{path}: the plan of {r.name} changed since the study started; restore the "
                                    f"preset or use another --out and --runs-dir")


def run_study(runs: list[StudyRun], out: Path, runs_dir: Path, jobs: int = 1, log=print) -> dict[str, str]:
    """Train every run not yet finished; returns {name: run_id} of the finished ones."""
    plans_dir, logs_dir = out / "plans", out / "logs"
    check_plans(runs, plans_dir)
    plans_dir.mkdir(parents=True, exist_ok=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    for r in runs:
        dump_plan(r.plan, plans_dir / f"{r.name}.json")
    finished, queue = {}, []
    rows = registry.list_runs(runs_dir)
    for r in runs:
        action, run_id = next_action(latest_attempt(rows, r.name), r.name)
        if action == "done":
            finished[r.name] = run_id
        elif action == "skip":
            log(f"skipping {r.name} ({run_id}: running elsewhere, or failed with a non-finite loss)")
        else:
            queue.append((r, action, run_id))
    log(f"study: {len(runs)} runs, {len(finished)} already finished, {len(queue)} to train with {jobs} job(s)")
    progress = Progress(runs, jobs)
    done = set(finished)
    if jobs == 1:
        for r, action, run_id in queue:
            log(f"training {r.name} ({action} {run_id}) ... {progress.line(done, {})}")
            opts = Options(runs_dir=runs_dir, threads=1, ckpt_every=_ckpt_every(r),
                           **({"resume": run_id} if action == "resume" else {"run_id": run_id}))
            try:
                summary = run(None if action == "resume" else r.plan, opts, r.name)
            except NonFinite as exc:
                log(f"{r.name} failed: {exc}")
                continue
            if summary["status"] == "finished":
                finished[r.name] = run_id
                done.add(r.name)
        return finished
    try:
        _parallel(queue, jobs, runs_dir, plans_dir, logs_dir, progress, done, finished, log)
    except KeyboardInterrupt:  # the trainers were told too (_parallel): they checkpoint and stop as cancelled
        log("interrupted: the runs checkpoint and stop; run the same command again to resume")
        raise
    return finished


def _parallel(queue, jobs, runs_dir, plans_dir, logs_dir, progress, done, finished, log):
    procs: dict[str, tuple[subprocess.Popen, StudyRun, str, Path]] = {}
    try:
        _schedule(queue, jobs, runs_dir, plans_dir, logs_dir, progress, done, finished, log, procs)
    except KeyboardInterrupt:  # a signal to this process alone (kill, a scheduler) reached no trainer: pass it on
        for proc, *_ in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # a second one from the terminal's Ctrl-C only sets the flag again
        for proc, *_ in procs.values():
            proc.wait()
        raise


def _schedule(queue, jobs, runs_dir, plans_dir, logs_dir, progress, done, finished, log, procs):
    last = 0.0
    while queue or procs:
        while queue and len(procs) < jobs:
            r, action, run_id = queue.pop(0)
            with open(logs_dir / f"{r.name}.log", "ab") as f:
                proc = subprocess.Popen(_command(r, action, run_id, runs_dir, plans_dir / f"{r.name}.json"),
                                        stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
            procs[r.name] = (proc, r, run_id, runs_dir / run_id)
            log(f"started {r.name} ({action} {run_id})")
        time.sleep(0.2 if not procs else min(1.0, POLL_S))
        for name, (proc, r, run_id, run_dir) in list(procs.items()):
            if proc.poll() is None:
                continue
            del procs[name]
            row = registry.get_run(runs_dir, run_id)
            if proc.returncode == 0 and row and row["status"] == "finished":
                finished[name] = run_id
                done.add(name)
                log(f"finished {name}: val loss {row['final_val_loss']:.4f}, {row['wall_seconds']:.0f} s")
            else:
                log(f"{name} ended with exit code {proc.returncode} (log: {logs_dir / (name + '.log')})")
        if time.time() - last >= POLL_S:
            last = time.time()
            log(progress.line(done, {n: (r, d) for n, (_, r, _, d) in procs.items()}))
