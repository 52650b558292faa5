"""Intervals: profile likelihood, the parametric-bootstrap posterior, the runs' region, preset priors."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from planner.fit import LawFitter
from planner.laws import Law, resolve_law
from planner.runs import load_runs
from planner.uncertainty import LawPosterior, Region, posterior_from_fit, profile_intervals
from planner.uncertainty.coverage import (calibrate, conformal_scale, coverage_summary, loo_coverage,
                                         same_points)
from planner.uncertainty.priors import PUBLISHED_SE, epoch_points, preset_posterior

TRUTH = Law(form="unified", params={"E": 1.7, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28})


def twelve_runs(seed=0, noise=0.003, ratios=(10.0, 20.0, 40.0)):
    """Issue #18's example: 4 sizes x 3 token budgets from a known law with 0.3% log-normal noise."""
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(5e7, 4e8, 4), len(ratios))
    d = n * np.tile(ratios, 4)
    loss = TRUTH.predict(n, d) * np.exp(rng.normal(0, noise, n.size))
    return load_runs(pd.DataFrame({"loss": loss, "tokens": d, "n_avg": n}), "unified")


@pytest.fixture(scope="module")
def twelve():
    table = twelve_runs()
    return table, LawFitter("unified", grid="coarse").fit(table)


@pytest.fixture(scope="module")
def posterior(twelve):
    table, fit = twelve
    return posterior_from_fit(fit, table, n_draws=120, seed=0)


def test_twelve_run_example_intervals_contain_the_truth_or_say_unidentified(twelve):
    table, fit = twelve
    truth = {"alpha": 0.34, "beta": 0.28, "optimal_n_exponent": TRUTH.optimal_n_exponent}
    for name, p in profile_intervals(fit, table).items():
        assert p.status in ("identified", "unidentified")
        if p.identified:
            assert p.low <= truth[name] <= p.high, p
            assert p.low < p.estimate < p.high
        else:
            assert np.isnan(p.low) and "do not bound" in p.note


def test_twelve_run_example_loss_intervals_contain_the_truth_inside_the_runs(twelve, posterior):
    table, _ = twelve
    n = np.array([7e7, 1.4e8, 3e8])
    d = n * np.array([15.0, 25.0, 30.0])
    iv = posterior.interval(n, d)
    assert not iv["extrapolated"].any()
    truth = TRUTH.predict(n, d)
    assert ((iv["low"] <= truth) & (truth <= iv["high"])).all(), (iv, truth)


def test_refits_that_cannot_predict_their_own_runs_are_left_out(twelve, monkeypatch):
    """A refit that underflowed (A = 0 with alpha far below zero: 0 * inf) has finite parameters but predicts NaN
    everywhere; kept, it turned every quantile into NaN (seen in leave-one-out folds of the quick study)."""
    from planner.uncertainty import posterior as module
    table, fit = twelve
    real = module.parametric_refits

    def with_a_degenerate_refit(*args, **kwargs):
        theta, sd = real(*args, **kwargs)
        bad = theta[:1].copy()
        bad[0, 1], bad[0, 3] = -1000.0, -5e118  # log A (A underflows to 0), alpha
        return np.vstack([theta, bad]), sd
    monkeypatch.setattr(module, "parametric_refits", with_a_degenerate_refit)
    post = module.posterior_from_fit(fit, table, n_draws=40, seed=0)
    assert len(post.draws) <= 40 and np.isfinite(post.draws).all()
    row = post.interval(table["n_avg"].to_numpy()[:1], table["tokens"].to_numpy()[:1]).iloc[0]
    assert np.isfinite([row["low"], row["high"]]).all() and row["low"] < row["high"]


def test_region_refuses_an_interval_outside_the_hull(posterior):
    # N 10x the largest run; and an untested pairing: the smallest model at the largest token count
    iv = posterior.interval([4e9, 5e7], [8e10, 1.6e10])
    assert iv["extrapolated"].all() and iv[["low", "high"]].isna().all().all()
    assert "N above the runs'" in iv["reason"].iloc[0]
    assert "hull" in iv["reason"].iloc[1] or "tokens above" in iv["reason"].iloc[1]
    assert np.isfinite(iv["loss"]).all()  # the number is still shown, as an extrapolation


def test_region_margin_is_a_stated_factor():
    region = Region([1e8, 1e9, 1e9], [1e10, 1e10, 1e11], margin=0.1)
    assert region.contains(1e9 * np.exp(0.09), 1e10)
    assert not region.contains(1e9 * np.exp(0.12), 1e10)
    assert "1.11" in region.describe()


def test_a_flat_profile_is_unidentified():
    """Token counts that barely vary leave beta unbounded: no interval, a reason instead."""
    table = twelve_runs(seed=3, noise=0.01, ratios=(20.0, 21.0, 22.0))
    fit = LawFitter("unified", grid="coarse").fit(table)
    beta = profile_intervals(fit, table)["beta"]
    assert beta.status == "unidentified" and np.isnan(beta.high)


def test_held_exponents_are_reported_held(twelve):
    table, _ = twelve
    fit = LawFitter("unified", grid="coarse", fixed={"alpha": 0.34, "beta": 0.28}).fit(table)
    assert {p.status for p in profile_intervals(fit, table).values()} == {"held"}


def test_prob_below_follows_the_draws_and_the_noise(posterior):
    n, d = 1.4e8, 1.4e8 * 20
    median = float(posterior.predict(n, d, quantiles=(0.5,))[0])
    assert posterior.prob_below(median, n, d, noise_sd=0) == pytest.approx(0.5, abs=0.02)
    low, high = posterior.prob_below([median - 0.05, median + 0.05], n, d, noise_sd=0.01)
    assert low < 0.01 and high > 0.99
    # more run-to-run noise pulls a target above the median towards 1/2
    assert posterior.prob_below(median + 0.01, n, d, noise_sd=0.1) < posterior.prob_below(median + 0.01, n, d,
                                                                                          noise_sd=0.001)


def test_draws_shape_and_refusals(posterior):
    assert posterior.draws.shape == (120, 5)
    with pytest.raises(ValueError, match="draws must be"):
        LawPosterior(posterior.law, posterior.draws[:, :3])


def test_preset_posterior_carries_the_published_uncertainty():
    post = preset_posterior("epoch-replication")
    assert post is not None and post.law == resolve_law("epoch-replication")
    sd = dict(zip(("E", "A", "B", "alpha", "beta"), post.draws.std(axis=0)))
    for name, se in PUBLISHED_SE["epoch-replication"].items():  # within 30% of the published standard errors
        assert 0.7 * se < sd[name] < 1.3 * se, (name, sd[name], se)
    median = np.median(post.draws, axis=0)
    assert median[3] == pytest.approx(0.3478, abs=0.01)
    iv = post.interval(1e9, 2e10)  # inside the replication's points: an interval around the preset's loss
    assert iv["low"].iloc[0] < iv["loss"].iloc[0] < iv["high"].iloc[0]
    assert preset_posterior("chinchilla-approach3-published") is None


def test_leave_one_out_marks_runs_outside_the_others_region():
    table = twelve_runs(seed=1)
    loo = loo_coverage(table, n_draws=40, fixed={"alpha": 0.34, "beta": 0.28})
    assert len(loo) == 12
    corner = loo["extrapolated"]  # a corner run left out lies outside the hull of the rest
    assert corner.any() and loo.loc[corner, "low"].isna().all()
    s = coverage_summary(loo)
    assert s["n_inside"] + s["n_extrapolated"] == 12 and 0 <= s["coverage"] <= 1
    inside = loo[~corner]
    assert ((inside["score"] <= 1) == inside["covered"].astype(bool)).all()  # a score above 1: outside the interval
    assert calibrate(loo)["n_inside"] == s["n_inside"] and calibrate(loo)["coverage"] == s["coverage"]


def test_repeated_seeds_and_partners_are_one_point_left_out_together():
    p = same_points([1e5, 1.02e5, 1e5, 2e5, 1e5], [1e7, 1.01e7, 2e7, 1e7, 1.04e7])
    assert p[0] == p[1] == p[4] and len({p[0], p[2], p[3]}) == 3
    table = twelve_runs(seed=1)
    twin = table.iloc[[5]].assign(loss=table["loss"].iloc[5] * 1.001)  # a second seed of run 5
    loo = loo_coverage(pd.concat([table, twin], ignore_index=True), n_draws=40, fixed={"alpha": 0.34, "beta": 0.28})
    assert len(loo) == 13 and loo["point"].nunique() == 12 and loo["point"].iloc[5] == loo["point"].iloc[12]
    assert loo["center"].iloc[5] == loo["center"].iloc[12]  # one fold, without either seed, predicts both


def test_calibration_widens_intervals_that_cover_too_little_to_their_level():
    rng = np.random.default_rng(0)
    # intervals one sd wide cover 68% of normal errors: the widening that covers 95% is close to 1.96
    loo = pd.DataFrame({"score": np.abs(rng.standard_normal(400)), "extrapolated": False})
    c = calibrate(loo)
    assert c["coverage"] == pytest.approx(0.68, abs=0.05)
    assert c["scale"] == pytest.approx(1.96, abs=0.2) and c["calibrated"] == pytest.approx(0.95, abs=0.02)
    assert c["n_checked"] == 400
    few = calibrate(pd.DataFrame({"score": 0.5, "point": [0] * 10 + list(range(1, 16)), "extrapolated": False}))
    assert few["scale"] == 1.0 and few["n_checked"] == 15  # point 0 left out leaves 15 scores: too few to check it
    assert conformal_scale(np.full(30, 0.5)) == 1.0  # never narrowed
    assert conformal_scale(np.ones(18)) == np.inf  # 18 runs cannot rank a 95% widening
    assert conformal_scale(np.arange(1.0, 20.0)) == 19.0  # 19 runs: the largest score


def test_interval_scale_widens_one_runs_interval_and_prob_below_agrees(posterior):
    n, d = 1.4e8, 1.4e8 * 20
    noisy = replace(posterior, rel_noise_sd=0.01)
    wide = replace(noisy, interval_scale=2.0)
    center = noisy.center(noisy.loss_draws(n, d))
    low, high = noisy.predict(n, d, quantiles=(0.025, 0.975), noise=True)
    wlow, whigh = wide.predict(n, d, quantiles=(0.025, 0.975), noise=True)
    assert whigh - center == pytest.approx(2 * (high - center)) and center - wlow == pytest.approx(2 * (center - low))
    assert wide.prob_below(whigh, n, d) == pytest.approx(0.975, abs=0.01)
    assert wide.prob_below(wlow, n, d) == pytest.approx(0.025, abs=0.01)
    assert np.array_equal(wide.predict(n, d), noisy.predict(n, d))  # the mean loss's interval is not widened


def test_cli_fit_prints_profile_intervals(tmp_path, capsys):
    import json

    from planner.cli import main as planner_main
    path = tmp_path / "runs.csv"
    twelve_runs().to_csv(path, index=False)
    assert planner_main(["fit", str(path), "--grid", "coarse", "--profile", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["profile"]
    assert set(out) == {"alpha", "beta", "optimal_n_exponent"}
    for p in out.values():
        assert p["status"] in ("identified", "unidentified") and (p["low"] is None) == (p["status"] != "identified")


def test_epoch_points_drop_the_highest_losses_and_read_tokens_from_flop(tmp_path):
    """The one conversion of the replication's CSV (the priors' build and bench/bench_fit.py --runs both read it)."""
    path = tmp_path / "points.csv"
    pd.DataFrame({"Model Size": [1e8, 2e8, 4e8, 8e8], "Training FLOP": [6e18, 2.4e19, 9.6e19, 3.84e20],
                  "loss": [3.0, 2.5, 2.8, 2.2]}).to_csv(path, index=False)
    runs = epoch_points(path, drop_highest=1)
    assert runs["loss"].tolist() == [2.2, 2.5, 2.8] and runs["n"].tolist() == [8e8, 2e8, 4e8]
    assert runs["tokens"].tolist() == pytest.approx([8e10, 2e10, 4e10])  # FLOP / (6 N)


def test_law_ci_keeps_identified_intervals_under_the_forms_names():
    from planner.uncertainty.profile import ProfileInterval, law_ci
    profiles = {"alpha": ProfileInterval("alpha", 0.3, 0.2, 0.4, "identified"),
                "beta": ProfileInterval("beta", 0.3, np.nan, np.nan, "unidentified"),
                "optimal_n_exponent": ProfileInterval("optimal_n_exponent", 0.5, 0.45, 0.55, "identified")}
    assert law_ci("unified", profiles) == {"alpha": (0.2, 0.4), "optimal_n_exponent": (0.45, 0.55)}
    assert set(law_ci("frantar", profiles)) == {"d", "optimal_n_exponent"}
    assert law_ci("unified", {"beta": profiles["beta"]}) is None
