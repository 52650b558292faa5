"""The runs of each study preset: a dense ladder for the base law, sparse/dense pairs in the seed's design, repeated
seeds for run-to-run noise, and (full) the ablations. A preset is plain data; `design(preset)` turns it into plans.

Every run uses the laptop recipe of `planner.ladder` (byte-level, the bundled corpus, 16 x 128 tokens a step,
AdamW at 3e-3 with cosine decay, the last 10% of the corpus held out) so that the law fitted here predicts the tiny
preset and the scaled-down ladders. Sparse runs prune with the seed's geometric schedule over 25% -> 75% of training
compute; each dense partner is sized by `planner.ladder.dense_partner_shape` to the sparse run's N_avg (or N_final)
and trains on the same tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from planner.laptop import cpu_seconds
from planner.ladder import BATCH_SIZE, BYTE_VOCAB, SEQ_LEN, VAL_FRACTION, cpu_budget, dense_partner_shape, tiny_plan
from planner.plan import Pair, RunConfig, TrainingPlan, make_plan, resolve_schedule
from planner.shapes import ModelShape

WINDOW = (0.25, 0.75)  # the seed's pruning window, fractions of training compute


@dataclass(frozen=True)
class Preset:
    name: str
    sizes: tuple[tuple[int, int, int], ...]  # dense ladder (n_layer, d_model, n_head); d_ff = 3 d_model
    ladder_ratios: tuple[float, ...]  # tokens per parameter of the dense ladder
    pair_sizes: tuple[tuple[int, int, int], ...]  # the sparse runs' shapes
    sparsities: tuple[float, ...]
    pair_ratio: float  # tokens per N_avg of the sparse run; its partners train on the same tokens
    pair_seeds: tuple[int, ...] = (0,)  # of the first pair size; further sizes train seed 0 only
    noise_seeds: tuple[int, ...] = (1, 2)  # extra seeds of the smallest ladder run at the lowest ratio
    tiny_seeds: tuple[int, ...] = (0, 1, 2)  # the tiny preset itself, trained as shipped
    n_final_partner: bool = False
    cubic: tuple[float, ...] = ()  # sparsities that also get a cubic schedule on the first pair size
    ablations: bool = False  # per-layer magnitude, LM head kept dense, a shorter window (longer recovery)
    per_layer_check: bool = False  # per-layer magnitude at the top sparsity, sharing the main pair's dense partner
    seq_len: int = SEQ_LEN
    batch_size: int = BATCH_SIZE
    eval_batches: int = 384  # x 16 x 128 tokens; quick measured a standard error of 0.0024 nats at 384
    min_steps: int = 20


PRESETS = {
    "smoke": Preset("smoke", sizes=((1, 16, 2), (1, 24, 2), (1, 32, 2)), ladder_ratios=(1, 2),
                    pair_sizes=((1, 32, 2),), sparsities=(0.5, 0.8), pair_ratio=2, noise_seeds=(1,), tiny_seeds=(),
                    seq_len=32, batch_size=8, eval_batches=8),
    "quick": Preset("quick", sizes=((2, 24, 4), (2, 32, 4), (2, 48, 4), (2, 64, 4)), ladder_ratios=(20, 40, 80),
                    pair_sizes=((2, 32, 4),), sparsities=(0.2, 0.4, 0.6, 0.8), pair_ratio=100, per_layer_check=True),
    "full": Preset("full", sizes=((2, 24, 4), (2, 32, 4), (2, 48, 4), (2, 64, 4)), ladder_ratios=(20, 40, 80),
                   pair_sizes=((2, 32, 4), (2, 48, 4)), sparsities=(0.2, 0.4, 0.6, 0.8), pair_ratio=200,
                   pair_seeds=(0, 1, 2), n_final_partner=True, cubic=(0.5, 0.8), ablations=True,
                   eval_batches=768),  # per-batch sd ~0.05 nats: 768 batches give a standard error under 0.002
}


@dataclass(frozen=True)
class StudyRun:
    plan: TrainingPlan
    kind: str  # ladder | pair | noise | tiny | ablation
    group: str  # the model size it belongs to, for leave-one-size-out
    variant: str = ""  # what an ablation or extra schedule changes
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.plan.name


def shape(n_layer: int, d_model: int, n_head: int) -> ModelShape:
    return ModelShape(n_layer=n_layer, d_model=d_model, n_head=n_head, d_ff=3 * d_model, vocab=BYTE_VOCAB)


def size_label(n_layer: int, d_model: int) -> str:
    return f"L{n_layer}d{d_model}"


def _steps(p: Preset, tokens: float) -> int:
    return max(p.min_steps, int(round(tokens / (p.seq_len * p.batch_size))))


def _plan(p: Preset, name: str, model: ModelShape, steps: int, seed: int, sched: str = "dense",
          sparsity: float = 0.0, pair: Pair | None = None, window=WINDOW, **mask) -> TrainingPlan:
    if sched == "dense":
        schedule = resolve_schedule(model, steps, "dense", 0.0, "tokens", 0.0, 0.0)
    else:
        schedule = resolve_schedule(model, steps, sched, sparsity, "compute", *window, **mask)
    run = RunConfig(seed=seed, eval_every=steps, eval_batches=p.eval_batches, val_fraction=VAL_FRACTION)
    return make_plan(model, schedule, cpu_budget(steps, p.batch_size, p.seq_len), name=name, run=run, pair=pair)


def _pair(p: Preset, size, sparsity: float, seed: int, sched: str = "geometric", variant: str = "",
          window=WINDOW, partners: bool = True, **mask) -> list[StudyRun]:
    """A sparse run and its dense partner(s) at its N_avg (and N_final), all on ratio x N_avg tokens. Without
    `partners`, only the sparse run, in the pair of the plain geometric run (same N_avg and tokens when the mask
    granularity is all that differs)."""
    n_layer, d_model, n_head = size
    model, group = shape(*size), size_label(n_layer, d_model)
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
    partners = [("dense", "dense_n_avg", sparse.derived.n_avg)]
    if p.n_final_partner and not variant:
        partners.append(("dense-final", "dense_n_final", sparse.derived.n_final))
    for suffix, role, target in partners:
        dense_model = dense_partner_shape(n_layer, n_head, target, d_model, sparse.derived.n_convention)
        dense = _plan(p, f"{pid}-{suffix}", dense_model, steps, seed, pair=Pair(id=pid, role=role))
        out.append(StudyRun(dense, kind, group, variant or sched))
    return out


def design(preset: str | Preset) -> list[StudyRun]:
    """All runs of a preset, in the order they are launched: the pairs first (a study cut short still has its pair
    gaps), then the rest; longest first within each (shortest finishing time on K jobs)."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    runs = []
    for n_layer, d_model, n_head in p.sizes:
        model, group = shape(n_layer, d_model, n_head), size_label(n_layer, d_model)
        for ratio in p.ladder_ratios:
            steps = _steps(p, ratio * model.total)
            runs.append(StudyRun(_plan(p, f"{p.name}-{group}-D{ratio:g}", model, steps, 0), "ladder", group))
    first = p.sizes[0]
    model, group = shape(*first), size_label(first[0], first[1])
    steps = _steps(p, p.ladder_ratios[0] * model.total)
    for seed in p.noise_seeds:
        plan = _plan(p, f"{p.name}-{group}-D{p.ladder_ratios[0]:g}-seed{seed}", model, steps, seed)
        runs.append(StudyRun(plan, "noise", group))
    for i, size in enumerate(p.pair_sizes):
        for seed in p.pair_seeds if i == 0 else (0,):
            for s in p.sparsities:
                runs += _pair(p, size, s, seed)
    for s in p.cubic:
        runs += _pair(p, p.pair_sizes[0], s, 0, sched="cubic")
    if p.per_layer_check:
        runs += _pair(p, p.pair_sizes[0], max(p.sparsities), 0, variant="per-layer", partners=False,
                      granularity="per_layer")
    if p.ablations:
        s = max(p.sparsities)
        runs += _pair(p, p.pair_sizes[0], s, 0, variant="per-layer", granularity="per_layer")
        runs += _pair(p, p.pair_sizes[0], s, 0, variant="head-dense", prune_head=False)
        runs += _pair(p, p.pair_sizes[0], s, 0, variant="window-50", window=(0.25, 0.5))
    for seed in p.tiny_seeds:
        plan = tiny_plan(seed=seed)
        runs.append(StudyRun(plan.model_copy(update={"name": f"{p.name}-tiny-seed{seed}"}), "tiny",
                             size_label(plan.model.n_layer, plan.model.d_model)))
    return sorted(runs, key=lambda r: (r.kind != "pair", -cpu_seconds(r.plan.model, r.plan.budget.tokens,
                                                                      r.plan.budget.seq_len)))
