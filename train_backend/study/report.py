"""A study's analysis: runs.csv (the planner's runs format), fits and held-out errors of the three law forms, pair
gaps, the dense-only law's prediction of every sparse run from its N_avg, plots and REPORT.md. The laws, fitter and
intervals are the planner's (`planner.fit`, `planner.uncertainty`); nothing here re-derives a formula.

Losses are validation losses on the last 10% of the corpus, `eval_batches` fixed windows drawn from the run's seed;
each pair run's final checkpoint is re-evaluated batch by batch (cached in `<out>/val/`) for standard errors and paired
(same windows) gap intervals. `train_loss` is the mean training loss over the last 1% of steps, as on the seed's
model cards.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from planner.errors import PlannerInputError
from planner.fit import LawFitter, compare_forms
from planner.runs import in_regime, load_runs
from planner.uncertainty import posterior_from_fit
from planner.laptop import fit_laptop_law, recipe_of
from train_backend import checkpoint, registry
from train_backend.model import Transformer
from train_backend.study.design import StudyRun
from train_backend.study.runner import latest_attempt
from train_backend.train import Options, load_batches

N_BOOT = 200
LEVEL = 0.95


def seedless(name: str) -> str:
    """The name a run shares with its repeats under other seeds."""
    return re.sub(r"-seed\d+", "", name)


@torch.no_grad()
def val_losses(r: StudyRun, run_dir: Path, runs_dir: Path, cache: Path) -> np.ndarray:
    """Per-batch validation losses of a run's final weights on the trainer's own validation windows."""
    path = cache / f"{r.name}.npy"
    if path.exists():
        return np.load(path)
    plan = r.plan
    model = Transformer(plan.model)
    model.load_state_dict(checkpoint.load(run_dir, quarantine=False)["model"])
    model.eval()
    batches = load_batches(plan, Options(runs_dir=runs_dir))
    rows = plan.budget.batch_size // plan.budget.grad_accum
    out = np.array([model(x, y).item() for x, y in batches.val_batches(plan.run.eval_batches, rows)])
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def collect(runs: list[StudyRun], runs_dir: Path, out: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One row per finished run (planner runs columns first), and the per-batch validation losses of the pairs' runs
    (the others need only the mean, which the trainer logged)."""
    rows, per_batch = [], {}
    registry_rows = registry.list_runs(runs_dir)
    train_split = None
    for r in runs:
        row = latest_attempt(registry_rows, r.name)
        if row is None or row["status"] != "finished" or row["step"] < row["total_steps"]:
            continue
        run_dir = Path(row["run_dir"])
        if train_split is None:
            train_split = len(load_batches(r.plan, Options(runs_dir=runs_dir)).train)
        metrics = registry.read_metrics(run_dir)
        tail = max(1, len(metrics) // 100)
        if r.plan.pair is not None:  # paired gap errors need them
            per_batch[r.name] = val_losses(r, run_dir, runs_dir, out / "val")
        batches = per_batch.get(r.name)
        p, d = r.plan, r.plan.derived
        rows.append({
            "loss": row["final_val_loss"], "tokens": p.budget.tokens, "n_avg": row["n_avg_measured"],
            "n_final": row["n_final"], "sparsity": p.schedule.final_sparsity, "group": r.group, "name": r.name,
            "seed": p.run.seed, "role": p.pair.role if p.pair else "dense", "kind": r.kind, "variant": r.variant,
            "pair": p.pair.id if p.pair else "", "schedule": p.schedule.shape, "granularity": p.schedule.granularity,
            "n_total": d.n_total, "n_avg_planned": d.n_avg, "d_model": p.model.d_model, "d_ff": p.model.d_ff,
            "n_layer": p.model.n_layer, "steps": p.budget.steps,
            "tokens_per_n_avg": p.budget.tokens / row["n_avg_measured"], "epochs": p.budget.tokens / train_split,
            "train_loss": float(np.mean([m["loss"] for m in metrics[-tail:]])),
            "val_se": np.nan if batches is None else float(batches.std(ddof=1) / np.sqrt(len(batches))),
            "wall_seconds": row["wall_seconds"], "run_id": row["run_id"],
            "started_at": row["started_at"], "finished_at": row["finished_at"]})
    return pd.DataFrame(rows), per_batch


def noise_sd(df: pd.DataFrame) -> tuple[float, int]:
    """Pooled run-to-run standard deviation over runs that differ only in their seed, and its degrees of freedom."""
    key = df["name"].map(seedless)
    groups = df.groupby(key)["loss"]
    dof = int((groups.count() - 1).clip(lower=0).sum())
    if dof == 0:
        return float("nan"), 0
    ss = float(groups.apply(lambda x: ((x - x.mean()) ** 2).sum()).sum())
    return float(np.sqrt(ss / dof)), dof


def pair_gaps(df: pd.DataFrame, per_batch: dict, sd: float, seed: int = 0) -> pd.DataFrame:
    """Sparse minus dense partner, for every sparse run (an ablation shares its pair's partner) and partner role,
    averaged over seeds: val and train gaps, the paired val-window standard error, and a 95% interval: bootstrap
    over seeds where a pair has several, else the measured run-to-run noise."""
    pairs = df[df["pair"] != ""]
    records = []
    for _, s in pairs[pairs["role"] == "sparse"].iterrows():
        for _, d in pairs[(pairs["pair"] == s["pair"]) & (pairs["role"] != "sparse")].iterrows():
            diff = per_batch[s["name"]] - per_batch[d["name"]]
            records.append({"pair": seedless(s["pair"]), "variant": s["variant"], "partner": d["role"],
                            "sparsity": s["sparsity"], "group": s["group"], "tokens_per_n_avg": s["tokens_per_n_avg"],
                            "gap": s["loss"] - d["loss"], "ref": d["loss"],
                            "train_gap": s["train_loss"] - d["train_loss"],
                            "se": diff.std(ddof=1) / np.sqrt(len(diff))})
    if not records:
        return pd.DataFrame()
    rng, rows = np.random.default_rng(seed), []
    for (base, variant, partner), g in pd.DataFrame(records).groupby(["pair", "variant", "partner"], sort=False):
        gaps = g["gap"].to_numpy()
        if len(gaps) > 1:
            boot = rng.choice(gaps, (2000, len(gaps))).mean(axis=1)
            low, high, how = *np.percentile(boot, [2.5, 97.5]), f"bootstrap over {len(gaps)} seeds"
        else:
            half = 1.96 * np.sqrt(2) * sd if np.isfinite(sd) else np.nan
            low, high, how = gaps[0] - half, gaps[0] + half, "+-1.96 sqrt(2) x run-to-run sd"
        first = g.iloc[0]
        rows.append({"pair": base, "variant": variant, "partner": partner, "sparsity": first["sparsity"],
                     "group": first["group"], "tokens_per_n_avg": first["tokens_per_n_avg"], "seeds": len(gaps),
                     "gap": gaps.mean(), "gap_rel": gaps.mean() / g["ref"].mean(),
                     "seed_sd": gaps.std(ddof=1) if len(gaps) > 1 else np.nan, "ci_low": low, "ci_high": high,
                     "interval": how, "val_window_se": float(g["se"].mean()),
                     "train_gap": float(g["train_gap"].mean())})
    return pd.DataFrame(rows)


def dense_law_predictions(df: pd.DataFrame, sd: float) -> tuple[pd.DataFrame, object]:
    """Fit the unified law to the dense ladder (and its repeated seeds) only, then predict every sparse run from its
    N_avg (and, for contrast, from its N_final) with a 95% interval inside the dense runs' region: parametric-bootstrap
    draws (`planner.uncertainty`) plus run-to-run noise."""
    dense = load_runs(df[df["kind"].isin(["ladder", "noise"])], "unified")
    fit = LawFitter("unified").fit(dense)
    post = posterior_from_fit(fit, dense, n_draws=N_BOOT)
    sparse = df[df["role"] == "sparse"].copy()
    noise = sd if np.isfinite(sd) else 0.0
    for col, n_col in (("pred", "n_avg"), ("pred_n_final", "n_final")):
        n, d = sparse[n_col].to_numpy(), sparse["tokens"].to_numpy(float)
        iv = post.interval(n, d, level=LEVEL, noise=True, noise_sd=noise)  # NaN outside the dense runs' region
        sparse[col], sparse[f"{col}_low"], sparse[f"{col}_high"] = iv["loss"].to_numpy(), iv["low"].to_numpy(), \
            iv["high"].to_numpy()
    sparse["error"] = sparse["loss"] - sparse["pred"]
    sparse["inside"] = (sparse["loss"] >= sparse["pred_low"]) & (sparse["loss"] <= sparse["pred_high"])
    return sparse, fit


def form_comparison(df: pd.DataFrame) -> pd.DataFrame:
    return compare_forms(in_regime(df)[["loss", "tokens", "n_avg", "n_final", "sparsity", "group", "name"]],
                         forms=("unified", "chinchilla", "frantar"))


def save_laptop_law(df: pd.DataFrame, per_batch: dict, sd: float, runs: list[StudyRun], path: Path):
    """The laptop law from every non-ablation run (the tiny preset's seeds included, so it covers them), written to
    `path` with the runs table beside it (`<stem>_runs.csv`)."""
    table = df[df["kind"] != "ablation"]
    first = next(r for r in runs if r.name == table["name"].iloc[0])
    val_batch_sd = float(np.median([per_batch[n].std(ddof=1) for n in table["name"] if n in per_batch]))
    command = "python -m train_backend study --preset quick --jobs 2 --save-law " + str(path)
    law = fit_laptop_law(table[["loss", "tokens", "n_avg", "n_final", "sparsity", "group", "name"]], sd, val_batch_sd,
                         first.plan.run.eval_batches, recipe_of(first.plan), command, n_boot=N_BOOT)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(law.model_dump_json(indent=1))
    table.drop(columns=["started_at", "finished_at", "run_id"]).to_csv(
        path.with_name(path.stem + "_runs.csv"), index=False, float_format="%.6g")
    return law


def write_report(preset: str, runs: list[StudyRun], out: Path, runs_dir: Path, log=print, save_law: Path | None = None
                 ) -> Path:
    from train_backend.study import plots, writeup  # matplotlib only here
    out.mkdir(parents=True, exist_ok=True)
    df, per_batch = collect(runs, runs_dir, out)
    if df.empty:
        raise RuntimeError(f"no finished runs of the {preset} study in {runs_dir}")
    df.drop(columns=["started_at", "finished_at", "run_id"]).to_csv(out / "runs.csv", index=False,
                                                                      float_format="%.6g")
    sd, dof = noise_sd(df)
    gaps = pair_gaps(df, per_batch, sd)
    try:
        preds, dense_fit = dense_law_predictions(df, sd)
        forms = form_comparison(df)
    except PlannerInputError as exc:  # a study cut short: too few runs to fit yet
        log(f"no fits yet: {exc}")
        preds, dense_fit, forms = pd.DataFrame(), None, pd.DataFrame()
    figures = plots.draw_all(df, gaps, preds, runs_dir, out)
    law = None
    if save_law is not None:
        law = save_laptop_law(df, per_batch, sd, runs, save_law)
    path = writeup.write(preset, runs, df, sd, dof, gaps, preds, dense_fit, forms, figures, law, save_law, out)
    log(f"wrote {out / 'runs.csv'} ({len(df)} of {len(runs)} runs finished) and {path}")
    return path
