"""Magnitude pruning: exact counts from the planner's schedule, never regrow, moments zeroed, 2:4, per-layer."""
import pytest
import torch

from planner.plan import resolve_schedule
from planner.shapes import ModelShape
from train_backend.model import Transformer, prunable_weights
from train_backend.pruning import Pruner, _keep_top

SHAPE = ModelShape(n_layer=2, d_model=64, n_head=4, d_ff=192, vocab=256)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _setup(granularity="global", pattern="unstructured", steps=100, final_sparsity=0.5, seed=0):
    torch.manual_seed(seed)
    model = Transformer(SHAPE)
    sched = resolve_schedule(SHAPE, steps, "geometric", final_sparsity, "tokens", 0.2, 0.6, every_steps=5,
                             granularity=granularity, pattern=pattern)
    return model, Pruner(prunable_weights(model), sched, steps)


def _jitter(pruner, scale=0.01):
    """Stand-in for training between events: every weight moves, then masks are re-applied."""
    with torch.no_grad():
        for p in pruner.params:
            p.add_(scale * torch.randn_like(p))
    pruner.apply()


def _top(tensors, keep):
    return _keep_top(lambda i: tensors[i], [t.numel() for t in tensors], keep)


def _reference_top(tensors, keep):
    """The old threshold: one kthvalue over the concatenated scores, ties to the lowest flat index."""
    scores = torch.cat(tensors)
    thresh = torch.kthvalue(scores, scores.numel() - keep).values
    mask = scores > thresh
    mask[torch.nonzero(scores == thresh).flatten()[:keep - int(mask.sum())]] = True
    return list(mask.split([t.numel() for t in tensors]))


def test_keep_top_exact_with_ties():
    scores = torch.tensor([1.0, 2.0, 2.0, 2.0, 3.0, float("-inf")])
    assert _top([scores], 3)[0].tolist() == [False, True, True, False, True, False]  # ties go to the lowest indices
    assert int(_top([torch.zeros(10)], 4)[0].sum()) == 4
    assert [m.tolist() for m in _top([scores[:2], scores[2:]], 2)] == [[False, True], [False, False, True, False]]
    assert _top([scores], 0)[0].sum() == 0 and _top([scores], 6)[0].all()


@pytest.mark.parametrize("seed", range(6))
def test_radix_threshold_matches_one_kthvalue_over_the_concatenation(seed):
    """Chunked radix select == concatenated kthvalue, mask for mask: weights of many scales, exact ties within and
    across tensors (rounded values), dead weights (-inf) and 2:4 non-candidates (+inf)."""
    g = torch.Generator().manual_seed(seed)
    tensors = []
    for n in torch.randint(1, 3000, (5,), generator=g).tolist():
        t = (torch.randn(n, generator=g) * 10.0 ** torch.randint(-6, 1, (1,), generator=g)).abs()
        if seed % 2:
            t = (t * 1e3).round() / 1e3  # many exact ties, zeros included
        t[torch.rand(n, generator=g) < 0.2] = float("-inf")
        t[torch.rand(n, generator=g) < 0.05] = float("inf")
        tensors.append(t)
    total = sum(t.numel() for t in tensors)
    for keep in (1, total // 7, total // 2, total - 1, int(torch.randint(1, total, (1,), generator=g))):
        got, want = _top(tensors, keep), _reference_top(tensors, keep)
        assert sum(int(m.sum()) for m in got) == keep
        assert all(torch.equal(a, b) for a, b in zip(got, want)), keep


@pytest.mark.parametrize("granularity", ["global", "per_layer"])
def test_schedule_driven_exact_counts_and_never_regrow(granularity):
    steps = 100
    model, pruner = _setup(granularity, steps=steps)
    previous, events = None, 0
    for step in range(steps):
        if pruner.is_event(step):
            events += 1
            keep = pruner.prune(pruner.target_density(step))
            assert pruner.alive() == keep == round(pruner.target_density(step) * pruner.n)
            assert pruner.measured()[0] == keep  # counted from the weights themselves
            if previous is not None:
                assert all(bool((m & ~p).any()) is False for m, p in zip(pruner.masks, previous))
            previous = [m.clone() for m in pruner.masks]
        _jitter(pruner)
    assert events == 9  # window 20..60 every 5 steps
    assert pruner.alive() == pruner.measured()[0] == round(0.5 * pruner.n)


def test_dead_weights_never_regrow_even_if_large():
    _, pruner = _setup()
    pruner.prune(0.8)
    dead = [~m for m in pruner.masks]
    with torch.no_grad():
        for p, d in zip(pruner.params, dead):
            p[d] = 100.0  # larger than any alive weight
    pruner.prune(0.6)
    assert all(not (m & d).any() for m, d in zip(pruner.masks, dead))
    assert pruner.alive() == round(0.6 * pruner.n)


def test_moments_of_newly_pruned_are_zeroed():
    model, pruner = _setup()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16))).backward()
    opt.step()
    before = {p: {k: opt.state[p][k].clone() for k in ("exp_avg", "exp_avg_sq")} for p in pruner.params}
    pruner.prune(0.7, opt)
    for p, m in zip(pruner.params, pruner.masks):
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.all(opt.state[p][k][~m] == 0)
            assert torch.equal(opt.state[p][k][m], before[p][k][m])  # alive moments untouched
        assert torch.all(p[~m] == 0)


def test_two_four_exact_at_half():
    _, pruner = _setup(pattern="2:4")
    pruner.prune(0.8)
    for p in pruner.params:  # on the way down, no group loses more than two
        assert int((p.reshape(-1, 4) != 0).sum(1).min()) >= 2
    _jitter(pruner)
    pruner.prune(0.5)
    for p in pruner.params:
        assert torch.all((p.reshape(-1, 4) != 0).sum(1) == 2)
    assert pruner.alive() == pruner.n // 2


def test_global_vs_per_layer():
    results = {}
    for granularity in ("global", "per_layer"):
        model, pruner = _setup(granularity)
        with torch.no_grad():
            model.lm_head.weight.mul_(10)  # a layer of large weights: global keeps more of it
        pruner.prune(0.5)
        results[granularity] = {n: float(m.float().mean()) for n, m in zip(pruner.names, pruner.masks)}
        assert pruner.alive() == round(0.5 * pruner.n)
    assert results["global"]["lm_head.weight"] > 0.9
    assert all(abs(d - 0.5) < 1e-3 for d in results["per_layer"].values())
