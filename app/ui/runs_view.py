"""Runs page logic: launching trainer subprocesses, reading the registry back, and shaping metrics for charts.

Runs are separate processes (never threads) so a training run neither blocks the app nor dies with a rerun, and the
registry (SQLite in the runs folder) lets them survive an app restart.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pandas as pd

from app.ui.laws_view import fit_form, predicted_loss
from planner.ladder import scale_down, tiny_plan
from planner.plan import TrainingPlan, dump_plan, plan_from_text
from train_backend import registry
from train_backend.launch import launch as trainer_launch

ROOT = Path(__file__).resolve().parents[2]
RUNS_DIR_ENV = "SPARSEPLAN_RUNS_DIR"
MAX_CONCURRENT = 2  # two CPU cores: a third trainer would only slow the other two down


def runs_dir() -> Path:
    """`runs/` under the repository, or the folder named by $SPARSEPLAN_RUNS_DIR (tests point it at a tmp dir)."""
    return Path(os.environ.get(RUNS_DIR_ENV) or ROOT / "runs")


def active_runs(folder: Path) -> list[dict]:
    """Runs whose trainer process is still alive (queued or running)."""
    return [r for r in registry.list_runs(folder)
            if r["status"] in ("queued", "running") and registry.pid_alive(r["pid"])]


def launch(plan: TrainingPlan, folder: Path) -> subprocess.Popen:
    """Start `python -m train_backend train` on the plan in its own session; refuses beyond MAX_CONCURRENT."""
    busy = len(active_runs(folder)) + len(_starting(folder))
    if busy >= MAX_CONCURRENT:
        raise RuntimeError(f"{busy} runs are already training; this machine runs at most {MAX_CONCURRENT} at once. "
                           f"Wait for one to finish or cancel it.")
    plans = Path(folder) / "plans"
    path = dump_plan(plan, plans / f"{plan.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.yaml")
    # One core per run (two runs share the two cores fairly); train_backend.launch reaps the process when it ends.
    proc = trainer_launch(path, folder, threads=1, log_path=path.with_suffix(".log"))
    _STARTED.setdefault(str(folder), []).append(proc)
    return proc


# Processes this app started that may not have registered themselves yet (import of torch takes seconds).
_STARTED: dict[str, list[subprocess.Popen]] = {}


def _starting(folder: Path) -> list[subprocess.Popen]:
    known = {r["pid"] for r in registry.list_runs(folder)}
    alive = [p for p in _STARTED.get(str(folder), []) if p.poll() is None]
    _STARTED[str(folder)] = alive
    return [p for p in alive if p.pid not in known]


def launch_choices(plan: TrainingPlan) -> dict[str, TrainingPlan]:
    """Plans this machine can train: the tiny preset (seconds) and the selected plan's validation ladder."""
    return {"tiny preset (about a minute on one core)": tiny_plan()} | {f"ladder: {p.name}": p for p in scale_down(plan)}


def status(run: dict) -> str:
    """The registry's status, except a 'running' run whose process is gone (killed, machine restarted)."""
    if run["status"] == "running" and not registry.pid_alive(run["pid"]):
        return "interrupted"
    return run["status"]


def is_active(run: dict) -> bool:
    return status(run) in ("queued", "running")


def cancel(folder: Path, run_id: str) -> bool:
    return registry.cancel(folder, run_id)


def runs_table(folder: Path) -> pd.DataFrame:
    """The registry as a table for display, newest first."""
    rows = registry.list_runs(folder)
    cols = ["run_id", "name", "status", "step", "total_steps", "final_val_loss", "predicted_loss", "n_avg_measured",
            "n_final", "wall_seconds", "error"]
    return pd.DataFrame([{**{c: r.get(c) for c in cols}, "status": status(r)} for r in rows], columns=cols)


def run_plan(run: dict) -> TrainingPlan:
    return plan_from_text(run["plan_json"], f"run {run['run_id']}", fmt="json")


def fit_table(folder: Path) -> pd.DataFrame:
    """Finished runs as a runs table for the law fitter (planner.runs columns): validation loss, tokens, counts."""
    rows = [r for r in registry.list_runs(folder) if r["status"] == "finished" and r["final_val_loss"] is not None]
    return pd.DataFrame({
        "loss": [r["final_val_loss"] for r in rows], "tokens": [r["tokens"] for r in rows],
        "n_avg": [r["n_avg_measured"] for r in rows], "n_final": [r["n_final"] for r in rows],
        "sparsity": [json.loads(r["plan_json"])["schedule"]["final_sparsity"] for r in rows],
        "name": [r["name"] for r in rows],
    })


def metrics_frame(run: dict) -> pd.DataFrame:
    """metrics.jsonl of a run as a table (empty until the trainer writes its first line)."""
    return pd.DataFrame(registry.read_metrics(Path(run["run_dir"]))) if run.get("run_dir") else pd.DataFrame()


def steps_done(run: dict, metrics: pd.DataFrame) -> int:
    """Steps trained: the metrics file runs ahead of the registry, which moves at checkpoints."""
    return max(run["step"] or 0, int(metrics["step"].iloc[-1]) + 1 if not metrics.empty else 0)


def loss_curves(metrics: pd.DataFrame) -> pd.DataFrame:
    """Long table of training and validation loss against tokens."""
    if metrics.empty:
        return pd.DataFrame(columns=["tokens", "loss", "split"])
    train = metrics[["tokens", "loss"]].assign(split="train")
    val = metrics.dropna(subset=["val_loss"])[["tokens", "val_loss"]] if "val_loss" in metrics else pd.DataFrame()
    val = val.rename(columns={"val_loss": "loss"}).assign(split="validation")
    return pd.concat([train, val], ignore_index=True)


def density_curves(metrics: pd.DataFrame) -> pd.DataFrame:
    """Long table of the schedule's target density and the masks' measured density against steps."""
    if metrics.empty:
        return pd.DataFrame(columns=["step", "density", "series"])
    long = metrics.melt(id_vars="step", value_vars=["target_density", "measured_density"], var_name="series",
                        value_name="density")
    return long.assign(series=long["series"].map({"target_density": "schedule (target)",
                                                  "measured_density": "masks (measured)"}))


def prediction(run: dict, folder: Path, n_boot: int = 100) -> tuple[float, float | None, float | None, str] | None:
    """(loss, ci_low, ci_high, source) to set beside a run's measured loss: the plan's own prediction, else the
    unified law fitted (with bootstrap) on the registry's other finished runs; None when neither exists."""
    plan = run_plan(run)
    if plan.prediction is not None:
        p = plan.prediction
        return p.loss, p.ci_low, p.ci_high, "the plan's law"
    others = fit_table(folder)
    others = others[others["name"] != run["name"]]
    if len(others) < 5:  # the unified form has five parameters
        return None
    loss, low, high = predicted_loss(fit_form(others, "unified", "coarse", n_boot), plan)
    return loss, low, high, f"unified law fitted on {len(others)} other finished runs"
