"""llm-compressor: a MagnitudePruningModifier recipe on the plan's events and the loop code that drives it.

llm-compressor 0.14's session callbacks (`callbacks.batch_start()` ...) build every event without a step, so the
modifier's `current_index` stays 0 and a recipe with any later event trains dense. The exported module therefore hands
the recipe's own modifiers events that carry the optimizer step (`Event(global_step=step)`, whose index is the step
itself: recipe indices are optimizer steps), and applies each new mask to the weights at the step's start; the
modifier alone zeroes them only after that step's optimizer step, one step late.

The modifier prunes each target tensor on its own (`apply_globally` raises NotImplementedError), so a global plan
exports as its per-layer counterpart, labelled as such: the same density at every step, so the same N_avg, but every
layer at that density instead of one threshold across layers. Its mask factory has no N:M structure: a 2:4 plan is
refused.
"""
from __future__ import annotations

from string import Template

import numpy as np
import yaml

from planner.errors import PlannerInputError
from planner.export.base import Export, change_points, module_name, n_avg_note, stem, step_densities, step_n_avg
from planner.plan import TrainingPlan

VERSION = "0.14.0.1"  # the release tests/integrations runs the export in
# Hugging Face Llama module names (this repository's trainer and its HF export use them too). llm-compressor matches a
# target with re.match against module names and against full parameter names (`...q_proj.weight`), so no `$`.
TARGETS = [r"re:.*self_attn\.(q|k|v|o)_proj", r"re:.*mlp\.(gate|up|down)_proj"]
# What the repository's validation ladder measured (bench/RESULTS.md, llama2-70m-s80 ladders, one seed each).
PER_LAYER_COST = "uniform per-layer pruning ended 0.040, 0.021 and 0.020 nats above global at the ladder's three rungs"

_DRIVER = Template('''"""Prune with llm-compressor's MagnitudePruningModifier on plan '$name' (exported by sparseplan).

Reads $recipe from this file's folder. llm-compressor $version's session callbacks give the modifier no step (it
would never prune); this class passes the optimizer step in each event and applies each new mask before the step's
forward (the modifier alone zeroes the weights after that step's optimizer step, one step late):

    from $module import PlanPruning, TOTAL_STEPS
    pruning = PlanPruning(model, optimizer)
    for step in range(TOTAL_STEPS):
        pruning.batch_start(step)  # this step's density, on the weights before the forward
        loss = ...; loss.backward()
        pruning.optim_pre_step(step)  # masks the gradients
        optimizer.step()
        pruning.optim_post_step(step)  # masks the weights again
        optimizer.zero_grad()
        pruning.batch_end(step)
    pruning.finalize()  # drops the mask buffers; pruned weights stay zero
"""
from pathlib import Path

from llmcompressor.core import Event, EventType, State
from llmcompressor.recipe import Recipe

RECIPE = Path(__file__).with_name("$recipe")
TOTAL_STEPS = $steps


class PlanPruning:
    def __init__(self, model, optimizer=None, recipe=RECIPE):
        self.state = State(model=model, optimizer=optimizer)
        self.modifiers = Recipe.create_instance(str(recipe)).modifiers
        for mod in self.modifiers:
            mod.initialize(self.state)

    def _event(self, kind, step):
        event = Event(type_=kind, global_step=step)
        for mod in self.modifiers:
            mod.update_event(self.state, event)

    def batch_start(self, step):
        self._event(EventType.BATCH_START, step)
        for mod in self.modifiers:
            for name in mod.parameterized_layers_:
                mod.apply_mask_weight(name)

    def optim_pre_step(self, step):
        self._event(EventType.OPTIM_PRE_STEP, step)

    def optim_post_step(self, step):
        self._event(EventType.OPTIM_POST_STEP, step)

    def batch_end(self, step):
        self._event(EventType.BATCH_END, step)

    def finalize(self):
        for mod in self.modifiers:
            mod.finalize(self.state)
''')


def recipe(plan: TrainingPlan) -> tuple[dict, np.ndarray]:
    """The recipe as data (indices in optimizer steps), and the per-step densities it applies."""
    s, steps = plan.schedule, plan.budget.steps
    if s.pattern == "2:4":
        raise PlannerInputError("llm-compressor: MagnitudePruningModifier has no 2:4 mask structure (unstructured, "
                                "channel, filter, block only); export it --to torch-ao or --to maxtext")
    densities = step_densities(plan)
    if np.all(densities == 1.0):
        raise PlannerInputError(f"llm-compressor: plan '{plan.name}' is dense, nothing to prune; export it --to litgpt")
    events = [[step, 1.0 - d] for step, d in change_points(densities)[1:]]
    modifier = {"targets": TARGETS + ([] if plan.model.tied_embeddings else ["re:lm_head"]),
                "init_sparsity": 0.0, "final_sparsity": events[-1][1],  # also for piecewise knots
                # `end` past the last step: the modifier switches its masks off at `end` and pruned weights would regrow
                "start": events[0][0], "end": steps,
                "update_scheduler": "multi_step", "scheduler_args": {"steps": events},
                "mask_structure": "unstructured"}
    return {"sparsity_stage": {"sparsity_modifiers": {"MagnitudePruningModifier": modifier}}}, densities


def build(plan: TrainingPlan, devices: int = 1) -> Export:
    data, densities = recipe(plan)
    s, steps = plan.schedule, plan.budget.steps
    n_avg = step_n_avg(plan, densities)
    events = len(data["sparsity_stage"]["sparsity_modifiers"]["MagnitudePruningModifier"]["scheduler_args"]["steps"])
    fname, module = f"{stem(plan)}.recipe.yaml", module_name(plan, "_llmcompressor")
    head = (f"# llm-compressor recipe for plan '{plan.name}' (exported by sparseplan): {events} pruning events.\n"
            f"# Indices are optimizer steps; drive it with {module}.py (llm-compressor's session callbacks never "
            f"advance the step).\n"
            f"# PER-LAYER: every target tensor is pruned to the same sparsity"
            f"{' (the plan prunes globally; llm-compressor cannot)' if s.granularity == 'global' else ''}.\n")
    # libyaml's emitter when PyYAML has it: the same text, ~3x faster on a long plan's per-step lists
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = head + yaml.dump(data, Dumper=dumper, sort_keys=False, default_flow_style=None, width=120)
    driver = _DRIVER.substitute(name=plan.name, recipe=fname, module=module, steps=steps, version=VERSION)
    exact = [f"density at every optimizer step: the planner's d(step / steps) at {events} events, held by "
             f"multi_step between them and applied before the step's forward ({n_avg_note(plan, n_avg)})",
             "targets: q/k/v/o and gate/up/down projections" + ("" if plan.model.tied_embeddings else " and lm_head")
             + " of a Hugging Face Llama (this repository's HF export names)"]
    approx = []
    if s.granularity == "global":
        approx.append(f"per-layer instead of the plan's global threshold: each tensor at the step's density, so the "
                      f"total is unchanged and so is N_avg ({n_avg:,.0f}); which layers lose weights differs, and in "
                      f"this repository's validation ladder {PER_LAYER_COST}")
    notes = ["each tensor prunes int(s x n) weights (floor); this repository's trainer keeps round(d x N) in total: "
             "at most one weight per tensor apart",
             f"verified with llmcompressor {VERSION} (tests/integrations); its session callbacks alone "
             f"(`active_session().initialize`, `callbacks.*`) leave the model dense with this recipe: use "
             f"{module}.PlanPruning"]
    if abs(n_avg - plan.derived.n_avg) > 1e-9 * plan.derived.n_avg:
        notes.append(f"the plan's {s.shape} density is continuous in tokens; the recipe holds it constant over each "
                     f"step, as any step-based loop does: {n_avg_note(plan, n_avg)}")
    launch = (f"# in your training loop ({module}.py, beside the recipe, says where each call goes):\n"
              f"from {module} import PlanPruning\n"
              f"pruning = PlanPruning(model, optimizer)\n"
              f"# each step: pruning.batch_start(step); forward, backward; pruning.optim_pre_step(step); "
              f"optimizer.step();\n#   pruning.optim_post_step(step); pruning.batch_end(step)\n"
              f"pruning.finalize()")
    return Export("llm-compressor", {fname: text, f"{module}.py": driver}, launch, n_avg, exact, approx, notes)
