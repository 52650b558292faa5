"""Sparsity schedules: density d(t) of the prunable weights over training, t = fraction of training tokens.

This module is the single definition of the schedule in the repository; the trainer calls it for its masks.

Shapes (density = kept fraction, sparsity s = 1 - d):
  dense      d = 1 throughout.
  one_shot   d = 1 before `start`, 1 - s_f from `start` on.
  linear     s rises linearly from s_i at `start` to s_f at `end`.
  cubic      Zhu & Gupta (2017): s(t) = s_f + (s_i - s_f)(1 - u)^3, u = (t - start)/(end - start).
  geometric  the seed's released code: pruning events at start, start + every, ..., end; n = (end - start)/every + 1
             events; after event k (0-based) the density is (1 - s_f)^((k + 1)/n), so every event removes the same
             fraction of what remains and d = 1 - s_f exactly at `end`. Piecewise constant and right-continuous,
             so a step-based run's mean density is the exact sum over steps.
  piecewise  user knots (t, d), linear in between, held constant outside.

Before `start` every shape is dense; after `end` it holds 1 - s_f. Pruned weights never regrow, so every shape is
non-increasing. The cumulative integral I(t) = integral_0^t d has a closed form for every shape; `cumulative_density`
evaluates it with numpy broadcasting over arrays of schedule parameters, so many schedules are evaluated at once.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.shapes import ModelShape, matmul_params

ScheduleShape = Literal["dense", "one_shot", "linear", "cubic", "geometric", "piecewise"]
SHAPES: tuple[str, ...] = ("dense", "one_shot", "linear", "cubic", "geometric", "piecewise")
DEFAULT_EVENTS = 100  # geometric intervals in the window when no pruning frequency is given
_EPS = 1e-9  # guards floor() against round-off when event times come from integer steps


def _geometric_every(start, end, every):
    # A zero-width window holds one event whatever the spacing; 1.0 keeps (t - start) / every finite there, and the
    # floor keeps it finite for windows so narrow that width / DEFAULT_EVENTS underflows (they hold one event too).
    spacing = np.where(np.isnan(every), np.where(end > start, (end - start) / DEFAULT_EVENTS, 1.0), every)
    return np.maximum(spacing, 1e-12)


def _geometric_events(start, end, every):
    """Number of pruning events n in the window [start, end] at spacing `every` (>= 1)."""
    span = np.maximum(end - start, 0.0)
    return np.floor(span / np.maximum(every, 1e-300) + _EPS) + 1


def cumulative_density(t, shape: str, final_sparsity, start=0.25, end=0.75, every=np.nan, initial_sparsity=0.0):
    """I(t) = integral_0^t d(tau) dtau for a closed-form shape; all numeric arguments broadcast."""
    t, s_f, t0, t1, s_i = (np.asarray(x, dtype=float) for x in (t, final_sparsity, start, end, initial_sparsity))
    d_f = 1.0 - s_f
    before = np.minimum(t, t0)
    if shape == "dense":
        return t + 0 * (s_f + t0 + t1)
    if shape == "one_shot":
        return before + d_f * np.maximum(t - t0, 0.0)
    width = np.maximum(t1 - t0, 1e-300)
    if shape in ("linear", "cubic"):
        u = np.clip((t - t0) / width, 0.0, 1.0)
        if shape == "linear":
            inside = (1 - s_i) * u - (s_f - s_i) * u**2 / 2
        else:
            inside = d_f * u - (s_i - s_f) * (1 - (1 - u) ** 4) / 4
        return before + width * inside + d_f * np.maximum(t - t1, 0.0)
    if shape == "geometric":
        every = _geometric_every(t0, t1, np.asarray(every, dtype=float))
        n = _geometric_events(t0, t1, every)
        r = d_f ** (1.0 / n)
        last = t0 + (n - 1) * every  # the last event; equals `end` when every divides the window
        tt = np.minimum(t, last)
        m = np.clip(np.floor((tt - t0) / every + _EPS) + 1, 0, n)  # events at or before tt
        # m - 1 whole intervals at densities r, r^2, ..., r^(m-1), then r^m up to tt.
        whole = np.where(np.isclose(r, 1.0), m - 1, r * (1 - r ** np.maximum(m - 1, 0)) / np.where(r == 1, 1, 1 - r))
        inside = np.where(m > 0, every * np.maximum(whole, 0) + r**m * (tt - t0 - (m - 1) * every), 0.0)
        return before + inside + d_f * np.maximum(t - last, 0.0)
    raise ValueError(f"shape {shape!r} has no closed form here; use Schedule for piecewise")


def density_at(t, shape: str, final_sparsity, start=0.25, end=0.75, every=np.nan, initial_sparsity=0.0):
    """d(t), vectorised like cumulative_density."""
    t, s_f, t0, t1, s_i = (np.asarray(x, dtype=float) for x in (t, final_sparsity, start, end, initial_sparsity))
    d_f = 1.0 - s_f
    if shape == "dense":
        return np.ones(np.broadcast(t, s_f).shape)
    if shape == "one_shot":
        return np.where(t < t0, 1.0, d_f)
    if shape == "geometric":
        every = _geometric_every(t0, t1, np.asarray(every, dtype=float))
        n = _geometric_events(t0, t1, every)
        k = np.clip(np.floor((t - t0) / every + _EPS), -1, n - 1)
        return np.where(k < 0, 1.0, d_f ** ((k + 1) / n))
    u = np.clip((t - t0) / np.maximum(t1 - t0, 1e-300), 0.0, 1.0)
    s = s_i + (s_f - s_i) * u if shape == "linear" else s_f + (s_i - s_f) * (1 - u) ** 3
    return np.where(t < t0, 1.0, 1.0 - s)


def mean_density(shape: str, final_sparsity, start=0.25, end=0.75, every=np.nan, initial_sparsity=0.0):
    """Average density over training, (1/D) integral_0^D d: vectorised over schedule parameters."""
    return cumulative_density(1.0, shape, final_sparsity, start, end, every, initial_sparsity)


def n_of_t(density, n_fixed, n_prunable):
    """N(t) = N_fixed + N_prunable * d(t); the one place this sum is written."""
    return np.asarray(n_fixed, dtype=float) + np.asarray(n_prunable, dtype=float) * density


def compute_weighting(model: ModelShape, prune_head: bool = True) -> float:
    """phi = unpruned / prunable matrix-work parameters (`planner.shapes.matmul_params`, the cost ledgers' N): the one
    weighting by which compute up to token fraction t is proportional to phi t + I(t). 0 for an untied model whose
    head is pruned; a tied head, or an untied one kept dense (prune_head=False), multiplies unpruned."""
    fixed, prunable = matmul_params(model, prune_head)
    return fixed / prunable


def piecewise_window(points) -> tuple[float, float]:
    """Token fractions (start, end) of a piecewise schedule's pruning: from the last knot still dense (0 when none
    is) to the first knot at the final density, where the final mask takes force."""
    ts, ds = np.array(points, dtype=float).T
    start = float(ts[ds >= 1.0].max()) if (ds >= 1.0).any() else 0.0
    return start, float(ts[np.argmax(ds <= ds[-1])])


def compute_fraction(t, cumulative, total, fixed_ratio=0.0):
    """Share of training compute spent by token fraction t: (phi t + I(t)) / (phi + I(1)), given I(t) and I(1)."""
    phi = np.asarray(fixed_ratio, dtype=float)
    return (phi * np.asarray(t, dtype=float) + cumulative) / (phi + total)


def _achieved(t0, t1, shape, s_f, phi, every, s_i):
    """Compute fractions (c0, c1) that a token-fraction window (t0, t1) reaches."""
    total = cumulative_density(1.0, shape, s_f, t0, t1, every, s_i)
    return tuple(compute_fraction(t, cumulative_density(t, shape, s_f, t0, t1, every, s_i), total, phi)
                 for t in (t0, t1))


def window_from_compute(shape: str, final_sparsity, c_start=0.25, c_end=0.75, fixed_ratio=0.0, every=np.nan,
                        initial_sparsity=0.0, iters: int = 60):
    """Token fractions (start, end) at which cumulative training compute reaches c_start and c_end of the total.

    Compute up to t is proportional to phi*t + I(t) (`compute_weighting`). The window feeds back into I, so solve by
    fixed point: with w = mean density inside the window (held from the last iterate) and d_f = 1 - s_f, the two
    conditions are linear in (start, end):
        (1+phi) t0                              = c0 * F
        phi t1 + t0 + w (t1 - t0)               = c1 * F,   F = phi + t0 + w (t1 - t0) + d_f (1 - t1).
    A window of zero width (c_end = c_start, or one_shot) is a single pruning event: w = d_f, start = end.
    `every` is a fraction of training (a fixed step count), so for geometric the event count moves with the window
    and the iteration can cycle between event counts; then the iterate whose compute fractions came closest to the
    request is returned (the cycle repeats, so more iterations do not change it). Vectorised; returns arrays.
    """
    s_f, c0, c1, phi = (np.asarray(x, dtype=float) for x in (final_sparsity, c_start, c_end, fixed_ratio))
    if shape == "dense":
        s_f = np.zeros_like(s_f)
    d_f = 1.0 - s_f
    point = (c1 - c0 <= 1e-12) | (shape == "one_shot")
    t0, t1 = np.broadcast_arrays(c0.copy(), c1.copy())
    t0, t1 = t0.astype(float), t1.astype(float)
    best0, best1, best_err = t0, t1, np.full(t0.shape, np.inf)
    for _ in range(iters):
        width = np.maximum(t1 - t0, 1e-12)
        with np.errstate(invalid="ignore", divide="ignore"):
            w = (cumulative_density(t1, shape, s_f, t0, t1, every, initial_sparsity) - t0) / width
        w = np.where(point, d_f, w)
        # Solve the 2x2 linear system [[a11, a12], [a21, a22]] @ [t0, t1] = [r1, r2] (zero width: first row only).
        a11 = 1 + phi - c0 * (1 - w)
        a12 = -c0 * (w - d_f)
        a21 = (1 - w) - c1 * (1 - w)
        a22 = phi + w - c1 * (w - d_f)
        r1 = c0 * (phi + d_f)
        r2 = c1 * (phi + d_f)
        det = np.where(point, 1.0, a11 * a22 - a12 * a21)
        new0 = np.where(point, r1 / a11, (r1 * a22 - a12 * r2) / det)
        new1 = np.where(point, new0, (a11 * r2 - a21 * r1) / det)
        # c_end >= c_start implies end >= start; round-off in a near-empty window must not invert it.
        new0 = np.clip(new0, 0.0, 1.0)
        new1 = np.clip(np.maximum(new1, new0), 0.0, 1.0)
        done = np.allclose(new0, t0, atol=1e-13, rtol=0) and np.allclose(new1, t1, atol=1e-13, rtol=0)
        t0, t1 = new0, new1
        if done:
            return t0, t1
        a0, a1 = _achieved(t0, t1, shape, s_f, phi, every, initial_sparsity)
        err = np.maximum(np.abs(a0 - c0), np.abs(a1 - c1))
        better = err < best_err
        best0, best1, best_err = np.where(better, t0, best0), np.where(better, t1, best1), np.minimum(err, best_err)
    return best0, best1


def closest_step_window(shape: str, final_sparsity, c_start, c_end, fixed_ratio, total_steps: int,
                        every_steps: int | None = None, initial_sparsity=0.0):
    """The whole-step window whose compute fractions are closest to (c_start, c_end): (start_step, end_step, c0, c1).

    Closest is the smallest max(|c0 - c_start|, |c1 - c_end|), ties to the earliest window; a geometric window holds
    a whole number of `every_steps` intervals and ends within training. The continuous solve only seeds the
    neighbourhood searched (start within about half an interval, end within one interval), so the answer is one
    definite window whatever the iteration does.
    """
    T, every = total_steps, every_steps or 1
    t0, t1 = (float(x) for x in window_from_compute(shape, final_sparsity, c_start, c_end, fixed_ratio,
                                                    every / T if shape == "geometric" else np.nan, initial_sparsity))
    reach = every // 2 + 2
    starts = np.unique(np.clip(np.arange(round(t0 * T) - reach, round(t0 * T) + reach + 1), 0, T))[:, None]
    if shape == "geometric":
        k = round((t1 - t0) * T / every)
        ends = starts + every * np.arange(max(k - 1, 0), k + 2)
        ends = np.minimum(ends, starts + every * ((T - starts) // every))
    elif shape == "one_shot" or c_end <= c_start:
        ends = starts
    else:
        ends = np.clip(np.arange(round(t1 * T) - 2, round(t1 * T) + 3), 0, T)[None, :]
    S, E = (a.ravel() for a in np.broadcast_arrays(starts, ends))
    ok = E >= S
    S, E = S[ok], E[ok]
    geo_every = every / T if shape == "geometric" else np.nan
    a0, a1 = _achieved(S / T, E / T, shape, final_sparsity, fixed_ratio, geo_every, initial_sparsity)
    i = int(np.argmin(np.maximum(np.abs(a0 - c_start), np.abs(a1 - c_end))))
    return int(S[i]), int(E[i]), float(a0[i]), float(a1[i])


class Schedule(BaseModel):
    """One schedule as data: the plan schema's `schedule.shape` part. Window in token fractions of training."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: ScheduleShape = "geometric"
    final_sparsity: float = Field(0.0, ge=0.0, lt=1.0, description="s_f, fraction of prunable weights removed")
    initial_sparsity: float = Field(0.0, ge=0.0, lt=1.0, description="s_i at the window start (linear, cubic)")
    start: float = Field(0.25, ge=0.0, le=1.0, description="window start, fraction of training tokens")
    end: float = Field(0.75, ge=0.0, le=1.0, description="window end, fraction of training tokens")
    every: float | None = Field(None, gt=0.0,
                                description="geometric: spacing of pruning events as a fraction of training")
    points: list[tuple[float, float]] | None = Field(None, description="piecewise: (t, density) knots")

    @model_validator(mode="after")
    def _check(self):
        if self.end < self.start:
            raise ValueError(f"window end {self.end} is before its start {self.start}")
        if self.shape == "dense" and (self.final_sparsity or self.initial_sparsity):
            raise ValueError("a dense schedule has final_sparsity 0")
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError("initial_sparsity is above final_sparsity: pruned weights never regrow")
        if self.shape == "piecewise":
            pts = self.points or []
            if len(pts) < 2:
                raise ValueError("piecewise schedule needs at least two (t, density) points")
            ts, ds = np.array(pts, dtype=float).T
            if np.any(np.diff(ts) <= 0) or ts[0] < 0 or ts[-1] > 1:
                raise ValueError("piecewise points need strictly increasing t within [0, 1]")
            if np.any(np.diff(ds) > 0) or ds[0] > 1 or ds[-1] <= 0:
                raise ValueError("piecewise densities must be non-increasing within (0, 1]: weights never regrow")
        elif self.points is not None:
            raise ValueError(f"points are only for the piecewise shape, not {self.shape}")
        return self

    def _args(self):
        every = np.nan if self.every is None else self.every
        return self.final_sparsity, self.start, self.end, every, self.initial_sparsity

    @property
    def final_density(self) -> float:
        if self.shape == "piecewise":
            return float(self.points[-1][1])
        return 1.0 if self.shape == "dense" else 1.0 - self.final_sparsity

    @property
    def final_mask_start(self) -> float:
        """Token fraction from which the final mask is in force: the window's end, or for a piecewise schedule the
        first knot at the final density (its own start/end fields may be left at their defaults)."""
        return piecewise_window(self.points)[1] if self.shape == "piecewise" else self.end

    @property
    def n_events(self) -> int | None:
        """Number of geometric pruning events (None for the other shapes)."""
        if self.shape != "geometric":
            return None
        every = _geometric_every(self.start, self.end, np.nan if self.every is None else self.every)
        return int(_geometric_events(self.start, self.end, every))

    def density(self, t) -> np.ndarray:
        """d(t) at token fractions t (array)."""
        if self.shape == "piecewise":
            ts, ds = np.array(self.points, dtype=float).T
            return np.interp(np.asarray(t, dtype=float), ts, ds, left=ds[0], right=ds[-1])
        return density_at(t, self.shape, *self._args())

    def cumulative(self, t) -> np.ndarray:
        """I(t) = integral_0^t d."""
        if self.shape == "piecewise":
            ts, ds = np.array(self.points, dtype=float).T
            t = np.asarray(t, dtype=float)
            knots = np.concatenate([[0.0], ts, [1.0]])
            vals = np.interp(knots, ts, ds, left=ds[0], right=ds[-1])
            cum = np.concatenate([[0.0], np.cumsum(np.diff(knots) * (vals[1:] + vals[:-1]) / 2)])
            i = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, len(knots) - 2)
            dt = t - knots[i]
            return cum[i] + dt * (vals[i] + self.density(t)) / 2  # linear between knots: trapezoid is exact
        return cumulative_density(t, self.shape, *self._args())

    def mean_density(self) -> float:
        return float(self.cumulative(1.0))

    def density_at_step(self, step, total_steps: int) -> np.ndarray:
        """Density in force for training step `step` (0-based) of `total_steps`: step s covers [s/T, (s+1)/T)."""
        return self.density(np.asarray(step, dtype=float) / total_steps)

    def n_avg(self, n_fixed: float, n_prunable: float) -> float:
        return float(n_of_t(self.mean_density(), n_fixed, n_prunable))

    def n_final(self, n_fixed: float, n_prunable: float) -> float:
        return float(n_of_t(self.final_density, n_fixed, n_prunable))

    def compute_fraction(self, t, fixed_ratio: float = 0.0) -> np.ndarray:
        """Fraction of training compute spent by token fraction t (fixed_ratio: `compute_weighting`)."""
        return compute_fraction(t, self.cumulative(t), self.mean_density(), fixed_ratio)

    @classmethod
    def from_steps(cls, shape: str, final_sparsity: float, start_step: int, end_step: int, total_steps: int,
                   every: int | None = None, **kw) -> "Schedule":
        """Window and pruning frequency given in optimizer steps."""
        if not 0 <= start_step <= end_step <= total_steps:
            raise ValueError(f"need 0 <= start_step ({start_step}) <= end_step ({end_step}) <= total_steps "
                             f"({total_steps})")
        return cls(shape=shape, final_sparsity=final_sparsity, start=start_step / total_steps,
                   end=end_step / total_steps, every=None if every is None else every / total_steps, **kw)

    @classmethod
    def from_compute(cls, shape: str, final_sparsity: float, c_start: float = 0.25, c_end: float = 0.75,
                     fixed_ratio: float = 0.0, every: float | None = None, **kw) -> "Schedule":
        """Window given as fractions of training compute (the seed's near-optimal default: 25% -> 75%)."""
        if not 0 <= c_start <= c_end <= 1:
            raise ValueError(f"need 0 <= compute start ({c_start}) <= compute end ({c_end}) <= 1")
        t0, t1 = window_from_compute(shape, final_sparsity, c_start, c_end, fixed_ratio,
                                     np.nan if every is None else every, kw.get("initial_sparsity", 0.0))
        return cls(shape=shape, final_sparsity=final_sparsity, start=float(t0), end=float(t1), every=every, **kw)
