"""REPORT.md of a study, written from its runs table alone: what was run, each pair's verdict, the power, what the
ablations change, the law forms, and the issue's hopes checked against the data. No hand-written figures."""
from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from planner.hardware.costs import cpu_model
from planner.laptop import cpu_seconds
from planner.validation.verdict import TOLERANCE, detectable_gap, half_width, seeds_needed
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


def _design(preset: str, runs: list[StudyRun]) -> str:
    p = PRESETS[preset]
    plan = runs[0].plan
    b = plan.budget
    n_layer, d_model, _ = p.pair_size
    sizes = ", ".join(f"L{n}-d{d}" for n, d, _ in p.sizes)
    seeds = "; ".join(f"{s:.0%}: seeds {', '.join(map(str, p.seeds.get(s, (0,))))}" for s in p.sparsities)
    top = max(p.sparsities)
    return (f"- Recipe (every run): byte-level, the bundled World English Bible, last {plan.run.val_fraction:.0%} held "
            f"out; {p.batch_size} x {p.seq_len} tokens a step; AdamW lr {b.lr:g} (warm-up 5%, cosine to "
            f"{b.min_lr_ratio:g}x), weight decay {b.weight_decay:g}, clip {b.grad_clip:g}; one CPU thread per run; "
            f"validation on {p.eval_batches} fixed windows of the held-out split (drawn from the run's seed, so a "
            f"pair's runs are scored on the same windows and train on the same windows in the same order).\n"
            f"- Pairs: sparse L{n_layer}-d{d_model} (SwiGLU, d_ff = {p.mlp_ratio} d_model, untied byte head) at final "
            f"sparsity {', '.join(f'{s:.0%}' for s in p.sparsities)}: one global magnitude threshold over all linear "
            f"weights including the LM head, geometric schedule, window {WINDOW[0]:.0%} -> {WINDOW[1]:.0%} of "
            f"training compute (the seed's); {p.pair_ratio:g} tokens per N_avg; each with a dense partner of the "
            f"same depth and d_model whose d_ff is sized to the sparse run's N_avg "
            f"(`planner.ladder.ff_partner_shape`), same tokens and seed. Seeds per sparsity: {seeds}.\n"
            f"- At {top:.0%} (seeds {', '.join(map(str, p.extras_seeds))}): a dense partner at N_final and one at "
            f"N_avg with the width changed instead (MLP ratio near {p.mlp_ratio}; "
            f"`planner.ladder.narrow_partner_shape`); per-layer magnitude (sharing the N_avg partner); the LM head "
            f"kept dense, with its own partner at its N_avg.\n"
            f"- Dense ladder of the same family: {sizes} x {', '.join(f'{t:.3g}' for t in p.ladder_tokens)} tokens, "
            f"seed 0.\n"
            + ("- A smoke run: a pipeline check far too small and short for any claim about the law; its verdicts "
               "only show the report's format.\n" if p.smoke else ""))


def _span(x: pd.Series) -> str:
    return "-" if x.empty else f"{x.min():.1%}" + ("" if x.min() == x.max() else f"-{x.max():.1%}")


def main_pairs(gaps: pd.DataFrame) -> pd.DataFrame:
    """The pairs the study's question is about: the plain geometric schedule against its partner at N_avg (not the
    ablations, cubic schedules nor the N_final and width-changed partners)."""
    return gaps[(gaps["partner"] == "dense_n_avg") & (gaps["variant"] == "geometric")] if not gaps.empty else gaps


def top_pair(main: pd.DataFrame) -> pd.Series:
    """The main pair at the highest sparsity: where the extras and ablations were run."""
    return main[main["sparsity"] == main["sparsity"].max()].iloc[0]


def _interval_pct(g) -> str:
    if not np.isfinite(g["ci_low"]):
        return "(no interval: no run-to-run noise measured)"
    return f"[{100 * g['ci_low'] / g['ref']:+.1f}%, {100 * g['ci_high'] / g['ref']:+.1f}%]"


def _hopes(gaps, counts, preds, forms) -> list[str]:
    """The issue's hopes, each checked against the data (never asserted)."""
    out = []
    main = main_pairs(gaps)
    if not main.empty:
        tally = ", ".join(f"{k} {v}" for k, v in main["verdict"].value_counts().items())
        out.append(f"Pairs against their N_avg partner ({main['tokens_per_n_avg'].mean():.0f} tokens per N_avg): "
                   f"{tally} (hoped: holds at every "
                   f"sparsity); gaps {main['gap'].min():+.4f} to {main['gap'].max():+.4f} nats.")
        top = top_pair(main)
        out.append(f"At {top['sparsity']:.0%} with {top['seeds']} seed(s): gap {100 * top['gap_rel']:+.2f}% of loss "
                   f"{_interval_pct(top)}, {top['verdict']} (hoped: within +-1%).")
    if not counts.empty and (counts["closer"] != "cannot tell").any():
        tally = ", ".join(f"{k} {v}" for k, v in counts["closer"].value_counts().items())
        out.append(f"Which count predicts the sparse runs better, per pair: {tally} (hoped: N_avg).")
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
                   f"{preds['error'].mean():+.4f}; from N_final {preds['error_n_final'].mean():+.4f}.")
    return out


def _power(gaps, noise, sd: float) -> list[str]:
    if gaps.empty or not noise or not np.isfinite(noise["sd"]):
        return ["- Power: no run-to-run noise measured yet (no repeated seeds), so no interval and no verdict."]
    ref = gaps["ref"].median()
    seeds = sorted(set(gaps["seeds"]))
    half = {n: half_width(noise["sd"], noise["dof"], n) for n in seeds}
    need = seeds_needed(noise["sd"], noise["dof"], ref)
    unpaired = f"; two unpaired runs would give sqrt(2) x {sd:.4f} = {np.sqrt(2) * sd:.4f}" \
        if np.isfinite(sd) and "pooled" in noise["source"] else ""
    others = [f"{v} {n['sd']:.4f} ({n['dof']} dof)" for v, n in noise.get("by_variant", {}).items()
              if n["own"] and n["sd"] != noise["sd"]]
    return [f"- Paired-gap noise: sd {noise['sd']:.4f} nats ({noise['source']}){unpaired}"
            + (f"; pooled within their own variant: {', '.join(others)}" if others else "") + ".",
            "- 95% half-width of a pair's gap: " + ", ".join(
                f"{h:.4f} nats ({100 * h / ref:.2f}% of loss) at {n} seed(s)" for n, h in half.items())
            + f"; the +-1% target (half-width <= {TOLERANCE * ref:.4f} nats at loss {ref:.3f}) needs "
            + (f"{need:.0f} seeds." if np.isfinite(need) else "more seeds than are sensible."),
            "- Smallest gap detected (interval excludes zero) with 80% power: " + ", ".join(
                f"{detectable_gap(noise['sd'], noise['dof'], n):.4f} nats at {n} seed(s)" for n in seeds) + "."]


def _ablations(gaps) -> list[str]:
    """What each ablation at the top sparsity changes in the gap against the plain pair's, tested: the difference
    and its 95% half-width (the two intervals' half-widths in quadrature)."""
    if gaps.empty:
        return []
    main = main_pairs(gaps)
    if main.empty:
        return []
    top = top_pair(main)
    others = gaps[(gaps["sparsity"] == top["sparsity"]) & ~gaps.index.isin(main.index)]
    lines = []
    for _, g in others.iterrows():
        what = g["variant"] if g["variant"] != "geometric" else f"partner {g['partner']}"
        diff = g["gap"] - top["gap"]
        half = np.hypot(g["ci_high"] - g["gap"], top["ci_high"] - top["gap"])
        moved = "moves the gap" if abs(diff) > half else "does not move the gap measurably"
        lines.append(f"- {what} ({g['seeds']} seed(s)): gap {g['gap']:+.4f} against {top['gap']:+.4f}; the "
                     f"difference {diff:+.4f} +- {half:.4f} nats {moved}.")
    return lines


def _covered(loo: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """For the runs inside the others' region: whether each lies in its nominal interval, and whether it sits at a
    point where a pair fails (`report.loo_check`)."""
    inside = loo[loo["extrapolated"] == False]  # noqa: E712 (a column of bools and None)
    return inside["score"] <= 1, inside["failing"].astype(bool)


def _uncertainty(loo: pd.DataFrame, calibration: dict | None, missing: str) -> list[str]:
    """The intervals checked out of sample (`report.loo_check`): the runs at each point of the law predicted by a fit
    to the other points; overall, at the points where a pair failed, and elsewhere (what the laptop law claims)."""
    if missing:
        return [f"Leave-one-out coverage: not yet ({missing})."]
    covered, failing = _covered(loo)
    if covered.empty:
        return [f"Leave-one-out coverage: none of the {len(loo)} runs lies inside the region of the others."]
    inside = loo.loc[covered.index]
    lines = [f"- Nominal 95% interval of one run's loss (unified form; the runs at each of the "
             f"{loo['point'].nunique()} points of the law, repeated seeds and a pair's partners together, predicted by "
             f"a fit to the other points: parametric bootstrap, the fit's residual noise): covers {covered.mean():.1%} "
             f"of the {len(inside)} runs inside the others' region; {len(loo) - len(inside)} of {len(loo)} lie outside "
             f"it and get no interval."]
    if failing.any():
        names = ", ".join(sorted(inside.loc[failing, "name"]))
        lines.append(f"- At the points where a sparse run's pair fails ({names}): {covered[failing].mean():.1%} of "
                     f"{int(failing.sum())} runs covered. The law is known not to hold there, so the laptop law "
                     f"claims no interval for a sparse plan at a sparsity whose pair failed "
                     f"(`planner.laptop.pair_warning`).")
    c = calibration
    if c is not None:
        where = "Everywhere else" if failing.any() else "Calibration"
        scale = (f"widening them {c['scale']:.2f}x about their centre (what the laptop law carries) covers "
                 f"{c['calibrated']:.1%} of the {c['n_checked']} runs whose other points set a widening, each checked "
                 f"against the widening the scores at other points give" if np.isfinite(c["scale"]) else
                 "too few runs to calibrate the intervals (a 95% widening needs 19)")
        lines.append(f"- {where}: the nominal interval covers {c['coverage']:.1%} of {c['n_inside']} runs; {scale} "
                     f"(`planner.uncertainty.coverage.calibrate`).")
    misses = inside[inside["score"] > 1].sort_values("score")
    if len(misses):
        lines.append("- Outside their nominal interval (score: distance from the centre in half-widths): " + ", ".join(
            f"{r['name']} ({r['loss']:.4f} against {r['low']:.4f}-{r['high']:.4f}, score {r['score']:.2f})"
            for _, r in misses.iterrows()) + ".")
    return lines


def _law(law, law_path) -> list[str]:
    """The unified law of every non-ablation run with its exponents' profile intervals."""
    where = f"written to `{law_path}`" if law_path else "not saved (`--save-law` writes it)"
    lines = [f"Fitted to {law.n_runs} runs (all but the ablations), {where}: "
             + ", ".join(f"{k} = {v:.4g}" for k, v in law.law.params.items())
             + f"; residual sd {law.residual_sd:.2%} of loss (run-to-run noise across seeds alone: "
               f"{law.noise_sd:.4f} nats); per-batch validation sd {law.val_batch_sd:.4f}.", "",
             "Profile-likelihood 95% intervals (`planner.uncertainty.profile`: least-squares estimate, profile-t "
             "interval with the fit's residual noise):", ""]
    names = {"alpha": "alpha (N_avg exponent)", "beta": "beta (token exponent)",
             "optimal_n_exponent": "a = beta / (alpha + beta) (compute-optimal N ~ C^a)"}
    for k, p in (law.profiles or {}).items():
        span = f"[{p['low']:.3g}, {p['high']:.3g}]" if p["status"] == "identified" else f"{p['status']}: {p['note']}"
        lines.append(f"- {names.get(k, k)}: {p['estimate']:.3g}, {span}.")
    return lines + [""]


def training_span(df: pd.DataFrame) -> float:
    """Seconds during which at least one run was training since its last (re)start (the union of the runs'
    start-to-finish spans; `started_at` is reset on resume): the wall time without a resumed study's pauses."""
    total, end = 0.0, -np.inf
    timed = df.dropna(subset=["started_at", "finished_at"])  # runs restored from an archive carry no times
    for start, finish in sorted(zip(timed["started_at"], timed["finished_at"])):
        total += max(0.0, finish - max(start, end))
        end = max(end, finish)
    return total


def write(preset, runs, df, sd, dof, gaps, noise, counts, preds, dense_fit, forms, figures, loo, law, law_path,
          out: Path) -> Path:
    p = PRESETS[preset]
    finished = df["finished_at"].max() - df["started_at"].min()
    status = "" if len(df) == len(runs) else " (study in progress: a partial report; re-run the same command to " \
                                             "resume, `--report-only` to refresh)"
    text = [f"# Validation study `{preset}`: does N_avg unify sparse and dense runs on our trainer?", "",
            f"Generated from `runs.csv` by `python -m train_backend study --preset {preset}` on "
            f"{time.strftime('%Y-%m-%d')}; {len(df)} of {len(runs)} runs finished{status}. Machine: {cpu_model()}, "
            f"{os.cpu_count()} cores, shared with other work while the study ran. Wall time, first start to last "
            f"finish: {finished / 60:.1f} min, of which {training_span(df) / 60:.1f} min with a run training since "
            f"its last (re)start (a resumed study pauses between sessions); {df['wall_seconds'].sum() / 60:.1f} "
            f"run-minutes of training (the runs' wall times summed; they ran side by side).", "", "## Design", "",
            _design(preset, runs)]
    if p.smoke:
        text += ["**Smoke run: no validation claim.** Every figure below only shows that the pipeline works.", ""]
    text += ["## Hopes, checked", ""] + [f"- {v}" for v in _hopes(gaps, counts, preds, forms)]
    if not gaps.empty:
        g = gaps.assign(gap_pct=100 * gaps["gap_rel"], half_pct=100 * gaps["half_rel"])
        text += ["", "## Verdicts per pair", "",
                 "Sparse minus dense partner, mean over seeds; *holds*: the 95% interval lies within +-1% of the "
                 "partner's loss; *fails*: it lies wholly outside; *cannot tell*: otherwise "
                 "(`planner.validation.verdict`).", "",
                 md_table(g[["pair", "variant", "partner", "sparsity", "tokens_per_n_avg", "seeds", "gap", "gap_pct",
                             "ci_low", "ci_high", "half_pct", "verdict", "seeds_needed", "seed_sd", "val_window_se",
                             "train_gap"]],
                          {"sparsity": ".2f", "tokens_per_n_avg": ".0f", "gap": "+.4f", "gap_pct": "+.2f",
                           "ci_low": "+.4f", "ci_high": "+.4f", "half_pct": ".2f", "seeds_needed": ".0f",
                           "seed_sd": ".4f", "val_window_se": ".4f", "train_gap": "+.4f"}), "",
                 "`half_pct`: the interval's half-width in % of loss; `seeds_needed`: seeds for a half-width of 1%; "
                 "`val_window_se`: the gap's standard error over the shared validation windows (evaluation noise "
                 "only); `train_gap`: the gap in mean training loss over the last 1% of steps (the seed cards' "
                 "figure).", ""]
    text += ["## Power", ""] + _power(gaps, noise, sd)
    if not counts.empty:
        text += ["", "## N_avg or N_final?", "",
                 "Per pair, the error of predicting the sparse loss from N_avg and from N_final: by the measured "
                 "partners where the pair has one at N_final, else by the dense-only law; *cannot tell* when the "
                 "errors differ by less than the gap's half-width.", "",
                 md_table(counts, {"err_n_avg": "+.4f", "err_n_final": "+.4f"})]
    ablations = _ablations(gaps)
    if ablations:
        text += ["", "## What the ablations and extra partners change (at the top sparsity)", "",
                 "Claims of cause in this report rest only on these rows."] + [""] + ablations
    se = df["val_se"]
    text += ["", "## Noise", "",
             f"- Validation standard error across the {p.eval_batches} batches ({se.notna().sum()} runs "
             f"re-evaluated batch by batch: the pairs): median {se.median():.4f}, max {se.max():.4f} nats.",
             f"- Run-to-run noise of single runs across seeds (pooled sd, {dof} degrees of freedom): "
             + (f"{sd:.4f} nats." if np.isfinite(sd) else "not measured (no repeated seeds)."),
             f"- Epochs over the training split: at most {df['epochs'].max():.2f}.",
             f"- LM head share of the prunable weights: sparse runs "
             f"{_span(df.loc[df['role'] == 'sparse', 'head_share'])}, all runs {_span(df['head_share'])}."]
    if dense_fit is not None:
        text += ["", "## Law forms (ladder and pairs; not the ablations)", "",
                 md_table(forms[["form", "n_params", "rmse", "mae", "heldout_rmse", "heldout_mae"]],
                          {c: ".4f" for c in ("rmse", "mae", "heldout_rmse", "heldout_mae")}), "",
                 "Dense-only unified fit (the ladder): " + ", ".join(f"{k} = {v:.4g}"
                                                                     for k, v in dense_fit.params.items()), ""]
    text += ["", "## Prediction intervals out of sample", ""] + _uncertainty(*loo) + [""]
    if not preds.empty:
        text += ["## The dense-only law's prediction of every sparse run", "",
                 md_table(preds[["name", "n_avg", "n_final", "tokens", "loss", "pred", "pred_low", "pred_high",
                                 "inside", "pred_n_final"]],
                          {"n_avg": ".0f", "n_final": ".0f", "tokens": ".3g", "loss": ".4f", "pred": ".4f",
                           "pred_low": ".4f", "pred_high": ".4f", "pred_n_final": ".4f"}), ""]
    if law is not None:
        text += ["## Laptop law", ""] + _law(law, law_path)
    text += ["## Runs", "", md_table(df[["name", "kind", "role", "seed", "n_layer", "d_model", "d_ff", "head_share",
                                         "n_avg", "n_final", "tokens", "tokens_per_n_avg", "epochs", "loss",
                                         "train_loss", "verdict", "wall_seconds"]],
                                     {"head_share": ".3f", "n_avg": ".0f", "n_final": ".0f",
                                      "tokens_per_n_avg": ".1f", "epochs": ".2f", "loss": ".4f", "train_loss": ".4f",
                                      "wall_seconds": ".0f"}), ""]
    text += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    path = out / "REPORT.md"
    path.write_text("\n".join(text))
    return path


README_MARKERS = ("<!-- study:quick:begin (written by `python -m train_backend study --preset quick`) -->",
                  "<!-- study:quick:end -->")


def readme_paragraph(preset, runs, df, gaps, counts, forms, law=None, calibration=None, loo=None) -> str:
    """The README's study paragraph: the findings of `preset`, from its runs table only."""
    p = PRESETS[preset]
    n_layer, d_model, _ = p.pair_size
    sparse = df[df["role"] == "sparse"]
    head = _span(sparse["head_share"]) if not sparse.empty else "-"
    status = "all runs finished" if len(df) == len(runs) else f"{len(df)} of {len(runs)} runs finished so far"
    cpu_h = sum(cpu_seconds(r.plan.model, r.plan.budget.tokens, r.plan.budget.seq_len) for r in runs) / 3600
    text = (f"The CPU model (`planner.laptop`) puts the {len(runs)} runs of `{preset}` at {cpu_h:.1f} one-thread hours "
            f"({cpu_h / 2:.1f} hours with `--jobs 2` on two quiet cores); on this shared machine its finished runs "
            f"trained for {training_span(df) / 3600:.1f} hours of wall time. ")
    text += (f"What `{preset}` found ({status}; byte-level, sparse L{n_layer}-d{d_model} with "
            f"{head} of its prunable weights in the LM head, {df['n_total'].min() / 1e3:.0f}k-"
            f"{df['n_total'].max() / 1e3:.0f}k parameters, at most {df['epochs'].max():.1f} epochs; "
            f"`bench/study/{preset}/REPORT.md`): ")
    main = main_pairs(gaps)
    if main.empty:
        return text + "no pair has finished yet."
    text += "against the dense partner at N_avg, " + "; ".join(
        f"{g['sparsity']:.0%} ({g['seeds']} seed{'s' if g['seeds'] > 1 else ''}) {100 * g['gap_rel']:+.1f}% of loss "
        f"{_interval_pct(g)}: {g['verdict']}"
        for _, g in main.sort_values("sparsity").iterrows()) + " (95% intervals; *holds* means within +-1%)."
    if not counts.empty and (counts["from"] != "-").any():
        decided = counts[counts["closer"] != "cannot tell"]
        text += (f" The sparse loss is predicted better from N_avg in {int((decided['closer'] == 'N_avg').sum())} "
                 f"and from N_final in {int((decided['closer'] == 'N_final').sum())} of {len(counts)} pairs "
                 f"({len(counts) - len(decided)} cannot tell).")
    else:
        text += " Whether N_avg or N_final predicts better needs an N_final partner or the dense ladder's law."
    if not forms.empty:
        f = forms.set_index("form")["heldout_mae"]
        text += (f" Held-out MAE, leave one size out: unified {f['unified']:.3f}, Chinchilla on N_final "
                 f"{f['chinchilla']:.3f}, Frantar {f['frantar']:.3f}.")
    else:
        text += " The law forms are compared once the dense ladder has finished."
    if law is not None and law.profiles:
        text += " Unified law of all non-ablation runs: " + "; ".join(
            f"{k} {p['estimate']:.3g} " + (f"[{p['low']:.3g}, {p['high']:.3g}]" if p["status"] == "identified"
                                           else f"({p['status']})")
            for k, p in law.profiles.items() if k in ("alpha", "beta")) + " (profile likelihood, 95%)."
    if calibration is not None:
        covered, failing = _covered(loo)
        text += (f" Leaving each point of the law out in turn, the nominal 95% interval of one run's loss covered "
                 f"{covered.mean():.0%} of {len(covered)} runs")
        if failing.any():
            text += (f": {covered[failing].mean():.0%} of {int(failing.sum())} at the points where a pair fails "
                     f"(the laptop law claims no interval for a sparse plan there) and "
                     f"{calibration['coverage']:.0%} of the {calibration['n_inside']} elsewhere")
        text += (f"; the laptop law widens it {calibration['scale']:.2f}x, and that widening, learned from the other "
                 f"points, covers {calibration['calibrated']:.0%} of {calibration['n_checked']} runs."
                 if np.isfinite(calibration["scale"]) else ".")
    return text


def update_readme(path: Path, paragraph: str) -> bool:
    """Replace the text between the README's study markers; False (README untouched) without the markers."""
    text = path.read_text()
    begin, end = README_MARKERS
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    path.write_text(f"{head}{begin}\n{textwrap.fill(paragraph, 118)}\n{end}{rest.split(end, 1)[1]}")
    return True
