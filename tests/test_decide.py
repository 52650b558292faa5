"""planner.uncertainty.decide: probability of reaching a target, the plan at a confidence level, and the frontier
CLI's --runs/--confidence."""
import json

import numpy as np
import pandas as pd
import pytest

from planner.cli import main
from planner.laws import chinchilla, default_law
from planner.search import lifetime_optimal
from planner.uncertainty.decide import confidence_plan, point_posterior, sensitivity, tokens_at_confidence
from planner.uncertainty.posterior import LawPosterior

FAST = dict(sparsities=(0.0, 0.5), schedules=("geometric 25-75",))
TRUTH = dict(E=1.7, A=400.0, B=400.0, alpha=0.34, beta=0.28)


def jittered(law, k=300, scale=0.01, seed=0, only=None):
    """Draws of `law` with each parameter (or only `only`) scaled by lognormal noise."""
    point = point_posterior(law)
    noise = np.random.default_rng(seed).normal(0.0, scale, (k, point.draws.shape[1]))
    if only is not None:
        noise[:, [i for i, name in enumerate(point.params) if name != only]] = 0.0
    return point.draws * np.exp(noise)


def test_a_law_without_uncertainty_gives_zero_or_one_at_the_boundary():
    law = default_law()
    post = point_posterior(law)
    n, target = 1e9, 2.4
    needed = float(law.tokens_for_loss(target, n))
    p = post.prob_below(target, n, needed * np.array([0.999, 1.001]))
    assert p.tolist() == [0.0, 1.0]
    assert post.prob_below(target, 1e6, 1e15) == 0.0  # below this size the target is out of reach


def test_probability_matches_simulated_runs_and_rises_with_tokens():
    law = default_law()
    post = LawPosterior(law, jittered(law, k=400), 0.01)
    n, target = 2e9, 2.3
    tokens = np.geomspace(2e10, 2e11, 5)
    p = post.prob_below(target, n, tokens)
    assert np.all(np.diff(p) > 0)
    loss = post.loss_draws(n, tokens)
    measured = loss * np.exp(np.random.default_rng(1).normal(0, 0.01, (50, *loss.shape)))
    assert np.abs((measured <= target).mean(axis=(0, 1)) - p).max() < 0.02


def test_tokens_at_confidence_meet_it_or_are_infinite():
    law = default_law()
    post = LawPosterior(law, jittered(law), 0.005)
    n = np.array([1e8, 1e9, 1e10])
    tokens = tokens_at_confidence(post, 2.3, 0.9, n)
    assert np.isinf(tokens[0]) and np.all(np.isfinite(tokens[1:]))  # 1e8 parameters never reach 2.3 under the law
    p = post.prob_below(2.3, n[1:], tokens[1:])
    assert np.all(np.abs(p - 0.9) < 1e-6)
    assert np.all(tokens_at_confidence(post, 2.3, 0.5, n[1:]) < tokens[1:])


def test_confidence_one_half_under_symmetric_noise_is_the_median_plan():
    """No parameter uncertainty, normal run noise: reaching the target half the time is the point law's plan."""
    law = default_law()
    choice = confidence_plan(point_posterior(law, 0.01), 2.3, 0.5, **FAST)
    best = lifetime_optimal(law, 2.3, **FAST).best
    for plan in choice.table.itertuples():
        assert (plan.d_model, plan.final_sparsity, plan.schedule) == (best["d_model"], best["final_sparsity"],
                                                                     best["schedule"])
        assert plan.tokens == pytest.approx(best["tokens"], rel=1e-6)
        assert plan.p_reach == pytest.approx(0.5, abs=1e-6)
    assert choice.extra_cost == pytest.approx(0.0, abs=1e-6 * best["lifetime_flops"])


def test_more_confidence_costs_more_and_names_the_parameter_that_varies():
    law = default_law()
    post = LawPosterior(law, jittered(law, only="beta", scale=0.02), 0.002)
    choice = confidence_plan(post, 2.3, 0.9, **FAST)
    assert choice.table["p_reach"].iloc[0] == pytest.approx(0.9, abs=1e-6)
    assert choice.table["p_reach"].iloc[1] == pytest.approx(0.5, abs=1e-6)
    assert choice.extra_cost > 0 and choice.extra_pct > 0
    assert choice.sensitive == "beta" and abs(choice.correlation) > 0.9
    corr = sensitivity(post, 1e9, 1e11)
    assert set(corr) == {"beta"}  # the others are constant across draws


def runs_csv(path, seed=0):
    rng = np.random.default_rng(seed)
    n = np.repeat([2e7, 5e7, 1e8, 2e8], 3)
    d = n * np.tile([10.0, 20.0, 40.0], 4)
    loss = chinchilla(n, d, **TRUTH) * (1 + rng.normal(0, 0.003, n.size))
    pd.DataFrame({"n_avg": n, "n_final": n, "tokens": d, "loss": loss, "sparsity": 0.0}).to_csv(path, index=False)
    return str(path)


def test_frontier_json_carries_probabilities_and_the_confident_plan(capsys, tmp_path):
    runs = runs_csv(tmp_path / "runs.csv")
    code = main(["frontier", "--target-loss", "3.0", "--runs", runs, "--draws", "30", "--confidence", "0.8",
                 "--sparsities", "0,0.5", "--schedules", "geometric 25-75", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    p = np.array([r["p_reach"] for r in out["frontier"]])
    assert np.all((p >= 0) & (p <= 1)) and len(p) == len(out["frontier"])
    conf = out["confidence"]
    chosen, median = conf["plans"]
    assert chosen["p_reach"] >= 0.8 - 1e-6 and median["p_reach"] == pytest.approx(0.5, abs=1e-6)
    assert conf["extra_cost"] == pytest.approx(chosen["lifetime_flops"] - median["lifetime_flops"])
    assert conf["most_sensitive_parameter"] in TRUTH and out["draws"]["n"] == 30


def test_the_default_preset_gives_probabilities_from_its_published_uncertainty(capsys):
    code = main(["frontier", "--target-loss", "2.4", "--sparsities", "0,0.5", "--schedules", "geometric 25-75",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and "published uncertainty" in out["draws"]["method"]
    p = np.array([r["p_reach"] for r in out["frontier"]])
    assert np.all((p > 0) & (p < 1))  # the point law's plans sit near the middle of the draws


def test_the_frontier_csv_carries_p_reach(capsys, tmp_path):
    out = tmp_path / "front.csv"
    code = main(["frontier", "--target-loss", "2.4", "--sparsities", "0,0.5", "--schedules", "geometric 25-75",
                 "--csv", str(out)])
    front = pd.read_csv(out)
    assert code == 0 and front["p_reach"].between(0, 1).all()
    assert "p_reach" in capsys.readouterr().out  # the printed frontier too


@pytest.mark.parametrize("argv, needle", [
    (["--target-loss", "3.0", "--confidence", "0.9", "--law", "chinchilla-approach3-published"],
     "chinchilla-approach3-published has no published uncertainty"),
    (["--budget-flops", "1e20", "--confidence", "0.9", "--runs", "RUNS"], "--confidence goes with --target-loss"),
    (["--target-loss", "3.0", "--confidence", "1.5"], "--confidence"),
])
def test_frontier_confidence_errors_are_one_line(capsys, tmp_path, argv, needle):
    argv = [runs_csv(tmp_path / "r.csv") if x == "RUNS" else x for x in argv]
    code = main(["frontier", *argv, "--draws", "5", "--sparsities", "0", "--schedules", "geometric 25-75"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and needle in err, err


def test_confident_plan_respects_the_fits_on_constraint(capsys, tmp_path):
    """--confidence searches the family again: a `keep` mask (what --fits-on/--serve-on pass) must bind its plans
    too. Here the mask refuses the widths the unconstrained search chose."""
    from planner.uncertainty.cli_decide import law_posterior
    from planner.runs import load_runs
    runs = load_runs(runs_csv(tmp_path / "runs.csv"))
    post = law_posterior("unified", default_law(), runs, 30, None)
    kw = dict(sparsities=[0.0, 0.5], schedules=["geometric 25-75"])
    free = confidence_plan(post, 3.0, 0.8, **kw).table
    banned = set(free["d_model"].astype(int))
    tight = confidence_plan(post, 3.0, 0.8, keep=lambda df: ~df["d_model"].isin(banned).to_numpy(), **kw).table
    assert banned.isdisjoint(set(tight["d_model"].astype(int)))
