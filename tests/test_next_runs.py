"""planner.uncertainty.next_runs and `python -m planner next-runs`: which runs narrow the target's interval."""
import json

import numpy as np
import pandas as pd
import pytest

from planner.cli import main
from planner.ladder import BATCH_SIZE, SEQ_LEN, ladder_shapes, cpu_budget, rung
from planner.laws import Law, chinchilla
from planner.plan import dump_plan, load_plan, make_plan, resolve_schedule
from planner.shapes import ModelShape
from planner.uncertainty.decide import point_posterior
from planner.uncertainty.posterior import LawPosterior
from planner.uncertainty.next_runs import RunOptions, choose, laptop_options, target_point

TRUTH = dict(E=1.2, A=40.0, B=90.0, alpha=0.32, beta=0.30)
LAW = Law(form="unified", params=TRUTH)


def draws(k=400, scale=0.03, seed=0):
    point = point_posterior(LAW)
    noise = np.random.default_rng(seed).normal(0.0, scale, (k, point.draws.shape[1]))
    return LawPosterior(LAW, point.draws * np.exp(noise), 0.002)


def options(points, cost):
    """Single-run candidates at (n, tokens) points."""
    n, tokens = np.array(points, float).T
    frame = pd.DataFrame({"candidate": np.arange(len(n)), "n": n, "tokens": tokens, "sparsity": 0.0})
    return RunOptions(frame, np.asarray(cost, float), [[] for _ in n], "units")


def test_prefers_runs_near_the_target_over_far_ones():
    post, target = draws(), (1e7, 4e8, 0.0)
    near, far = (0.7e7, 3e8), (1e5, 4e6)
    chosen = choose(post, target, options([far, near], [1.0, 1.0]), budget=1.0)
    assert chosen["candidate"].tolist() == [1]
    assert chosen["width_after"].iloc[0] < chosen["width_before"].iloc[0]


def test_measuring_the_target_itself_without_noise_removes_its_uncertainty():
    post = LawPosterior(LAW, draws().draws, 0.0)
    target = (1e7, 4e8, 0.0)
    chosen = choose(post, target, options([(1e5, 4e6), target[:2]], [1.0, 1.0]), budget=1.0)
    assert chosen["candidate"].tolist() == [1]
    assert chosen["width_after"].iloc[0] < 1e-3 * chosen["width_before"].iloc[0]


def test_linearised_narrowing_matches_conditioning_the_draws():
    """For one run, the expected variance after measuring it equals the draws' conditional variance of the target
    given the run's noisy outcome (binned): the update the refit would make, in the Gaussian limit."""
    post, target, run = draws(k=20000, scale=0.02), (1e7, 4e8, 0.0), (2e6, 8e7)
    width = choose(post, target, options([run], [1.0]), budget=1.0).iloc[0]
    log_t = np.log(post.loss_draws(*target[:2]))
    y = np.log(post.loss_draws(*run)) + np.random.default_rng(1).normal(0, post.rel_noise_sd, len(log_t))
    bins = np.quantile(y, np.linspace(0, 1, 41))
    which = np.clip(np.searchsorted(bins, y) - 1, 0, 39)
    within = np.mean([log_t[which == b].var() for b in range(40)])
    ratio = np.sqrt(within / log_t.var())
    assert width["width_after"] / width["width_before"] == pytest.approx(ratio, abs=0.05)


def test_budget_max_runs_and_no_uncertainty():
    post, target = draws(), (1e7, 4e8, 0.0)
    pts = [(n, 40 * n) for n in np.geomspace(1e5, 5e6, 8)]
    cost = [n / 1e5 for n, _ in pts]
    chosen = choose(post, target, options(pts, cost), budget=60.0, max_runs=3)
    assert chosen["cost"].sum() <= 60.0 and 1 <= len(chosen) <= 3 and chosen["candidate"].is_unique
    assert np.all(np.diff(chosen["width_after"]) < 0)
    assert choose(point_posterior(LAW, 0.002), target, options(pts, cost), budget=60.0).empty


@pytest.fixture(scope="module")
def laptop_case(tmp_path_factory):
    """A sparse laptop target and twelve runs (three small ladder sizes at two run lengths) of a known law."""
    folder = tmp_path_factory.mktemp("next")
    model = ModelShape(n_layer=6, d_model=256, n_head=8, d_ff=768, vocab=256)
    target = make_plan(model, resolve_schedule(model, 8000, "geometric", 0.5, "compute", 0.25, 0.75),
                       cpu_budget(8000), name="target")
    plans = [p for i, (size, ratio) in enumerate((s, r) for s in ladder_shapes(target)[:3] for r in (10, 40))
             for p in rung(target, i, *size, SEQ_LEN, BATCH_SIZE, 100, ratio=ratio)]
    n = np.array([p.derived.n_avg for p in plans])
    tokens = np.array([p.budget.tokens for p in plans], float)
    loss = chinchilla(n, tokens, **TRUTH) * (1 + np.random.default_rng(0).normal(0, 0.003, n.size))
    pd.DataFrame({"n_avg": n, "n_final": [p.derived.n_final for p in plans], "tokens": tokens, "loss": loss,
                  "sparsity": [p.schedule.final_sparsity for p in plans]}).to_csv(folder / "runs.csv", index=False)
    dump_plan(target, folder / "target.yaml")
    return folder, target


def test_laptop_options_are_pairs_at_the_targets_schedule(laptop_case):
    _, target = laptop_case
    opts = laptop_options(draws(), target)
    assert len(opts.plans) == len(opts.cost) == opts.points["candidate"].nunique()
    for pair in opts.plans[:3]:
        sparse, dense = pair
        assert sparse.schedule.final_sparsity == target.schedule.final_sparsity and dense.schedule.shape == "dense"
        assert dense.budget.tokens == sparse.budget.tokens
    assert target_point(draws(), target) == (target.derived.n_avg, target.budget.tokens, 0.5)


def test_cli_writes_ready_to_train_plans_within_budget(capsys, laptop_case, tmp_path):
    folder, _ = laptop_case
    code = main(["next-runs", "--runs", str(folder / "runs.csv"), "--target", str(folder / "target.yaml"),
                 "--budget-minutes", "30", "--draws", "40", "--out", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)  # the target's proportions make its smallest rung ~10 CPU minutes
    assert code == 0 and 0 < out["spent"] <= 30
    assert out["interval_width_after"] < out["interval_width_before"]
    names = {r["plan"] for r in out["runs"]}
    assert {p.stem for p in tmp_path.iterdir()} == names
    assert all(load_plan(tmp_path / f"{name}.yaml").budget.tokens > 0 for name in names)


@pytest.mark.parametrize("extra, needle", [
    ([], "one of the arguments --budget-minutes --budget-gpu-hours is required"),
    (["--budget-minutes", "0"], "--budget-minutes"),
])
def test_cli_errors_are_one_line(capsys, laptop_case, extra, needle):
    folder, _ = laptop_case
    code = main(["next-runs", "--runs", str(folder / "runs.csv"), "--target", str(folder / "target.yaml"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and needle in err, err


def test_cli_without_runs_needs_a_preset_with_published_uncertainty(capsys, laptop_case):
    folder, _ = laptop_case
    code = main(["next-runs", "--target", str(folder / "target.yaml"), "--budget-minutes", "5", "--law",
                 "chinchilla-approach3-published"])
    err = capsys.readouterr().err
    assert code == 2 and "no published uncertainty" in err and err.count("\n") == 1


def test_cli_names_a_missing_target(capsys, laptop_case):
    folder, _ = laptop_case
    code = main(["next-runs", "--runs", str(folder / "runs.csv"), "--target", str(folder / "nope.yaml"),
                 "--budget-minutes", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "nope.yaml" in err and err.count("\n") == 1


def test_a_large_budget_buys_the_informative_run_over_cheap_ones():
    """Per-cost greed alone would take the cheap far run; the budgeted rule compares it with greed by narrowing."""
    post, target = draws(), (1e7, 4e8, 0.0)
    opts = options([(1e5, 4e6), (0.7e7, 3e8)], [1.0, 50.0])
    assert choose(post, target, opts, budget=50.0, max_runs=1)["candidate"].tolist() == [1]
    assert choose(post, target, opts, budget=10.0, max_runs=1)["candidate"].tolist() == [0]
