"""Finished runs kept with the study's results, so a study resumes on another machine or a fresh clone.

A runs folder holds checkpoints (megabytes a run) and lives outside git; a study spans sessions. Each finished run
is archived under `<out>/finished/<run_id>/` as what the registry and the report need — plan.json, summary.json and
the metrics log (gzipped) — beside `<out>/val/`, the per-batch validation losses the report computed from its final
weights. A study started with a runs folder that lacks them copies them back and rebuilds the registry from the run
folders: the runner then skips them as finished and the report reads them as if trained there.
"""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from train_backend import registry
from train_backend.study.design import StudyRun
from train_backend.study.runner import latest_attempt

FOLDER = "finished"
FILES = ("plan.json", "summary.json")
METRICS = "metrics.jsonl"


def save(runs: list[StudyRun], runs_dir: Path, out: Path) -> int:
    """Archive every finished run not archived yet; returns how many were added."""
    rows, added = registry.list_runs(runs_dir), 0
    for r in runs:
        row = latest_attempt(rows, r.name)
        if not registry.is_finished(row):
            continue
        src, dst = Path(row["run_dir"]), out / FOLDER / row["run_id"]
        if (dst / "summary.json").exists():
            continue
        dst.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copyfile(src / name, dst / name)
        with open(src / METRICS, "rb") as f, gzip.open(dst / f"{METRICS}.gz", "wb", compresslevel=9) as g:
            shutil.copyfileobj(f, g)
        added += 1
    return added


def restore(runs: list[StudyRun], runs_dir: Path, out: Path, log=print) -> int:
    """Copy archived runs the runs folder lacks back into it and rebuild its registry; returns how many."""
    names = {r.name for r in runs}
    rows = registry.list_runs(runs_dir) if (runs_dir / registry.DB_NAME).exists() else []
    restored = 0
    for src in sorted((out / FOLDER).glob("*/summary.json")):
        src = src.parent
        dst = runs_dir / src.name
        name = src.name.rsplit(".", 1)[0] if src.name not in names else src.name  # a retry's id: <name>.<n>
        if name not in names or registry.is_finished(latest_attempt(rows, name)) or dst.exists():
            continue
        dst.mkdir(parents=True)
        for f in FILES:
            shutil.copyfile(src / f, dst / f)
        with gzip.open(src / f"{METRICS}.gz", "rb") as g, open(dst / METRICS, "wb") as f:
            shutil.copyfileobj(g, f)
        restored += 1
    if restored:
        registry.rebuild(runs_dir)
        log(f"restored {restored} finished runs from {out / FOLDER} into {runs_dir}")
    return restored
