"""The runs of each study preset: sparse/dense pairs in the seed's design on seed-like proportions, repeated seeds
for power, the ablations that test a cause, and a dense ladder of the same model family for the base law. A preset is
plain data; `design(preset)` turns it into plans.

Every run uses the laptop recipe of `planner.ladder` (byte-level, the bundled corpus, 16 x 128 tokens a step, AdamW
at 3e-3 with cosine decay, the last 10% of the corpus held out). Sparse runs prune with the seed's geometric schedule
over 25% -> 75% of training compute with one global magnitude threshold (LM head included). Each pair's dense partner
keeps the sparse run's depth and d_model and reaches its N_avg by d_ff (`planner.ladder.partner_shapes`); it trains
on the same tokens with the same seed, so both draw the same training windows and are scored on the same validation
windows. At the top sparsity the extras: a partner at N_final, a partner at N_avg whose width changes instead
(the family's MLP ratio), per-layer magnitude, and the LM head kept dense with its own partner.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from planner.laptop import cpu_seconds
from planner.ladder import BATCH_SIZE, BYTE_VOCAB, SEQ_LEN, VAL_FRACTION, cpu_budget, partner_shapes
from planner.plan import Pair, RunConfig, TrainingPlan, make_plan, resolve_schedule
from planner.shapes import ModelShape

WINDOW = (0.25, 0.75)  # the seed's pruning window, fractions of training compute


@dataclass(frozen=True)
class Preset:
    name: str
    sizes: tuple[tuple[int, int, int], ...]  # dense ladder (n_layer, d_model, n_head); d_ff = mlp_ratio d_model
    ladder_tokens: tuple[float, ...]  # token budgets every ladder size trains on
    pair_size: tuple[int, int, int]  # the sparse runs' shape
    sparsities: tuple[float, ...]
    pair_ratio: float  # tokens per N_avg of the sparse run; its partners train on the same tokens
    seeds: dict[float, tuple[int, ...]] = field(default_factory=dict)  # per sparsity; default seed 0 only
    extras_seeds: tuple[int, ...] = (0,)  # the top sparsity's extra partners and ablations
    mlp_ratio: int = 4
    cubic: tuple[float, ...] = ()  # sparsities that also get a cubic schedule
    window_ablation: bool = False  # a shorter window (longer recovery) at the top sparsity
    smoke: bool = False  # a pipeline check: too small and short for any claim about the law
    seq_len: int = SEQ_LEN
    batch_size: int = BATCH_SIZE
    eval_batches: int = 384  # x 16 x 128 tokens; the old quick study measured a standard error of 0.0024 nats at 384
    min_steps: int = 20


PRESETS = {
    "smoke": Preset("smoke", sizes=((4, 8, 2), (4, 16, 2), (4, 24, 2)), ladder_tokens=(4e3, 8e3),
                    pair_size=(4, 24, 2), sparsities=(0.5, 0.8), pair_ratio=0.5, seeds={0.8: (0, 1)}, smoke=True,
                    seq_len=32, batch_size=8, eval_batches=8),
    # L6-d32 with a 4x SwiGLU MLP: 7.7% of the prunable weights in the head (llama2-1b 5.75%, llama2-70m 12%); the
    # ladder spans the pairs' N_avg (about 60k-100k) and tokens (6-10M); at most 4 epochs of the 3.6M training bytes.
    # Five seeds at 60% and 80%: what the paired-gap noise of the first three (sd 0.0144 nats, 8 dof) asks for a
    # +-1% half-width; the extras keep three.
    "quick": Preset("quick", sizes=((6, 16, 4), (6, 24, 4), (6, 32, 4), (6, 40, 4)),
                    ladder_tokens=(3.6e6, 7.2e6, 14.4e6), pair_size=(6, 32, 4), sparsities=(0.2, 0.4, 0.6, 0.8),
                    pair_ratio=100, seeds={0.6: (0, 1, 2, 3, 4), 0.8: (0, 1, 2, 3, 4)}, extras_seeds=(0, 1, 2)),
    "full": Preset("full", sizes=((6, 16, 4), (6, 24, 4), (6, 32, 4), (6, 40, 4), (6, 48, 4)),
                   ladder_tokens=(3.6e6, 7.2e6, 14.4e6), pair_size=(6, 32, 4), sparsities=(0.2, 0.4, 0.6, 0.8),
                   pair_ratio=100, seeds={s: (0, 1, 2, 3, 4) for s in (0.2, 0.4, 0.6, 0.8)},
                   extras_seeds=(0, 1, 2), cubic=(0.5, 0.8), window_ablation=True, eval_batches=768),
}


@dataclass(frozen=True)
class StudyRun:
    plan: TrainingPlan
    kind: str  # ladder | pair | ablation
    group: str  # the model size it belongs to, for leave-one-size-out
    variant: str = ""  # what an ablation or extra schedule changes
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.plan.name


def shape(p: Preset, n_layer: int, d_model: int, n_head: int) -> ModelShape:
    return ModelShape(n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=p.mlp_ratio * d_model, vocab=BYTE_VOCAB)


def size_label(n_layer: int, d_model: int) -> str:
    return f"L{n_layer}d{d_model}"


def _steps(p: Preset, tokens: float) -> int:
    return max(p.min_steps, int(round(tokens / (p.seq_len * p.batch_size))))


def _plan(p: Preset, name: str, model: ModelShape, steps: int, seed: int, sched: str = "dense",
          sparsity: float = 0.0, pair: Pair | None = None, window=WINDOW, **mask) -> TrainingPlan:
    if sched == "dense":
        schedule = resolve_schedule(model, steps, "dense", 0.0, "tokens", 0.0, 0.0)
    else:
        # Events every 1% of the steps (at most 100), fixed here: the plans must stay those the study started with,
        # whatever the planner's default frequency (a resumed study refuses changed plans).
        mask.setdefault("every_steps", max(1, min(100, steps // 100)) if sched == "geometric" else None)
        schedule = resolve_schedule(model, steps, sched, sparsity, "compute", *window, **mask)
    run = RunConfig(seed=seed, eval_every=steps, eval_batches=p.eval_batches, val_fraction=VAL_FRACTION)
    return make_plan(model, schedule, cpu_budget(steps, p.batch_size, p.seq_len), name=name, run=run, pair=pair)


def _pair(p: Preset, sparsity: float, seed: int, sched: str = "geometric", variant: str = "", window=WINDOW,
          extras: tuple[str, ...] = (), partners: bool = True, **mask) -> list[StudyRun]:
    """A sparse run and its dense partner at its N_avg (same depth and d_model, d_ff sized), all on pair_ratio x
    N_avg tokens with one seed; `extras` adds partners at N_final ('final') and at N_avg with the width changed
    ('width'). Without `partners`, only the sparse run, in the pair of the plain geometric run (same N_avg and
    tokens when the mask granularity is all that differs)."""
    model, group = shape(p, *p.pair_size), size_label(*p.pair_size[:2])
    tag = f"{variant}-" if variant else ("" if sched == "geometric" else f"{sched}-")
    pid = f"{p.name}-{group}-{tag if partners else ''}s{round(100 * sparsity)}" + (f"-seed{seed}" if seed else "")
    probe = _plan(p, "probe", model, 1000, seed, sched, sparsity, window=window, **mask)
    steps = _steps(p, p.pair_ratio * probe.derived.n_avg)
    kind = "ablation" if variant else "pair"
    name = f"{pid}-sparse" if partners else f"{pid}-{tag}sparse"
    sparse = _plan(p, name, model, steps, seed, sched, sparsity, Pair(id=pid, role="sparse"), window, **mask)
    out = [StudyRun(sparse, kind, group, variant or sched)]
    if not partners:
        return out
    d = sparse.derived
    shapes, missing = partner_shapes(model, d.n_avg, d.n_final, d.n_convention, extras)
    if missing:  # a study without a partner it was designed with would not answer its question
        raise ValueError(f"{pid}: " + "; ".join(missing))
    for suffix, role, dense_model, _ in shapes:
        dense = _plan(p, f"{pid}-{suffix}", dense_model, steps, seed, pair=Pair(id=pid, role=role))
        out.append(StudyRun(dense, kind, group, variant or sched))
    return out


def _ladder(p: Preset) -> list[StudyRun]:
    runs = []
    for n_layer, d_model, n_head in p.sizes:
        model, group = shape(p, n_layer, d_model, n_head), size_label(n_layer, d_model)
        for tokens in p.ladder_tokens:
            name = f"{p.name}-{group}-T{tokens / 1e6:g}M" if tokens >= 1e6 else f"{p.name}-{group}-T{tokens:g}"
            runs.append(StudyRun(_plan(p, name, model, _steps(p, tokens), 0), "ladder", group))
    return runs


def design(preset: str | Preset) -> list[StudyRun]:
    """All runs of a preset, in the order they are launched: the pairs first (a study cut short still has its pair
    gaps; seed 0 of every sparsity before the repeats), then the ablations, then the ladder; longest first within
    each (shortest finishing time on K jobs)."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    top = max(p.sparsities)
    runs = []
    for s in p.sparsities:
        for seed in p.seeds.get(s, (0,)):
            runs += _pair(p, s, seed, extras=("final", "width") if s == top and seed in p.extras_seeds else ())
    for seed in p.extras_seeds:
        runs += _pair(p, top, seed, variant="per-layer", partners=False, granularity="per_layer")
        runs += _pair(p, top, seed, variant="head-dense", prune_head=False)
        if p.window_ablation:
            runs += _pair(p, top, seed, variant="window-50", window=(0.25, 0.5))
    for s in p.cubic:
        runs += _pair(p, s, 0, sched="cubic")
    runs += _ladder(p)
    order = {"pair": 0, "ablation": 1, "ladder": 2}
    return sorted(runs, key=lambda r: (order[r.kind], r.plan.run.seed > 0,
                                       -cpu_seconds(r.plan.model, r.plan.budget.tokens, r.plan.budget.seq_len)))
