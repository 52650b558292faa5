"""Masked gradients, as the seed's forward with `kernel * mask`: pruned weights get exactly zero gradient before
clipping and AdamW, so their AdamW moments stay 0 and they never move off 0."""
import pytest
import torch

from planner.ladder import tiny_plan
from train_backend import checkpoint, registry
from train_backend.model import Transformer, prunable_weights
from train_backend.pruning import Pruner
from train_backend.train import Options, make_optimizer, run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _loss(model, seed=0, rows=4, seq=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, model.shape.vocab, (rows, seq + 1), generator=g)
    return model(x[:, :-1], x[:, 1:])


def _pruned_model(density=0.3):
    plan = tiny_plan(steps=40)
    torch.manual_seed(0)
    model = Transformer(plan.model)
    pruner = Pruner(prunable_weights(model), plan.schedule, plan.budget.steps)
    optimizer = make_optimizer(model, plan)
    return plan, model, pruner, optimizer, density


def test_pruned_gradient_is_zero_in_the_step_after_an_event():
    plan, model, pruner, optimizer, density = _pruned_model()
    _loss(model).backward()  # a step before the event fills AdamW's moments everywhere
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    pruner.prune(density, optimizer)
    _loss(model, seed=1).backward()
    raw = [p.grad[~m].abs().max() for p, m in zip(pruner.params, pruner.masks)]
    assert max(raw) > 0  # the loss does depend on the pruned entries: this is what masking must remove
    pruner.mask_grads()
    for p, m in zip(pruner.params, pruner.masks):
        assert torch.count_nonzero(p.grad[~m]) == 0
        assert torch.count_nonzero(p.grad[m]) > 0.9 * int(m.sum())


def test_clipping_sees_live_weights_only():
    plan, model, pruner, optimizer, density = _pruned_model()
    pruner.prune(density, optimizer)
    _loss(model).backward()
    pruner.mask_grads()
    live = [p.grad[m] for p, m in zip(pruner.params, pruner.masks)]
    fixed = [p.grad.flatten() for n, p in model.named_parameters() if all(p is not q for q in pruner.params)]
    reference = torch.cat([g.double() for g in live + fixed]).norm()  # the norm of live and unprunable grads alone
    total = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
    assert float(total) == pytest.approx(float(reference), rel=1e-6)
    clipped = torch.cat([p.grad.flatten() for p in model.parameters()]).double().norm()
    assert float(clipped) == pytest.approx(1e-3, rel=1e-4)


def test_invariant_after_a_real_run(tmp_path):
    """Train the tiny preset through its whole window: at the end the pruned weights and both AdamW moments are
    exactly 0 wherever the masks say pruned, and each metrics line carries the pre-clip gradient norm."""
    plan = tiny_plan(steps=60)
    summary = run(plan, Options(runs_dir=tmp_path / "runs", threads=1))
    assert summary["status"] == "finished" and summary["final_density"] == pytest.approx(0.5, abs=1e-4)
    state = checkpoint.load(tmp_path / "runs" / summary["run_id"])
    masks = state["pruner"]["masks"]
    names = [n for n, _ in prunable_weights(Transformer(plan.model))]
    model = Transformer(plan.model)
    model.load_state_dict(state["model"])
    opt = make_optimizer(model, plan)
    opt.load_state_dict(state["optimizer"])
    pruned_total = 0
    for name, mask in zip(names, masks):
        p = dict(model.named_parameters())[name]
        moments = opt.state[p]
        dead = ~mask
        pruned_total += int(dead.sum())
        assert torch.count_nonzero(p.detach()[dead]) == 0, name
        assert torch.count_nonzero(moments["exp_avg"][dead]) == 0, name
        assert torch.count_nonzero(moments["exp_avg_sq"][dead]) == 0, name
        assert torch.count_nonzero(moments["exp_avg_sq"][mask]) > 0.99 * int(mask.sum()), name
    assert pruned_total > 0
    lines = registry.read_metrics(tmp_path / "runs" / summary["run_id"])
    assert all(line["grad_norm"] > 0 for line in lines)
    assert lines[-1]["weight_density"] == pytest.approx(lines[-1]["measured_density"], abs=1e-9)
