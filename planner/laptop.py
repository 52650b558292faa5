"""The laptop: what a run of the laptop recipe costs on one CPU thread, and the laptop law fitted by the validation
study (`python -m train_backend study --preset quick`), bundled in planner/data/.

CPU time model, measured with the trainer at one thread on a shared 2-core machine (batch 16 x 128, byte-level):
seconds per token = 1.3e-5 per layer (framework overhead, dominant below ~100k parameters) + training FLOPs per
token / 37 GFLOP/s. It reproduced 29k / 24k / 20k / 8.3k / 4.5k tokens/s of L2-d32 / L2-d48 / L2-d64 / L3-d96 /
L4-d128 within 10%.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from planner.hardware.costs import model_train_flops_per_token
from planner.laws import Law
from planner.plan import Prediction
from planner.shapes import ModelShape

CPU_LAYER_SECONDS_PER_TOKEN = 1.3e-5
CPU_FLOPS = 37e9


def cpu_tokens_per_s(model: ModelShape, seq_len: int) -> float:
    """Training tokens per second of the bundled trainer at one CPU thread (the model above)."""
    per_token = CPU_LAYER_SECONDS_PER_TOKEN * model.n_layer + model_train_flops_per_token(model, seq_len) / CPU_FLOPS
    return 1.0 / per_token


def cpu_seconds(model: ModelShape, tokens: float, seq_len: int) -> float:
    return tokens / cpu_tokens_per_s(model, seq_len)


# --- the laptop law -------------------------------------------------------------------------------------------------

LAW_PATH = Path(__file__).parent / "data" / "laptop_law.json"


class LaptopLaw(BaseModel):
    """The unified law fitted to a study's runs, with what its prediction intervals need.

    `draws` are refits (parameter uncertainty). One run's loss scatters about the law by `residual_sd` (relative,
    the fit's residual sd: run-to-run noise and whatever the law misses; `noise_sd` is the seeds' part alone, in
    nats), both at the study's evaluation (`eval_batches` validation batches); a plan evaluated on fewer batches adds
    `val_batch_sd`^2 (1/b - 1/eval_batches) of evaluation noise. `interval_scale` widens one run's interval as the
    leave-one-out calibration of the study's runs away from its failing pairs asks (`calibration`:
    `planner.uncertainty.coverage.calibrate`).
    `profiles` are the exponents' profile-likelihood intervals, or why they are unidentified. `pairs` are the study's
    verdicts on sparse runs against their dense partner at N_avg: a sparse plan at a sparsity where the law failed, or
    above every pair's, gets no interval and the reason (`pair_warning`). `points` are the fitted
    runs' (N_avg, tokens): outside their region (`planner.uncertainty.region`) a prediction is an extrapolation with
    no interval (a law file without points falls back to the corners of its N_avg and token ranges).
    """
    model_config = ConfigDict(extra="forbid")

    law: Law
    draws: dict[str, list[float]]
    noise_sd: float = Field(ge=0)
    noise_dof: int = Field(0, ge=0, description="degrees of freedom of noise_sd (0: unknown)")
    val_batch_sd: float = Field(ge=0)
    eval_batches: int = Field(gt=0)
    n_avg_range: tuple[float, float]
    tokens_range: tuple[float, float]
    ratio_range: tuple[float, float]
    recipe: dict[str, float | int | str]
    n_runs: int
    command: str
    points: list[tuple[float, float]] | None = None
    residual_sd: float = Field(ge=0)
    interval_scale: float = Field(1.0, ge=1)
    calibration: dict[str, float | None] | None = None  # scale None: too few runs to calibrate
    profiles: dict[str, dict[str, float | str]] | None = None
    pairs: list[dict[str, float | int | str]] | None = None  # the study's main pairs: sparsity, seeds, gap, verdict


def laptop_posterior(law: LaptopLaw):
    """The laptop law as a `planner.uncertainty.LawPosterior`: its draws and the region of its runs."""
    from planner.laws import PARAM_NAMES
    from planner.uncertainty import LawPosterior, Region
    (n_lo, n_hi), (d_lo, d_hi) = law.n_avg_range, law.tokens_range
    n, d = np.array(law.points).T if law.points else (np.array([n_lo, n_lo, n_hi, n_hi]), np.array([d_lo, d_hi] * 2))
    draws = np.column_stack([law.draws[k] for k in PARAM_NAMES[law.law.form]])
    region = Region(n, d, source=f"the laptop law's {law.n_runs} runs")
    return LawPosterior(law.law, draws, law.residual_sd, region, f"{len(draws)} refits ({law.command})",
                        interval_scale=law.interval_scale)


def load_laptop_law(path: Path = LAW_PATH) -> LaptopLaw | None:
    """The bundled laptop law, or None before a study has written one."""
    if not Path(path).exists():
        return None
    law = LaptopLaw.model_validate_json(Path(path).read_text())
    runs = Path(path).with_name(Path(path).stem + "_runs.csv")  # written beside the law by the study
    if law.points is None and runs.exists():
        import pandas as pd  # here only: the trainer's CLI imports this module and never reads a table
        table = pd.read_csv(runs)
        law = law.model_copy(update={"points": list(zip(table["n_avg"], table["tokens"]))})
    return law


def recipe_of(plan) -> dict:
    b, r = plan.budget, plan.run
    return {"corpus": r.corpus, "tokenizer": r.tokenizer, "vocab": plan.model.vocab, "seq_len": b.seq_len,
            "batch_size": b.batch_size, "lr": b.lr, "val_fraction": r.val_fraction}


def predict_plan(plan, law: LaptopLaw | None = None, level: float = 0.95) -> Prediction | None:
    """The laptop law's predicted validation loss of a plan trained with the laptop recipe, else None."""
    law = law or load_laptop_law()
    if law is None or recipe_of(plan) != law.recipe:
        return None
    from planner.uncertainty import plan_counts, plan_prediction
    counts = plan_counts(plan)
    extra = law.val_batch_sd ** 2 * max(0.0, 1 / plan.run.eval_batches - 1 / law.eval_batches)
    loss = float(law.law.predict(counts[0], counts[3]))  # the evaluation noise in nats, relative to this loss
    post = replace(laptop_posterior(law), rel_noise_sd=float(np.sqrt(law.residual_sd ** 2 + extra / loss ** 2)))
    prediction = plan_prediction(law.law, *counts, post, level=level, noise=True)
    warning = pair_warning(law, plan.schedule.final_sparsity)
    if warning is None:
        return prediction
    if prediction.extrapolated:  # its first warning stays the region's reason
        return prediction.model_copy(update={"warnings": prediction.warnings + [warning]})
    return prediction.model_copy(update={"ci_low": None, "ci_high": None, "extrapolated": True,
                                         "warnings": [f"no interval: {warning}"] + prediction.warnings})


def pair_warning(law: LaptopLaw, sparsity: float) -> str | None:
    """What the law's own study says of sparse runs at this final sparsity, when it is not that the law holds: the
    measured gap of the nearest pair at or below it where that pair failed, or that the sparsity is above every
    pair's."""
    if not law.pairs or sparsity <= 0:
        return None
    below = [p for p in law.pairs if p["sparsity"] <= sparsity + 0.025]
    top = max(p["sparsity"] for p in law.pairs)
    if sparsity > top + 0.025:
        return (f"final sparsity {sparsity:.0%} is above every pair of the study that fitted this law (highest "
                f"{top:.0%}): whether N_avg predicts a sparse run here is untested")
    p = max(below, key=lambda p: p["sparsity"]) if below else None
    if p is None or p["verdict"] != "fails":
        return None
    side = "under" if p["gap_rel"] > 0 else "over"
    return (f"at {p['sparsity']:.0%} final sparsity the study that fitted this law measured sparse runs "
            f"{p['gap_rel']:+.1%} [{p['low_rel']:+.1%}, {p['high_rel']:+.1%}] of loss against their dense partner at "
            f"N_avg ({p['seeds']} seeds): the law {side}-predicts a sparse run here")


def fit_laptop_law(runs, noise_sd: float, val_batch_sd: float, eval_batches: int, recipe: dict, command: str,
                   n_boot: int = 200, seed: int = 0, noise_dof: int = 0, calibration: dict | None = None,
                   pairs: list[dict] | None = None) -> LaptopLaw:
    """Fit the unified law to a runs table (planner format): `n_boot` parametric-bootstrap draws
    (`planner.uncertainty.posterior_from_fit`), profile intervals of the exponents and the compute-optimal exponent
    (`profiles`; where identified also in `ci`, `planner.uncertainty.profile.law_ci`), and the leave-one-out
    ``calibration`` of its intervals when given (`planner.uncertainty.coverage.calibrate` of the same runs), and the
    study's ``pairs`` verdicts (see `LaptopLaw`)."""
    from planner.fit import LawFitter  # scipy only when fitting
    from planner.runs import load_runs
    from planner.uncertainty import posterior_from_fit, profile_intervals
    from planner.uncertainty.profile import law_ci
    table = load_runs(runs, "unified")
    fit = LawFitter("unified").fit(table)
    post = posterior_from_fit(fit, table, n_draws=n_boot, seed=seed)
    profiles = profile_intervals(fit, table)
    n, d = table["n_avg"].to_numpy(float), table["tokens"].to_numpy(float)
    law = fit.law.model_copy(update={"ci": law_ci(fit.form, profiles),
                                     "provenance": f"laptop law: {fit.provenance}; {command}"})
    if calibration is not None:  # JSON has no inf: too few runs to rank the widening is None
        calibration = {k: (v if np.isfinite(v) else None) for k, v in calibration.items()}
    scale = calibration["scale"] if calibration and calibration["scale"] is not None else 1.0
    return LaptopLaw(law=law, draws={k: v.tolist() for k, v in post.params.items()}, noise_sd=noise_sd,
                     noise_dof=noise_dof, val_batch_sd=val_batch_sd, eval_batches=eval_batches,
                     n_avg_range=(n.min(), n.max()),
                     tokens_range=(d.min(), d.max()), ratio_range=((d / n).min(), (d / n).max()), recipe=recipe,
                     n_runs=len(table), command=command, points=list(zip(n.tolist(), d.tolist())),
                     residual_sd=post.rel_noise_sd, interval_scale=scale, calibration=calibration,
                     profiles={k: {"estimate": p.estimate, "low": p.low, "high": p.high, "status": p.status,
                                   "note": p.note} for k, p in profiles.items()}, pairs=pairs)
