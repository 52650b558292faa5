"""Runs page logic: launching trainer subprocesses, reading the registry back, and shaping metrics for charts.

Runs are separate processes (never threads) so a training run neither blocks the app nor dies with a rerun, and the
registry (SQLite in the runs folder) lets them survive an app restart.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app.ui.common import error_message, human
from app.ui.export_view import LADDER_MINUTES
from app.ui.laws_view import fit_form, form_prediction
from planner.errors import PlannerInputError
from planner.laws import PRESETS, Law, resolve_law
from planner.ladder import scale_down, tiny_plan
from planner.laptop import load_laptop_law
from planner.plan import TrainingPlan, dump_plan
from planner.runs import RUN_COLUMNS
from planner.validation.verdict import closer_count, gap_noise, pair_verdicts, partner_errors, seedless
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
    _STARTED.setdefault(str(folder), []).append((proc, plan))
    return proc


# Processes this app started that may not have registered themselves yet (import of torch takes seconds).
_STARTED: dict[str, list[tuple[subprocess.Popen, TrainingPlan]]] = {}


def _starting(folder: Path) -> list[tuple[subprocess.Popen, TrainingPlan]]:
    known = {r["pid"] for r in registry.list_runs(folder)}
    alive = [(p, plan) for p, plan in _STARTED.get(str(folder), []) if p.poll() is None]
    _STARTED[str(folder)] = alive
    return [(p, plan) for p, plan in alive if p.pid not in known]


def anything_active(folder: Path) -> bool:
    """A run is training or a launched trainer has not registered yet: the page keeps polling."""
    return bool(active_runs(folder) or _starting(folder))


def launch_choices(plan: TrainingPlan, budget_minutes: float = LADDER_MINUTES
                   ) -> tuple[dict[str, TrainingPlan], str | None]:
    """Plans this machine can train: the tiny preset (seconds) and the selected plan's validation ladder (the
    Export page's, at the same CPU budget), and why the ladder is missing when it does not fit that budget: the
    tiny preset stays launchable either way."""
    choices = {"tiny preset (about a minute on one core)": tiny_plan()}
    try:
        ladder = scale_down(plan, budget_minutes=budget_minutes)
    except (PlannerInputError, ValueError) as exc:
        return choices, f"No validation ladder for {plan.name}: {error_message(exc)}"
    return choices | {f"ladder: {p.name}": p for p in ladder}, None


def status(run: dict) -> str:
    """The registry's status, except a 'running' run whose process is gone (killed, machine restarted)."""
    if run["status"] == "running" and not registry.pid_alive(run["pid"]):
        return "interrupted"
    return run["status"]


def is_active(run: dict) -> bool:
    return status(run) in ("queued", "running")


def cancel(folder: Path, run_id: str) -> bool:
    return registry.cancel(folder, run_id)


def progress(run: dict) -> tuple[int, int]:
    """(steps done, total steps): the one figure of progress, for the table and the bar alike."""
    return steps_done(run, metrics_frame(run)), int(run["total_steps"] or 0)


def _num(x, fmt: str) -> str:
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else fmt.format(x)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h {m % 60:02d}m" if m >= 60 else f"{m}m {s:02d}s" if m else f"{s}s"


def interval(p) -> str:
    """A plan prediction as 'loss [low, high]', 'loss (extrapolation)' outside the law's runs, 'loss (no interval)'
    where the law's own study found it failing, the loss alone, or a dash."""
    if p is None:
        return "—"
    if p.extrapolated:
        extrapolation = bool(p.warnings) and p.warnings[0].startswith("extrapolation")
        return f"{p.loss:.3f} ({'extrapolation' if extrapolation else 'no interval'})"
    return f"{p.loss:.3f}" + ("" if p.ci_low is None else f" [{p.ci_low:.3f}, {p.ci_high:.3f}]")


TABLE_FORMAT = {  # the run's name stays in view when a narrow window scrolls the table sideways
    "run": st.column_config.TextColumn("run", pinned=True),
    "status": st.column_config.TextColumn("status", width="small"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                width="small"),
    "steps": st.column_config.TextColumn("steps", width="small"),
}


def runs_table(folder: Path) -> pd.DataFrame:
    """The registry as a readable table, newest first, launched trainers that have not registered yet on top:
    formatted numbers with units, no raw None. `run_id` keys the rows (shown last)."""
    rows = [{"run": plan.name, "status": "starting", "progress": 0.0, "steps": f"0 / {plan.budget.steps:,}",
             "validation loss (nats)": "—", "predicted loss [95% CI]": interval(plan.prediction),
             "N_avg measured": "—", "N_final": human(plan.derived.n_final), "wall time": "—",
             "started": "—", "error": "", "run_id": f"pid {proc.pid}"} for proc, plan in _starting(folder)]
    for r in registry.list_runs(folder):
        done, total = progress(r)
        rows.append({
            "run": r["name"], "status": status(r), "progress": done / total if total else 0.0,
            "steps": f"{done:,} / {total:,}", "validation loss (nats)": _num(r["final_val_loss"], "{:.4f}"),
            "predicted loss [95% CI]": interval(registry.run_plan(r).prediction),
            "N_avg measured": "—" if r["n_avg_measured"] is None else human(r["n_avg_measured"], 4),
            "N_final": "—" if r["n_final"] is None else human(r["n_final"], 4),
            "wall time": duration(r["wall_seconds"]),
            "started": "—" if not r["started_at"] else time.strftime("%H:%M:%S", time.localtime(r["started_at"])),
            "error": r["error"] or "", "run_id": r["run_id"]})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


TABLE_COLUMNS = ["run", "status", "progress", "steps", "validation loss (nats)", "predicted loss [95% CI]",
                 "N_avg measured", "N_final", "wall time", "started", "error", "run_id"]
SHOWN_COLUMNS = [c for c in TABLE_COLUMNS if c not in ("N_final", "started", "run_id")]  # the rest: watch a run


ROLE_LABELS = {"sparse": "sparse", "dense_n_avg": "dense at N_avg", "dense_n_final": "dense at N_final",
               "dense_n_avg_width": "dense at N_avg, other width"}


def pair_table(folder: Path) -> pd.DataFrame:
    """Ladder rungs side by side, linked by the plans' `pair` field (not their names): each role's measured
    validation loss, and the sparse run's gap to its dense partner at the same N_avg: near zero if N_avg is the right
    quantity. Empty when no run belongs to a pair."""
    rows: dict[str, dict] = {}
    for r in registry.list_runs(folder)[::-1]:  # oldest first: the latest run of a role wins
        plan = registry.run_plan(r)
        if plan.pair is None:
            continue
        row = rows.setdefault(plan.pair.id, {"pair": plan.pair.id})
        if plan.pair.role == "sparse":
            row["N_avg"] = plan.derived.n_avg
        row[f"{ROLE_LABELS[plan.pair.role]} loss"] = r["final_val_loss"]
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(list(rows.values()))
    if {"sparse loss", "dense at N_avg loss"} <= set(df.columns):
        df[GAP] = df["sparse loss"] - df["dense at N_avg loss"]
        df[VERDICT], df[CLOSER], df.attrs[NOISE] = pair_verdict(df)
    return df


GAP = "sparse − dense at N_avg (nats)"
VERDICT = "verdict (±1% of loss, 95%)"
CLOSER = "closer count"
NOISE = "gap noise"  # pair_table's attrs key: where the verdicts' noise came from


def pair_verdict(df: pd.DataFrame) -> tuple[pd.Series, pd.Series, str]:
    """Each pair's verdict against its N_avg partner and, where it has a partner at N_final too, which count predicts
    the sparse loss better; and where the noise came from. Judged as the study's report judges (one row per seed
    here, `-seed<k>` pair ids pooled): `planner.validation.verdict`, the bundled laptop law's run-to-run noise
    standing in until some pair has repeated seeds."""
    gaps = pd.concat([pd.DataFrame({"pair": df["pair"].map(seedless), "partner": role,
                                    "gap": df["sparse loss"] - df[f"{label} loss"], "ref": df[f"{label} loss"]})
                      for role, label in ROLE_LABELS.items() if role != "sparse" and f"{label} loss" in df]).dropna()
    if not (gaps["partner"] == "dense_n_avg").any():
        return pd.Series("—", index=df.index), pd.Series("—", index=df.index), ""
    table, noise = pair_verdicts(gaps, gap_noise(law=load_laptop_law()))
    errors = partner_errors(table)
    closer = pd.Series(closer_count(errors["err_n_avg"], errors["err_n_final"], errors["half"]), errors.index)
    base = df["pair"].map(seedless)
    verdicts = table[table["partner"] == "dense_n_avg"].set_index("pair")["verdict"]
    return (base.map(verdicts).fillna("—"), base.map(closer.where(errors["err_n_final"].notna())).fillna("—"),
            noise["source"])


def pair_display(df: pd.DataFrame) -> pd.DataFrame:
    """pair_table with numbers formatted (losses to 4 decimals, counts as 1.2M) and dashes for runs not done."""
    out = df.copy()
    for col in out.columns:
        if col.endswith(" loss") or col == GAP:
            out[col] = [_num(v, "{:+.4f}" if col == GAP else "{:.4f}") for v in out[col]]
        elif col == "N_avg":
            out[col] = ["—" if pd.isna(v) else human(v, 4) for v in out[col]]
    return out.fillna("—")


def fit_table(folder: Path) -> pd.DataFrame:
    """Finished runs as a runs table for the law fitter (planner.runs columns): validation loss, tokens, counts.
    A run cut short by --max-steps counts (its tokens are those it trained), unlike registry.is_finished's; the
    group is a ladder's pair, so a bootstrap resamples whole pairs (the study's report groups by size instead)."""
    rows = [r for r in registry.list_runs(folder) if r["status"] == "finished" and r["final_val_loss"] is not None]
    plans = [registry.run_plan(r) for r in rows]
    return pd.DataFrame({
        "loss": [r["final_val_loss"] for r in rows], "tokens": [r["tokens"] for r in rows],
        "n_avg": [r["n_avg_measured"] for r in rows], "n_final": [r["n_final"] for r in rows],
        "sparsity": [p.schedule.final_sparsity for p in plans],
        "group": [p.pair.id if p.pair else r["name"] for r, p in zip(rows, plans)],
        "name": [r["name"] for r in rows]}, columns=RUN_COLUMNS)


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


def prediction(run: dict, folder: Path, n_draws: int = 100) -> tuple[float, float | None, float | None, str] | None:
    """(loss, ci_low, ci_high, source) to set beside a run's measured loss: the plan's own prediction, else the
    unified law fitted on the registry's other finished runs, its interval from ``n_draws`` posterior draws (none
    outside their region); None when neither exists."""
    plan = registry.run_plan(run)
    if plan.prediction is not None:
        p, source = plan.prediction, f"the plan's own law: {law_name(plan.law)}"
    else:
        others = fit_table(folder)
        others = others[others["name"] != run["name"]]
        if len(others) < 5:  # the unified form has five parameters
            return None
        p = form_prediction(fit_form(others, "unified", "coarse", n_draws), plan)
        source = f"unified law fitted on {len(others)} other finished runs"
    if p.extrapolated and p.warnings:  # the reason it has no interval
        source += f"; {p.warnings[0]}"
    return p.loss, p.ci_low, p.ci_high, source


def law_name(law: Law | None) -> str:
    """A plan's law as the sidebar names a law: a preset by its name, a fit by what it was fitted on."""
    if law is None:
        return "none recorded"
    for name in PRESETS:
        preset = resolve_law(name)
        if (preset.form, preset.params) == (law.form, law.params):
            return f"{name} preset, {law.form} form"
    return law.provenance.rsplit("; ", 1)[0] if law.provenance else f"{law.form} form (no provenance)"


def law_note(plan_law: Law | None, working_law: Law) -> str | None:
    """Why a run's prediction may disagree with the sidebar: its plan was made under another law."""
    if plan_law is None or (plan_law.form, plan_law.params) == (working_law.form, working_law.params):
        return None
    return ("This run's plan was made under another law than the one in force (sidebar): its prediction is the "
            "plan's own. Re-plan it on the Pareto page to predict it under the law in force.")
