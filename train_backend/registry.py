"""The run registry: one SQLite row per run in `<runs_dir>/runs.db`, safe for several trainer processes at once.

WAL mode and a busy timeout let readers (the app) and writers (trainers) proceed together; every write is one short
`BEGIN IMMEDIATE` transaction. Read API for the app: list_runs, get_run, read_metrics, cancel.

Nothing is lost on faults: a registry that cannot be opened or written raises RegistryError, one line naming the
file; `reconcile` marks rows left queued/running by a dead process as failed (the trainer and `runs` call it on
start); `record_failure` records a failed run or says why it could not; and `rebuild` recreates the registry from
the run folders, which hold each run's plan.json and (once it ended) summary.json.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from planner.errors import PlannerInputError, one_line, say
from planner.plan import TrainingPlan, plan_from_text

DB_NAME = "runs.db"
STATUSES = ("queued", "running", "finished", "failed", "cancelled")
COLUMNS = {
    "run_id": "TEXT PRIMARY KEY", "name": "TEXT", "status": "TEXT", "plan_json": "TEXT",
    "created_at": "REAL", "started_at": "REAL", "finished_at": "REAL", "updated_at": "REAL",
    "step": "INTEGER", "total_steps": "INTEGER", "tokens": "INTEGER",
    "final_train_loss": "REAL", "final_val_loss": "REAL", "n_avg_measured": "REAL", "n_final": "REAL",
    "predicted_loss": "REAL", "wall_seconds": "REAL", "pid": "INTEGER", "run_dir": "TEXT", "error": "TEXT",
}
# A run id names a folder beside runs.db: no path separators, no leading '.' (., .., .cache) or '-' (a flag).
RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


class RegistryError(PlannerInputError):
    """The registry cannot be opened, read or written; the message names runs.db and what to do."""


def _fail(runs_dir: Path, exc: Exception) -> RegistryError:
    db = Path(runs_dir) / DB_NAME
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return RegistryError(f"{db}: not a readable run registry ({one_line(exc)}); rebuild it from the run folders "
                             f"with `python -m train_backend runs --rebuild --runs-dir {runs_dir}`")
    return RegistryError(f"{db}: {getattr(exc, 'strerror', None) or one_line(exc)}")


def _connect(runs_dir: Path) -> sqlite3.Connection:
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(runs_dir / DB_NAME, timeout=60, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise _fail(runs_dir, exc) from None
    try:
        con.execute("PRAGMA busy_timeout = 60000")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute(f"CREATE TABLE IF NOT EXISTS runs ({', '.join(f'{k} {v}' for k, v in COLUMNS.items())})")
    except sqlite3.Error as exc:
        con.close()
        raise _fail(runs_dir, exc) from None
    con.row_factory = sqlite3.Row
    return con


def _write(runs_dir: Path, sql: str, args: tuple):
    with closing(_connect(runs_dir)) as con:
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute(sql, args)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:  # full disk, read-only file, corrupt pages
            raise _fail(runs_dir, exc) from None


def _connect_read_only(runs_dir: Path) -> sqlite3.Connection:
    """A registry on a read-only folder or a full disk, where SQLite cannot create its WAL index: read-only, then
    immutable (no locks, no WAL: what the main file holds, which is all of it once the last writer closed)."""
    db = (Path(runs_dir) / DB_NAME).resolve().as_posix().replace("?", "%3f").replace("#", "%23")
    error = None
    for mode in ("mode=ro", "immutable=1"):
        con = None
        try:
            con = sqlite3.connect(f"file:{db}?{mode}", uri=True, timeout=60)
            con.execute("SELECT 1 FROM runs LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            if con is not None:
                con.close()
            error = exc
            continue
        con.row_factory = sqlite3.Row
        return con
    raise _fail(runs_dir, error)


def _read(runs_dir: Path, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
    try:
        con = _connect(runs_dir)
    except RegistryError as exc:
        if not os.access(Path(runs_dir) / DB_NAME, os.R_OK):
            raise
        try:
            con = _connect_read_only(runs_dir)
        except RegistryError:
            raise exc from None
    with closing(con):
        try:
            return con.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _fail(runs_dir, exc) from None


def create_run(runs_dir: Path, run_id: str, name: str, plan_json: str, run_dir: Path, total_steps: int,
               status: str = "queued", pid: int | None = None):
    now = time.time()
    _write(runs_dir, "INSERT INTO runs (run_id, name, status, plan_json, created_at, updated_at, step, total_steps,"
           " run_dir, pid) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
           (run_id, name, status, plan_json, now, now, total_steps, str(run_dir), pid))


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
    return [_row(r) for r in _read(runs_dir, "SELECT * FROM runs ORDER BY created_at DESC")]


def get_run(runs_dir: Path, run_id: str) -> dict | None:
    if not (Path(runs_dir) / DB_NAME).exists():
        return None
    rows = _read(runs_dir, "SELECT * FROM runs WHERE run_id = ?", (run_id,))
    return _row(rows[0]) if rows else None


def is_finished(row: dict | None) -> bool:
    """The run trained every step of its plan: a run stopped early by --max-steps ends 'finished' with fewer."""
    return row is not None and row["status"] == "finished" and row["step"] >= row["total_steps"]


def run_plan(row: dict) -> TrainingPlan:
    """The plan a registry row was trained on (errors name the run)."""
    return plan_from_text(row["plan_json"], f"run {row['run_id']}", "json")


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


# --- faults ---------------------------------------------------------------------------------------------------------

def check_run_id(runs_dir: Path, run_id: str, flag: str = "--run-id"):
    """A new run's id: a plain folder name (not '.', '..', '.cache', 'a/b'), unused in the registry and on disk."""
    if not RUN_ID.fullmatch(run_id):
        raise PlannerInputError(f"{flag} {run_id[:60]!r}: use up to 200 letters, digits, '_', '.', '-', starting "
                                f"with a letter, digit or '_'")
    if get_run(runs_dir, run_id) is not None or os.path.lexists(Path(runs_dir) / run_id):
        raise PlannerInputError(f"{flag} {run_id}: already used in {runs_dir}")


def start_run(runs_dir: Path, run_id: str, name: str, plan_json: str, total_steps: int) -> Path:
    """Create the run folder (with its plan.json) and its registry row, or nothing: one line naming --runs-dir."""
    run_dir = Path(runs_dir) / run_id
    try:
        run_dir.mkdir(parents=True)
        (run_dir / "plan.json").write_text(plan_json)
        create_run(runs_dir, run_id, name, plan_json, run_dir.resolve(), total_steps, pid=os.getpid())
    except (OSError, RegistryError) as exc:
        if run_dir.is_dir():
            shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(exc, RegistryError):
            raise
        raise PlannerInputError(f"--runs-dir {runs_dir}: cannot create run folder {run_id} "
                                f"({exc.strerror or one_line(exc)})") from None
    return run_dir


def record_failure(runs_dir: Path, run_id: str, exc: BaseException) -> str:
    """Mark a run failed with its reason; returns what happened, for the one line the CLI prints."""
    try:
        update_run(runs_dir, run_id, status="failed", finished_at=time.time(),
                   error=f"{type(exc).__name__}: {one_line(exc)}")
        return f"recorded in {Path(runs_dir) / DB_NAME}"
    except Exception as err:  # noqa: BLE001 -- the disk that failed the run may fail this write too
        return f"NOT recorded in the registry: {one_line(err)}"


def reconcile(runs_dir: Path) -> list[str]:
    """Rows left queued or running by a process that no longer exists become failed (the reason in `error`);
    returns their ids. The row must still hold that pid, so a run resumed meanwhile is left alone."""
    stale = [r for r in list_runs(runs_dir)
             if r["status"] in ("queued", "running") and r["pid"] and not pid_alive(r["pid"])]
    for r in stale:
        _write(runs_dir, "UPDATE runs SET status = 'failed', error = ?, finished_at = ?, updated_at = ? "
               "WHERE run_id = ? AND status = ? AND pid = ?",
               (f"interrupted: process {r['pid']} ended without recording an outcome (killed, out of memory or a "
                f"restart); resume with --resume {r['run_id']}", time.time(), time.time(), r["run_id"], r["status"],
                r["pid"]))
    return [r["run_id"] for r in stale]


def _folder_row(run_dir: Path) -> dict:
    """A registry row from what a run folder holds: plan.json always, summary.json once the run ended. Raises what
    reading them raised (any error: a hostile file may nest past the recursion limit)."""
    plan_json = (run_dir / "plan.json").read_text()
    plan = json.loads(plan_json)
    row = {"run_id": run_dir.name, "name": plan.get("name"), "plan_json": plan_json,
           "created_at": (run_dir / "plan.json").stat().st_mtime, "total_steps": plan["budget"]["steps"],
           "run_dir": str(run_dir.resolve()), "step": len(read_metrics(run_dir)), "status": "failed",
           "error": "rebuilt from the run folder: no summary.json (the run failed or was interrupted)"}
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except FileNotFoundError:
        return row
    row |= {k: summary.get(k) for k in ("final_train_loss", "final_val_loss", "n_avg_measured", "n_final",
                                         "predicted_loss", "wall_seconds", "tokens")}
    row |= {"status": summary.get("status", "finished"), "step": summary.get("steps"), "error": None,
            "finished_at": (run_dir / "summary.json").stat().st_mtime}
    return row


def _folder_rows(runs_dir: Path, known: set[str]) -> list[dict]:
    """Rows of the run folders not in `known`; a folder that cannot be read is skipped with one line naming it."""
    rows = []
    for d in sorted(runs_dir.iterdir()):
        if not (RUN_ID.fullmatch(d.name) and d.is_dir()) or d.name in known:
            continue
        try:
            rows.append(_folder_row(d))
        except Exception as exc:  # noqa: BLE001 -- one bad folder must not cost the others their rows
            say(f"skipped run folder {d}: {type(exc).__name__}: {one_line(exc)}")
    return rows


def rebuild(runs_dir: Path) -> tuple[int, Path | None]:
    """Recreate runs.db from the run folders, keeping every row the old file still yields. The new registry is built
    beside the old one and swapped in only once complete; the old file (and its WAL) is kept aside as
    runs.db.broken-<time>. Returns (runs recorded, where the old registry went). Run it while no trainer is
    writing."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise PlannerInputError(f"--runs-dir {runs_dir}: no such folder")
    try:
        old = [{k: r[k] for k in COLUMNS} for r in list_runs(runs_dir)]
    except RegistryError:
        old = []
    rows = old + _folder_rows(runs_dir, {r["run_id"] for r in old})
    staging = runs_dir / f".rebuild-{os.getpid()}"  # not a run id: never listed as a run folder
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for r in rows:
            r["updated_at"] = r.get("updated_at") or time.time()
            _write(staging, f"INSERT INTO runs ({', '.join(r)}) VALUES ({', '.join('?' * len(r))})",
                   tuple(r.values()))
        _read(staging, "SELECT 1")  # an empty, valid registry when there are no rows; closed: its WAL merged
        aside = None
        if os.path.lexists(runs_dir / DB_NAME):
            aside = runs_dir / f"{DB_NAME}.broken-{time.strftime('%Y%m%d-%H%M%S')}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.lexists(runs_dir / f"{DB_NAME}{suffix}"):
                os.replace(runs_dir / f"{DB_NAME}{suffix}", f"{aside}{suffix}")
        os.replace(staging / DB_NAME, runs_dir / DB_NAME)
    except OSError as exc:
        raise PlannerInputError(f"--runs-dir {runs_dir}: cannot rebuild the registry ({exc.strerror or exc}); "
                                f"the old one is untouched") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(rows), aside
