"""Verdicts of sparse/dense pairs on synthetic gaps: holds inside +-1%, fails outside, cannot tell across a bound;
the power figures follow the noise and the seeds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from planner.validation.verdict import (closer_count, detectable_gap, half_width, pair_verdicts, pooled_sd,
                                        seeds_needed, verdict)

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
    table, used = pair_verdicts(synthetic({"a": [0.001], "b": [0.2]}), fallback_sd=0.003, fallback_dof=8)
    assert "run-to-run" in used["source"] and used["sd"] == 0.003
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
