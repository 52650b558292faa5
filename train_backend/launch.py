"""Start trainer processes from a long-lived program (the app) and reap each one the moment it ends.

A child that exits stays a zombie until its parent waits for it; the app may not look at a run for hours. `spawn`
gives every child a daemon thread blocked in `Popen.wait()`, so the exit status is collected as soon as the process
ends, whatever the caller does with the Popen (polling it later is still fine: `returncode` is set).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def spawn(cmd: list[str], log_path: Path | None = None, cwd: Path = ROOT) -> subprocess.Popen:
    """Start `cmd` in its own session (a Ctrl-C in the app's terminal does not reach it), output to `log_path`."""
    log = open(log_path, "ab") if log_path else open(os.devnull, "wb")
    with log:  # the child holds its own copy of the descriptor
        proc = subprocess.Popen(cmd, cwd=cwd, start_new_session=True, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc


def launch(plan_path: Path, runs_dir: Path, *, threads: int = 1, run_id: str | None = None,
           log_path: Path | None = None) -> subprocess.Popen:
    """`python -m train_backend train PLAN --runs-dir DIR --threads N [--run-id ID]`, reaped when it ends."""
    cmd = [sys.executable, "-m", "train_backend", "train", str(plan_path), "--runs-dir", str(runs_dir),
           "--threads", str(threads)] + (["--run-id", run_id] if run_id else [])
    return spawn(cmd, log_path)
