"""The laptop: what a run of the laptop recipe costs on one CPU thread, and the laptop law fitted by the validation
study (`python -m train_backend study --preset quick`), bundled in planner/data/.

CPU time model, measured with the trainer at one thread on a shared 2-core machine (batch 16 x 128, byte-level):
seconds per token = 1.3e-5 per layer (framework overhead, dominant below ~100k parameters) + training FLOPs per
token / 37 GFLOP/s. It reproduced 29k / 24k / 20k / 8.3k / 4.5k tokens/s of L2-d32 / L2-d48 / L2-d64 / L3-d96 /
L4-d128 within 10%.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from planner.costs import model_train_flops_per_token
from planner.laws import Law, chinchilla, chinchilla_terms
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

    `draws` are bootstrap refits (parameter uncertainty). `noise_sd` is the run-to-run spread across seeds measured
    at the study's evaluation (`eval_batches` validation batches); a plan evaluated on fewer batches adds
    `val_batch_sd`^2 (1/b - 1/eval_batches) of evaluation noise. Outside the fitted N_avg, tokens and tokens-per-N_avg
    ranges a prediction is flagged extrapolated.
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


def predictive_draws(form: str, draws: dict, n, tokens, noise_sd: float, seed: int = 0) -> np.ndarray:
    """Loss draws at (n, tokens): one per bootstrap refit, each plus a run-to-run noise draw; (draws, *shape)."""
    n, tokens = np.asarray(n, float), np.asarray(tokens, float)
    coef = {k: np.asarray(v, float).reshape((-1,) + (1,) * n.ndim) for k, v in draws.items()}
    loss = chinchilla(n, tokens, *chinchilla_terms(form, coef))
    return loss + np.random.default_rng(seed).normal(0.0, noise_sd, loss.shape)


def interval(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    tail = 50 * (1 - level)
    low, high = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    return low, high


def load_laptop_law(path: Path = LAW_PATH) -> LaptopLaw | None:
    """The bundled laptop law, or None before a study has written one."""
    if not Path(path).exists():
        return None
    return LaptopLaw.model_validate_json(Path(path).read_text())


def recipe_of(plan) -> dict:
    b, r = plan.budget, plan.run
    return {"corpus": r.corpus, "tokenizer": r.tokenizer, "vocab": plan.model.vocab, "seq_len": b.seq_len,
            "batch_size": b.batch_size, "lr": b.lr, "val_fraction": r.val_fraction}


def predict_plan(plan, law: LaptopLaw | None = None, level: float = 0.95) -> Prediction | None:
    """The laptop law's predicted validation loss of a plan trained with the laptop recipe, else None."""
    law = law or load_laptop_law()
    if law is None or recipe_of(plan) != law.recipe:
        return None
    n, tokens = plan.derived.n_avg, plan.budget.tokens
    extra = law.val_batch_sd ** 2 * max(0.0, 1 / plan.run.eval_batches - 1 / law.eval_batches)
    noise = float(np.sqrt(law.noise_sd ** 2 + extra))
    low, high = interval(predictive_draws(law.law.form, law.draws, n, tokens, noise), level)
    ranges = ((n, law.n_avg_range), (tokens, law.tokens_range), (tokens / n, law.ratio_range))
    outside = [lo > x * (1 + 1e-9) or x > hi * (1 + 1e-9) for x, (lo, hi) in ranges]
    warnings = []
    if any(outside):
        names = [k for k, o in zip(("N_avg", "tokens", "tokens per N_avg"), outside) if o]
        warnings.append(f"extrapolated: {', '.join(names)} outside the study's runs")
    return Prediction(loss=float(law.law.predict(n, tokens)), ci_low=float(low), ci_high=float(high),
                      extrapolated=any(outside), warnings=warnings)


def fit_laptop_law(runs, noise_sd: float, val_batch_sd: float, eval_batches: int, recipe: dict, command: str,
                   n_boot: int = 200, seed: int = 0, noise_dof: int = 0) -> LaptopLaw:
    """Fit the unified law to a runs table (planner format) with `n_boot` bootstrap refits over single runs."""
    from planner.fit import LawFitter, bootstrap  # scipy only when fitting
    from planner.runs import load_runs
    table = load_runs(runs, "unified")
    fit = LawFitter("unified").fit(table)
    boot = bootstrap(table, "unified", n_boot=n_boot, seed=seed, fit=fit, by_group=False)  # 4-5 sizes: too few groups
    n, d = table["n_avg"].to_numpy(float), table["tokens"].to_numpy(float)
    law = fit.law.model_copy(update={"ci": {k: tuple(v) for k, v in boot.ci().items() if k in fit.params},
                                     "provenance": f"laptop law: {fit.provenance}; {command}"})
    return LaptopLaw(law=law, draws={k: boot.samples[k].tolist() for k in boot.samples}, noise_sd=noise_sd,
                     noise_dof=noise_dof, val_batch_sd=val_batch_sd, eval_batches=eval_batches,
                     n_avg_range=(n.min(), n.max()),
                     tokens_range=(d.min(), d.max()), ratio_range=((d / n).min(), (d / n).max()), recipe=recipe,
                     n_runs=len(table), command=command)
