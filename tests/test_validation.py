"""Verdicts of sparse/dense pairs on synthetic gaps: holds inside +-1%, fails outside, cannot tell across a bound;
the power figures follow the noise and the seeds."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from planner.validation.verdict import (LAW_NOISE, STUDY_NOISE, closer_count, detectable_gap, gap_noise, half_width,
                                        pair_verdicts, partner_errors, pooled_sd, seeds_needed, verdict)

REF = 1.5  # partner loss: the 1% band is +-0.015 nats


def synthetic(gaps_by_pair: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"pair": p, "partner": "dense_n_avg", "gap": g, "ref": REF} for p, gs in gaps_by_pair.items() for g in gs]
    return pd.DataFrame(rows)


def test_pairs_get_holds_fails_or_cannot_tell_from_their_interval():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.002, (3, 3))
    table, used = pair_verdicts(synthetic({"match": list(0.0 + noise[0]), "far": list(0.1 + noise[1]),
                                           "edge": list(0.015 + noise[2])}))
    v = dict(zip(table["pair"], table["verdict"]))
    assert v == {"match": "holds", "far": "fails", "edge": "cannot tell"}
    assert used["dof"] == 6 and used["sd"] == pytest.approx(pooled_sd(noise.ravel(), np.repeat([0, 1, 2], 3))[0])
    assert (table["ci_low"] < table["gap"]).all() and (table["gap"] < table["ci_high"]).all()


def test_a_negative_gap_beyond_the_band_fails_and_noise_turns_a_verdict_into_cannot_tell():
    assert list(verdict([-0.05, -0.005, -0.02], [-0.03, 0.005, 0.0], REF)) == ["fails", "holds", "cannot tell"]
    quiet, _ = pair_verdicts(synthetic({"a": [0.004, 0.005, 0.006], "b": [0.0, 0.001, -0.001]}))
    noisy, _ = pair_verdicts(synthetic({"a": [0.004, 0.03, -0.02], "b": [0.0, 0.02, -0.02]}))
    assert set(quiet["verdict"]) == {"holds"} and set(noisy["verdict"]) == {"cannot tell"}


def test_single_seed_pairs_use_the_fallback_noise_and_say_so():
    table, used = pair_verdicts(synthetic({"a": [0.001], "b": [0.2]}), gap_noise(0.003 / np.sqrt(2), 8))
    assert used["source"].startswith("sqrt(2) x " + STUDY_NOISE) and used["sd"] == pytest.approx(0.003)
    assert list(table["verdict"]) == ["holds", "fails"]
    unknown, _ = pair_verdicts(synthetic({"a": [0.001]}))  # no noise measured at all: no interval, no claim
    assert list(unknown["verdict"]) == ["cannot tell"] and np.isnan(unknown["seeds_needed"]).all()


def test_seeds_needed_meet_the_one_percent_half_width_and_one_fewer_does_not():
    sd, dof = 0.02, 10
    n = seeds_needed(sd, dof, REF)
    assert half_width(sd, dof, n) <= 0.01 * REF < half_width(sd, dof, n - 1)
    assert seeds_needed(sd / 2, dof, REF) < n and seeds_needed(1.0, dof, REF) == float("inf")
    assert detectable_gap(sd, dof, 12) < detectable_gap(sd, dof, 3)  # more seeds detect smaller gaps
    assert detectable_gap(sd, dof, 3) > half_width(sd, dof, 3)  # 80% power needs more than the half-width


def test_closer_count_names_the_count_with_the_smaller_error_beyond_noise():
    got = closer_count([0.01, 0.2, 0.05, 0.01], [0.2, 0.01, 0.06, np.nan], [0.02, 0.02, 0.02, 0.02])
    assert list(got) == ["N_avg", "N_final", "cannot tell", "cannot tell"]


def test_gap_noise_is_the_studys_own_run_to_run_sd_else_the_laptop_laws_and_names_it():
    law = SimpleNamespace(noise_sd=0.01, noise_dof=5)
    assert gap_noise(0.02, 3, law) == {"sd": pytest.approx(np.sqrt(2) * 0.02), "dof": 3, "source": STUDY_NOISE}
    assert gap_noise(float("nan"), 0, law) == {"sd": pytest.approx(np.sqrt(2) * 0.01), "dof": 5, "source": LAW_NOISE}
    none = gap_noise(float("nan"), 0, SimpleNamespace(noise_sd=0.0, noise_dof=0))  # a law without measured noise
    assert np.isnan(none["sd"]) and none["dof"] == 0


def test_partner_errors_give_each_pair_its_two_gaps_and_the_n_avg_half_width():
    gaps = pd.concat([synthetic({"a": [0.01, 0.012, 0.011], "b": [0.0, 0.001, -0.001]}),
                      synthetic({"a": [0.05, 0.052, 0.051]}).assign(partner="dense_n_final")])
    table, _ = pair_verdicts(gaps)
    errors = partner_errors(table)
    assert errors.loc["a", ["err_n_avg", "err_n_final"]].tolist() == pytest.approx([0.011, 0.051])
    assert np.isnan(errors.loc["b", "err_n_final"]) and (errors["half"] > 0).all()
    assert list(closer_count(errors["err_n_avg"], errors["err_n_final"], errors["half"])) == ["N_avg", "cannot tell"]


def test_one_methods_spread_does_not_widen_anothers_interval():
    """Noise is pooled within a variant: in the quick study one per-layer run blew up (loss 3.01 against 1.78 for
    its other seed) and, pooled with every pair, widened the main pairs' intervals to +-20% of loss."""
    main = synthetic({"s60": [0.004, 0.006, 0.005], "s80": [0.010, 0.012, 0.011]}).assign(variant="geometric")
    wild = synthetic({"per-layer": [0.27, 1.49]}).assign(variant="per-layer")
    lone = synthetic({"head": [0.02]}).assign(variant="head-dense")  # no repeats: borrows the main pairs' noise
    table, used = pair_verdicts(pd.concat([main, wild, lone], ignore_index=True))
    alone, _ = pair_verdicts(main)
    rows = table.set_index("pair")
    assert np.allclose(rows.loc[["s60", "s80"], "ci_high"], alone.set_index("pair")["ci_high"])
    assert rows.loc["per-layer", "noise_sd"] > 50 * rows.loc["s60", "noise_sd"]
    assert rows.loc["head", "noise_sd"] == rows.loc["s60", "noise_sd"] == used["sd"]
    assert set(rows["verdict"][["s60", "s80"]]) == {"holds"} and "geometric" in used["source"]
