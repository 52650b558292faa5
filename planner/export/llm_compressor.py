"""llm-compressor (successor of SparseML): a recipe for its MagnitudePruningModifier on the plan's events.

The modifier prunes each target tensor on its own (`apply_globally` raises NotImplementedError there), so a global
plan exports as its per-layer counterpart, labelled as such: the same density at every step, so the same N_avg, but
every layer at that density instead of one threshold across layers. Its mask factory has no N:M structure, so a 2:4
plan is refused. The `multi_step` scheduler takes the plan's (index, sparsity) events; indices are llm-compressor's
epoch-based `current_index` = optimizer step / steps_per_epoch, with one epoch = the plan's budget.
"""
from __future__ import annotations

import numpy as np
import yaml

from planner.errors import PlannerInputError
from planner.export.base import Export, change_points, n_avg_note, stem, step_densities, step_n_avg
from planner.plan import TrainingPlan

# Hugging Face Llama module names (this repository's trainer and its HF export use them too). llm-compressor matches a
# target with re.match against module names and against full parameter names (`...q_proj.weight`), so no `$`.
TARGETS = [r"re:.*self_attn\.(q|k|v|o)_proj", r"re:.*mlp\.(gate|up|down)_proj"]
# What the repository's validation ladder measured (bench/RESULTS.md, llama2-70m-s80 ladders, one seed each).
PER_LAYER_COST = "uniform per-layer pruning ended 0.040, 0.021 and 0.020 nats above global at the ladder's three rungs"


def recipe(plan: TrainingPlan) -> tuple[dict, np.ndarray]:
    """The recipe as data, and the per-step densities it applies."""
    s, steps = plan.schedule, plan.budget.steps
    if s.pattern == "2:4":
        raise PlannerInputError("llm-compressor: MagnitudePruningModifier has no 2:4 mask structure (unstructured, "
                                "channel, filter, block only); export it --to torchao or --to maxtext")
    densities = step_densities(plan)
    if np.all(densities == 1.0):
        raise PlannerInputError(f"llm-compressor: plan '{plan.name}' is dense, nothing to prune; export it --to litgpt")
    events = [[step / steps, 1.0 - d] for step, d in change_points(densities)[1:]]
    modifier = {"targets": TARGETS + ([] if plan.model.tied_embeddings else ["re:lm_head"]),
                "init_sparsity": 0.0, "final_sparsity": events[-1][1],  # also for piecewise knots
                "start": events[0][0], "end": 1.0,  # masks stay on to the end of training (they switch off at `end`)
                "update_scheduler": "multi_step", "scheduler_args": {"steps": events},
                "mask_structure": "unstructured"}
    return {"sparsity_stage": {"sparsity_modifiers": {"MagnitudePruningModifier": modifier}}}, densities


def build(plan: TrainingPlan, devices: int = 1) -> Export:
    data, densities = recipe(plan)
    s, steps = plan.schedule, plan.budget.steps
    n_avg = step_n_avg(plan, densities)
    events = len(data["sparsity_stage"]["sparsity_modifiers"]["MagnitudePruningModifier"]["scheduler_args"]["steps"])
    head = (f"# llm-compressor recipe for plan '{plan.name}' (exported by sparseplan): {events} pruning events.\n"
            f"# Indices are epochs with one epoch = {steps} optimizer steps: event step k sits at k / {steps}.\n"
            f"# PER-LAYER: every target tensor is pruned to the same sparsity"
            f"{' (the plan prunes globally; llm-compressor cannot)' if s.granularity == 'global' else ''}.\n")
    text = head + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
    exact = [f"density at every optimizer step: the planner's d(step / steps) at {events} events, held by "
             f"multi_step between them ({n_avg_note(plan, n_avg)})",
             "targets: q/k/v/o and gate/up/down projections" + ("" if plan.model.tied_embeddings else " and lm_head")
             + " of a Hugging Face Llama (this repository's HF export names)"]
    approx = []
    if s.granularity == "global":
        approx.append(f"per-layer instead of the plan's global threshold: each tensor at the step's density, so the "
                      f"total is unchanged and so is N_avg ({n_avg:,.0f}); which layers lose weights differs, and in "
                      f"this repository's validation ladder {PER_LAYER_COST}")
    notes = ["each tensor prunes int(s x n) weights (floor); this repository's trainer keeps round(d x N) in total: "
             "at most one weight per tensor apart"]
    if abs(n_avg - plan.derived.n_avg) > 1e-9 * plan.derived.n_avg:
        notes.append(f"the plan's {s.shape} density is continuous in tokens; the recipe holds it constant over each "
                     f"step, as any step-based loop does: {n_avg_note(plan, n_avg)}")
    fname = f"{stem(plan)}.recipe.yaml"
    launch = (f"# in your training loop (llm-compressor drives the masks through its session callbacks):\n"
              f"from llmcompressor.core import active_session, callbacks\n"
              f"active_session().initialize(recipe='{fname}', model=model, optimizer=optimizer, "
              f"steps_per_epoch={steps})\n"
              f"# each step: callbacks.batch_start(); loss = ...; callbacks.loss_calculated(loss=loss); "
              f"loss.backward();\n#   callbacks.optim_pre_step(); optimizer.step(); callbacks.optim_post_step(); "
              f"callbacks.batch_end()\n"
              f"active_session().finalize()")
    return Export("llm-compressor", {fname: text}, launch, n_avg, exact, approx, notes)
