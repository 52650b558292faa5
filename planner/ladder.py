"""Small plans that run on a laptop CPU: the `tiny` preset and the scaled-down validation ladder of a plan.

The ladder keeps what the unified law is about — the schedule's shape, window and final sparsity, the tokens per
N_avg — and the plan's proportions that decide where one global magnitude threshold takes its weights: the LM head's
share of the prunable weights (within 2 points where the byte vocabulary allows, else the closest), the MLP ratio
and a depth of at least 4 layers. Each sparse rung gets a dense partner of the same depth and d_model whose d_ff
brings its parameter count to the sparse rung's N_avg, trained on the same tokens with the same seed (the same data
order), as the seed's released ~1B pairs do: if N_avg is the right quantity, the two losses match.
"""
from __future__ import annotations

import numpy as np

from planner.errors import PlannerInputError
from planner.laptop import cpu_seconds, load_laptop_law, predict_plan
from planner.plan import Budget, Pair, PlanSchedule, RunConfig, TrainingPlan, make_plan, resolve_schedule
from planner.preflight import BYTE_VOCAB
from planner.shapes import ModelShape
from planner.validation.verdict import detectable_gap, gap_noise, seeds_needed

# The laptop recipe shared by the tiny preset, the ladder and the validation study (train_backend.study), so the
# laptop law fitted on the study predicts the others: 16 x 128 tokens a step, the last 10% of the corpus held out.
SEQ_LEN, BATCH_SIZE, VAL_FRACTION = 128, 16, 0.1
MIN_DEPTH = 4
SHARE_TOLERANCE = 0.02  # head share within 2 percentage points of the parent's
RUNG_GROWTH = 1.4  # successive rungs grow by at least this factor in parameters
RUNG_WIDTHS = tuple(range(16, 129, 8)) + (160, 192, 224, 256, 320, 384)
RUNG_DEPTHS = tuple(range(MIN_DEPTH, 25))


def cpu_budget(steps: int, batch_size: int = BATCH_SIZE, seq_len: int = SEQ_LEN, lr: float = 3e-3) -> Budget:
    return Budget(tokens=steps * batch_size * seq_len, seq_len=seq_len, batch_size=batch_size, steps=steps, lr=lr,
                  warmup_steps=max(1, steps // 20))


def tiny_plan(final_sparsity: float = 0.5, steps: int = 100, seed: int = 0) -> TrainingPlan:
    """A sparse plan that trains in seconds on one CPU core: d_model 64, the seed's 25%->75%-of-compute window. A
    smoke run, labelled so in its notes: far too few tokens per N_avg to validate a law."""
    model = ModelShape(n_layer=2, d_model=64, n_head=4, d_ff=192, vocab=BYTE_VOCAB)
    schedule = resolve_schedule(model, steps, "geometric", final_sparsity, "compute", 0.25, 0.75,
                                every_steps=max(1, steps // 50))
    run = RunConfig(seed=seed, eval_every=max(1, steps // 4), eval_batches=32, val_fraction=VAL_FRACTION)
    plan = make_plan(model, schedule, cpu_budget(steps), name="tiny", run=run)
    return with_prediction(plan.model_copy(update={"notes": [
        f"smoke run: checks that training, pruning and evaluation work end to end; at "
        f"{plan.budget.tokens / plan.derived.n_avg:.1f} tokens per N_avg it makes no validation claim (validate with "
        f"a plan's --ladder or `python -m train_backend study --preset quick`)"]}))


def head_share(model: ModelShape, convention: str = "total", prune_head: bool = True) -> float:
    """The LM head's share of the prunable weights: what one global magnitude threshold trades against the layers
    (0 when the head is tied or kept dense)."""
    return 0.0 if model.tied_embeddings or not prune_head else model.embedding / model.n_params(convention)[1]


def mlp_ratio(model: ModelShape) -> float:
    return model.d_ff / model.d_model


def ff_partner_shape(model: ModelShape, target: float, convention: str = "total") -> ModelShape:
    """The dense partner that keeps `model`'s depth, width and heads and reaches N = `target` by d_ff alone (the
    closest d_ff: within half of one d_ff unit's parameters), so the pair differs only in the MLPs' width."""
    fixed, prunable = model.n_params(convention)
    per_unit = 3 * model.d_model * model.n_layer if model.mlp == "swiglu" else 2 * model.d_model * model.n_layer
    d_ff = int(round(model.d_ff + (target - fixed - prunable) / per_unit))
    if d_ff < 1:
        raise ValueError(f"no d_ff of L{model.n_layer}-d{model.d_model} reaches N = {target:.0f}: the attention, "
                         f"head and embedding alone hold {sum(model.n_params(convention)) - per_unit * model.d_ff:.0f}")
    return model.model_copy(update={"d_ff": d_ff})


def dense_partner_shape(n_layer: int, n_head: int, target: float, d_model_max: int, convention: str = "total",
                        vocab: int = BYTE_VOCAB, ratio: float = 3.0) -> ModelShape:
    """The dense shape of `n_layer` layers whose parameter count matches `target` (an N_avg) within 0.5%, width free.

    d_model runs over multiples of 4 * n_head up to d_model_max and d_ff absorbs the rest of the count; among the
    shapes that match, the one whose MLP ratio is closest to `ratio` wins.
    """
    best = None
    for d_model in range(4 * n_head, d_model_max + 1, 4 * n_head):
        probe = ModelShape(n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=1, vocab=vocab)
        try:
            shape = ff_partner_shape(probe, target, convention)
        except ValueError:
            continue
        if abs(sum(shape.n_params(convention)) - target) > 5e-3 * target:
            continue
        oddness = abs(np.log(mlp_ratio(shape) / ratio))
        if best is None or oddness < best[0]:
            best = (oddness, shape)
    if best is None:
        raise ValueError(f"no dense shape of {n_layer} layers reaches N = {target:.0f}")
    return best[1]


def rung_shapes(parent: ModelShape, convention: str = "total", prune_head: bool = True
                ) -> list[tuple[ModelShape, bool]]:
    """Byte-level shapes of growing size (each >= RUNG_GROWTH x the last) with the parent's MLP ratio, MLP kind and
    head tying, depth >= MIN_DEPTH, each paired with whether its LM-head share of the prunable weights is within
    SHARE_TOLERANCE of the parent's. Shapes within it come first, the fastest on the CPU (fewest layers) among those
    of a size; past the largest such shape, the closest in head share (the byte vocabulary cannot match it there)."""
    target, ratio = head_share(parent, convention, prune_head), mlp_ratio(parent)
    cands = []
    for d_model in RUNG_WIDTHS:
        n_head = 4 if d_model < 256 else 8
        for n_layer in RUNG_DEPTHS:
            m = ModelShape(n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=max(1, round(ratio * d_model)),
                           vocab=BYTE_VOCAB, tied_embeddings=parent.tied_embeddings, mlp=parent.mlp)
            off = abs(head_share(m, convention, prune_head) - target)
            cands.append((m.total, off <= SHARE_TOLERANCE + 1e-12, off, cpu_seconds(m, 1.0, SEQ_LEN), m))
    within = [c for c in cands if c[1]]
    out = _chain(within, key=lambda c: (c[3], c[2]))
    last = out[-1][0] if out else 0
    out += _chain([c for c in cands if not c[1] and c[0] >= last * RUNG_GROWTH], key=lambda c: (c[2], c[3]))
    return [(c[4], c[1]) for c in out]


def _chain(cands: list, key) -> list:
    """Candidates growing by RUNG_GROWTH: from the smallest, the best by `key` among those under RUNG_GROWTH x the
    smallest still allowed."""
    cands, out = sorted(cands, key=lambda c: c[0]), []
    while cands:
        best = min([c for c in cands if c[0] < cands[0][0] * RUNG_GROWTH], key=key)
        out.append(best)
        cands = [c for c in cands if c[0] >= best[0] * RUNG_GROWTH]
    return out


def narrow_partner_shape(model: ModelShape, target: float, convention: str = "total", d_model_max: int | None = None
                         ) -> ModelShape | None:
    """A dense shape of `model`'s depth and MLP ratio at N = `target` with the width free (fewer heads when even the
    narrowest width with `model`'s heads holds too much); None when no width reaches it."""
    n_head = model.n_head
    while n_head >= 1:
        try:
            return dense_partner_shape(model.n_layer, n_head, target, d_model_max or model.d_model, convention,
                                       model.vocab, mlp_ratio(model))
        except ValueError:
            n_head //= 2
    return None


# The extra dense partners a sparse run may get: (extra, name suffix, pair role, widest d_model as a multiple of the
# sparse run's, why). N_final is below what the sparse run's width holds, so its partner can only be narrower.
EXTRA_PARTNERS = (
    ("final", "dense-final", "dense_n_final", 1,
     "at N_final (the contrast: N_avg and N_final predict different losses)"),
    ("width", "dense-width", "dense_n_avg_width", 2, "at N_avg with the width changed instead"),
)


def partner_shapes(model: ModelShape, n_avg: float, n_final: float, convention: str = "total",
                   extras: tuple[str, ...] = ()) -> tuple[list[tuple[str, str, ModelShape, str]], list[str]]:
    """The dense partners of a sparse run of `model`, as (name suffix, pair role, shape, why), and a note for each
    requested extra partner that no width reaches. The ladder and the validation study both build their pairs here.

    First the partner at N_avg: same depth and d_model with d_ff sized (`ff_partner_shape`), so the pair differs only
    in the MLPs' width; a narrower model when N_avg is below what the width holds without an MLP. Then the `extras`
    (EXTRA_PARTNERS order): 'final' at N_final, 'width' at N_avg with the width changed instead."""
    try:
        partners = [("dense", "dense_n_avg", ff_partner_shape(model, n_avg, convention),
                     "same depth and d_model, d_ff sized to N_avg")]
    except ValueError:  # attention, head and embedding alone exceed N_avg: only a narrower model reaches it
        narrow = narrow_partner_shape(model, n_avg, convention)
        if narrow is None:
            raise ValueError(f"no dense partner of L{model.n_layer}-d{model.d_model} reaches N_avg = {n_avg:,.0f}")
        partners = [("dense", "dense_n_avg", narrow,
                     "N_avg is below what this width holds without an MLP: the width changes")]
    missing = []
    for extra, suffix, role, wider, why in EXTRA_PARTNERS:
        if extra not in extras:
            continue
        target = n_final if extra == "final" else n_avg
        shape = narrow_partner_shape(model, target, convention, wider * model.d_model)
        if shape is None:
            missing.append(f"no dense partner {why.split(' (')[0]}: no width of {model.n_layer} layers reaches "
                           f"N = {target:,.0f}")
        else:
            partners.append((suffix, role, shape, why))
    return partners, missing


def proportions(model: ModelShape, convention: str = "total", prune_head: bool = True) -> dict[str, float]:
    return {"head share": head_share(model, convention, prune_head), "MLP ratio": mlp_ratio(model),
            "depth": model.n_layer}


def proportion_notes(model: ModelShape, parent: ModelShape, convention: str, prune_head: bool, matched: bool
                     ) -> list[str]:
    """Each proportion beside the parent's; a head share the byte vocabulary cannot match is said so."""
    mine, theirs = proportions(model, convention, prune_head), proportions(parent, convention, prune_head)
    note = (f"LM head share of the prunable weights {mine['head share']:.2%} (parent {theirs['head share']:.2%}"
            + ("" if matched else f"; the closest a {BYTE_VOCAB}-token vocabulary allows at this size with "
                                  f">= {MIN_DEPTH} layers") + ")")
    return [note, f"MLP ratio d_ff/d_model {mine['MLP ratio']:.2f} (parent {theirs['MLP ratio']:.2f})",
            f"depth {mine['depth']} layers (parent {theirs['depth']})"]


def ladder_shapes(plan: TrainingPlan) -> list[tuple[ModelShape, bool]]:
    """`rung_shapes` of a plan: its model, N convention and head pruning."""
    return rung_shapes(plan.model, plan.derived.n_convention, plan.schedule.prune_head)


def rung(plan: TrainingPlan, i: int, model: ModelShape, matched: bool, seq_len: int, batch_size: int,
         min_steps: int, extras: tuple[str, ...] = (), ratio: float | None = None) -> list[TrainingPlan]:
    """Rung `i`: a sparse run of `model` with the parent's schedule and D/N_avg (or `ratio`), its dense partner at
    its N_avg (same depth and d_model; d_ff sized), and the `extras` partners: 'final' (at N_final) and 'width' (at
    N_avg with the width changed instead)."""
    parent, convention = plan.schedule, plan.derived.n_convention
    parent_ratio = plan.budget.tokens / plan.derived.n_avg
    ratio = ratio or parent_ratio
    fixed, prunable = model.n_params(convention, parent.prune_head)
    n_avg = parent.schedule().n_avg(fixed, prunable)
    steps = max(min_steps, int(round(ratio * n_avg / (seq_len * batch_size))))
    every = None
    if parent.shape == "geometric" and parent.every:
        n_events = int(np.floor((parent.end - parent.start) / parent.every + 1e-9)) + 1
        every = max(1, int(round((parent.end - parent.start) * steps / max(n_events - 1, 1))))
    mask = {"granularity": parent.granularity, "pattern": parent.pattern, "prune_head": parent.prune_head}
    schedule = resolve_schedule(model, steps, parent.shape, parent.final_sparsity, "tokens", parent.start,
                                parent.end, every_steps=every, **mask) if parent.shape != "piecewise" else \
        PlanSchedule(**{**parent.model_dump(), "start_step": None, "end_step": None, "every_steps": None})
    budget = cpu_budget(steps, batch_size, seq_len)
    notes = [f"validation rung {i} of {plan.name}: D/N_avg = {budget.tokens / n_avg:.1f} (parent {parent_ratio:.1f})"]
    notes += proportion_notes(model, plan.model, convention, parent.prune_head, matched)
    run = RunConfig(seed=plan.run.seed, eval_every=max(1, steps // 5), eval_batches=64, val_fraction=VAL_FRACTION)
    pair = f"{plan.name}-r{i}"
    sparse = make_plan(model, schedule, budget, convention, name=f"{pair}-sparse", run=run, notes=notes,
                       pair=Pair(id=pair, role="sparse"))
    d = sparse.derived
    partners, missing = partner_shapes(model, d.n_avg, d.n_final, convention, extras)
    if missing:  # the plan holds a copy of `notes`: appending to the list would not reach it
        sparse = sparse.model_copy(update={"notes": sparse.notes + missing})
    out = [sparse]
    for suffix, role, shape, why in partners:
        dense_sched = resolve_schedule(shape, steps, "dense", 0.0, "tokens", 0.0, 0.0)
        out.append(make_plan(shape, dense_sched, budget, convention, name=f"{pair}-{suffix}", run=run,
                             notes=notes[:1] + [f"dense partner of {sparse.name} {why}: L{shape.n_layer}-"
                                                f"d{shape.d_model}-ff{shape.d_ff}, N = {shape.total:,}"],
                             pair=Pair(id=pair, role=role)))
    return out


def rung_cpu_minutes(rung: list[TrainingPlan]) -> float:
    """Estimated one-thread CPU minutes of a rung's runs (masked sparse training costs dense GEMMs)."""
    return sum(cpu_seconds(p.model, p.budget.tokens, p.budget.seq_len) for p in rung) / 60


def scale_down(plan: TrainingPlan, rungs: int = 3, seq_len: int = SEQ_LEN, batch_size: int = BATCH_SIZE,
               budget_minutes: float = 30.0, min_steps: int = 100, extras: tuple[str, ...] = ()
               ) -> list[TrainingPlan]:
    """The validation ladder of `plan`: `rungs` pairs (a sparse run, its dense partner, and the `extras` partners:
    'final' at N_final, 'width' at N_avg with the width changed) of growing size.

    Every rung keeps the parent's tokens per N_avg, its schedule's shape, token-fraction window and number of pruning
    events, and its proportions (`rung_shapes`). The sizes are the largest `rungs` consecutive ones whose one-thread
    CPU estimate (`planner.laptop`) fits `budget_minutes` in all; each rung's notes state its proportions and its
    estimate, and each plan carries the laptop law's predicted loss.
    """
    sizes = ladder_shapes(plan)
    if not 1 <= rungs <= len(sizes):
        raise ValueError(f"rungs must be within 1..{len(sizes)}")
    built = [rung(plan, i, m, ok, seq_len, batch_size, min_steps, extras) for i, (m, ok) in enumerate(sizes)]
    minutes = [rung_cpu_minutes(r) for r in built]
    fits = [k for k in range(len(built) - rungs + 1) if sum(minutes[k:k + rungs]) <= budget_minutes]
    if not fits:
        raise PlannerInputError(f"--budget-minutes {budget_minutes:g}: the smallest {rungs}-rung ladder of "
                                f"{plan.name} needs about {sum(minutes[:rungs]):.1f} CPU minutes")
    k = fits[-1]
    ladder = []
    for i, m in enumerate(minutes[k:k + rungs]):  # renumbered from 0: rung i of the chosen ladder
        for p in rung(plan, i, *sizes[k + i], seq_len, batch_size, min_steps, extras):
            p = with_prediction(p)
            ladder.append(p.model_copy(update={"notes": p.notes + power_notes(p) + [
                f"CPU estimate of this rung ({len(extras) + 2} runs, one thread): {m:.1f} min"]}))
    return ladder


def power_notes(plan: TrainingPlan) -> list[str]:
    """For a sparse rung: the seeds a +-1% verdict on its pair needs at the laptop law's run-to-run noise (two
    unpaired runs' worth: a conservative bound, as shared data order makes the paired gap quieter)."""
    noise = gap_noise(law=load_laptop_law())
    if plan.pair is None or plan.pair.role != "sparse" or plan.prediction is None or not noise["dof"]:
        return []
    sd, dof, loss = noise["sd"], noise["dof"], plan.prediction.loss
    need = seeds_needed(sd, dof, loss)
    return [f"power: a +-1% verdict on this pair needs {need:.0f} seeds at the laptop law's run-to-run noise "
            f"(gap sd {sd:.3f} nats, {dof} dof); 3 seeds detect a gap of {detectable_gap(sd, dof, 3):.3f} nats "
            f"({detectable_gap(sd, dof, 3) / loss:.1%} of loss) with 80% power"]


def with_prediction(plan: TrainingPlan) -> TrainingPlan:
    """The plan with the laptop law's predicted loss (when its recipe is the law's), else unchanged."""
    prediction = predict_plan(plan)
    return plan if prediction is None else plan.model_copy(update={"prediction": prediction,
                                                                   "law": load_laptop_law().law})
