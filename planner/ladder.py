"""Small plans that run on a laptop CPU: the `tiny` preset and the scaled-down validation ladder of a plan.

The ladder keeps what the unified law is about — the schedule's shape, window and final sparsity — and shrinks the
model and the token budget. Each sparse rung gets a dense partner whose parameter count equals the sparse rung's
N_avg and that trains on the same tokens, as the seed's released ~1B pairs do: if N_avg is the right quantity, the
two losses match.
"""
from __future__ import annotations

import numpy as np

from planner.errors import PlannerInputError
from planner.laptop import cpu_seconds, load_laptop_law, predict_plan
from planner.plan import Budget, Pair, PlanSchedule, RunConfig, TrainingPlan, make_plan, resolve_schedule
from planner.shapes import ModelShape

BYTE_VOCAB = 256
# The laptop recipe shared by the tiny preset, the ladder and the validation study (train_backend.study), so the
# laptop law fitted on the study predicts the others: 16 x 128 tokens a step, the last 10% of the corpus held out.
SEQ_LEN, BATCH_SIZE, VAL_FRACTION = 128, 16, 0.1
# (n_layer, d_model, n_head) a ladder's rungs are chosen from, smallest first; SwiGLU with d_ff = 3 * d_model.
LADDER_SIZES = ((2, 32, 4), (2, 48, 4), (2, 64, 4), (3, 96, 4), (4, 128, 4), (4, 192, 4), (6, 256, 8))


def cpu_budget(steps: int, batch_size: int = BATCH_SIZE, seq_len: int = SEQ_LEN, lr: float = 3e-3) -> Budget:
    return Budget(tokens=steps * batch_size * seq_len, seq_len=seq_len, batch_size=batch_size, steps=steps, lr=lr,
                  warmup_steps=max(1, steps // 20))


def tiny_plan(final_sparsity: float = 0.5, steps: int = 100, seed: int = 0) -> TrainingPlan:
    """A sparse plan that trains in seconds on one CPU core: d_model 64, the seed's 25%->75%-of-compute window."""
    model = ModelShape(n_layer=2, d_model=64, n_head=4, d_ff=192, vocab=BYTE_VOCAB)
    schedule = resolve_schedule(model, steps, "geometric", final_sparsity, "compute", 0.25, 0.75,
                                every_steps=max(1, steps // 50))
    run = RunConfig(seed=seed, eval_every=max(1, steps // 4), eval_batches=32, val_fraction=VAL_FRACTION)
    return with_prediction(make_plan(model, schedule, cpu_budget(steps), name="tiny", run=run))


def dense_partner_shape(n_layer: int, n_head: int, target: float, d_model_max: int, convention: str = "total",
                        vocab: int = BYTE_VOCAB) -> ModelShape:
    """The dense shape of `n_layer` layers whose parameter count matches `target` (an N_avg) within 0.5%.

    d_model runs over multiples of 4 * n_head up to d_model_max and d_ff absorbs the rest of the count; among the
    shapes that match, the one with the most usual MLP ratio (d_ff closest to 3 * d_model) wins.
    """
    best = None
    for d_model in range(4 * n_head, d_model_max + 1, 4 * n_head):
        probe = ModelShape(n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=1, vocab=vocab)
        fixed, prunable = probe.n_params(convention)
        per_unit = 3 * d_model * n_layer  # SwiGLU: three d_model x d_ff matrices per layer
        d_ff = int(round((target - fixed - prunable + per_unit) / per_unit))
        if d_ff < 1:
            continue
        shape = ModelShape(n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=d_ff, vocab=vocab)
        if abs(sum(shape.n_params(convention)) - target) > 5e-3 * target:
            continue
        oddness = abs(np.log(d_ff / (3 * d_model)))
        if best is None or oddness < best[0]:
            best = (oddness, shape)
    if best is None:
        raise ValueError(f"no dense shape of {n_layer} layers reaches N = {target:.0f}")
    return best[1]


def rung(plan: TrainingPlan, i: int, size: tuple[int, int, int], seq_len: int, batch_size: int, min_steps: int,
          ratio: float | None = None) -> list[TrainingPlan]:
    """Rung `i`: a sparse run of `size` with the parent's schedule and D/N_avg (or `ratio`), and its dense partner
    at its N_avg."""
    n_layer, d_model, n_head = size
    parent, convention = plan.schedule, plan.derived.n_convention
    parent_ratio = plan.budget.tokens / plan.derived.n_avg
    ratio = ratio or parent_ratio
    model = ModelShape(n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=3 * d_model, vocab=BYTE_VOCAB)
    fixed, prunable = model.n_params(convention)
    n_avg = parent.schedule().n_avg(fixed, prunable)
    steps = max(min_steps, int(round(ratio * n_avg / (seq_len * batch_size))))
    every = None
    if parent.shape == "geometric" and parent.every:
        n_events = int(np.floor((parent.end - parent.start) / parent.every + 1e-9)) + 1
        every = max(1, int(round((parent.end - parent.start) * steps / max(n_events - 1, 1))))
    schedule = resolve_schedule(model, steps, parent.shape, parent.final_sparsity, "tokens", parent.start,
                                parent.end, every_steps=every, granularity=parent.granularity,
                                pattern=parent.pattern) if parent.shape != "piecewise" else \
        PlanSchedule(**{**parent.model_dump(), "start_step": None, "end_step": None, "every_steps": None})
    budget = cpu_budget(steps, batch_size, seq_len)
    notes = [f"validation rung {i} of {plan.name}: D/N_avg = {budget.tokens / n_avg:.1f} "
             f"(parent {parent_ratio:.1f})"]
    run = RunConfig(seed=plan.run.seed, eval_every=max(1, steps // 5), eval_batches=64, val_fraction=VAL_FRACTION)
    pair = f"{plan.name}-r{i}"
    sparse = make_plan(model, schedule, budget, convention, name=f"{pair}-sparse", run=run, notes=notes,
                       pair=Pair(id=pair, role="sparse"))
    dense_model = dense_partner_shape(n_layer, n_head, sparse.derived.n_avg, d_model, convention)
    dense_sched = resolve_schedule(dense_model, steps, "dense", 0.0, "tokens", 0.0, 0.0)
    dense = make_plan(dense_model, dense_sched, budget, convention, name=f"{pair}-dense", run=run,
                      notes=notes + [f"dense partner of {sparse.name} at matched N_avg"],
                      pair=Pair(id=pair, role="dense_n_avg"))
    return [sparse, dense]


def rung_cpu_minutes(rung: list[TrainingPlan]) -> float:
    """Estimated one-thread CPU minutes of a rung's runs (masked sparse training costs dense GEMMs)."""
    return sum(cpu_seconds(p.model, p.budget.tokens, p.budget.seq_len) for p in rung) / 60


def scale_down(plan: TrainingPlan, rungs: int = 3, seq_len: int = SEQ_LEN, batch_size: int = BATCH_SIZE,
               budget_minutes: float = 30.0, min_steps: int = 100) -> list[TrainingPlan]:
    """The validation ladder of `plan`: `rungs` (sparse, dense partner) pairs of growing size.

    Every rung keeps the parent's tokens per N_avg, its schedule's shape, token-fraction window and number of pruning
    events. The sizes are the largest `rungs` consecutive ones of LADDER_SIZES whose one-thread CPU estimate
    (`planner.laptop`) fits `budget_minutes` in all; each rung's notes state its estimate, and each plan carries the
    laptop law's predicted loss.
    """
    if not 1 <= rungs <= len(LADDER_SIZES):
        raise ValueError(f"rungs must be within 1..{len(LADDER_SIZES)}")
    built = [rung(plan, i, size, seq_len, batch_size, min_steps) for i, size in enumerate(LADDER_SIZES)]
    minutes = [rung_cpu_minutes(r) for r in built]
    fits = [k for k in range(len(built) - rungs + 1) if sum(minutes[k:k + rungs]) <= budget_minutes]
    if not fits:
        raise PlannerInputError(f"--budget-minutes {budget_minutes:g}: the smallest {rungs}-rung ladder of "
                                f"{plan.name} needs about {sum(minutes[:rungs]):.1f} CPU minutes")
    k = fits[-1]
    ladder = []
    for i, m in enumerate(minutes[k:k + rungs]):  # renumbered from 0: rung i of the chosen ladder
        for p in rung(plan, i, LADDER_SIZES[k + i], seq_len, batch_size, min_steps):
            ladder.append(with_prediction(p.model_copy(update={"notes": p.notes + [
                f"CPU estimate of this rung (both runs, one thread): {m:.1f} min"]})))
    return ladder


def with_prediction(plan: TrainingPlan) -> TrainingPlan:
    """The plan with the laptop law's predicted loss (when its recipe is the law's), else unchanged."""
    prediction = predict_plan(plan)
    return plan if prediction is None else plan.model_copy(update={"prediction": prediction,
                                                                   "law": load_laptop_law().law})
