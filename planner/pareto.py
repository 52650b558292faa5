"""Non-dominated sets: the Pareto frontier of candidate plans, every objective minimised.

2D is one sort and a running minimum; 3D sweeps in order of the first objective against a staircase of the points
kept so far. Both are exact (tests hold them against brute force) and vectorised.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _lexorder(f: np.ndarray) -> np.ndarray:
    """Row order sorting f lexicographically by its columns, equal rows by row number. One quicksort on the first
    column (5x faster than a stable sort); rows tied there (rare) are re-sorted in full."""
    order = np.argsort(f[:, 0])
    first = f[order, 0]
    eq = first[1:] == first[:-1]
    tied = np.flatnonzero(np.r_[eq, False] | np.r_[False, eq])
    if tied.size:
        sub = np.sort(order[tied])  # np.lexsort is stable: equal rows stay in row order
        order[tied] = sub[np.lexsort(f[sub].T[::-1])]
    return order


def _merge_staircase(s2, s3, g2, g3):
    """Insert points none of which the staircase (s2 ascending, s3 strictly descending) dominates; drop what they
    dominate. Linear in the staircase: it stays sorted, so no re-sort."""
    o = np.lexsort((g3, g2))
    pos = np.searchsorted(s2, g2[o], side="left")  # an equal-g2 newcomer has the lower g3: it goes first
    s2, s3 = np.insert(s2, pos, g2[o]), np.insert(s3, pos, g3[o])
    keep = np.ones(s3.size, bool)
    keep[1:] = s3[1:] < np.minimum.accumulate(s3)[:-1]
    return s2[keep], s3[keep]


_BLOCK = 256  # rows brute-forced against each other at once in the 3D sweep


def pareto_mask(points) -> np.ndarray:
    """True for the non-dominated rows of `points` (n, k), k in 1..3, every column minimised. Exact duplicates keep
    their first row. 2D: one sort and a running minimum. 3D: a sweep in order of the first objective, each block
    tested against the (objective 2, objective 3) staircase of the points kept so far (binary search), then within
    itself; O(n log n) plus the within-block work, which stays small when the front is a small share of the points.
    """
    f = np.asarray(points, float)
    n, k = f.shape
    keep = np.zeros(n, bool)
    if n == 0:
        return keep
    if k == 1:
        keep[np.argmin(f[:, 0])] = True
        return keep
    if k > 3:
        raise ValueError(f"pareto_mask handles 1 to 3 objectives, got {k}")
    order = _lexorder(f)
    g2 = f[order, 1]
    if k == 2:
        keep[order[0]] = True
        keep[order[1:]] = g2[1:] < np.minimum.accumulate(g2)[:-1]
        return keep
    g3 = f[order, 2]
    s2, s3 = np.empty(0), np.empty(0)  # (g2, g3) staircase of the kept points
    later = np.triu(np.ones((_BLOCK, _BLOCK), bool), k=1)  # [j, i]: row j precedes row i in the sweep
    pos, size = 0, _BLOCK
    while pos < n:
        idx = np.arange(pos, min(pos + size, n))
        q = np.searchsorted(s2, g2[idx], side="right") - 1  # last staircase point with g2 <= the row's g2
        alive = idx[(q < 0) | (s3[np.maximum(q, 0)] > g3[idx])] if s3.size else idx
        pos = alive[_BLOCK - 1] + 1 if alive.size > _BLOCK else idx[-1] + 1
        alive = alive[:_BLOCK]
        a2, a3, m = g2[alive], g3[alive], alive.size
        beats = (a2[:, None] <= a2[None, :]) & (a3[:, None] <= a3[None, :]) & later[:m, :m]
        alive = alive[~beats.any(axis=0)]
        keep[order[alive]] = True
        s2, s3 = _merge_staircase(s2, s3, g2[alive], g3[alive])
        # Grow the block while few rows survive the staircase, shrink it when the brute force fills up.
        size = min(size * 2, 1 << 16) if m < _BLOCK // 4 else max(size // 2, _BLOCK) if m == _BLOCK else size
    return keep


def pareto_front(df: pd.DataFrame, objectives) -> pd.DataFrame:
    """The non-dominated rows of df over `objectives` (column names, minimised), sorted by the first."""
    objectives = list(objectives)
    return df[pareto_mask(df[objectives].to_numpy(float))].sort_values(objectives).reset_index(drop=True)
