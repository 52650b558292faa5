"""The training plan: the versioned contract between the planner, the app and the trainer.

A plan is plain data (pydantic v2, extra fields forbidden). YAML and JSON both round-trip exactly:
load(dump(plan)) == plan. `derived` is recomputed on load and must agree with the model and schedule, so a
hand-edited plan cannot carry a stale N_avg into the trainer.

Schema 2 (schema 1 files still load, meaning what they meant): run fields a plan leaves out default by the model's
scale, `run_defaults`. A byte-vocabulary model is a laptop plan (the bundled corpus, byte tokenizer, float32); any
other is GPU scale: bfloat16, and corpus and tokenizer "yours", which the trainer refuses until they are set.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from planner.errors import MAX_COUNT, PlannerInputError  # noqa: F401  (MAX_COUNT: the schema's bound on counts)
from planner.io import Int, Real, fmt_of, number_only, parse_mapping, read_text, to_text, validate, write_model
from planner.laws import Law
from planner.preflight import BYTE_VOCAB, YOURS
from planner.schedules import Schedule, closest_step_window, compute_weighting, piecewise_window
from planner.shapes import MAX_PARAMS, ModelShape

# 2: hardware memory/bandwidth/serving fields, phase hours and derived memory/roofline (all optional), and run
# defaults by scale (`run_defaults`: a version-1 plan keeps the laptop defaults it meant)
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
# Seeds feed numpy's generator (any integer >= 0) and torch.manual_seed (at most 2^64 - 1): the range both take.
SEED_MAX = 2**64 - 1
FORK_FREQUENCY = 100  # the seed's MaxText fork prunes every 100 steps (its base.yml and released runs) ...
FORK_MIN_STEPS = 1000  # ... a default for plans this long; shorter (laptop) plans prune every 1% of their steps
# Every float in a plan is finite: nan compares false against every bound, and inf passes a one-sided one.
_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Data(BaseModel):
    model_config = _STRICT


class PlanSchedule(Schedule):
    """The schedule plus how the window was specified and how masks are formed."""
    model_config = _STRICT
    window_basis: Literal["tokens", "steps", "compute"] = "compute"
    compute_start: Real | None = Field(None, ge=0, le=1, description="window start as a fraction of compute")
    compute_end: Real | None = Field(None, ge=0, le=1, description="window end as a fraction of compute")
    start_step: Int | None = Field(None, ge=0, le=MAX_COUNT)
    end_step: Int | None = Field(None, ge=0, le=MAX_COUNT)
    every_steps: Int | None = Field(None, gt=0, le=MAX_COUNT, description="pruning frequency in optimizer steps")
    granularity: Literal["global", "per_layer"] = "global"
    pattern: Literal["unstructured", "2:4"] = "unstructured"
    prune_head: bool = Field(True, description="prune the untied LM head with the other linear weights (the seed "
                                               "does); false keeps it dense and counts it as fixed")

    @model_validator(mode="after")
    def _check_pattern(self):
        if self.pattern == "2:4" and self.shape != "dense" and not math.isclose(self.final_sparsity, 0.5):
            raise ValueError("a 2:4 pattern ends at final_sparsity 0.5")
        return self

    def schedule(self) -> Schedule:
        """The bare schedule (shape and window) that every density computation uses."""
        return Schedule(**{k: getattr(self, k) for k in Schedule.model_fields})


Beta = Annotated[Real, Field(ge=0, lt=1)]  # AdamW's moment decay: 1 would never forget, past it diverges


class Budget(_Data):
    tokens: Int = Field(gt=0, le=MAX_COUNT, description="training tokens D = steps * batch_size * seq_len")
    seq_len: Int = Field(gt=0, le=MAX_COUNT)
    batch_size: Int = Field(gt=0, le=MAX_COUNT,
                            description="sequences per optimizer step, all ranks and micro-batches together")
    steps: Int = Field(gt=0, le=MAX_COUNT)
    grad_accum: Int = Field(1, gt=0, le=MAX_COUNT)
    optimizer: Literal["adamw"] = "adamw"
    lr: Real = Field(3e-4, gt=0, description="peak learning rate")
    lr_schedule: Literal["cosine"] = "cosine"
    warmup_steps: Int = Field(0, ge=0, le=MAX_COUNT)
    min_lr_ratio: Real = Field(0.1, ge=0, le=1)
    weight_decay: Real = Field(0.1, ge=0)
    betas: tuple[Beta, Beta] = (0.9, 0.95)
    grad_clip: Real = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _check(self):
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} is past steps {self.steps}")
        if self.tokens != self.steps * self.batch_size * self.seq_len:
            raise ValueError(f"tokens {self.tokens} != steps {self.steps} x batch_size {self.batch_size} x "
                             f"seq_len {self.seq_len}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}")
        return self


class RunConfig(_Data):
    """How the trainer runs the plan: data, seed, evaluation. planner.preflight checks it against the corpus."""
    seed: Int = Field(0, ge=0, le=SEED_MAX)
    corpus: str = Field("bible", min_length=1, max_length=4096,
                        description="'bible' (bundled World English Bible), a text file, a folder, or .bin; "
                                    "'yours': not chosen yet (GPU-scale plans)")
    tokenizer: Literal["byte", "yours"] = Field("byte", description="'byte': text is byte-encoded (vocab 256); "
                                                                    "'yours': a .bin of your tokenizer's ids")
    val_fraction: Real = Field(0.05, gt=0, lt=1)
    eval_every: Int = Field(50, gt=0, le=MAX_COUNT, description="steps between validation evaluations")
    eval_batches: Int = Field(4, gt=0, le=MAX_COUNT, description="bounded by the validation split (preflight)")
    dtype: Literal["float32", "bfloat16"] = "float32"
    compile: bool = False


class Hardware(_Data):
    """One accelerator, how well each phase uses it, and the serving assumptions priced on it (planner.hardware)."""
    name: str
    peak_flops: Real = Field(gt=0, description="dense peak FLOP/s of one accelerator at the training dtype")
    mfu_train: Real = Field(0.4, gt=0, le=1)
    mfu_prefill: Real = Field(0.5, gt=0, le=1, description="efficiency: achieved share of the roofline bound (of "
                                                           "peak FLOP/s without a bandwidth)")
    mfu_decode: Real = Field(0.5, gt=0, le=1, description="efficiency: achieved share of the roofline bound")
    usd_per_gpu_hour: Real = Field(2.0, ge=0)
    speedup_train: Real = Field(1.0, ge=1, description="sparse-phase training speedup of the sparsity pattern")
    speedup_prefill: Real = Field(1.0, ge=1)
    speedup_decode: Real = Field(1.0, ge=1)
    memory_bytes: Real | None = Field(None, gt=0, description="memory of one accelerator, bytes")
    hbm_bandwidth: Real | None = Field(None, gt=0, description="memory bandwidth, bytes/s; with it serving time is "
                                                              "a roofline, without it FLOPs over peak")
    devices: Int = Field(8, gt=0, le=MAX_COUNT, description="accelerators training runs on (days to train)")
    serve_batch: Int = Field(32, gt=0, le=MAX_COUNT, description="sequences decoded together")
    serve_dtype: Literal["bfloat16", "float16", "float8"] = "bfloat16"
    sparse_layout: Literal["sparse-bitmask", "sparse-24"] = Field(
        "sparse-bitmask", description="compressed-tensors format a pruned model is served in (2:4: sparse-24)")
    sparse_kernel: bool = Field(False, description="a kernel reads the sparse layout (2:4: sparse tensor cores; "
                                                   "unstructured: a load-as-sparse kernel); off: dense bytes")


class CostLedgers(_Data):
    """FLOPs in three labelled training ledgers, inference FLOPs, GPU-hours and dollars."""
    train_flops_dense_equivalent: Real = Field(ge=0, description="masked training runs dense GEMMs")
    train_flops_effective: Real = Field(ge=0, description="non-zero FLOPs: 6 N_avg D + attention")
    train_flops_wallclock_equivalent: Real = Field(ge=0, description="dense-equivalent / sparse-phase speedup")
    inference_flops_per_token: Real = Field(ge=0, description="2 N_final + attention at the stated context")
    inference_context: Int = Field(ge=0, le=MAX_COUNT)
    lifetime_inference_tokens: Real = Field(ge=0)
    lifetime_inference_flops: Real = Field(ge=0)
    train_gpu_hours: Real = Field(ge=0)
    inference_gpu_hours: Real = Field(ge=0)
    train_usd: Real = Field(ge=0)
    inference_usd: Real = Field(ge=0)
    # Version 2: GPU-hours by phase as modelled, and on dense kernels (what break-even speedups divide).
    prefill_gpu_hours: Real | None = Field(None, ge=0)
    decode_gpu_hours: Real | None = Field(None, ge=0)
    train_gpu_hours_dense_kernels: Real | None = Field(None, ge=0)
    prefill_gpu_hours_dense_kernels: Real | None = Field(None, ge=0)
    decode_gpu_hours_dense_kernels: Real | None = Field(None, ge=0)
    train_days: Real | None = Field(None, ge=0, description="wall-clock days on hardware.devices accelerators")


class Prediction(_Data):
    loss: Real
    ci_low: Real | None = None
    ci_high: Real | None = None
    extrapolated: bool = False
    warnings: list[str] = []


class Pair(_Data):
    """Where a run sits in a validation pair (the seed's design): a sparse run and its dense partners share `id`."""
    id: str = Field(min_length=1, max_length=200)
    role: Literal["sparse", "dense_n_avg", "dense_n_final", "dense_n_avg_width"]


class MemoryFigures(_Data):
    """Bytes per device (planner.hardware.memory) on the plan's hardware: training at its micro-batch, serving."""
    gpu_memory_bytes: Real = Field(gt=0)
    headroom: Real = Field(ge=0, lt=1)
    train_sharding: str
    train_devices: Int = Field(gt=0, le=MAX_COUNT)
    train_bytes_per_device: Real = Field(ge=0)
    train_fits: bool
    train_min_devices: Int | None = Field(None, gt=0, description="smallest count that fits; None: none does")
    serve_layout: str
    serve_weight_bytes: Real = Field(ge=0)
    kv_bytes_per_sequence: Real = Field(ge=0, description="at the inference context")
    serve_max_batch_per_gpu: Int = Field(ge=0)
    serve_min_gpus: Int | None = Field(None, gt=0, description="for hardware.serve_batch sequences")


class RooflineFigures(_Data):
    """Serving time per token on the plan's hardware (planner.hardware.roofline), efficiency included."""
    batch: Int = Field(gt=0)
    context: Int = Field(gt=0)
    prefill_seconds_per_token: Real = Field(ge=0)
    decode_seconds_per_token: Real = Field(ge=0)
    prefill_bound: Literal["compute", "bandwidth"]
    decode_bound: Literal["compute", "bandwidth"]


class Derived(_Data):
    n_convention: Literal["total", "non_embedding"] = "total"
    n_total: Int = Field(ge=0, le=MAX_PARAMS)
    n_prunable: Int = Field(ge=0, le=MAX_PARAMS)
    n_fixed: Int = Field(ge=0, le=MAX_PARAMS)
    mean_density: Real = Field(ge=0, le=1)
    final_density: Real = Field(ge=0, le=1)
    n_avg: Real = Field(ge=0)
    n_final: Real = Field(ge=0)
    memory: MemoryFigures | None = None  # version 2: filled by search.build_plan from the plan's hardware
    roofline: RooflineFigures | None = None


def derive(model: ModelShape, schedule: Schedule, n_convention: str = "total", prune_head: bool = True) -> Derived:
    """Parameter accounting of a model under a schedule (N_avg and N_final under the counting convention)."""
    fixed, prunable = model.n_params(n_convention, prune_head)
    return Derived(n_convention=n_convention, n_total=model.total, n_prunable=prunable, n_fixed=fixed,
                   mean_density=schedule.mean_density(), final_density=schedule.final_density,
                   n_avg=schedule.n_avg(fixed, prunable), n_final=schedule.n_final(fixed, prunable))


def run_defaults(model: ModelShape) -> dict:
    """The run fields a schema-2 plan leaves out, by the model's scale: a byte-vocabulary (laptop) model keeps
    RunConfig's defaults; any other trains in bfloat16 on the user's corpus and tokenizer."""
    return {} if model.vocab == BYTE_VOCAB else {"corpus": YOURS, "tokenizer": YOURS, "dtype": "bfloat16"}


class TrainingPlan(_Data):
    schema_version: Annotated[Literal[1, 2], BeforeValidator(number_only)] = SCHEMA_VERSION
    name: str = Field("plan", min_length=1, max_length=128, description="also the stem of the trainer's run ids")
    model: ModelShape
    schedule: PlanSchedule
    budget: Budget
    run: RunConfig = RunConfig()
    law: Law | None = None
    prediction: Prediction | None = None
    hardware: Hardware | None = None
    costs: CostLedgers | None = None
    derived: Derived
    pair: Pair | None = None
    notes: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _scale_defaults(cls, data):
        """Fill the run fields left out by the model's scale (schema 2; schema 1 meant the laptop defaults)."""
        if not isinstance(data, dict) or data.get("schema_version", SCHEMA_VERSION) == 1:
            return data
        try:
            model = data["model"] if isinstance(data["model"], ModelShape) else ModelShape(**data["model"])
        except (KeyError, TypeError, ValueError):
            return data  # the field validation names what is wrong
        run = data.get("run", {})
        given = run.model_dump(include=run.model_fields_set) if isinstance(run, RunConfig) else run
        if isinstance(given, dict):
            data = {**data, "run": {**run_defaults(model), **given}}
        return data

    @model_validator(mode="after")
    def _check_derived(self):
        fresh = derive(self.model, self.schedule.schedule(), self.derived.n_convention, self.schedule.prune_head)
        for key in ("n_total", "n_prunable", "n_fixed", "mean_density", "final_density", "n_avg", "n_final"):
            have, want = getattr(self.derived, key), getattr(fresh, key)
            if not math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-12):
                raise ValueError(f"derived.{key} = {have} does not match the model and schedule ({want})")
        sched = self.schedule
        if sched.end_step is not None and sched.end_step > self.budget.steps:
            raise ValueError(f"schedule.end_step {sched.end_step} is past budget.steps {self.budget.steps}")
        return self


def make_plan(model: ModelShape, schedule: PlanSchedule, budget: Budget, n_convention: str = "total",
              **fields) -> TrainingPlan:
    """A plan whose derived accounting is computed here, so it is consistent by construction."""
    return TrainingPlan(model=model, schedule=schedule, budget=budget,
                        derived=derive(model, schedule.schedule(), n_convention, schedule.prune_head), **fields)


# --- YAML / JSON ---------------------------------------------------------------------------------------------------

def plan_to_dict(plan: TrainingPlan) -> dict:
    return plan.model_dump(mode="json")


def plan_to_yaml(plan: TrainingPlan) -> str:
    return to_text(plan, "yaml")


def plan_to_json(plan: TrainingPlan) -> str:
    return to_text(plan, "json")


def plan_from_text(text: str, source: str = "plan", fmt: str = "yaml") -> TrainingPlan:
    """Parse and validate; bad input raises PlannerInputError with one line naming the source and field."""
    data = parse_mapping(text, source, fmt, "plan")
    version = data.get("schema_version")
    if type(version) is not int or version not in READABLE_VERSIONS:  # `true` == 1 in Python; not a version
        raise PlannerInputError(f"{source}: field 'schema_version' is {version!r}; this planner reads versions "
                                f"{', '.join(map(str, READABLE_VERSIONS))}")
    return validate(TrainingPlan, data, source)


def load_plan(path: str | Path) -> TrainingPlan:
    return plan_from_text(read_text(path, "plan"), str(path), fmt_of(path))


def dump_plan(plan: TrainingPlan, path: str | Path) -> Path:
    """Write YAML or JSON by the file's suffix (.json is JSON, anything else YAML)."""
    return write_model(plan, path)


def fork_window(start: int, end: int, every: int, total_steps: int) -> tuple[int, int]:
    """A geometric window moved onto multiples of `every`, where the seed's fork prunes (step % frequency == 0): the
    nearest start that keeps its number of intervals within training."""
    intervals = (end - start) // every
    new = min(every * round(start / every), every * ((total_steps - intervals * every) // every))
    return new, new + intervals * every


def resolve_schedule(model: ModelShape, total_steps: int, shape: str = "geometric", final_sparsity: float = 0.5,
                     window_basis: str = "compute", start: float = 0.25, end: float = 0.75,
                     every_steps: int | None = None, **mask) -> PlanSchedule:
    """A plan schedule with its window in all three bases: token fractions, steps and compute fractions.

    `start`/`end` are read in `window_basis`: fractions of tokens or of compute, or step numbers. Windows snap to
    whole steps, and a geometric window to a whole number of pruning intervals, so the trainer's events fall exactly
    where the schedule says; a compute window is the whole-step window closest to the request
    (`schedules.closest_step_window`), and compute_start/compute_end report the fractions it achieves.
    `mask` passes granularity and pattern through.
    """
    if shape == "dense":
        final_sparsity = 0.0
    on_fork_grid = every_steps is None and shape == "geometric" and total_steps >= FORK_MIN_STEPS
    if every_steps is None and shape == "geometric":  # the seed's fork: every 100 steps; a laptop plan every 1%
        every_steps = FORK_FREQUENCY if on_fork_grid else max(1, total_steps // 100)
    phi = compute_weighting(model, mask.get("prune_head", True))
    if window_basis == "compute":
        if not 0 <= start <= end <= 1:
            raise PlannerInputError(f"pruning window [{start}, {end}] in compute is not within training, start first")
        start_step, end_step, _, _ = closest_step_window(shape, final_sparsity, start, end, phi, total_steps,
                                                         every_steps)
    else:
        if window_basis not in ("steps", "tokens"):
            raise PlannerInputError(f"window basis {window_basis!r}: use tokens, steps or compute")
        t0, t1 = (start / total_steps, end / total_steps) if window_basis == "steps" else (start, end)
        if not 0 <= t0 <= t1 <= 1:
            raise PlannerInputError(f"pruning window [{start}, {end}] in {window_basis} is not within training, "
                                    f"start first")
        start_step, end_step = int(round(t0 * total_steps)), int(round(t1 * total_steps))
        if shape == "geometric":
            end_step = start_step + every_steps * int(round((end_step - start_step) / every_steps))
            end_step = min(end_step, start_step + every_steps * ((total_steps - start_step) // every_steps))
        if shape == "one_shot":
            end_step = start_step
    if on_fork_grid:
        start_step, end_step = fork_window(start_step, end_step, every_steps, total_steps)
    bare = Schedule.from_steps(shape, final_sparsity, start_step, end_step, total_steps,
                               every_steps if shape == "geometric" else None)
    c0, c1 = (float(x) for x in bare.compute_fraction(np.array([bare.start, bare.end]), phi))
    return PlanSchedule(**bare.model_dump(), window_basis=window_basis, compute_start=c0, compute_end=c1,
                        start_step=start_step, end_step=end_step,
                        every_steps=every_steps if shape == "geometric" else None, **mask)


def piecewise_schedule(model: ModelShape, knots: list[tuple[float, float]], **mask) -> PlanSchedule:
    """A piecewise plan schedule from (token fraction, density) knots, its window (`schedules.piecewise_window`) in
    token and compute fractions. Bad knots raise pydantic's ValueError naming the rule; `mask` as resolve_schedule."""
    bare = Schedule(shape="piecewise", final_sparsity=1.0 - knots[-1][1] if knots else 0.0, points=knots)
    start, end = piecewise_window(bare.points)
    phi = compute_weighting(model, mask.get("prune_head", True))
    c0, c1 = (float(x) for x in bare.compute_fraction(np.array([start, end]), phi))
    return PlanSchedule(**{**bare.model_dump(), "start": start, "end": end}, window_basis="tokens",
                        compute_start=c0, compute_end=c1, **mask)
