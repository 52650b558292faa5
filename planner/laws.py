"""Scaling-law forms, the `Law` object and published presets.

Forms (all vectorised over numpy arrays; N counts parameters, D tokens):

* ``chinchilla``: L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022).
* ``unified``: the same formula with N = N_avg = (1/D) * integral of N(t) over training (Jin et al., ICLR 2025).
  It is the one function `chinchilla`; the forms differ only in which parameter count feeds N.
* ``frantar``: L(S, N, D) = (a (1 - S)^b + c) N^-d + e D^-f + g, with N the non-zero parameters at the end and S
  the final sparsity (Frantar et al., ICLR 2024). At a fixed S it is a Chinchilla law with A = a (1 - S)^b + c, so
  every derived quantity below reuses the Chinchilla algebra.

Compute convention: the cost ledgers' (`planner.hardware.costs`), training FLOPs = D x FLOPs per token.
`Law.compute_optimal`
defaults to 6 N per token (N in the law's own count, attention left out: N_avg for ``unified`` is then the effective
ledger of a run whose pruned weights cost nothing) and takes a shape family's FLOPs per token for the full ledger.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.errors import PlannerInputError
from planner.io import fmt_of, parse_mapping, read_text, validate

Form = Literal["chinchilla", "unified", "frantar"]

PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "chinchilla": ("E", "A", "B", "alpha", "beta"),
    "unified": ("E", "A", "B", "alpha", "beta"),
    "frantar": ("a", "b", "c", "d", "e", "f", "g"),
}
# The N and D exponents of each form (what a fit may hold at published values; Frantar's d, f play alpha, beta).
EXPONENTS: dict[str, tuple[str, str]] = {"chinchilla": ("alpha", "beta"), "unified": ("alpha", "beta"),
                                         "frantar": ("d", "f")}
# Which column of a runs table feeds N for each form (see planner.runs).
N_COLUMN: dict[str, str] = {"chinchilla": "n_final", "unified": "n_avg", "frantar": "n_final"}
# Coefficients that may be stored as their natural log (key "log_X") to keep published unrounded fits exact.
_LOG_STORABLE = {"E", "A", "B"}


def chinchilla(N, D, E, A, B, alpha, beta):
    """E + A / N^alpha + B / D^beta, broadcast over arrays."""
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    return E + A * N ** (-alpha) + B * D ** (-beta)


unified = chinchilla  # same law; the caller feeds N_avg instead of the final count


def frantar_coefficient(S, a, b, c):
    """The sparsity-dependent N coefficient a (1 - S)^b + c of the Frantar law."""
    return a * (1.0 - np.asarray(S, dtype=float)) ** b + c


def frantar(S, N, D, a, b, c, d, e, f, g):
    """(a (1 - S)^b + c) N^-d + e D^-f + g, broadcast over arrays."""
    return chinchilla(N, D, g, frantar_coefficient(S, a, b, c), e, d, f)


def chinchilla_terms(form: str, coef, sparsity=None):
    """(E, A, B, alpha, beta) of the Chinchilla law equivalent to ``form`` at a sparsity (Frantar; default 0).

    ``coef`` maps natural parameter names to scalars or arrays (e.g. bootstrap samples), so this broadcasts.
    """
    if form != "frantar":
        return coef["E"], coef["A"], coef["B"], coef["alpha"], coef["beta"]
    S = 0.0 if sparsity is None else sparsity
    return coef["g"], frantar_coefficient(S, coef["a"], coef["b"], coef["c"]), coef["e"], coef["d"], coef["f"]


def optimal_n_exponent(alpha, beta):
    """a = beta / (alpha + beta) in N_opt proportional to C^a under C = 6 N D (D_opt grows as C^(1 - a))."""
    return beta / (alpha + beta)


class Law(BaseModel):
    """A scaling law with its provenance; sits inside the plan schema.

    ``params`` keeps unrounded floats. Chinchilla-type forms take E, A, B, alpha, beta, where any of E, A, B may be
    given instead as its natural log ``log_E``/``log_A``/``log_B`` (exponentiated on use). ``ci`` optionally holds a
    (low, high) interval per parameter name.
    """
    model_config = ConfigDict(extra="forbid")

    form: Form
    params: dict[str, float]
    n_convention: Literal["total", "non_embedding"] = "total"
    provenance: str = ""
    ci: dict[str, tuple[float, float]] | None = None
    # Units the params were fitted in: N counted in units of n_unit parameters, D in units of d_unit of d_counts.
    # `predict` and every method take raw parameter counts and raw tokens (or steps); the units fold into A and B.
    n_unit: float = Field(1.0, gt=0)
    d_unit: float = Field(1.0, gt=0)
    d_counts: Literal["tokens", "steps"] = "tokens"

    @model_validator(mode="after")
    def _check_params(self):
        resolved = {k[4:] if k.startswith("log_") and k[4:] in _LOG_STORABLE else k for k in self.params}
        expected = set(PARAM_NAMES[self.form])
        if resolved != expected or len(resolved) != len(self.params):
            raise ValueError(f"{self.form} law needs params {sorted(expected)} (E, A, B may be log_E, log_A, log_B); "
                             f"got {sorted(self.params)}")
        if not all(math.isfinite(v) for v in self.params.values()):
            raise ValueError("law params must be finite numbers")
        return self

    @property
    def coefficients(self) -> dict[str, float]:
        """Parameters on their natural scale (stored logs exponentiated)."""
        return {(k[4:] if k.startswith("log_") else k): (math.exp(v) if k.startswith("log_") else v)
                for k, v in self.params.items()}

    def _chinchilla_terms(self, sparsity=None):
        """(E, A, B, alpha, beta) for raw counts: A (N / n_unit)^-alpha = (A n_unit^alpha) N^-alpha, B likewise."""
        E, A, B, alpha, beta = chinchilla_terms(self.form, self.coefficients, sparsity)
        return E, A * self.n_unit ** alpha, B * self.d_unit ** beta, alpha, beta

    def predict(self, n, tokens, sparsity=None):
        """Loss at parameter count n (this law's count: N_avg for 'unified') and token count.

        ``sparsity`` is the final sparsity for 'frantar' (default 0, dense); the other forms ignore it because their
        N already carries the pruning.
        """
        return chinchilla(n, tokens, *self._chinchilla_terms(sparsity))

    @property
    def exponents(self) -> tuple[float, float]:
        """(alpha, beta): the N and D exponents (Frantar's d, f), which a fit to a few runs may hold at these."""
        _, _, _, alpha, beta = self._chinchilla_terms()
        return float(alpha), float(beta)

    @property
    def optimal_n_exponent(self) -> float:
        """a = beta / (alpha + beta) in N_opt proportional to C^a (D_opt grows as C^(1 - a))."""
        return optimal_n_exponent(*self.exponents)

    def compute_optimal(self, C, sparsity=None, flops_per_token=None):
        """(N_opt, D_opt) minimising loss at training compute C = D * flops_per_token(N), N in this law's count,
        vectorised over C.

        Compute is counted as the cost ledgers count it (`planner.hardware.costs`: training FLOPs per token).
        The default,
        6 N, is that ledger when every counted parameter does matrix work and attention is left out; it has the
        closed form N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)). A shape family's
        `flops_per_token` (`planner.candidates.family_flops_per_token`: matmul parameters and attention) is solved
        numerically: golden section in log N within `flops_per_token.n_range`.
        """
        _, A, B, alpha, beta = self._chinchilla_terms(sparsity)
        if flops_per_token is None:
            budget = np.asarray(C, dtype=float) / 6.0
            G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
            n_opt = G * budget ** optimal_n_exponent(alpha, beta)
            return n_opt, budget / n_opt
        C = np.asarray(C, dtype=float)
        lo, hi = (np.full(C.shape, np.log(x)) for x in flops_per_token.n_range)

        def loss(log_n):
            n = np.exp(log_n)
            return self.predict(n, C / flops_per_token(n), sparsity)
        ratio = (np.sqrt(5) - 1) / 2
        for _ in range(90):  # golden section: the bracket shrinks by 0.618 each step
            a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
            left = loss(a) < loss(b)
            lo, hi = np.where(left, lo, a), np.where(left, b, hi)
        n_opt = np.exp((lo + hi) / 2)
        return n_opt, C / flops_per_token(n_opt)

    def tokens_for_loss(self, target, n, sparsity=None):
        """Tokens needed to reach loss ``target`` at parameter count n; inf where the target is at or below the
        law's floor E + A / n^alpha (more tokens never get there)."""
        E, A, B, alpha, beta = self._chinchilla_terms(sparsity)
        gap = np.asarray(target, dtype=float) - E - A * np.asarray(n, dtype=float) ** (-alpha)
        return _invert_power(gap, B, beta)

    def n_for_loss(self, target, tokens, sparsity=None):
        """Parameter count needed to reach loss ``target`` with a token count; inf where unreachable."""
        E, A, B, alpha, beta = self._chinchilla_terms(sparsity)
        gap = np.asarray(target, dtype=float) - E - B * np.asarray(tokens, dtype=float) ** (-beta)
        return _invert_power(gap, A, alpha)


def _invert_power(gap, coef, exponent):
    """Solve coef * x^-exponent = gap for x; inf where gap <= 0 (NaN stays NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (coef / gap) ** (1.0 / exponent)
    return np.where(gap > 0, x, np.where(np.isnan(gap), np.nan, np.inf))


_HOFFMANN = "Hoffmann et al. 2022, 'Training Compute-Optimal Large Language Models', approach 3"
PRESETS: dict[str, Law] = {
    "chinchilla-approach3-published": Law(
        form="chinchilla", params={"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
        provenance=f"{_HOFFMANN}: the rounded figures printed in the paper"),
    "chinchilla-approach3-unrounded": Law(
        form="chinchilla",
        params={"log_E": 0.5267228, "log_A": 6.0073404, "log_B": 6.0179186, "alpha": 0.33917084, "beta": 0.2849083},
        provenance=f"{_HOFFMANN}: unrounded log-space estimates (log E, log A, log B) as later released"),
    "frantar-t5-c4": Law(
        form="frantar", params={"a": 0.56778512, "b": 0.72161276, "c": 1.52265016, "d": 0.24513173,
                                "e": 0.63361517, "f": 0.20270772, "g": 0.65074219},
        n_unit=1e6, d_unit=1e5, d_counts="steps",
        provenance="Frantar et al. 2024, 'Scaling Laws for Sparsely-Connected Foundation Models' (ICLR): T5 on C4 "
                   "(span-corruption validation loss), coefficients as fitted in the jaxpruner bigsparse notebook "
                   "(google-research/jaxpruner, projects/bigsparse/sparsity-scaling.ipynb); N = non-zero "
                   "parameters in millions, D = training steps in units of 1e5, not tokens"),
    "epoch-replication": Law(
        form="chinchilla", params={"E": 1.8169, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658},
        provenance="Besiroglu et al. 2024, 'Chinchilla Scaling: A replication attempt' (Epoch AI): approach 3 "
                   "refit on 240 points extracted from Hoffmann et al. Figure 4"),
}
DEFAULT_LAW = "epoch-replication"


def get_law(name: str, form: Form | None = None) -> Law:
    """A copy of preset ``name``; ``form`` may switch a Chinchilla preset to 'unified' (same numbers, fed N_avg)."""
    if name not in PRESETS:
        raise KeyError(f"unknown law preset {name!r}; choose one of {sorted(PRESETS)}")
    law = PRESETS[name]
    if form is None or form == law.form:
        return law.model_copy(deep=True)
    if {form, law.form} != {"chinchilla", "unified"}:
        raise ValueError(f"preset {name!r} is a {law.form} law; it cannot be used as {form}")
    return law.model_copy(update={"form": form}, deep=True)


def load_law(path) -> Law:
    """A law saved by `python -m planner fit ... --save-law PATH` (YAML or JSON), or the law inside a study's law
    file (`planner/data/laptop_law.json`: the law under `law`, beside what its prediction intervals need)."""
    source = str(path)
    data = parse_mapping(read_text(path, "law"), source, fmt_of(path), "law")
    if isinstance(data.get("law"), dict) and "form" not in data:
        data, source = data["law"], f"{source} (its 'law')"
    return validate(Law, data, source)


def resolve_law(spec: str, flag: str = "--law") -> Law:
    """A preset name or a law file. Chinchilla presets are applied with N_avg (the unified law) for planning."""
    if spec in PRESETS:
        return get_law(spec, form="unified") if PRESETS[spec].form == "chinchilla" else get_law(spec)
    if not spec.endswith((".yaml", ".yml", ".json")):
        raise PlannerInputError(f"{flag}: {spec!r} is neither a law preset ({', '.join(PRESETS)}) nor a .yaml/.json "
                                f"law file")
    return load_law(spec)


def default_law() -> Law:
    """The app's default: the Epoch replication of Chinchilla applied with N_avg (the unified hypothesis)."""
    return get_law(DEFAULT_LAW, form="unified")


def sardana_optimum(law: Law, target: float, lifetime_tokens: float) -> tuple[float, float]:
    """Continuous dense optimum of N (6 D + 2 D_inf) at loss `target` (Sardana et al. 2024): the root in N of its
    first-order condition 6 D + 2 D_inf - 6 alpha A N^-alpha D / (beta (target - E - A N^-alpha)) = 0, with D(N) from
    the law; returns (N*, its lifetime FLOPs N* (6 D* + 2 D_inf)). The reference the search is checked against."""
    c = law.coefficients
    E, A, B, alpha, beta = (c[k] for k in ("E", "A", "B", "alpha", "beta"))

    def tokens(n):
        return (B / (target - E - A * n ** -alpha)) ** (1 / beta)

    def foc(log_n):
        n = np.exp(log_n)
        return 6 * tokens(n) + 2 * lifetime_tokens - 6 * alpha * A * n ** -alpha * tokens(n) / (
            beta * (target - E - A * n ** -alpha))

    from scipy.optimize import brentq  # here only: scipy.optimize costs every CLI command ~0.5 s to import
    floor = np.log((A / (target - E)) ** (1 / alpha))  # below this N the target is out of reach
    n = np.exp(brentq(foc, floor + 1e-6, np.log(1e14)))
    return n, n * (6 * tokens(n) + 2 * lifetime_tokens)
