"""Where the planner's predictions are validated: the schedule rule and the (N_avg, tokens) region.

Schedule rule (Jin et al., ICLR 2025, the seed): its search over 80 pruning schedules found a window from about 25%
to 75% of training *compute* near-optimal, and a long dense phase first (50% of compute) hurts high sparsity. The
unified law has no term for how compute is split, so N_avg alone is only trusted for splits like the seed's. A
schedule is inside the validated regime when each of its three compute shares is: the dense share before the window
20-30%, the pruning share (inside the window) 40-60%, the recovery share after it 20-30%. `schedule_flag` sets one
bit per share outside its range; a dense run is always inside.

Region: the log-space convex hull of the (N_avg, D/N_avg) points the law was validated on, with N counted in the
law's own convention. The seed's points are computed here from the exact shapes of its released configs
(llama2-70m, llama2-1b), its released 1B step windows and the model cards' parameter counts of the dense partners
(whose configs were not released).
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import ConvexHull, QhullError

from planner.schedules import Schedule
from planner.shapes import PRESETS

# Compute shares of the seed's validated regime: (low, high) for the dense share before, pruning share, recovery after.
SHARE_RANGES = {"dense share before": (0.20, 0.30), "pruning share": (0.40, 0.60),
                "recovery share after": (0.20, 0.30)}
SHARE_TOLERANCE = 0.005  # windows snap to whole steps: half a percent of compute either way still counts as inside
SCHEDULE_OK = 0
SCHEDULE_DENSE_BEFORE, SCHEDULE_PRUNING, SCHEDULE_RECOVERY = 1, 2, 4  # bits of schedule_flag, in SHARE_RANGES order


def compute_shares(compute_start, compute_end):
    """(dense before, pruning, recovery after) shares of training compute of a window given in compute fractions."""
    c0, c1 = np.asarray(compute_start, float), np.asarray(compute_end, float)
    return c0, c1 - c0, 1.0 - c1


def schedule_flag(compute_start, compute_end, final_sparsity) -> np.ndarray:
    """Bit mask per schedule (vectorised): SCHEDULE_DENSE_BEFORE | SCHEDULE_PRUNING | SCHEDULE_RECOVERY for each
    compute share outside the seed's validated range; SCHEDULE_OK (0) inside, and always for a dense run."""
    shares = compute_shares(compute_start, compute_end)
    flag = np.zeros(np.broadcast(*shares, np.asarray(final_sparsity)).shape, np.int8)
    for bit, share, (lo, hi) in zip((1, 2, 4), shares, SHARE_RANGES.values()):
        flag |= np.where((share < lo - SHARE_TOLERANCE) | (share > hi + SHARE_TOLERANCE), bit, 0).astype(np.int8)
    return np.where(np.asarray(final_sparsity) > 0, flag, SCHEDULE_OK).astype(np.int8)


def schedule_warning(compute_start: float, compute_end: float, flag: int) -> str:
    """One line naming each compute share outside the validated regime ("" when flag is 0)."""
    if not flag:
        return ""
    shares = compute_shares(compute_start, compute_end)
    off = [f"{name} {float(share):.0%}, validated {lo:.0%}-{hi:.0%}"
           for bit, share, (name, (lo, hi)) in zip((1, 2, 4), shares, SHARE_RANGES.items()) if flag & bit]
    return (f"pruning window {float(compute_start):.0%}->{float(compute_end):.0%} of compute is outside the seed's "
            f"validated regime ({'; '.join(off)}): N_avg alone is not known to predict its loss")


class ValidatedRegion:
    """Convex hull, in log space, of the (N_avg, D/N_avg) points a law was fitted on; `contains` is vectorised.

    Fewer than three points, or collinear ones, fall back to their log-space bounding box.
    """

    def __init__(self, n_avg, tokens, source: str):
        pts = np.column_stack([np.log(n_avg), np.log(np.asarray(tokens, float) / n_avg)])
        self.source, self.points = source, pts
        try:
            self._facets = ConvexHull(pts).equations  # rows (a, b, c): a x + b y + c <= 0 inside
        except (QhullError, ValueError):
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            self._facets = np.array([[-1, 0, lo[0]], [1, 0, -hi[0]], [0, -1, lo[1]], [0, 1, -hi[1]]], float)

    @property
    def n_range(self) -> tuple[float, float]:
        """Smallest and largest N of the points."""
        return float(np.exp(self.points[:, 0].min())), float(np.exp(self.points[:, 0].max()))

    def bounds(self, n_avg):
        """(low, high) tokens per parameter inside the region at each N_avg (low > high where N_avg is outside)."""
        x = np.log(np.asarray(n_avg, float))[..., None]
        a, b, c = self._facets.T
        with np.errstate(divide="ignore", invalid="ignore"):
            y = -(a * x + c) / b  # where a facet line crosses this N_avg: b < 0 bounds y below, b > 0 above
        lo = np.where(b < 0, y, -np.inf).max(axis=-1)
        hi = np.where(b > 0, y, np.inf).min(axis=-1)
        hi = np.where(np.all((b != 0) | (a * x + c <= 1e-9), axis=-1), hi, -np.inf)
        return np.exp(lo - 1e-9), np.exp(hi + 1e-9)

    def contains(self, n_avg, tokens, sparsity=None) -> np.ndarray:
        """Inside the hull, for any sparsity (the argument is the regions' common signature)."""
        lo, hi = self.bounds(n_avg)
        ratio = np.asarray(tokens, float) / n_avg
        return (ratio >= lo) & (ratio <= hi)


def validated_region(runs: pd.DataFrame | None = None, n_convention: str = "total",
                     n_column: str = "n_avg") -> ValidatedRegion:
    """The region of a runs table (its `n_column`, else the other count; tokens), or the seed's validated range with
    N counted as the law counts it: `n_convention`, and `n_column` (n_avg for the unified law, n_final otherwise)."""
    if runs is not None:
        col = n_column if n_column in runs else ("n_final" if n_column == "n_avg" else "n_avg")
        return ValidatedRegion(runs[col].to_numpy(float), runs["tokens"].to_numpy(float), f"{len(runs)} fitted runs")
    return _seed_region(n_convention, n_column)


# The seed's validation range: llama2-70m (exact config) up to N_avg 468M, each at 1x-20x Chinchilla-optimal tokens
# (about 20 to 400 tokens per parameter). The 468M end point is the paper's figure (total parameters).
SEED_LARGEST_N_AVG, SEED_TOKENS_PER_PARAM = 468e6, (20.0, 400.0)
# The released 1B sparse runs (llama2-1b): final sparsity -> (start step, end step, total steps, pruning every).
SEED_1B_RUNS = {0.2: (2500, 8100, 11200, 100), 0.4: (2500, 8875, 13050, 125), 0.6: (2500, 10100, 16375, 100),
                0.8: (2500, 12600, 25050, 100)}
SEED_BATCH = 4096 * 2048  # the cards' "8M tokens" batch; the cards' token counts read it as 8.0M (steps x 8e6)
_CARDS = Path(__file__).parent / "data" / "seed_1b_pairs.csv"


def seed_points(n_convention: str = "total", n_column: str = "n_avg") -> tuple[np.ndarray, np.ndarray]:
    """(N, tokens) of the seed's validated runs, N their `n_column` (n_avg or n_final) in `n_convention`: exact
    counts where the config is released."""
    small, big = PRESETS["llama2-70m"], PRESETS["llama2-1b"]
    small_n = sum(small.n_params(n_convention))
    # No released config for the largest: without embeddings it is counted less a 32000 x 1024 input embedding.
    largest = SEED_LARGEST_N_AVG - (32000 * 1024 if n_convention == "non_embedding" else 0)
    n_box = np.array([small_n, small_n, largest, largest])
    tokens_box = n_box * np.array(SEED_TOKENS_PER_PARAM)[[0, 1, 0, 1]]
    fixed, prunable = big.n_params(n_convention)
    cards = pd.read_csv(_CARDS, comment="#")
    sparse, dense = cards[cards["final_sparsity"] > 0], cards[cards["final_sparsity"] == 0]
    count = Schedule.n_avg if n_column == "n_avg" else Schedule.n_final
    sparse_n = [count(Schedule.from_steps("geometric", s, *SEED_1B_RUNS[s]), fixed, prunable)
                for s in sparse["final_sparsity"]]
    # Dense partners: the cards' counts (2 significant figures); non-embedding = the linear weights (norms ~1e-4).
    dense_n = (dense["total_params"] if n_convention == "total" else dense["linear_params"]).to_numpy(float)
    # Each run at the cards' tokens and at steps x 4096 x 2048, whichever reading of "8M" a plan of it uses.
    n = np.r_[sparse_n, dense_n]
    tokens = np.r_[sparse["tokens"], dense["tokens"]]
    return np.r_[n_box, n, n], np.r_[tokens_box, tokens, tokens / 8e6 * SEED_BATCH]


@cache
def _seed_region(n_convention: str, n_column: str) -> ValidatedRegion:
    n, tokens = seed_points(n_convention, n_column)
    return ValidatedRegion(n, tokens, f"the seed's validated range (llama2-70m to N_avg 468M at 20-400 tokens per "
                                      f"parameter, and its released ~1B runs; N = {n_column}, {n_convention} "
                                      f"parameters)")
