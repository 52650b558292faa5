"""A study's analysis: runs.csv (the planner's runs format), fits and held-out errors of the three law forms, pair
gaps, the dense-only law's prediction of every sparse run from its N_avg, plots and REPORT.md. The laws, fitter and
intervals are the planner's (`planner.fit`, `planner.uncertainty`); nothing here re-derives a formula.

Losses are validation losses on the last 10% of the corpus, `eval_batches` fixed windows drawn from the run's seed;
each pair run's final checkpoint is re-evaluated batch by batch (cached in `<out>/val/`) for standard errors and paired
(same windows) gap intervals. `train_loss` is the mean training loss over the last 1% of steps, as on the seed's
model cards.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from planner.errors import PlannerInputError
from planner.fit import LawFitter, compare_forms
from planner.ladder import head_share, mlp_ratio
from planner.laptop import fit_laptop_law, load_laptop_law, recipe_of
from planner.runs import RUN_COLUMNS, in_regime, load_runs
from planner.uncertainty import posterior_from_fit
from planner.uncertainty.coverage import calibrate, loo_coverage
from planner.validation.verdict import closer_count, gap_noise, pair_verdicts, partner_errors, pooled_sd, seedless
from train_backend import checkpoint, registry
from train_backend.model import Transformer
from train_backend.study.design import StudyRun
from train_backend.study.runner import check_plans, latest_attempt
from train_backend.train import Options, load_batches

N_BOOT = 200
LEVEL = 0.95


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
        if not registry.is_finished(row):
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
            "n_layer": p.model.n_layer, "head_share": head_share(p.model), "mlp_ratio": mlp_ratio(p.model),
            "steps": p.budget.steps,
            "tokens_per_n_avg": p.budget.tokens / row["n_avg_measured"], "epochs": p.budget.tokens / train_split,
            "train_loss": float(np.mean([m["loss"] for m in metrics[-tail:]])),
            "val_se": np.nan if batches is None else float(batches.std(ddof=1) / np.sqrt(len(batches))),
            "wall_seconds": row["wall_seconds"], "run_id": row["run_id"],
            "started_at": row["started_at"], "finished_at": row["finished_at"]})
    return pd.DataFrame(rows), per_batch


def noise_sd(df: pd.DataFrame) -> tuple[float, int]:
    """Pooled run-to-run standard deviation over runs that differ only in their seed, and its degrees of freedom."""
    return pooled_sd(df["loss"], df["name"].map(seedless))


def pair_gaps(df: pd.DataFrame, per_batch: dict, sd: float, dof: int) -> tuple[pd.DataFrame, dict]:
    """Sparse minus dense partner for every sparse run and partner role (an ablation without partners shares its
    pair's), averaged over seeds, with the planner's interval and verdict (`planner.validation.verdict`): the gap's
    sd pooled over repeated seeds, else sqrt(2) x the run-to-run sd `sd` (with its `dof`), else (no repeats at all
    yet) sqrt(2) x the bundled laptop law's. Also the train gap and
    the paired standard error over the shared validation windows (evaluation noise only)."""
    pairs = df[df["pair"] != ""]
    records = []
    for _, s in pairs[pairs["role"] == "sparse"].iterrows():
        for _, d in pairs[(pairs["pair"] == s["pair"]) & (pairs["role"] != "sparse")].iterrows():
            if s["kind"] == "ablation" and d["role"] != "dense_n_avg":  # e.g. per-layer: only its N_avg partner
                continue
            diff = per_batch[s["name"]] - per_batch[d["name"]]
            records.append({"pair": seedless(s["name"]).removesuffix("-sparse"), "variant": s["variant"],
                            "partner": d["role"], "sparsity": s["sparsity"], "group": s["group"],
                            "tokens_per_n_avg": s["tokens_per_n_avg"], "gap": s["loss"] - d["loss"],
                            "ref": d["loss"], "train_gap": s["train_loss"] - d["train_loss"],
                            "se": diff.std(ddof=1) / np.sqrt(len(diff)), "sparse": s["name"], "seed": s["seed"]})
    if not records:
        return pd.DataFrame(), {}
    per_seed = pd.DataFrame(records)
    table, noise = pair_verdicts(per_seed[["pair", "partner", "gap", "ref", "variant"]],
                                 gap_noise(sd, dof, None if dof else load_laptop_law()))  # an earlier study's
    extra = per_seed.groupby(["pair", "partner"], sort=False).agg(
        sparsity=("sparsity", "first"), group=("group", "first"),
        tokens_per_n_avg=("tokens_per_n_avg", "mean"), seed_sd=("gap", lambda g: g.std(ddof=1)),
        val_window_se=("se", "mean"), train_gap=("train_gap", "mean")).reset_index()
    return table.merge(extra, on=["pair", "partner"]), noise


def closer_counts(gaps: pd.DataFrame, preds: pd.DataFrame) -> pd.DataFrame:
    """Per pair: which count predicts its sparse runs' loss better. With a partner at N_final, the two partners'
    measured gaps; otherwise the dense-only law's errors from N_avg and from N_final (mean over seeds). The margin
    is the N_avg gap's half-width: a smaller difference is noise."""
    if gaps.empty:
        return pd.DataFrame()
    main = partner_errors(gaps)
    err_avg, err_final, how = main["err_n_avg"].copy(), main["err_n_final"].copy(), pd.Series("partners", main.index)
    if not preds.empty:
        law = preds.assign(pair=preds["name"].map(seedless).str.removesuffix("-sparse")).groupby("pair").agg(
            a=("error", "mean"), f=("error_n_final", "mean"))
        use = err_final.isna() & main.index.isin(law.index)
        err_avg[use], err_final[use] = law.loc[main.index[use], "a"], law.loc[main.index[use], "f"]
        how[use] = "dense-only law"
    how[err_final.isna()] = "-"
    return pd.DataFrame({"pair": main.index, "err_n_avg": err_avg.to_numpy(), "err_n_final": err_final.to_numpy(),
                         "closer": closer_count(err_avg, err_final, main["half"].to_numpy()), "from": how.to_numpy()})


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
    sparse["error_n_final"] = sparse["loss"] - sparse["pred_n_final"]
    sparse["inside"] = (sparse["loss"] >= sparse["pred_low"]) & (sparse["loss"] <= sparse["pred_high"])
    return sparse, fit


def form_comparison(df: pd.DataFrame) -> pd.DataFrame:
    return compare_forms(in_regime(df)[RUN_COLUMNS],
                         forms=("unified", "chinchilla", "frantar"))


def loo_check(df: pd.DataFrame) -> tuple[pd.DataFrame, dict | None, str]:
    """The unified law's intervals checked out of sample on the study's runs (not the ablations): the leave-one-out
    table (``failing``: the run sits at a point of the law where a sparse run's pair failed), the calibration of the
    intervals where the law is not known to fail (`planner.uncertainty.coverage`; a sparse plan where its pair failed
    gets no interval, `planner.laptop.pair_warning`), and why there is none when too few runs have finished."""
    try:
        loo = loo_coverage(in_regime(df), "unified", n_draws=N_BOOT)
    except PlannerInputError as exc:
        return pd.DataFrame(), None, str(exc).splitlines()[0]
    failed = df.loc[(df["role"] == "sparse") & (df["verdict"] == "fails"), "name"]
    loo["failing"] = loo["point"].isin(loo.loc[loo["name"].isin(failed), "point"])
    kept = loo[~loo["failing"]]
    return loo, (calibrate(kept, LEVEL) if (kept["extrapolated"] == False).any() else None), ""  # noqa: E712


def law_pairs(gaps: pd.DataFrame) -> list[dict] | None:
    """The main pairs' verdicts as the laptop law carries them (`planner.laptop.LaptopLaw.pairs`)."""
    if gaps.empty:
        return None
    main = gaps[(gaps["variant"] == "geometric") & (gaps["partner"] == "dense_n_avg")]
    return [{"sparsity": float(g["sparsity"]), "seeds": int(g["seeds"]), "gap_rel": float(g["gap_rel"]),
             "low_rel": float(g["ci_low"] / g["ref"]), "high_rel": float(g["ci_high"] / g["ref"]),
             "verdict": str(g["verdict"])} for _, g in main.iterrows()]


def study_law(df: pd.DataFrame, per_batch: dict, sd: float, dof: int, runs: list[StudyRun], calibration: dict | None,
              pairs: list[dict] | None, path: Path | None):
    """The laptop law from every non-ablation run; written to `path` (when given) with the runs table beside it
    (`<stem>_runs.csv`). None while too few runs have finished to fit it."""
    table = in_regime(df)  # a study has no tiny runs: every run but the ablations
    first = next(r for r in runs if r.name == table["name"].iloc[0])
    val_batch_sd = float(np.median([per_batch[n].std(ddof=1) for n in table["name"] if n in per_batch]))
    command = "python -m train_backend study --preset quick --jobs 2" + (f" --save-law {path}" if path else "")
    try:
        law = fit_laptop_law(table[RUN_COLUMNS], sd, val_batch_sd, first.plan.run.eval_batches, recipe_of(first.plan),
                             command, n_boot=N_BOOT, noise_dof=dof, calibration=calibration, pairs=pairs)
    except (PlannerInputError, ValueError):
        return None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(law.model_dump_json(indent=1))
        table.drop(columns=["started_at", "finished_at", "run_id"]).to_csv(
            path.with_name(path.stem + "_runs.csv"), index=False, float_format="%.6g")
    return law


def run_verdicts(df: pd.DataFrame, gaps: pd.DataFrame) -> pd.Series:
    """Each run's pair verdict: a sparse run's against its N_avg partner, a partner's for its own role."""
    if gaps.empty:
        return pd.Series("", index=df.index)
    lookup = gaps.set_index(["pair", "partner"])["verdict"].to_dict()
    base = df["name"].map(seedless).str.removesuffix("-sparse")
    pair = np.where(df["role"] == "sparse", base, df["pair"].map(seedless))
    role = df["role"].where(df["role"] != "sparse", "dense_n_avg")
    return pd.Series([lookup.get((p, r), "") for p, r in zip(pair, role)], index=df.index)


def dense_fits(df: pd.DataFrame, sd: float, log) -> tuple[pd.DataFrame, object, pd.DataFrame]:
    """The dense-only law's predictions and the three forms' comparison, once enough runs have finished."""
    try:
        preds, dense_fit = dense_law_predictions(df, sd)
        return preds, dense_fit, form_comparison(df)
    except (PlannerInputError, ValueError) as exc:  # a study cut short: too few runs to fit yet
        log(f"no fits yet: {exc}")
        return pd.DataFrame(), None, pd.DataFrame()


def write_report(preset: str, runs: list[StudyRun], out: Path, runs_dir: Path, log=print, save_law: Path | None = None,
                 readme: Path | None = None) -> Path:
    """runs.csv, plots and REPORT.md from the finished runs (a study in progress gets a partial report), and the
    study paragraph between the markers of `readme` when given."""
    from train_backend.study import plots, writeup  # matplotlib only here
    out.mkdir(parents=True, exist_ok=True)
    check_plans(runs, out / "plans")
    df, per_batch = collect(runs, runs_dir, out)
    if df.empty:
        raise PlannerInputError(f"--runs-dir {runs_dir}: no finished run of the {preset} study yet")
    sd, dof = noise_sd(in_regime(df))  # not the ablations: a method's own instability is not run-to-run noise
    gaps, gap_noise = pair_gaps(df, per_batch, sd, dof)
    df["verdict"] = run_verdicts(df, gaps)
    df.drop(columns=["started_at", "finished_at", "run_id"]).to_csv(out / "runs.csv", index=False,
                                                                      float_format="%.6g")
    preds, dense_fit, forms = dense_fits(df, sd, log)
    counts = closer_counts(gaps, preds)
    figures = plots.draw_all(df, gaps, preds, runs_dir, out)
    loo, calibration, loo_missing = loo_check(df)
    law = study_law(df, per_batch, sd, dof, runs, calibration, law_pairs(gaps), save_law)
    path = writeup.write(preset, runs, df, sd, dof, gaps, gap_noise, counts, preds, dense_fit, forms, figures,
                         (loo, calibration, loo_missing), law, save_law, out)
    log(f"wrote {out / 'runs.csv'} ({len(df)} of {len(runs)} runs finished) and {path}")
    if readme is not None and writeup.update_readme(readme, writeup.readme_paragraph(preset, runs, df, gaps, counts,
                                                                                     forms, law, calibration,
                                                                                     loo)):
        log(f"updated the study paragraph of {readme}")
    return path
