"""The run registry: one SQLite row per run in `<runs_dir>/runs.db`, safe for several trainer processes at once.

WAL mode and a busy timeout let readers (the app) and writers (trainers) proceed together; every write is one short
`BEGIN IMMEDIATE` transaction. Read API for the app: list_runs, get_run, read_metrics, cancel.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

DB_NAME = "runs.db"
STATUSES = ("queued", "running", "finished", "failed", "cancelled")
COLUMNS = {
    "run_id": "TEXT PRIMARY KEY", "name": "TEXT", "status": "TEXT", "plan_json": "TEXT",
    "created_at": "REAL", "started_at": "REAL", "finished_at": "REAL", "updated_at": "REAL",
    "step": "INTEGER", "total_steps": "INTEGER", "tokens": "INTEGER",
    "final_train_loss": "REAL", "final_val_loss": "REAL", "n_avg_measured": "REAL", "n_final": "REAL",
    "predicted_loss": "REAL", "wall_seconds": "REAL", "pid": "INTEGER", "run_dir": "TEXT", "error": "TEXT",
}


def _connect(runs_dir: Path) -> sqlite3.Connection:
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(runs_dir / DB_NAME, timeout=60, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 60000")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute(f"CREATE TABLE IF NOT EXISTS runs ({', '.join(f'{k} {v}' for k, v in COLUMNS.items())})")
    con.row_factory = sqlite3.Row
    return con


def _write(runs_dir: Path, sql: str, args: tuple):
    with closing(_connect(runs_dir)) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute(sql, args)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def create_run(runs_dir: Path, run_id: str, name: str, plan_json: str, run_dir: Path, total_steps: int,
               status: str = "queued"):
    now = time.time()
    _write(runs_dir, "INSERT INTO runs (run_id, name, status, plan_json, created_at, updated_at, step, total_steps,"
           " run_dir) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
           (run_id, name, status, plan_json, now, now, total_steps, str(run_dir)))


def update_run(runs_dir: Path, run_id: str, **fields):
    """Set columns of one run (unknown column names are a programming error)."""
    bad = set(fields) - set(COLUMNS)
    if bad or fields.get("status", "running") not in STATUSES:
        raise ValueError(f"registry update: unknown column or status {sorted(bad) or fields.get('status')}")
    fields["updated_at"] = time.time()
    cols = ", ".join(f"{k} = ?" for k in fields)
    _write(runs_dir, f"UPDATE runs SET {cols} WHERE run_id = ?", (*fields.values(), run_id))


def _row(row: sqlite3.Row) -> dict:
    """A run as a dict, plus `alive`: False for a 'running' row whose process is gone (killed, machine restarted)."""
    out = dict(row)
    out["alive"] = out["status"] == "running" and pid_alive(out["pid"])
    return out


def list_runs(runs_dir: Path = Path("runs")) -> list[dict]:
    """All runs, newest first, as plain dicts (pandas.DataFrame(list_runs()) works); plan_json left as text."""
    if not (Path(runs_dir) / DB_NAME).exists():
        return []
    with closing(_connect(runs_dir)) as con:
        return [_row(r) for r in con.execute("SELECT * FROM runs ORDER BY created_at DESC")]


def get_run(runs_dir: Path, run_id: str) -> dict | None:
    if not (Path(runs_dir) / DB_NAME).exists():
        return None
    with closing(_connect(runs_dir)) as con:
        row = con.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return _row(row) if row else None


def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl of a run, safe while the trainer appends: a partial last line is ignored."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")[:-1]  # whatever follows the last newline is still being written
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cancel(runs_dir: Path, run_id: str) -> bool:
    """Ask a running trainer to stop: SIGINT makes it checkpoint and mark itself cancelled. False if not running."""
    run = get_run(runs_dir, run_id)
    if run is None or not run["alive"]:
        return False
    os.kill(run["pid"], signal.SIGINT)
    return True
