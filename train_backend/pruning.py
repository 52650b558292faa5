"""Gradual magnitude pruning with masks over exactly the prunable weights.

The target density at each step comes from the planner's schedule (the repository's one definition). A pruning event
ranks only the still-alive weights, so masks only shrink, and keeps exactly round(density * n_prunable) of them;
ties at the threshold go to the lowest flat index of the concatenated weights.

The global threshold never materialises a copy of all prunable weights: a radix select over the fp32 scores' bit
patterns (non-negative floats order like their int32 views) counts one tensor at a time, two 16-bit histogram passes
find the exact keep-th largest score, and a last pass builds the masks. Only one tensor's scores live at a time.

2:4 pattern: in each group of 4 weights along the input dim the two smallest magnitudes are the candidates; only
candidates are ranked, so at density 0.5 every group keeps exactly two.
"""
from __future__ import annotations

import numpy as np
import torch

from planner.plan import PlanSchedule


def _bin_of(hist: torch.Tensor, keep: int) -> tuple[int, int]:
    """The bin holding the keep-th largest item of a histogram, and that item's rank within the bin (1-based)."""
    above = hist.flip(0).cumsum(0)  # above[j]: items in the top j + 1 bins
    j = int(torch.searchsorted(above, torch.tensor([keep], device=hist.device)))
    return hist.numel() - 1 - j, keep - int(above[j] - hist[-1 - j])


def _keep_top(score_of, sizes: list[int], keep: int) -> list[torch.Tensor]:
    """Boolean masks (flat) keeping exactly `keep` of the largest scores over tensors of `sizes`, ties at the
    threshold to the lowest flat index; `score_of(i)` returns tensor i's flat fp32 scores (>= 0, -inf or +inf) anew."""
    count = len(sizes)

    def keys(i):  # int32 view: the same order as the scores (the only negative score is -inf, below all others)
        return score_of(i).view(torch.int32)

    if keep <= 0 or keep >= sum(sizes):
        return [torch.full_like(keys(i), keep > 0, dtype=torch.bool) for i in range(count)]
    hist = sum(torch.bincount((keys(i) >> 16) + 2**15, minlength=2**16) for i in range(count))
    high, rank = _bin_of(hist, keep)
    low_hist = 0
    for i in range(count):
        k = keys(i)
        low_hist = low_hist + torch.bincount(k[(k >> 16) + 2**15 == high] & 0xFFFF, minlength=2**16)
    low, _ = _bin_of(low_hist, rank)
    thresh = ((high - 2**15) << 16) | low  # the keep-th largest key
    masks, need = [], keep
    for i in range(count):
        m = keys(i) > thresh
        need -= int(m.sum())
        masks.append(m)
    for i, m in enumerate(masks):  # ties at the threshold, in flat-index order
        if need <= 0:
            break
        ties = torch.nonzero(keys(i) == thresh).flatten()[:need]
        m[ties] = True
        need -= ties.numel()
    return masks


def _quotas(sizes: list[int], density: float, total_keep: int) -> list[int]:
    """Per-layer keep counts, uniform density, summing exactly to total_keep (largest remainder, ties by order)."""
    exact = np.array(sizes, dtype=float) * density
    base = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - base), kind="stable")
    base[order[: total_keep - int(base.sum())]] += 1
    return [int(x) for x in base]


class Pruner:
    """Masks for a list of (name, weight) pairs, driven by a plan schedule over `total_steps` optimizer steps."""

    def __init__(self, weights: list[tuple[str, torch.nn.Parameter]], schedule: PlanSchedule, total_steps: int):
        self.names = [n for n, _ in weights]
        self.params = [p for _, p in weights]
        self.sched = schedule.schedule()
        self.granularity, self.pattern = schedule.granularity, schedule.pattern
        self.start_step, self.every = schedule.start_step, schedule.every_steps
        self.total_steps = total_steps
        self.n = sum(p.numel() for p in self.params)
        self.masks: list[torch.Tensor] | None = None  # None until the first event: dense training masks nothing
        self._keep: list[torch.Tensor] | None = None  # masks in the weights' dtype: multiplying by these is ~3x faster
        self._alive = self.n
        if self.pattern == "2:4":
            bad = [n for n, p in weights if p.shape[-1] % 4]
            if bad:
                raise ValueError(f"2:4 pattern needs input dims divisible by 4; {bad[0]} has {self.params[0].shape}")

    def target_density(self, step: int) -> float:
        return float(self.sched.density_at_step(step, self.total_steps))

    def is_event(self, step: int) -> bool:
        """Prune on the plan's event grid when it has one; otherwise whenever the target count drops."""
        if self.every and self.start_step is not None and (step < self.start_step or
                                                           (step - self.start_step) % self.every):
            return False
        return round(self.target_density(step) * self.n) < self.alive()

    def alive(self) -> int:
        """Alive prunable weights, from the masks: counted once per event (no device sync per step)."""
        return self._alive

    def _scores(self, i: int) -> torch.Tensor:
        """|w| of alive weights, -inf for dead ones (always removed first), +inf for 2:4 non-candidates."""
        w = self.params[i].detach()
        s = w.abs().float()
        if self.masks is not None:
            s = s.masked_fill(~self.masks[i], float("-inf"))
        if self.pattern == "2:4":
            groups = s.reshape(-1, 4)
            order = torch.argsort(groups, dim=1, stable=True)
            candidate = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, order[:, :2], True)
            s = groups.masked_fill(~candidate, float("inf")).reshape(w.shape)
        return s.flatten()

    @torch.no_grad()
    def prune(self, density: float, optimizer: torch.optim.Optimizer | None = None) -> int:
        """Shrink the masks to exactly round(density * n) alive weights; zero AdamW moments of the newly pruned."""
        keep = round(density * self.n)
        if self.granularity == "global":
            flat = _keep_top(self._scores, [p.numel() for p in self.params], keep)
        else:
            sizes = [p.numel() for p in self.params]
            flat = [_keep_top(lambda _, i=i: self._scores(i), [n], k)[0]
                    for i, (n, k) in enumerate(zip(sizes, _quotas(sizes, density, keep)))]
        new = [m.view(p.shape) for m, p in zip(flat, self.params)]
        for i, (p, m) in enumerate(zip(self.params, new)):
            if self.masks is not None:
                m &= self.masks[i]  # never regrow (dead weights already score -inf; this makes it explicit)
            p.mul_(m)
            state = optimizer.state.get(p, {}) if optimizer is not None else {}
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key].mul_(m)
        self._set(new)
        return keep

    def _set(self, masks):
        self.masks = masks
        self._alive = self.n if masks is None else int(sum(int(m.sum()) for m in masks))
        self._keep = None if masks is None else [m.to(p.dtype) for m, p in zip(masks, self.params)]

    @torch.no_grad()
    def apply(self):
        """Zero the pruned weights (after loading foreign weights, or in tests that move weights by hand)."""
        if self._keep is not None:
            torch._foreach_mul_(self.params, self._keep)

    @torch.no_grad()
    def mask_grads(self):
        """Zero the gradient of every pruned weight, right after backward and before clipping and AdamW.

        Same gradients as the seed's forward with `kernel * mask`: pruned entries get exactly zero loss gradient, so
        clipping sees live weights only, AdamW's moments stay 0 there (zeroed at the event, fed zeros after) and the
        pruned weights stay exactly 0 (decay scales 0, the update is 0 / (0 + eps)). One fused multiply per step,
        where a masked forward would add a multiply per weight per micro-batch and keep W * mask for backward.
        """
        if self._keep is not None:
            torch._foreach_mul_([p.grad for p in self.params], self._keep)

    @torch.no_grad()
    def measured(self) -> tuple[int, list[int]]:
        """Non-zero prunable weights, overall and per layer, counted from the weights themselves."""
        per = torch.stack([p.ne(0).sum() for p in self.params]).tolist()  # ne+sum: ~2x faster than count_nonzero
        return sum(per), per

    def state_dict(self) -> dict:
        return {"masks": self.masks}

    def load_state_dict(self, state: dict):
        self._set(None if state["masks"] is None else [m.to(p.device) for m, p in zip(state["masks"], self.params)])
