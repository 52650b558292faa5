"""Can the runs determine the fit? Checks before a fit (one-line input errors) and after it (degenerate-fit notes).

Before: a loss that never changes, or a single value of N (or D) while its exponent is free, leaves nothing to fit.
After, at the optimum:
* exponents outside a plausible range (the N and D exponents of every published LLM fit lie in 0.05-1);
* a term that has vanished from every run's prediction (its coefficient ran to zero: E, A, B, or Frantar's a, c, e,
  g), so the runs say nothing about it;
* flat directions: the Jacobian of the log predictions in the free parameters (columns scaled to unit length) has a
  singular value below FLAT_CONDITION of the largest, so some combination of parameters moves no prediction.
Well-posed fits (the Epoch data, dense and sparse grids) have condition ~3e-3; the seed's 8 pairs fitted freely ~1e-5.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from planner.errors import PlannerInputError
from planner.laws import EXPONENTS, N_COLUMN, PARAM_NAMES

PLAUSIBLE_EXPONENT = (0.02, 3.0)
VANISHED_SHARE = 1e-6  # a term below this share of every run's predicted loss has vanished
FLAT_CONDITION = 1e-4
FLAT = "a flat direction"  # how the flat-direction note starts (`cannot_plan` lets it pass)
# The coefficient of each log-space term of `planner.fit.design`, in order.
TERM_COEFFICIENTS = {"chinchilla": ("E", "A", "B"), "unified": ("E", "A", "B"), "frantar": ("a", "c", "e", "g"),
                     "effective": ("E", "A", "B")}


def check_runs(table: pd.DataFrame, form: str, held=()) -> None:
    """PlannerInputError (one line) when the runs cannot determine a fit of `form` holding the parameters `held`."""
    loss = table["loss"].to_numpy(float)
    if np.ptp(np.log(loss)) < 1e-12:
        raise PlannerInputError(f"runs table: column 'loss' is {loss[0]:g} in every run: there is nothing to fit")
    alpha, beta = EXPONENTS[form]
    for col, exponent in ((N_COLUMN[form], alpha), ("tokens", beta)):
        if exponent not in held and table[col].nunique() < 2:
            raise PlannerInputError(f"runs table: every run has the same '{col}' ({table[col].iloc[0]:g}), so the "
                                    f"exponent {exponent} cannot be fitted; hold it (--fix {exponent}=VALUE or "
                                    f"--fix-exponents PRESET) or add runs that vary it")


def degeneracies(form: str, params: dict, theta: np.ndarray, F: np.ndarray, held=(), names=None) -> tuple[str, ...]:
    """Why a fit is not determined by its runs (empty when it is). `theta` is the full log-space optimum and F the
    design (terms, runs, params) of `planner.fit.design`; `held` the names of held parameters; `names` those of
    theta's entries (default the form's PARAM_NAMES)."""
    names = names or PARAM_NAMES[form]
    lo, hi = PLAUSIBLE_EXPONENT
    notes = [f"{k} = {params[k]:.3g} is outside the plausible {lo}-{hi}"
             for k in EXPONENTS.get(form, ("alpha", "beta")) if k not in held and not lo <= params[k] <= hi]
    z = np.einsum("krp,p->kr", F, theta)  # log of each term, per run
    share = np.exp(z - np.logaddexp.reduce(z, axis=0))
    notes += [f"the {coef} term has vanished ({coef} = {params[coef]:.2g})"
              for coef, s in zip(TERM_COEFFICIENTS[form], share.max(axis=1)) if s < VANISHED_SHARE and coef not in held]
    free = [i for i, k in enumerate(names) if k not in held]
    J = np.einsum("kr,krp->rp", share, F)[:, free]  # d log L_hat / d theta
    J = J / np.maximum(np.linalg.norm(J, axis=0), 1e-300)
    _, s, vt = np.linalg.svd(J, full_matrices=False)
    if not notes and s[-1] < FLAT_CONDITION * s[0]:
        mix = [names[free[i]] for i in np.argsort(-np.abs(vt[-1]))[:2]]
        notes.append(f"{FLAT} mixes {' and '.join(mix)} (condition {s[-1] / s[0]:.1e}): the runs cannot tell them "
                     f"apart")
    return tuple(notes)


def cannot_plan(notes) -> tuple[str, ...]:
    """The degeneracies (`degeneracies`' notes) that stop a fit from planning: an implausible exponent or a vanished
    term, with which the law would pick sizes or token counts the runs never tested. A flat direction alone is not
    one: the predictions at the runs are still determined, only some parameters are not."""
    return tuple(n for n in notes if not n.startswith(FLAT))


def degenerate_line(notes) -> str:
    """The one line the CLI prints for a degenerate fit."""
    return (f"degenerate fit: {'; '.join(notes)}. No intervals are shown: hold the exponents (--fix-exponents "
            f"PRESET) or add runs that vary N and D")
