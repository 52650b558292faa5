"""Export to torch.ao.pruning (target torch-ao): the written file, run on a toy model, holds the planner's density at every step."""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from planner.errors import PlannerInputError
from planner.export import export_plan, torchao
from planner.export.base import KNOT_TOL, step_densities, step_n_avg
from planner.ladder import tiny_plan
from planner.plan import Budget, PlanSchedule, dump_plan, make_plan, resolve_schedule
from planner.shapes import PRESETS

STEPS = 120


def plan_of(shape, sparsity, start=0.2, end=0.7, **mask):
    model = PRESETS["tiny"]
    if shape == "piecewise":  # user knots: a ramp to 1 - sparsity, a plateau, then a last drop
        sched = PlanSchedule(shape="piecewise", final_sparsity=sparsity, window_basis="tokens",
                             points=[(0.0, 1.0), (start, 1.0), (0.5, 0.7), (end, 0.7), (0.9, 1 - sparsity)])
    else:
        every = 6 if shape == "geometric" else None
        sched = resolve_schedule(model, STEPS, shape, sparsity, "tokens", start, end, every_steps=every, **mask)
    return make_plan(model, sched, Budget(tokens=STEPS * 4 * 16, seq_len=16, batch_size=4, steps=STEPS),
                     name=f"toy-{shape}")


def load(ex, tmp_path):
    name = next(n for n in ex.files if n.endswith(".py"))
    path = tmp_path / name
    path.write_text(ex.files[name])
    spec = importlib.util.spec_from_file_location(name[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


class Toy(nn.Module):
    """A small LM-shaped module: embedding, two projections and an untied head (the three Linears are pruned)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(40, 16)
        self.up = nn.Linear(16, 32, bias=False)
        self.down = nn.Linear(32, 16, bias=False)
        self.head = nn.Linear(16, 40, bias=False)

    def forward(self, x):
        h = self.embed(x)
        return self.head(h + self.down(torch.relu(self.up(h))))


def train_and_measure(module, plan):
    """Density of the pruned weights at every step, and whether any pruned weight came back."""
    model = Toy()
    sparsifier, scheduler = module.sparsify(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    measured, regrew, dead = [], False, None
    for step in range(plan.budget.steps):
        if module.is_event(step):
            sparsifier.step()
        weights = [getattr(g["module"], g["tensor_name"]) for g in sparsifier.groups]  # masked, as the forward sees
        zero = torch.cat([w.detach().flatten() == 0 for w in weights])
        regrew |= dead is not None and bool((dead & ~zero).any())
        dead = zero
        measured.append(1 - zero.float().mean().item())
        x = torch.randint(0, 40, (4, 16))
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    return np.array(measured), sum(w.numel() for w in weights), regrew, model


@pytest.mark.parametrize("shape, sparsity, mask, slack", [
    ("geometric", 0.7, {}, 0.5),  # global: exactly round(d N) weights
    ("cubic", 0.8, {}, 0.5),
    ("piecewise", 0.6, {}, 0.5),
    ("geometric", 0.5, {"pattern": "2:4"}, 0.5),
    ("linear", 0.6, {"granularity": "per_layer"}, 1.5),  # per tensor: each rounds on its own (3 tensors)
    ("geometric", 0.5, {"granularity": "per_layer", "pattern": "2:4"}, 1.5),
])
def test_the_file_holds_the_planners_density_at_every_step(shape, sparsity, mask, slack, tmp_path, one_torch_thread):
    plan = plan_of(shape, sparsity, **mask)
    module, _ = load(export_plan(plan, "torchao"), tmp_path)
    measured, n, regrew, model = train_and_measure(module, plan)
    planned = plan.schedule.schedule().density_at_step(np.arange(STEPS), STEPS)  # the planner, not the file's table
    assert np.max(np.abs(measured - planned)) * n <= slack + KNOT_TOL * n
    assert planned[0] == 1.0 and planned[-1] == pytest.approx(1 - sparsity, abs=1e-12)
    assert not regrew
    assert int(model.embed.weight.count_nonzero()) == model.embed.weight.numel()  # embeddings are never pruned
    if mask.get("pattern") == "2:4":  # at the end every group of four inputs keeps exactly two
        for w in (model.up.weight, model.down.weight, model.head.weight):
            assert (w.detach().reshape(-1, 4).ne(0).sum(1) == 2).all()


def test_a_tied_head_is_left_dense_as_the_plan_counts_it(tmp_path, one_torch_thread):
    module, _ = load(export_plan(plan_of("geometric", 0.5), "torchao"), tmp_path)
    model = Toy()
    model.head.weight = model.embed.weight
    assert module.prunable(model) == ["up.weight", "down.weight"]


@pytest.mark.parametrize("shape", ["geometric", "one_shot", "cubic"])
def test_round_trip_reads_back_the_density_the_file_applies(shape, tmp_path):
    plan = plan_of(shape, 0.6)
    ex = export_plan(plan, "torchao")
    densities, steps = torchao.read_schedule(next(t for n, t in ex.files.items() if n.endswith(".py")))
    assert steps == STEPS and ex.n_avg == step_n_avg(plan, densities)
    planned = plan.schedule.schedule().density_at_step(np.arange(STEPS), STEPS)
    assert np.max(np.abs(densities - planned)) <= KNOT_TOL
    if shape == "cubic":  # continuous in tokens: a step-based loop holds each step's value, and the README says so
        assert 0 < abs(ex.n_avg / plan.derived.n_avg - 1) < 1 / STEPS
        assert any(f"{ex.n_avg:,.0f} instead of the plan's" in note for note in ex.notes) and not ex.approx
    else:  # piecewise constant on whole steps: exactly the plan's N_avg
        assert abs(ex.n_avg / plan.derived.n_avg - 1) < 1e-9


def test_the_seed_run_round_trips_to_1e_9():
    from test_export_maxtext import seed_80p_plan
    plan = seed_80p_plan()
    ex = export_plan(plan, "torchao")
    densities, _ = torchao.read_schedule(ex.files[f"{torchao.module_name(plan)}.py"])
    assert abs(step_n_avg(plan, densities) / plan.derived.n_avg - 1) < 1e-9
    assert len(set(densities.tolist())) == 103  # dense, then the fork's 102 events


@pytest.mark.parametrize("shape", ["cubic", "geometric"])
def test_a_134k_step_plan_writes_a_small_file_within_the_knot_tolerance(shape):
    steps, model = 134_000, PRESETS["llama2-1b"]
    sched = resolve_schedule(model, steps, shape, 0.8, "tokens", 0.25, 0.75,
                             every_steps=100 if shape == "geometric" else None)
    plan = make_plan(model, sched, Budget(tokens=steps * 512 * 2048, seq_len=2048, batch_size=512, steps=steps))
    ex = export_plan(plan, "torch-ao")
    text = ex.files[f"{torchao.module_name(plan)}.py"]
    assert len(text.encode()) <= 50_000
    densities, _ = torchao.read_schedule(text)
    planned = step_densities(plan)
    assert np.max(np.abs(densities - planned)) <= KNOT_TOL
    if shape == "geometric":  # piecewise constant: every one of its 670 events, exactly
        assert np.array_equal(np.flatnonzero(np.diff(densities)), np.flatnonzero(np.diff(planned)))
        assert abs(ex.n_avg / plan.derived.n_avg - 1) < 1e-9


def test_running_the_file_checks_itself_on_a_toy_model(tmp_path):
    _, path = load(export_plan(tiny_plan(steps=60), "torchao"), tmp_path)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "60 steps: measured density within" in out.stdout


def test_a_dense_plan_has_nothing_to_prune():
    with pytest.raises(PlannerInputError, match="dense, nothing to prune"):
        export_plan(plan_of("dense", 0.0), "torchao")


@pytest.mark.parametrize("tied", [False, True])
def test_the_files_prunable_set_is_the_planners_on_our_model_and_on_hf_llama(tied, tmp_path, one_torch_thread):
    from train_backend.export import hf_config
    from train_backend.model import Transformer, prunable_weights
    from transformers import LlamaForCausalLM
    shape = PRESETS["tiny"].model_copy(update={"tied_embeddings": tied})
    module, _ = load(export_plan(plan_of("geometric", 0.5), "torchao"), tmp_path)
    ours = Transformer(shape)
    assert set(module.prunable(ours)) == {n for n, _ in prunable_weights(ours)}
    hf = LlamaForCausalLM(hf_config(shape, 64))
    assert sum(hf.get_parameter(f).numel() for f in module.prunable(hf)) == shape.prunable


def test_the_old_target_name_is_an_alias(tmp_path):
    from planner.cli import main
    assert export_plan(plan_of("geometric", 0.5), "torchao").target == "torch-ao"
    plan = dump_plan(tiny_plan(), tmp_path / "p.yaml")
    assert main(["export", str(plan), "--to", "torchao", "--out", str(tmp_path / "out")]) == 0
    assert [p.name for p in (tmp_path / "out").glob("*.py")] == [f"{torchao.module_name(tiny_plan())}.py"]
