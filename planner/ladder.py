"""Small plans that run on a laptop CPU: the `tiny` preset and the scaled-down validation ladder of a plan.

The ladder keeps what the unified law is about — the schedule's shape, window and final sparsity — and shrinks the
model and the token budget. Each sparse rung gets a dense partner whose parameter count equals the sparse rung's
N_avg and that trains on the same tokens, as the seed's released ~1B pairs do: if N_avg is the right quantity, the
two losses match.
"""
from __future__ import annotations

import numpy as np

from planner.plan import Budget, Pair, PlanSchedule, RunConfig, TrainingPlan, make_plan, resolve_schedule
from planner.shapes import ModelShape

BYTE_VOCAB = 256
# (n_layer, d_model, n_head) of the rungs, smallest first; SwiGLU with d_ff = 3 * d_model.
RUNGS = ((2, 64, 4), (3, 96, 4), (4, 128, 4))


def _budget(steps: int, batch_size: int, seq_len: int, lr: float = 3e-3) -> Budget:
    return Budget(tokens=steps * batch_size * seq_len, seq_len=seq_len, batch_size=batch_size, steps=steps, lr=lr,
                  warmup_steps=max(1, steps // 20))


def tiny_plan(final_sparsity: float = 0.5, steps: int = 200, seed: int = 0) -> TrainingPlan:
    """A sparse plan that trains in seconds on one CPU core: d_model 64, the seed's 25%->75%-of-compute window."""
    model = ModelShape(n_layer=2, d_model=64, n_head=4, d_ff=192, vocab=BYTE_VOCAB)
    schedule = resolve_schedule(model, steps, "geometric", final_sparsity, "compute", 0.25, 0.75,
                                every_steps=max(1, steps // 50))
    return make_plan(model, schedule, _budget(steps, 16, 64), name="tiny",
                     run=RunConfig(seed=seed, eval_every=max(1, steps // 4), eval_batches=4))


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


def scale_down(plan: TrainingPlan, rungs: int = 3, seq_len: int = 128, batch_size: int = 16,
               max_tokens: int = 2_000_000, min_steps: int = 100) -> list[TrainingPlan]:
    """The validation ladder of `plan`: `rungs` (sparse, dense partner) pairs of growing size.

    Tokens per rung keep the plan's D/N_avg when that fits under `max_tokens` (CPU budget); otherwise they are capped,
    which the rung's notes say. The pruning window keeps the plan's token fractions and its number of events.
    """
    if not 1 <= rungs <= len(RUNGS):
        raise ValueError(f"rungs must be within 1..{len(RUNGS)}")
    parent = plan.schedule
    convention = plan.derived.n_convention
    ratio = plan.budget.tokens / plan.derived.n_avg
    n_events = None
    if parent.shape == "geometric" and parent.every:
        n_events = int(np.floor((parent.end - parent.start) / parent.every + 1e-9)) + 1
    ladder = []
    for i, (n_layer, d_model, n_head) in enumerate(RUNGS[:rungs]):
        model = ModelShape(n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=3 * d_model, vocab=BYTE_VOCAB)
        fixed, prunable = model.n_params(convention)
        n_avg = parent.schedule().n_avg(fixed, prunable)
        wanted = ratio * n_avg
        steps = max(min_steps, int(min(wanted, max_tokens) // (seq_len * batch_size)))
        every = None
        if n_events is not None:
            window_steps = (parent.end - parent.start) * steps
            every = max(1, int(round(window_steps / max(n_events - 1, 1))))
        schedule = resolve_schedule(model, steps, parent.shape, parent.final_sparsity, "tokens", parent.start,
                                    parent.end, every_steps=every, granularity=parent.granularity,
                                    pattern=parent.pattern) if parent.shape != "piecewise" else \
            PlanSchedule(**{**parent.model_dump(), "start_step": None, "end_step": None, "every_steps": None})
        budget = _budget(steps, batch_size, seq_len)
        notes = [f"validation rung {i} of {plan.name}: D/N_avg = {budget.tokens / n_avg:.1f} "
                 f"(parent {ratio:.1f}{', capped for CPU' if wanted > max_tokens else ''})"]
        run = RunConfig(seed=plan.run.seed, eval_every=max(1, steps // 5))
        pair = f"{plan.name}-r{i}"
        sparse = make_plan(model, schedule, budget, convention, name=f"{pair}-sparse", run=run, notes=notes,
                           pair=Pair(id=pair, role="sparse"))
        dense_model = dense_partner_shape(n_layer, n_head, sparse.derived.n_avg, d_model, convention)
        dense_sched = resolve_schedule(dense_model, steps, "dense", 0.0, "tokens", 0.0, 0.0)
        dense = make_plan(dense_model, dense_sched, budget, convention, name=f"{pair}-dense", run=run,
                          notes=notes + [f"dense partner of {sparse.name} at matched N_avg"],
                          pair=Pair(id=pair, role="dense_n_avg"))
        ladder += [sparse, dense]
    return ladder
