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
float32 saved), and threads over chunks (no gain on the 2-vCPU machine). Damped Newton on the exact-inside-the-zone
curvature (`batched_newton`) from all 4500 grid starts: ~32 iterations instead of ~52-74 and twice the starts at the
best objective, but each curvature pass costs ~4x a gradient pass, so 4.9-6.1 s against BFGS's 1.4-1.9 s (a BFGS
then Newton hybrid: 2.5-2.9 s). It is used where few iterations remain: finishing the bootstrap refits.
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


def evaluate(theta, prob: Problem, delta=1e-3, weights=None, hess=False, kappa=0.1):
    """Summed Huber(delta) of log residuals and its gradient for each row of theta (starts, free params); with
    ``hess`` also a (starts, params, params) curvature matrix (`_curvature`).

    ``weights`` (starts, runs) re-weights runs per start (bootstrap counts, held-out folds). Starts go in chunks of
    about 256 KiB of (starts x runs) temporaries, which stay in cache (several times faster than one big pass).
    """
    theta = np.atleast_2d(np.asarray(theta, float))
    f, g = np.empty(len(theta)), np.empty(theta.shape)
    H = np.empty(theta.shape + theta.shape[1:]) if hess else None
    chunk = max(8, _CACHE_BYTES * (1 + 3 * hess) // (8 * len(prob.y)))
    for i in range(0, len(theta), chunk):
        w = None if weights is None else weights[i:i + chunk]
        out = _huber_chunk(theta[i:i + chunk], prob, delta, w, hess, kappa)
        f[i:i + chunk], g[i:i + chunk] = out[:2]
        if hess:
            H[i:i + chunk] = out[2]
    return (f, g, H) if hess else (f, g)


def _huber_chunk(theta, prob, delta, weights, hess, kappa):
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
        if hess:
            return (f,) + _curvature(theta.shape, prob, ex, total, r, dhw, weights, delta, kappa)
        dhw = np.divide(dhw, total, out=total)
        grad = np.zeros(theta.shape)
        for (cols, X, _), ek in zip(prob.terms, ex):
            if ek.shape[1] == 1:
                grad[:, cols] += (ek[:, 0] * dhw.sum(1))[:, None] * X[:, 0]
            else:
                ek *= dhw
                grad[:, cols] += ek @ X.T
    return f, grad


def _curvature(shape, prob, ex, total, r, dhw, weights, delta, kappa):
    """Gradient and curvature matrix of the summed Huber loss.

    With J_i = grad r_i = sum_k p_ik g_ik (p: softmax weights of the terms, g_ik: term k's design row), the exact
    Hessian is sum_i h''(r_i) J_i J_i^T + h'(r_i) (sum_k p_ik g_ik g_ik^T - J_i J_i^T). h'' is 1 inside
    |r| <= delta and 0 outside; outside we use kappa * delta / |r| (kappa = 1 is the IRLS majorizer's weight): with
    h'' = 0 the linear-zone residuals, most of them, carry no curvature and Newton steps overshoot and backtrack,
    while the full IRLS weight makes steps too short. The matrix may be indefinite; the optimiser handles that.
    Computed per pair of terms (j, k) as (coefficient_i p_ij p_ik) @ (g_ij g_ik^T), never forming J.
    """
    n_start, n_par = shape
    n_run = len(r[0])
    inv = np.divide(1.0, total, out=total)
    ps = [ek * inv for ek in ex]
    Xs = [np.ascontiguousarray(np.broadcast_to(X, (len(cols), n_run))) for cols, X, _ in prob.terms]
    grad = np.zeros(shape)
    for (cols, _, _), pk, X in zip(prob.terms, ps, Xs):
        grad[:, cols] += (dhw * pk) @ X.T
    ar = np.abs(r)
    wt = np.divide(kappa * delta, ar, out=r)
    np.copyto(wt, 1.0, where=ar <= delta)
    if weights is not None:
        wt *= weights
    wt -= dhw  # the J J^T coefficient: h'' less h'
    H = np.zeros(shape + (n_par,))
    for j, ((cj, _, _), pj, Xj) in enumerate(zip(prob.terms, ps, Xs)):
        wpj = wt * pj
        for k in range(j, len(ps)):
            ck, Xk = prob.terms[k][0], Xs[k]
            coef = wpj * ps[k]
            if k == j:  # the term's own curvature, h' p_j g_j g_j^T
                coef += dhw * pj
            XX = (Xj[:, None, :] * Xk[None]).reshape(-1, n_run)  # contiguous: a broadcast operand slows matmul
            blk = (coef @ XX.T).reshape(n_start, len(cj), len(ck))
            H[:, cj[:, None], ck] += blk
            if k != j:
                H[:, ck[:, None], cj] += blk.transpose(0, 2, 1)
    return grad, H


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


def batched_newton(theta0, prob: Problem, delta=1e-3, weights=None, maxiter=200, gtol=1e-8, ftol=1e-9, kappa=0.1):
    """Damped Newton from every row of theta0 at once (curvature from `_curvature`); returns (theta, f, n_iter,
    capped) and stops per start on the same tests as `batched_bfgs`.

    The curvature matrix is scaled to unit diagonal and its eigenvalues replaced by their absolute values, floored
    at 1e-6 of the largest (a descent direction even where it is indefinite or singular); Armijo backtracking on
    the true objective makes the objective non-increasing per start. Each line search starts at 4x the last
    accepted step (at most 1), so a start that needed short steps does not retry the full one every time.
    """
    x = np.array(theta0, dtype=float)
    n_start = len(x)
    w = None if weights is None else np.broadcast_to(weights, (n_start, len(prob.y)))
    f, g, H = evaluate(x, prob, delta, w, hess=True, kappa=kappa)
    n_iter, capped = np.zeros(n_start, int), np.zeros(n_start, bool)
    idx = np.flatnonzero(np.isfinite(f))
    xa, fa, ga, Ha, wa = x[idx], f[idx], g[idx], H[idx], None if w is None else w[idx]
    last = np.ones(len(idx))
    while idx.size:
        d = 1 / np.sqrt(np.maximum(np.einsum("spp->sp", Ha), 1e-300))
        ev, V = np.linalg.eigh(Ha * d[:, :, None] * d[:, None, :])
        ev = np.maximum(np.abs(ev), 1e-6 * np.abs(ev).max(1, keepdims=True) + 1e-300)
        with np.errstate(over="ignore", invalid="ignore"):
            p = -d * np.einsum("spq,sq->sp", V, np.einsum("sqp,sq->sp", V, d * ga) / ev)
        slope = np.einsum("sp,sp->s", p, ga)
        bad = ~(slope < 0)  # a non-finite solve: fall back to the gradient
        p[bad], slope[bad] = -ga[bad], -np.einsum("sp,sp->s", ga[bad], ga[bad])
        step = np.minimum(1.0, 4 * last)
        x_new, f_new, g_new, H_new = xa.copy(), fa.copy(), ga.copy(), Ha.copy()
        moved = np.zeros(len(idx), bool)
        pending, halvings = np.arange(len(idx)), 0
        while pending.size and halvings < 40:
            xt = xa[pending] + step[pending, None] * p[pending]
            ft, gt, Ht = evaluate(xt, prob, delta, None if wa is None else wa[pending], hess=True, kappa=kappa)
            ok = np.isfinite(ft) & (ft <= fa[pending] + 1e-4 * step[pending] * slope[pending])
            acc = pending[ok]
            x_new[acc], f_new[acc], g_new[acc], H_new[acc], moved[acc] = xt[ok], ft[ok], gt[ok], Ht[ok], True
            pending, halvings = pending[~ok], halvings + 1
            step[pending] *= 0.5
        n_iter[idx] += 1
        done = ~moved | ((fa - f_new) <= ftol * np.abs(fa)) | (np.abs(g_new).max(1) <= gtol)
        hit = ~done & (n_iter[idx] >= maxiter)
        capped[idx[hit]] = True
        done |= hit
        x[idx[done]], f[idx[done]] = x_new[done], f_new[done]
        keep = ~done
        idx, xa, fa, ga, Ha, last = idx[keep], x_new[keep], f_new[keep], g_new[keep], H_new[keep], step[keep]
        wa = None if wa is None else wa[keep]
    return x, f, n_iter, capped
