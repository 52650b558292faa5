"""Law forms, the Law object, presets and derived quantities."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from planner.laws import (EXPONENTS, PRESETS, Law, chinchilla, default_law, frantar, get_law, optimal_n_exponent, unified)

EPOCH = get_law("epoch-replication")


def test_presets_store_the_published_numbers_unrounded():
    assert PRESETS["chinchilla-approach3-published"].params == {
        "E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    assert PRESETS["chinchilla-approach3-unrounded"].params == {
        "log_E": 0.5267228, "log_A": 6.0073404, "log_B": 6.0179186, "alpha": 0.33917084, "beta": 0.2849083}
    assert EPOCH.params == {"E": 1.8169, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
    assert all(law.provenance for law in PRESETS.values())


def test_unrounded_preset_is_exponentiated_on_use_and_agrees_with_the_rounded_one():
    coef = PRESETS["chinchilla-approach3-unrounded"].coefficients
    assert coef["E"] == math.exp(0.5267228) and coef["A"] == math.exp(6.0073404)
    published = PRESETS["chinchilla-approach3-published"].coefficients
    for k in ("E", "A", "B", "alpha", "beta"):
        assert coef[k] == pytest.approx(published[k], rel=0.02)  # published figures are rounded


def test_default_law_is_the_epoch_replication_fed_n_avg():
    law = default_law()
    assert law.form == "unified" and law.params == EPOCH.params
    assert get_law("epoch-replication").form == "chinchilla"  # the stored preset is not mutated
    with pytest.raises(KeyError):
        get_law("no-such-law")


def test_unified_is_the_chinchilla_formula():
    assert unified is chinchilla
    N, D = np.array([1e8, 1e9]), np.array([1e10, 2e11])
    c = EPOCH.coefficients
    expected = c["E"] + c["A"] / N ** c["alpha"] + c["B"] / D ** c["beta"]
    np.testing.assert_allclose(EPOCH.predict(N, D), expected, rtol=1e-14)


def test_frantar_reduces_to_chinchilla_with_sparsity_dependent_coefficient():
    p = dict(a=30.0, b=2.0, c=5.0, d=0.3, e=400.0, f=0.3, g=1.7)
    law = Law(form="frantar", params=p)
    S, N, D = np.array([0.0, 0.5, 0.8]), 1e9, 1e11
    expected = (p["a"] * (1 - S) ** p["b"] + p["c"]) * N ** -p["d"] + p["e"] * D ** -p["f"] + p["g"]
    np.testing.assert_allclose(frantar(S, N, D, **p), expected, rtol=1e-14)
    np.testing.assert_allclose(law.predict(N, D, sparsity=S), expected, rtol=1e-14)
    assert law.predict(N, D) == pytest.approx(expected[0])  # default: dense
    assert law.exponents == (0.3, 0.3) and EXPONENTS["frantar"] == ("d", "f")  # d, f play alpha, beta


def test_exponents_are_the_n_and_d_exponents_a_fit_may_hold():
    assert EPOCH.exponents == (0.3478, 0.3658) and EXPONENTS["unified"] == ("alpha", "beta")
    assert PRESETS["chinchilla-approach3-unrounded"].exponents == (0.33917084, 0.2849083)
    assert EPOCH.optimal_n_exponent == optimal_n_exponent(*EPOCH.exponents)


def test_law_rejects_wrong_params_and_extra_fields():
    with pytest.raises(ValidationError):
        Law(form="chinchilla", params={"E": 1.0, "A": 1.0, "B": 1.0, "alpha": 0.3})
    with pytest.raises(ValidationError):
        Law(form="chinchilla", params={**EPOCH.params, "log_E": 0.5})  # E given twice
    with pytest.raises(ValidationError):
        Law(form="unified", params=EPOCH.params, colour="red")
    assert Law.model_validate_json(EPOCH.model_dump_json()) == EPOCH


losses = st.floats(1.9, 6.0)
sizes = st.floats(1e7, 1e11)


@settings(max_examples=60, deadline=None)
@given(target=losses, n=sizes)
def test_tokens_for_loss_inverts_predict(target, n):
    d = EPOCH.tokens_for_loss(target, n)
    if target > EPOCH.predict(n, np.inf):
        assert EPOCH.predict(n, d) == pytest.approx(target, rel=1e-9)
    else:
        assert d == np.inf


@settings(max_examples=60, deadline=None)
@given(target=losses, tokens=st.floats(1e8, 1e13))
def test_n_for_loss_inverts_predict(target, tokens):
    n = EPOCH.n_for_loss(target, tokens)
    if target > EPOCH.predict(np.inf, tokens):
        assert EPOCH.predict(n, tokens) == pytest.approx(target, rel=1e-9)
    else:
        assert n == np.inf


def test_inverses_are_vectorised_with_inf_where_unreachable():
    d = EPOCH.tokens_for_loss(np.array([1.5, 2.5, 3.0]), 1e9)
    assert d.shape == (3,) and d[0] == np.inf and np.isfinite(d[1:]).all() and d[1] > d[2]


@settings(max_examples=30, deadline=None)
@given(log_c=st.floats(math.log(1e18), math.log(1e26)))
def test_compute_optimal_spends_the_budget_at_the_loss_minimum(log_c):
    C = math.exp(log_c)
    n, d = EPOCH.compute_optimal(C)
    assert 6 * n * d == pytest.approx(C, rel=1e-12)
    for k in (0.9, 1.1):  # moving along the iso-compute line only raises loss
        assert EPOCH.predict(n * k, d / k) > EPOCH.predict(n, d)


def test_compute_optimal_scales_with_the_exponent():
    a = EPOCH.optimal_n_exponent
    assert a == optimal_n_exponent(0.3478, 0.3658)
    n1, _ = EPOCH.compute_optimal(1e21)
    n2, _ = EPOCH.compute_optimal(1e23)
    assert n2 / n1 == pytest.approx(100 ** a, rel=1e-10)


def test_frantar_t5_c4_preset_reproduces_the_jaxpruner_notebook():
    """The notebook fits N in millions of non-zero parameters and D in 1e5 training steps; the preset takes raw
    counts and steps and gives its predictions: the first T5 run (scale 1/128, dense, 250k steps) and its
    extrapolation (48 x 12 x 1024^2 non-zero parameters, 75% sparse, 500k steps)."""
    law = PRESETS["frantar-t5-c4"]
    assert (law.n_unit, law.d_unit, law.d_counts) == (1e6, 1e5, "steps")
    assert law.predict(24 * 12 * 768 ** 2 / 128, 250_000, 0.0) == pytest.approx(3.1273, abs=5e-5)
    assert law.predict(48 * 12 * 1024 ** 2, 500_000, 0.75) == pytest.approx(1.4683, abs=5e-5)
    p = law.params  # the notebook's own formula in its own units
    s, n, d = 0.5, 3.7, 4.2
    by_hand = (p["a"] * (1 - s) ** p["b"] + p["c"]) * n ** -p["d"] + p["e"] * d ** -p["f"] + p["g"]
    assert law.predict(n * 1e6, d * 1e5, s) == pytest.approx(by_hand, rel=1e-12)
    assert Law.model_validate_json(law.model_dump_json()) == law


def test_a_law_in_steps_cannot_plan_token_budgets():
    from planner.errors import PlannerInputError
    from planner.search import candidates
    with pytest.raises(PlannerInputError, match="training steps"):
        candidates(PRESETS["frantar-t5-c4"], tokens_per_param=(20,), d_models=(512,))


def test_compute_optimal_in_the_ledgers_convention():
    """With the family's FLOPs per token (matmul parameters and attention), the optimum spends exactly C in the
    effective ledger and matches the search's dense compute-optimal plan at that budget to within a family step."""
    from planner.candidates import family_flops_per_token
    from planner.search import budget_optimal
    law = default_law()
    per_token = family_flops_per_token(law, seq_len=2048)
    for C in (1e20, 1e22):
        n, d = law.compute_optimal(C, flops_per_token=per_token)
        assert d * per_token(n) == pytest.approx(C, rel=1e-9)
        for k in (0.9, 1.1):
            assert law.predict(n * k, C / per_token(n * k)) > law.predict(n, d)
        best = budget_optimal(law, C, sparsities=(0.0,), schedules=()).best
        assert best["n_avg"] == pytest.approx(float(n), rel=0.15)
        assert float(law.predict(n, d)) <= best["loss"] + 1e-3

    def six_n(n):  # the default convention, solved numerically: must agree with the closed form
        return 6 * np.asarray(n)
    six_n.n_range = (1e6, 1e13)
    assert law.compute_optimal(np.array([1e20, 1e23]), flops_per_token=six_n)[0] == pytest.approx(
        law.compute_optimal(np.array([1e20, 1e23]))[0], rel=1e-6)
