"""PyTorch's torch.ao.pruning (target `torch-ao`, formerly `torchao`): a runnable Python file that prunes the user's
own nn.Module on the plan's schedule.

It uses PyTorch's own torch.ao.pruning, not the torchao package: torchao's sparsity API (`sparsify_` with
`semi_sparse_weight`) converts an already-pruned 2:4 model to CUDA kernels and schedules nothing, so the target is
named for what it runs. The file carries the plan's density at every optimizer step as a table of knots computed here
from the planner's schedule (the one definition; the file has no second copy of a formula): linear between knots,
two knots one step apart at each jump, so a piecewise-constant schedule is exact and a continuous one stays within
base.KNOT_TOL of every step with a few hundred knots. It drives torch.ao's masks through a LambdaSL scheduler. Global
granularity (and any 2:4 plan) uses a BaseSparsifier subclass with one magnitude threshold over all pruned weights, or
one per tensor (this repository's trainer's rules: exact keep count, pruned weights never regrow, 2:4 candidates are
the two smallest of each four inputs; torch.ao's WeightNormSparsifier picks 2:4 groups by norm and can bring pruned
weights back); per-layer unstructured uses torch.ao's own WeightNormSparsifier. `read_schedule` reads the table back
(the round trip the tests check).
"""
from __future__ import annotations

import ast
from string import Template

import numpy as np

from planner.errors import PlannerInputError
from planner.export.base import KNOT_TOL, Export, knots, n_avg_note, step_densities, step_n_avg
from planner.export.base import module_name as base_module_name
from planner.plan import TrainingPlan

_FILE = Template('''"""Gradual magnitude pruning of plan '$name' with torch.ao.pruning (exported by sparseplan).

$summary

On your own nn.Module (call sparsify() before building the optimizer):

    import $module
    sparsifier, scheduler = $module.sparsify(model)
    optimizer = torch.optim.AdamW(model.parameters(), ...)
    for step in range($module.TOTAL_STEPS):
        if $module.is_event(step):
            sparsifier.step()  # the masks for this step's density
        ...  # forward, backward, optimizer.step()
        scheduler.step()  # the density of the next step
    sparsifier.squash_mask()  # bake the masks into the weights

`python $module.py` checks it on a toy model: the density at every step against the table below.
"""
import bisect
import sys

import torch
from torch import nn
from torch.ao.pruning import BaseSparsifier, WeightNormSparsifier
from torch.ao.pruning.scheduler.lambda_scheduler import LambdaSL

TOTAL_STEPS = $steps
GRANULARITY = "$granularity"  # global: one magnitude threshold over all pruned weights; per_layer: per tensor
PATTERN = "$pattern"  # 2:4: the two smallest of each 4 consecutive inputs are the candidates
# (step, density of the pruned weights): linear in the step between two knots (a jump is two knots one step apart),
# held after the last.
KNOTS = [
$knots
]
_STEPS = [s for s, _ in KNOTS]


def density_at(step):
    i = bisect.bisect_right(_STEPS, step) - 1
    if i + 1 == len(KNOTS):
        return KNOTS[-1][1]
    (s0, d0), (s1, d1) = KNOTS[i], KNOTS[i + 1]
    return (d1 - d0) / (s1 - s0) * (step - s0) + d0


def is_event(step):
    """Step 0 and every step whose density differs from the step before: the only steps whose masks change."""
    return step == 0 or density_at(step) != density_at(step - 1)


def prunable(model):
    """Every nn.Linear weight (attention, MLP, LM head), as the plan counts them; a head tied to an embedding stays."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [f"{name}.weight" for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and id(m.weight) not in embedded]


class MagnitudeSparsifier(BaseSparsifier):
    """Magnitude pruning to round(density x N) weights: one threshold over every configured weight (global) or one
    per tensor; pruned weights score -inf, so they never come back."""

    def __init__(self, per_tensor=False):
        super().__init__(defaults={"sparsity_level": 1.0})
        self.per_tensor = per_tensor

    def update_mask(self, module, tensor_name, **kwargs):
        raise NotImplementedError("step() sets every mask at once")

    @torch.no_grad()
    def step(self):
        if not self.enable_mask_update:
            return
        masks = [getattr(g["module"].parametrizations, g["tensor_name"])[0].mask for g in self.groups]
        scores = []
        for g, mask in zip(self.groups, masks):
            s = getattr(g["module"], g["tensor_name"]).abs().float().masked_fill(mask == 0, float("-inf"))
            if PATTERN == "2:4":  # only the two smallest of each group of four can go
                groups = s.reshape(-1, 4)
                low = torch.zeros_like(groups, dtype=torch.bool)
                low.scatter_(1, groups.argsort(dim=1, stable=True)[:, :2], True)
                s = groups.masked_fill(~low, float("inf"))
            scores.append(s.flatten())
        density = 1.0 - self.groups[0]["sparsity_level"]
        if self.per_tensor:
            kept = [_top(s, density) for s in scores]
        else:
            kept = _top(torch.cat(scores), density).split([s.numel() for s in scores])
        for mask, k in zip(masks, kept):
            mask.copy_(k.view(mask.shape) & (mask != 0))  # never regrow


def _top(scores, density):
    kept = torch.zeros_like(scores, dtype=torch.bool)
    kept[torch.topk(scores, round(density * scores.numel()), sorted=False).indices] = True
    return kept


def sparsify(model):
    """Attach torch.ao masks to the prunable weights; returns (sparsifier, scheduler) for the loop above."""
    if (GRANULARITY, PATTERN) == ("per_layer", "unstructured"):  # torch.ao's own per-tensor magnitude pruning
        sparsifier = WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, 1), zeros_per_block=1)
    else:
        sparsifier = MagnitudeSparsifier(per_tensor=GRANULARITY == "per_layer")
    sparsifier.prepare(model, [{"tensor_fqn": fqn} for fqn in prunable(model)])
    scheduler = LambdaSL(sparsifier, lambda step: 1.0 - density_at(step))
    return sparsifier, scheduler


def measured_density(sparsifier):
    weights = [getattr(g["module"], g["tensor_name"]) for g in sparsifier.groups]
    return sum(int(w.count_nonzero()) for w in weights) / sum(w.numel() for w in weights)


def _check(steps=TOTAL_STEPS):
    """Train a toy model with the masks; the worst gap between measured and planned density, in weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64, bias=False), nn.ReLU(), nn.Linear(64, 32, bias=False))
    sparsifier, scheduler = sparsify(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    n = sum(p.numel() for p in model.parameters())
    worst = 0.0
    for step in range(steps):
        if is_event(step):
            sparsifier.step()
        worst = max(worst, abs(measured_density(sparsifier) - density_at(step)) * n)
        x = torch.randn(16, 32)
        loss = (model(x) - x).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    return worst


if __name__ == "__main__":
    gap = _check()
    tolerance = (0.5 if GRANULARITY == "global" else 1.0) + 1e-6  # per layer, each of two tensors rounds alone
    print(f"{TOTAL_STEPS} steps: measured density within {gap:.1f} weights of the plan's at every step")
    sys.exit(0 if gap <= tolerance else 1)
''')


def module_name(plan: TrainingPlan) -> str:
    """The Python module name of the plan's file."""
    return base_module_name(plan, "_sparsity")


def read_schedule(text: str, source: str = "torchao file") -> tuple[np.ndarray, int]:
    """(density at every step, total steps) that the exported file applies."""
    values = {}
    try:
        for node in ast.parse(text).body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and \
                    node.targets[0].id in ("TOTAL_STEPS", "KNOTS"):
                values[node.targets[0].id] = ast.literal_eval(node.value)
        steps, table = values["TOTAL_STEPS"], np.array(values["KNOTS"], dtype=float)
    except (SyntaxError, ValueError, KeyError) as exc:
        raise PlannerInputError(f"{source}: not an exported torch-ao file ({type(exc).__name__}: {exc})") from None
    return np.interp(np.arange(steps), table[:, 0], table[:, 1]), steps  # linear between knots, held after


def build(plan: TrainingPlan, devices: int = 1) -> Export:
    s, steps = plan.schedule, plan.budget.steps
    densities = step_densities(plan)
    if np.all(densities == 1.0):
        raise PlannerInputError(f"torchao: plan '{plan.name}' is dense, nothing to prune; export it --to litgpt")
    table = knots(densities)
    rows = [", ".join(f"({a}, {d!r})" for a, d in table[i:i + 4]) + "," for i in range(0, len(table), 4)]
    module = module_name(plan)
    summary = (f"{s.shape} schedule to final sparsity {1 - densities[-1]:g} over {steps:,} optimizer steps, "
               f"{len(table)} knots, {s.granularity} magnitude pruning, {s.pattern}; plan N_avg "
               f"{plan.derived.n_avg:,.0f}.")
    text = _FILE.substitute(name=plan.name, summary=summary, module=module, steps=steps, granularity=s.granularity,
                            pattern=s.pattern, knots="\n".join(f"    {r}" for r in rows))
    back, _ = read_schedule(text, f"{module}.py")
    n_avg = step_n_avg(plan, back)
    changes = int(np.count_nonzero(np.diff(densities)))
    exact = [f"density at every one of the {steps:,} optimizer steps: the planner's d(step / steps) "
             f"({changes} changes, {len(table)} knots, within {KNOT_TOL:g} at every step), applied before the step's "
             f"forward as this repository's trainer does",
             "prunable set: every nn.Linear weight (attention, MLP, untied LM head); embeddings, norms and a tied "
             "head stay dense",
             "pruned weights get zero gradient (torch.ao's mask parametrization) and never regrow"]
    if s.granularity == "global":
        exact.append("one global magnitude threshold keeping exactly round(d x N) weights (a torch.ao BaseSparsifier "
                     "subclass in the file: torch.ao's own sparsifiers are per tensor)")
    if s.pattern == "2:4":
        exact.append("2:4: the two smallest of each four consecutive inputs are the candidates, as in this "
                     "repository's trainer")
    notes = []  # all the pruning is the plan's: what remains is how any step-based loop, ours included, runs it
    if abs(n_avg - plan.derived.n_avg) > 1e-9 * plan.derived.n_avg:
        notes.append(f"the plan's {s.shape} density is continuous in tokens; a step-based loop holds it constant "
                     f"over each step, and the knot table follows that within {KNOT_TOL:g}: {n_avg_note(plan, n_avg)}")
    if s.granularity == "per_layer":
        notes.append("per tensor, round(d x n) weights are kept (torch.ao's WeightNormSparsifier for unstructured: "
                     "n - round(s x n)); this repository's trainer splits round(d x N) by largest remainder: at most "
                     "one weight per tensor apart")
    notes.append("AdamW moments of newly pruned weights are not zeroed (the masked weights stay zero either way)")
    launch = f"python {module}.py  # checks the masks on a toy model; then use sparsify() in your training loop"
    return Export("torch-ao", {f"{module}.py": text}, launch, n_avg, exact, [], notes)
