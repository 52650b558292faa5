"""REPORT.md of a study: what was run, the measured figures, and automatic verdicts on the issue's hopes. A
hand-written reading of the results (`READING.md` in the study folder) is included verbatim when present."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from train_backend.study.design import PRESETS, WINDOW, StudyRun


def md_table(df: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    formats = formats or {}

    def cell(col, v):
        if isinstance(v, float) and not np.isfinite(v):
            return "-"
        return format(v, formats[col]) if col in formats and not isinstance(v, str) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(c, v) for c, v in zip(df.columns, row)) + " |" for row in df.itertuples(False)]
    return "\n".join(lines)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _design(preset: str, runs: list[StudyRun]) -> str:
    p = PRESETS[preset]
    plan = runs[0].plan
    b = plan.budget
    sizes = ", ".join(f"L{n}-d{d}" for n, d, _ in p.sizes)
    return (f"- Recipe (every run): byte-level, the bundled World English Bible, last {plan.run.val_fraction:.0%} held "
            f"out; {p.batch_size} x {p.seq_len} tokens a step; AdamW lr {b.lr:g} (warm-up 5%, cosine to "
            f"{b.min_lr_ratio:g}x), weight decay {b.weight_decay:g}, clip {b.grad_clip:g}; one CPU thread per run; "
            f"validation on {p.eval_batches} fixed windows of the held-out split (drawn from the run's seed).\n"
            f"- Dense ladder: {sizes} (SwiGLU, d_ff = 3 d_model, untied byte head) x "
            f"{', '.join(f'{r:g}' for r in p.ladder_ratios)} tokens per parameter; seeds "
            f"{', '.join(str(s) for s in (0, *p.noise_seeds))} of the smallest at {p.ladder_ratios[0]:g}.\n"
            f"- Pairs: sparse {', '.join(f'L{n}-d{d}' for n, d, _ in p.pair_sizes)} at final sparsity "
            f"{', '.join(f'{s:.0%}' for s in p.sparsities)}: one global magnitude threshold over all linear weights "
            f"including the LM head, geometric schedule, window {WINDOW[0]:.0%} -> {WINDOW[1]:.0%} of training compute "
            f"(the seed's); {p.pair_ratio:g} tokens per N_avg; each with a dense partner sized by "
            f"`planner.ladder.dense_partner_shape` to its N_avg"
            f"{' and one to its N_final' if p.n_final_partner else ''}, same tokens and seed; seeds "
            f"{', '.join(map(str, p.pair_seeds))}.\n"
            + (f"- The tiny preset as shipped (`planner plan --preset tiny`), seeds {', '.join(map(str, p.tiny_seeds))}"
               f".\n" if p.tiny_seeds else ""))


def _verdicts(df, gaps, preds, forms) -> list[str]:
    out = []
    main = gaps[(gaps["partner"] == "dense_n_avg") & (gaps["variant"].isin(["geometric", ""]))] if not gaps.empty \
        else gaps
    if not main.empty:
        within = int((main["gap_rel"].abs() <= 0.01).sum())
        out.append(f"Pair gaps (sparse - dense partner at N_avg, {main['tokens_per_n_avg'].min():.0f}-"
                   f"{main['tokens_per_n_avg'].max():.0f} tokens per N_avg): {within} of {len(main)} within 1% of loss "
                   f"(hoped: all); mean gap {main['gap'].mean():+.4f} nats ({100 * main['gap_rel'].mean():+.2f}%), "
                   f"range {main['gap'].min():+.4f} to {main['gap'].max():+.4f}.")
        sig = int(((main["ci_low"] > 0) | (main["ci_high"] < 0)).sum())
        out.append(f"{sig} of {len(main)} gaps exclude zero at 95%.")
    if not forms.empty:
        f = forms.set_index("form")
        u, c = f.loc["unified", "heldout_mae"], f.loc["chinchilla", "heldout_mae"]
        out.append(f"Held-out MAE (leave one size out): unified {u:.4f}, Chinchilla on N_final {c:.4f}, Frantar "
                   f"{f.loc['frantar', 'heldout_mae']:.4f} (hoped: unified <= 0.02 and below Chinchilla): "
                   f"{'met' if u <= 0.02 and u < c else 'not met'}.")
    preds = preds[preds["kind"] == "pair"] if not preds.empty else preds  # the ablations are tabulated, not judged
    if not preds.empty:
        out.append(f"Dense-only law, predicting each sparse run from its N_avg: {int(preds['inside'].sum())} of "
                   f"{len(preds)} measured losses inside the 95% interval; mean error (measured - predicted) "
                   f"{preds['error'].mean():+.4f}; from N_final the mean error is "
                   f"{(preds['loss'] - preds['pred_n_final']).mean():+.4f}.")
    return out


def write(preset, runs, df, sd, dof, gaps, preds, dense_fit, forms, figures, law, law_path, out: Path) -> Path:
    finished = df["finished_at"].max() - df["started_at"].min()
    text = [f"# Validation study `{preset}`: does N_avg unify sparse and dense runs on our trainer?", "",
            f"Generated by `python -m train_backend study --preset {preset}` on {time.strftime('%Y-%m-%d')}; "
            f"{len(df)} of {len(runs)} runs finished. Machine: {_cpu()}, {os.cpu_count()} cores, shared with other "
            f"work while the study ran. Study wall time (first start to last finish): {finished / 60:.1f} min; "
            f"{df['wall_seconds'].sum() / 60:.1f} run-minutes of training (the runs' wall times summed; they ran side "
            f"by side).", "", "## Design", "", _design(preset, runs),
            "## Verdicts", ""] + [f"- {v}" for v in _verdicts(df, gaps, preds, forms)]
    se = df["val_se"]
    text += ["", "## Noise", "",
             f"- Validation standard error across the {PRESETS[preset].eval_batches} batches ({se.notna().sum()} runs "
             f"re-evaluated batch by batch: the pairs): median {se.median():.4f}, max {se.max():.4f} "
             f"nats (target < 0.002); paired (same windows) gap errors are smaller, see below.",
             f"- Run-to-run noise across seeds (pooled sd, {dof} degrees of freedom): "
             + (f"{sd:.4f} nats." if np.isfinite(sd) else "not measured (no repeated seeds).")]
    if "quick" == preset or "full" == preset:
        text += [f"- Epochs over the training split: at most {df['epochs'].max():.2f} (kept <= 4)."]
    if dense_fit is not None:
        text += ["", "## Law forms (ladder, seeds and pairs; not the tiny preset nor ablations)", "",
                 md_table(forms[["form", "n_params", "rmse", "mae", "heldout_rmse", "heldout_mae"]],
                          {c: ".4f" for c in ("rmse", "mae", "heldout_rmse", "heldout_mae")}), "",
                 "Dense-only unified fit (ladder and its seeds): " + ", ".join(f"{k} = {v:.4g}"
                                                                              for k, v in dense_fit.params.items()), ""]
    text += [""]
    if not gaps.empty:
        g = gaps.assign(gap_pct=100 * gaps["gap_rel"])
        text += ["## Pair gaps (sparse - dense partner)", "",
                 md_table(g[["pair", "variant", "partner", "sparsity", "tokens_per_n_avg", "seeds", "gap", "gap_pct",
                             "ci_low", "ci_high", "seed_sd", "val_window_se", "train_gap"]],
                          {"sparsity": ".2f", "tokens_per_n_avg": ".0f", "gap": "+.4f", "gap_pct": "+.2f",
                           "ci_low": "+.4f", "ci_high": "+.4f", "seed_sd": ".4f", "val_window_se": ".4f",
                           "train_gap": "+.4f"}), "",
                 f"Interval: {gaps['interval'].iloc[0]}. `val_window_se`: standard error of the gap over the shared "
                 "validation windows (evaluation noise only). `train_gap`: the same gap on the mean training loss of "
                 "the last 1% of steps (the seed cards' figure).", ""]
    if not preds.empty:
        text += ["## The dense-only law's prediction of every sparse run", "",
                 md_table(preds[["name", "n_avg", "n_final", "tokens", "loss", "pred", "pred_low", "pred_high",
                                 "inside", "pred_n_final"]],
                          {"n_avg": ".0f", "n_final": ".0f", "tokens": ".3g", "loss": ".4f", "pred": ".4f",
                           "pred_low": ".4f", "pred_high": ".4f", "pred_n_final": ".4f"}), ""]
    if law is not None:
        text += ["## Laptop law", "", f"Fitted to {law.n_runs} runs (all but ablations, the tiny preset's seeds "
                 f"included), written to `{law_path}`: " + ", ".join(
                     f"{k} = {v:.4g}" for k, v in law.law.params.items()) + f"; run-to-run noise {law.noise_sd:.4f}, "
                 f"per-batch validation sd {law.val_batch_sd:.4f}.", ""]
    text += ["## Runs", "", md_table(df[["name", "kind", "role", "d_model", "d_ff", "n_avg", "n_final", "tokens",
                                         "tokens_per_n_avg", "epochs", "loss", "train_loss", "val_se", "wall_seconds"]],
                                     {"n_avg": ".0f", "n_final": ".0f", "tokens_per_n_avg": ".1f", "epochs": ".2f",
                                      "loss": ".4f", "train_loss": ".4f", "val_se": ".4f", "wall_seconds": ".0f"}), ""]
    text += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    reading = out / "READING.md"
    if reading.exists():
        text += ["## Reading", "", reading.read_text().strip(), ""]
    path = out / "REPORT.md"
    path.write_text("\n".join(text))
    return path
