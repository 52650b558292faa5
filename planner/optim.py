"""The multi-start optimiser behind `planner.fit`: the summed Huber objective of log residuals and a batched BFGS.

A fit problem is a few log-space terms per run, ``log L_hat(r) = logsumexp_k z_k(r)`` with
``z_k(r) = theta[cols_k] @ X_k[:, r] + offset_k(r)``: each term reads only the free parameters it uses (``cols_k``),
and held parameters enter as a fixed ``offset_k`` (see `make_problem`). The optimiser sees only the free parameters.

Speed: every start runs at once, as one (starts x runs) numpy computation per term; a term equal for every run
(log E) is computed once per start, and each term multiplies only the parameters it reads. Every start runs to its
own convergence, so ``n_starts_at_best`` and ``n_capped`` in `planner.fit` count real outcomes. Measured and dropped
(bench/RESULTS.md): merging starts whose iterates meet (at a 1e-3 log-space tolerance it removed under 5% of the
work: starts spend most iterations travelling and reach the optimum's neighbourhood at different times), a float32
first pass (starts must still converge in float64 before they can be counted at the best objective, which cost what
float32 saved), and threads over chunks (no gain on the 2-vCPU machine).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CACHE_BYTES = 2 ** 18  # per chunk of (starts x runs) temporaries: fits in L2 with room to spare


@dataclass(frozen=True)
class Problem:
    """``terms``: per term (cols, X, offset), X of shape (len(cols), runs), or (len(cols), 1) and offset of shape
    (1,) when the term is equal for every run (log E); offset None when zero. ``y``: log measured loss."""
    terms: tuple
    y: np.ndarray
    n_par: int


def make_problem(F, y, offset=None) -> Problem:
    """A Problem from a dense design F (terms, runs, free params) and an optional (terms, runs) offset."""
    terms = []
    for k, Fk in enumerate(np.asarray(F, float)):
        cols = np.flatnonzero((Fk != 0).any(axis=0))
        X = Fk[:, cols].T
        off = None if offset is None or not np.any(offset[k]) else np.asarray(offset[k], float)
        if (X == X[:, :1]).all() and (off is None or (off == off[0]).all()):  # computed once per start, not per run
            X, off = X[:, :1], None if off is None else off[:1]
        terms.append((cols, np.ascontiguousarray(X), off))
    return Problem(tuple(terms), np.asarray(y, float), np.shape(F)[2])


def evaluate(theta, prob: Problem, delta=1e-3, weights=None):
    """Summed Huber(delta) of log residuals and its gradient for each row of theta (starts, free params).

    ``weights`` (starts, runs) re-weights runs per start (bootstrap counts, held-out folds). Starts go in chunks of
    about 256 KiB of (starts x runs) temporaries, which stay in cache (several times faster than one big pass).
    """
    theta = np.atleast_2d(np.asarray(theta, float))
    f, g = np.empty(len(theta)), np.empty(theta.shape)
    chunk = max(8, _CACHE_BYTES // (8 * len(prob.y)))
    for i in range(0, len(theta), chunk):
        w = None if weights is None else weights[i:i + chunk]
        f[i:i + chunk], g[i:i + chunk] = _huber_chunk(theta[i:i + chunk], prob, delta, w)
    return f, g


def _huber_chunk(theta, prob, delta, weights):
    # No max shift in the log-sum-exp: at any sensible point each term is a log loss of order 1; a wild trial step
    # overflows to a non-finite objective, which the line search rejects.
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        ex = []
        for cols, X, off in prob.terms:
            z = theta[:, cols] @ X
            if off is not None:
                z += off
            ex.append(np.exp(z, out=z))
        total = ex[0] + ex[1]
        for ek in ex[2:]:
            total += ek
        r = np.log(total)
        r -= prob.y
        dh = np.maximum(r, -delta)  # the Huber derivative, clipped to [-delta, delta]
        np.minimum(dh, delta, out=dh)
        dhw = dh if weights is None else dh * weights
        # Huber loss (r - dh / 2) dh on both branches, summed per start without a (starts x runs) temporary
        f = np.einsum("sr,sr->s", r, dhw) - 0.5 * np.einsum("sr,sr->s", dh, dhw)
        dhw = np.divide(dhw, total, out=total)
        grad = np.zeros(theta.shape)
        for (cols, X, _), ek in zip(prob.terms, ex):
            if ek.shape[1] == 1:
                grad[:, cols] += (ek[:, 0] * dhw.sum(1))[:, None] * X[:, 0]
            else:
                ek *= dhw
                grad[:, cols] += ek @ X.T
    return f, grad


def batched_bfgs(theta0, prob: Problem, delta=1e-3, weights=None, maxiter=1000, gtol=1e-8, ftol=1e-9):
    """Minimise the objective from every row of theta0 at once; returns (theta, f, n_iter, capped).

    Each start keeps its own dense inverse-Hessian estimate and stops, as scipy's L-BFGS-B would, on a small relative
    decrease (ftol), a small gradient (gtol) or a failed line search. Unlike scipy the decrease test has no floor of
    1: a summed Huber objective is ~1e-3, where that floor makes the test absolute and stops starts early.
    """
    x = np.array(theta0, dtype=float)
    n_start, n_par = x.shape
    w = None if weights is None else np.broadcast_to(weights, (n_start, len(prob.y)))
    f, g = evaluate(x, prob, delta, w)
    n_iter, capped = np.zeros(n_start, int), np.zeros(n_start, bool)
    idx = np.flatnonzero(np.isfinite(f))  # the working set: unfinished starts, compacted every iteration
    xa, fa, ga, wa = x[idx], f[idx], g[idx], None if w is None else w[idx]
    H = np.tile(np.eye(n_par), (len(idx), 1, 1))
    fresh = np.ones(len(idx), bool)  # no curvature pair yet: first step of unit length, H rescaled after
    while idx.size:
        p = -np.einsum("spq,sq->sp", H, ga)
        slope = np.einsum("sp,sp->s", p, ga)
        uphill = ~(slope < 0)
        if uphill.any():  # lost descent (non-smooth kinks): restart that start's estimate from the gradient
            p[uphill], H[uphill], slope[uphill] = -ga[uphill], np.eye(n_par), -np.einsum("sp,sp->s", ga, ga)[uphill]
        step = np.where(fresh, 1.0 / np.maximum(1.0, np.sqrt(np.einsum("sp,sp->s", ga, ga))), 1.0)
        x_new, f_new, g_new = xa.copy(), fa.copy(), ga.copy()
        moved = np.zeros(len(idx), bool)
        pending, halvings = np.arange(len(idx)), 0
        while pending.size and halvings < 40:  # Armijo backtracking on the starts not yet accepted
            # With few starts left the objective call's fixed cost dominates, so try several halvings per call;
            # the first acceptable one is taken, exactly as one halving at a time would take it.
            m = 1 if halvings == 0 or pending.size > 32 else 4
            trial = step[pending, None] * 0.5 ** np.arange(m)
            xt = xa[pending, None, :] + trial[:, :, None] * p[pending, None, :]
            ft, gt = evaluate(xt.reshape(-1, n_par), prob, delta,
                              None if wa is None else np.repeat(wa[pending], m, axis=0))
            ft, gt = ft.reshape(-1, m), gt.reshape(-1, m, n_par)
            ok = np.isfinite(ft) & (ft <= (fa[pending] + 1e-4 * slope[pending] * trial.T).T)
            hit, first = ok.any(axis=1), ok.argmax(axis=1)
            acc, j = pending[hit], first[hit]
            x_new[acc], f_new[acc], g_new[acc], moved[acc] = xt[hit, j], ft[hit, j], gt[hit, j], True
            pending, halvings = pending[~hit], halvings + m
            step[pending] *= 0.5 ** m
        s, yv = x_new - xa, g_new - ga
        sy, yy = np.einsum("sp,sp->s", s, yv), np.einsum("sp,sp->s", yv, yv)
        # yy > 0 as well: a gradient change that underflows to zero carries no curvature (and would divide by zero)
        curved = moved & (yy > 0) & (sy > 1e-10 * np.sqrt(np.einsum("sp,sp->s", s, s) * yy))
        if curved.any():  # BFGS: H + s w^T - v s^T with v = rho H y, w = (1 + rho y^T H y) rho s - v
            c = np.flatnonzero(curved)
            Hc, sc, yc, rho = H[c], s[c], yv[c], 1.0 / sy[c]
            Hc[fresh[c]] *= (sy[c] / yy[c])[fresh[c], None, None]
            v = rho[:, None] * np.einsum("spq,sq->sp", Hc, yc)
            w = ((1 + np.einsum("sp,sp->s", yc, v)) * rho)[:, None] * sc - v
            Hc += sc[:, :, None] * w[:, None, :]
            Hc -= v[:, :, None] * sc[:, None, :]
            H[c] = Hc
        small_drop = ~fresh & ((fa - f_new) <= ftol * np.abs(fa))  # waits for a curvature pair
        fresh &= ~curved
        n_iter[idx] += 1
        done = ~moved | small_drop | (np.abs(g_new).max(1) <= gtol)
        hit = ~done & (n_iter[idx] >= maxiter)
        capped[idx[hit]] = True
        done |= hit
        x[idx[done]], f[idx[done]] = x_new[done], f_new[done]
        keep = ~done
        idx, xa, fa, ga, H = idx[keep], x_new[keep], f_new[keep], g_new[keep], H[keep]
        fresh, wa = fresh[keep], None if wa is None else wa[keep]
    return x, f, n_iter, capped
