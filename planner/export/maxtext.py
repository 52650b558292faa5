"""The seed's MaxText fork (tjingrant/sparse-llm-code): a YAML of overrides for its `MaxText/configs/base.yml`.

What the fork does (MaxText/train.py at a60f533), which is what this file must express: before the optimizer step
`step` it prunes when gmp_start_step <= step <= gmp_end_step and step % gmp_pruning_frequency == 0, asserting
(end - start) % frequency == 0; with n = (end - start) / frequency + 1 events, event k keeps (1 - sparsity)^((k+1)/n)
of every `kernel` under one global magnitude threshold (pruning_structure "2:4": the two smallest of each group of four
are the candidates). That is the planner's geometric schedule with global granularity, so a geometric plan exports
exactly when its window starts on a multiple of its pruning interval. Any other shape, or per-layer granularity, is
refused. `read_schedule` turns the exported keys back into the planner's schedule (the round trip the tests check).
"""
from __future__ import annotations

import math

import yaml

from planner.errors import PlannerInputError
from planner.export.base import Export, exported_n_avg, n_avg_note, plan_window, stem
from planner.io import parse_mapping
from planner.plan import FORK_FREQUENCY, TrainingPlan, fork_window
from planner.preflight import BYTE_VOCAB
from planner.schedules import Schedule
from planner.shapes import ModelShape

FORK = "tjingrant/sparse-llm-code"
SWIGLU, GELU = ["silu", "linear"], ["gelu"]


def _fraction_giving(count: int, total: int) -> float:
    """The shortest decimal f with int(total * f) == count: MaxText derives warm-up steps as int(steps * fraction)."""
    if count == 0:
        return 0.0
    for digits in range(1, 18):
        f = math.ceil(count / total * 10**digits) / 10**digits
        if int(total * f) == count:
            return f
    return count / total


def _window(plan: TrainingPlan) -> tuple[int, int, int, list[str]]:
    """(gmp_start_step, gmp_end_step, gmp_pruning_frequency, notes) that the fork accepts for this plan."""
    s, steps = plan.schedule, plan.budget.steps
    if s.granularity != "global":
        raise PlannerInputError(f"maxtext: the fork prunes with one global magnitude threshold; plan '{plan.name}' is "
                                f"{s.granularity} (export it --to torch-ao or --to llm-compressor)")
    if s.shape == "dense" or s.final_sparsity == 0:
        return steps, steps, FORK_FREQUENCY, ["dense: gmp_start_step = steps, past the last step, so no pruning "
                                                 "event fires"]
    if s.shape not in ("geometric", "one_shot"):
        raise PlannerInputError(f"maxtext: the fork prunes only on a geometric schedule (event k keeps "
                                f"(1-s)^((k+1)/n)); plan '{plan.name}' is {s.shape} (export it --to torch-ao)")
    start, end, every = plan_window(plan)
    if s.shape == "one_shot":  # one event at `start`: geometric with start == end, at a frequency dividing start
        return start, start, math.gcd(start, FORK_FREQUENCY), ["one_shot as the fork's single event (n = 1)"]
    if not every:
        raise PlannerInputError(f"maxtext: plan '{plan.name}' has no pruning interval in steps "
                                f"(schedule.every_steps); the fork prunes on a step grid")
    n = (end - start) // every + 1
    if start % every == 0:
        return start, start + (n - 1) * every, every, []
    # The fork fires only on multiples of the frequency: move the window to the nearest multiple, same event count.
    new, _ = fork_window(start, end, every, steps)
    if new < 0:
        raise PlannerInputError(f"maxtext: {n} events every {every} steps do not fit in {steps} steps on multiples "
                                f"of {every}")
    note = (f"window moved from steps {start}->{start + (n - 1) * every} to {new}->{new + (n - 1) * every} (the fork "
            f"fires only on multiples of gmp_pruning_frequency {every}); same {n} events")
    return new, new + (n - 1) * every, every, [note]


def _batch(plan: TrainingPlan, devices: int) -> float:
    """per_device_batch_size: MaxText's global batch is int(per_device x devices) x gradient_accumulation_steps."""
    b = plan.budget
    micro = b.batch_size // b.grad_accum
    if micro % devices:
        raise PlannerInputError(f"maxtext --devices {devices}: a micro-batch of {micro} sequences does not split "
                                f"evenly over {devices} devices")
    return float(micro // devices)


def overrides(plan: TrainingPlan, devices: int = 1) -> tuple[dict, list[str]]:
    """The fork's keys for this plan (model, budget, optimizer, every pruning key) and the notes on the window."""
    m, b, s = plan.model, plan.budget, plan.schedule
    start, end, every, notes = _window(plan)
    model = {"base_emb_dim": m.d_model, "base_num_query_heads": m.n_head, "base_num_kv_heads": m.kv_heads,
             "base_mlp_dim": m.d_ff, "base_num_decoder_layers": m.n_layer, "head_dim": m.head_size,
             "mlp_activations": SWIGLU if m.mlp == "swiglu" else GELU, "vocab_size": m.vocab,
             "logits_via_embedding": m.tied_embeddings, "normalize_embedding_logits": False,
             "enable_dropout": False, "normalization_layer_epsilon": 1.0e-5, "rope_max_timescale": 10_000,
             "decoder_block": "llama2"}
    budget = {"steps": b.steps, "max_target_length": b.seq_len, "per_device_batch_size": _batch(plan, devices),
              "gradient_accumulation_steps": b.grad_accum, "learning_rate": b.lr,
              "warmup_steps_fraction": _fraction_giving(b.warmup_steps, b.steps),
              "cosine_learning_rate_final_fraction": b.min_lr_ratio, "opt_type": "adamw", "adam_b1": b.betas[0],
              "adam_b2": b.betas[1], "adam_weight_decay": b.weight_decay, "gradient_clipping_threshold": b.grad_clip,
              "dtype": plan.run.dtype, "weight_dtype": "float32", "init_weights_seed": plan.run.seed,
              "data_shuffle_seed": plan.run.seed}
    pruning = {"sparsity": s.final_sparsity, "pruning_method": "global_gradual",
               "pruning_structure": "2:4" if s.pattern == "2:4" else "none", "pruning_score": "magnitude",
               "gmp_pruning_frequency": every, "gmp_start_step": start, "gmp_end_step": end, "do_not_prune_kw": ""}
    return {"model": model, "budget": budget, "pruning": pruning}, notes


def read_schedule(text: str, source: str = "maxtext config") -> tuple[ModelShape, Schedule, int]:
    """(model, schedule, steps) that the fork runs from these keys, as the planner's objects."""
    keys = parse_mapping(text, source, "yaml", "MaxText config")
    try:
        model = ModelShape(n_layer=keys["base_num_decoder_layers"], d_model=keys["base_emb_dim"],
                           n_head=keys["base_num_query_heads"], n_kv_head=keys["base_num_kv_heads"],
                           head_dim=keys["head_dim"], d_ff=keys["base_mlp_dim"], vocab=keys["vocab_size"],
                           tied_embeddings=keys["logits_via_embedding"],
                           mlp="swiglu" if keys["mlp_activations"] == SWIGLU else "gelu")
        steps, s = keys["steps"], keys["sparsity"]
        start, end, every = keys["gmp_start_step"], keys["gmp_end_step"], keys["gmp_pruning_frequency"]
    except KeyError as exc:
        raise PlannerInputError(f"{source}: no key {exc.args[0]!r}") from None
    if keys.get("pruning_method") != "global_gradual":
        raise PlannerInputError(f"{source}: pruning_method {keys.get('pruning_method')!r}; the fork's gradual "
                                f"pruning is 'global_gradual'")
    if s == 0 or start >= steps:  # no event fires
        return model, Schedule(shape="dense"), steps
    if start % every or (end - start) % every or end > steps:
        raise PlannerInputError(f"{source}: gmp_start_step {start} / gmp_end_step {end} must be multiples of "
                                f"gmp_pruning_frequency {every} within {steps} steps")
    return model, Schedule.from_steps("geometric", s, start, end, steps, every), steps


def _yaml(sections: dict) -> str:
    head = {"model": "model shape (the fork's configs/models keys)",
            "budget": "budget, LR schedule and AdamW",
            "pruning": "pruning: the fork's keys (base.yml lines 479-486)"}
    parts = ['base_config: "base.yml"  # the fork\'s defaults: base.yml here, else MaxText/configs/base.yml']
    for name, keys in sections.items():
        parts.append(f"\n# --- {head[name]}\n" + yaml.safe_dump(keys, sort_keys=False, default_flow_style=False))
    return "\n".join(parts)


def build(plan: TrainingPlan, devices: int = 1) -> Export:
    sections, window_notes = overrides(plan, devices)
    fname = f"{stem(plan)}.yml"
    text = _yaml(sections)
    model, schedule, _ = read_schedule(text, fname)
    n_avg = exported_n_avg(plan, schedule)
    b, p, s_pattern = plan.budget, sections["pruning"], plan.schedule.pattern
    launch = (f"# in a checkout of {FORK} (commit a60f533), with your dataset keys:\n"
              f"python3 MaxText/train.py {fname} run_name={stem(plan)} base_output_directory=$OUT dataset_path=$DATA")
    exact = [f"model shape: {model.n_layer} layers, d_model {model.d_model}, {model.n_head} query / {model.kv_heads} "
             f"KV heads of {model.head_size}, d_ff {model.d_ff}, vocab {model.vocab}, "
             f"{'tied' if model.tied_embeddings else 'untied'} LM head; prunable set = every kernel (attention, MLP, "
             f"untied LM head), as the planner counts it",
             f"budget: {b.steps:,} steps x {b.batch_size} sequences x {b.seq_len} tokens = {b.tokens:,} tokens "
             f"(per_device_batch_size {sections['budget']['per_device_batch_size']:g} x {devices} devices, "
             f"accumulation {b.grad_accum})",
             f"LR: peak {b.lr:g}, {b.warmup_steps} warm-up steps (int(steps x warmup_steps_fraction)), cosine to "
             f"{b.min_lr_ratio:g} x peak; AdamW betas {tuple(b.betas)}, weight decay {b.weight_decay:g}, clipping "
             f"{b.grad_clip:g}"]
    same = abs(n_avg - plan.derived.n_avg) <= 1e-9 * plan.derived.n_avg
    moved = [x for x in window_notes if x.startswith("window moved")]
    if p["sparsity"] > 0:
        exact.append(f"pruning: sparsity {p['sparsity']:g}, events every {p['gmp_pruning_frequency']} steps from "
                     f"{p['gmp_start_step']} to {p['gmp_end_step']} keeping (1-s)^((k+1)/n), one global magnitude "
                     f"threshold over every kernel" + (f", {n_avg_note(plan, n_avg)}" if same else ""))
    exact += [x for x in window_notes if x not in moved]
    approx = [] if same else [f"{'; '.join(moved) or 'the window rounded to whole steps'}: {n_avg_note(plan, n_avg)}"]
    if s_pattern == "2:4":
        approx.append("2:4 groups run along the last axis of each JAX kernel (output features; MaxText stores kernels "
                      "in x out), this repository's along the input dimension; densities are the same")
    notes = ["MaxText's warm-up ramps from 0 at step 0 (this trainer from peak/warmup); its AdamW decays every "
             "parameter, norm scales included (this trainer: matrices only)"]
    if p["sparsity"] > 0:
        notes.append(f"kept count per event is {'ceil' if s_pattern == '2:4' else 'int'}(d x N) in the fork, "
                     f"round(d x N) in this repository's trainer: at most one weight apart")
    if model.vocab == BYTE_VOCAB:
        notes.append(f"tokenizer: the plan is byte-level (vocab {BYTE_VOCAB}); set tokenizer_path to a "
                     f"{BYTE_VOCAB}-token tokenizer or retokenize")
    return Export("maxtext", {fname: text}, launch, n_avg, exact, approx, notes)
