"""Where a law has data: the convex hull of its runs in (log N, log D), widened by a stated margin.

Inside, a prediction carries its interval; outside, it is an extrapolation with its reason and no interval. The hull
is `planner.regime.ValidatedRegion`'s (a hull in log N x log(D/N) is the same set as one in log N x log D: the map
between them is linear). The margin is a box of +-MARGIN in log N and log D around every run (the hull of the runs
widened by that box), so a point within a factor exp(MARGIN) of a run in both N and D counts as inside.
"""
from __future__ import annotations

import numpy as np

from planner.regime import ValidatedRegion

MARGIN = 0.1  # natural-log units: N and D each within a factor ~1.105 of the runs' hull


class Region:
    """The hull of runs at (n, tokens) widened by `margin`; `contains` and `reasons` are vectorised."""

    def __init__(self, n, tokens, margin: float = MARGIN, source: str = "the fitted runs"):
        n, tokens = np.asarray(n, float), np.asarray(tokens, float)
        box = np.exp(margin * np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]]))  # corners in (N, D)
        n_pts, d_pts = (n[:, None] * box[:, 0]).ravel(), (tokens[:, None] * box[:, 1]).ravel()
        self.hull = ValidatedRegion(n_pts, d_pts, source)
        self.margin, self.source = margin, source
        self.n_range, self.tokens_range = (n.min(), n.max()), (tokens.min(), tokens.max())
        self.runs = (n, tokens)  # the points it was built from (a saved session rebuilds it from them)

    def contains(self, n, tokens, sparsity=None) -> np.ndarray:
        return np.asarray(self.hull.contains(n, tokens), bool)

    def reasons(self, n, tokens) -> np.ndarray:
        """Why each point is an extrapolation ('' inside): N or tokens beyond the runs' range, else outside the
        hull (a combination of N and D the runs never paired)."""
        n, tokens = np.broadcast_arrays(np.asarray(n, float), np.asarray(tokens, float))
        grow = np.exp(self.margin)
        out = np.full(n.shape, "", dtype=object)
        for label, x, (lo, hi) in (("N", n, self.n_range), ("tokens", tokens, self.tokens_range)):
            below, above = x < lo / grow, x > hi * grow
            out = np.where(below & (out == ""), f"{label} below the runs' {lo:.3g}", out)
            out = np.where(above & (out == ""), f"{label} above the runs' {hi:.3g}", out)
        combo = ~self.contains(n, tokens) & (out == "")
        return np.where(combo, "this N and token count were never paired in the runs (outside their hull)", out)

    def describe(self) -> str:
        return (f"the convex hull of {self.source} in log N x log D, widened by a factor {np.exp(self.margin):.3g} "
                f"in N and D")
