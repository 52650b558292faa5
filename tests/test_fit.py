"""Fitting: objective and gradient, the batched optimiser, recovery of known laws, bootstrap, held-out, CLI."""
import argparse
import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from planner import cli_fit
from planner.cli import main as planner_main
from planner.errors import PlannerInputError
from planner.fit import (LawFitter, compare_forms, design, held_theta, heldout_errors, objective, problem,
                         refit_weighted, start_grid)
from planner.laws import Law, get_law
from planner.optim import batched_bfgs, batched_newton, evaluate, make_problem
from planner.runs import load_runs, seed_pairs
from planner.uncertainty import bootstrap

TRUTH = get_law("epoch-replication")


def dense_runs(noise=0.01, seed=1, sizes=8, token_counts=6):
    """A model-size x token grid over Chinchilla's ranges, loss from the Epoch law with log-normal noise."""
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(5e7, 5e9, sizes), token_counts)
    d = np.tile(np.geomspace(5e9, 2e11, token_counts), sizes)
    loss = TRUTH.predict(n, d) * np.exp(rng.normal(0, noise, n.size))
    return pd.DataFrame({"n": n, "tokens": d, "loss": loss, "group": np.repeat(np.arange(sizes), token_counts)})


def sparse_runs(noise=0.005, seed=2):
    """Dense and pruned runs whose loss follows the Epoch law in N_avg (the unified hypothesis holds)."""
    rng = np.random.default_rng(seed)
    n0, d, s = (a.ravel() for a in np.meshgrid(np.geomspace(1e8, 3e9, 5), np.geomspace(1e10, 2e11, 4),
                                               [0.0, 0.5, 0.8], indexing="ij"))
    n_final = n0 * (1 - s)
    n_avg = n0 * (1 - 0.55 * s)  # pruning ends partway through, so the average lies between start and end
    loss = TRUTH.predict(n_avg, d) * np.exp(rng.normal(0, noise, n0.size))
    return pd.DataFrame({"loss": loss, "tokens": d, "n_avg": n_avg, "n_final": n_final, "sparsity": s,
                         "group": np.round(n0).astype(int)})


@pytest.fixture(scope="module")
def dense():
    return dense_runs()


@pytest.fixture(scope="module")
def dense_fit(dense):
    return LawFitter("chinchilla", grid="coarse").fit(dense)


@pytest.mark.parametrize("form", ["chinchilla", "frantar"])
def test_gradient_matches_finite_differences(form):
    runs = load_runs(sparse_runs(), form)
    F, y = design(form, runs)
    rng = np.random.default_rng(0)
    theta = start_grid(form, "coarse")[rng.choice(100, 3)] + rng.normal(0, 0.1, (3, F.shape[2]))
    weights = rng.integers(0, 3, (3, len(runs))).astype(float)
    for reduce in ("sum", "mean"):
        _, grad = objective(theta, F, y, delta=0.05, weights=weights, reduce=reduce)
        for i in range(3):
            fd = central_difference(lambda t: objective(t, F, y, 0.05, weights[i:i + 1], reduce)[0][0], theta[i])
            np.testing.assert_allclose(grad[i], fd, rtol=1e-5, atol=1e-8)


def central_difference(fun, x, h=1e-6):
    return np.array([(fun(x + h * e) - fun(x - h * e)) / (2 * h) for e in np.eye(len(x))])


def test_held_parameters_become_offsets_with_the_same_objective():
    """Holding alpha, beta: the free-parameter problem equals the full objective with them inserted, gradient too."""
    table = load_runs(sparse_runs(), "unified")
    F, y = design("unified", table)
    held = held_theta("unified", {"alpha": 0.3478, "beta": 0.3658})
    free = start_grid("unified", "coarse", held)[::3] + 0.1
    full = np.column_stack([free, np.tile([0.3478, 0.3658], (len(free), 1))])
    f_full, g_full = objective(full, F, y)
    f, g = evaluate(free, problem("unified", table, held))
    np.testing.assert_allclose(f, f_full, rtol=1e-12)
    np.testing.assert_allclose(g, g_full[:, :3], rtol=1e-10, atol=1e-14)


def test_batched_bfgs_does_at_least_as_well_as_scipy_per_start(dense):
    F, y = design("chinchilla", load_runs(dense, "chinchilla"))
    starts = start_grid("chinchilla", "coarse")[::40]
    scipy_f = np.array([minimize(lambda t: tuple(v[0] for v in objective(t, F, y)), s, jac=True,
                                 method="L-BFGS-B").fun for s in starts])
    theta, f, n_iter, _ = batched_bfgs(starts, make_problem(F, y))
    np.testing.assert_allclose(f, objective(theta, F, y)[0], rtol=1e-12)
    assert f.min() <= scipy_f.min() * (1 + 1e-9)
    assert np.median(f) <= np.median(scipy_f) and (n_iter > 0).all()


def test_summed_huber_converges_where_the_mean_stops_early(dense):
    """The Epoch correction: with the mean, L-BFGS-B's relative-decrease test (floored at 1) fires too soon."""
    F, y = design("chinchilla", load_runs(dense, "chinchilla"))
    summed, meaned = [], []
    for s in start_grid("chinchilla", "coarse")[::25]:
        for reduce, out in (("sum", summed), ("mean", meaned)):
            res = minimize(lambda t: tuple(v[0] for v in objective(t, F, y, reduce=reduce)), s, jac=True,
                           method="L-BFGS-B")
            out.append(objective(res.x, F, y)[0][0])  # judged on the summed objective either way
    summed, meaned = np.array(summed), np.array(meaned)
    assert np.mean(meaned > summed * 1.01) > 0.3
    assert not np.any(summed > meaned * 1.01)


def test_fit_recovers_predictions_and_exponent_of_a_known_law(dense, dense_fit):
    assert dense_fit.n_runs == len(dense) and dense_fit.n_starts == len(start_grid("chinchilla", "coarse"))
    assert 1 <= dense_fit.n_starts_at_best <= dense_fit.n_starts and 0 <= dense_fit.n_capped < dense_fit.n_starts
    n, d = np.geomspace(5e7, 5e9, 7), np.geomspace(5e9, 2e11, 7)
    np.testing.assert_allclose(dense_fit.law.predict(n, d), TRUTH.predict(n, d), rtol=0.01)
    assert dense_fit.optimal_n_exponent == pytest.approx(TRUTH.optimal_n_exponent, abs=0.06)
    assert dense_fit.params["E"] == pytest.approx(TRUTH.params["E"], rel=0.1)
    resid = dense_fit.law.predict(dense["n"], dense["tokens"]) - dense["loss"]
    assert dense_fit.rmse == pytest.approx(np.sqrt(np.mean(resid ** 2)))
    assert dense_fit.mae == pytest.approx(np.mean(np.abs(resid)))


def test_fit_is_near_exact_on_nearly_noiseless_data():
    runs = dense_runs(noise=0.002)
    fit = LawFitter("chinchilla", grid="coarse").fit(runs)
    assert fit.rmse < 0.01
    for k in ("alpha", "beta"):
        assert fit.params[k] == pytest.approx(TRUTH.params[k], rel=0.03)


def test_fitter_predict_uses_the_forms_n_column():
    runs = sparse_runs()
    fitter = LawFitter("unified", grid="coarse")
    law = fitter.fit(runs).law
    assert isinstance(law, Law) and law.form == "unified" and "fitted" in law.provenance
    np.testing.assert_allclose(fitter.predict(runs), law.predict(runs["n_avg"], runs["tokens"]))
    with pytest.raises(RuntimeError):
        LawFitter("unified").predict(runs)


def test_frantar_fit_recovers_a_known_sparse_law():
    truth = Law(form="frantar", params=dict(a=300.0, b=1.5, c=200.0, d=0.34, e=2085.43, f=0.3658, g=1.8169))
    base = sparse_runs()
    rng = np.random.default_rng(3)
    base["loss"] = truth.predict(base["n_final"], base["tokens"], base["sparsity"]) * np.exp(
        rng.normal(0, 0.003, len(base)))
    fit = LawFitter("frantar", grid="coarse").fit(base)
    assert set(fit.params) == set("abcdefg")
    s = np.array([0.0, 0.4, 0.8])
    np.testing.assert_allclose(fit.law.predict(1e9, 1e11, s), truth.predict(1e9, 1e11, s), rtol=0.01)


def test_bootstrap_intervals_cover_the_truth(dense, dense_fit):
    boot = bootstrap(dense, "chinchilla", n_boot=150, seed=0, fit=dense_fit)
    assert len(boot.samples) == 150
    ci = boot.ci()
    lo, hi = ci["optimal_n_exponent"]
    assert lo < TRUTH.optimal_n_exponent < hi and lo < dense_fit.optimal_n_exponent < hi
    n, d = np.array([1e8, 1e9, 4e9]), np.array([1e10, 5e10, 1.5e11])
    low, high = boot.loss_ci(n, d)
    truth = TRUTH.predict(n, d)
    assert np.all(low < truth) and np.all(truth < high) and np.all(high - low < 0.1)
    assert ci["A"][0] < ci["A"][1] and ci["alpha"][0] < dense_fit.params["alpha"] < ci["alpha"][1]
    grouped = bootstrap(dense, "chinchilla", n_boot=40, seed=0, fit=dense_fit, by_group=True)
    assert np.ptp(grouped.exponent_samples) > 0
    with pytest.raises(PlannerInputError, match="group"):
        bootstrap(dense.drop(columns="group"), "chinchilla", n_boot=5, by_group=True, fit=dense_fit)


def test_heldout_uses_groups_else_single_runs(dense, dense_fit):
    by_group = heldout_errors(dense, "chinchilla", fit=dense_fit)
    assert by_group["scheme"] == "leave-one-group-out" and by_group["n_folds"] == 8
    single = heldout_errors(dense.drop(columns="group").iloc[:30], "chinchilla", grid="coarse")
    assert single["scheme"] == "leave-one-out" and single["n_folds"] == 30
    assert by_group["heldout_rmse"] > dense_fit.rmse  # extrapolating to an unseen size costs accuracy


def test_compare_forms_prefers_n_avg_when_the_unified_law_holds():
    table = compare_forms(sparse_runs(), forms=("unified", "chinchilla"), grid="coarse")
    assert list(table.columns) == ["form", "n_params", "n_free", "objective", "rmse", "mae", "heldout_rmse",
                                   "heldout_mae", "degenerate"]
    best = table.set_index("form")
    assert best.loc["unified", "heldout_rmse"] < best.loc["chinchilla", "heldout_rmse"]
    assert best.loc["unified", "objective"] < best.loc["chinchilla", "objective"]


def run_cli(argv, capsys):
    parser = argparse.ArgumentParser()
    cli_fit.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


def test_cli_json_contract(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    dense_runs().to_csv(path, index=False)
    code, out = run_cli(["fit", str(path), "--form", "chinchilla", "--grid", "coarse", "--bootstrap", "20",
                         "--seed", "1", "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and set(result["params"]) == {"E", "A", "B", "alpha", "beta"}
    for key in ("objective", "n_runs", "rmse", "mae", "n_starts_at_best", "n_capped"):
        assert key in result
    assert result["n_runs"] == 48 and set(result["ci"]) >= {"alpha", "beta", "optimal_n_exponent"}
    code, text = run_cli(["fit", str(path), "--form", "chinchilla", "--grid", "coarse"], capsys)
    assert code == 0 and "alpha" in text and "{" not in text


def test_cli_bad_input_raises_planner_input_error(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    runs = dense_runs().astype(object)
    runs.loc[2, "tokens"] = "abc"
    runs.to_csv(path, index=False)
    with pytest.raises(PlannerInputError, match="runs.csv: column 'tokens' has a non-numeric value 'abc' in row 3"):
        run_cli(["fit", str(path), "--form", "chinchilla", "--grid", "coarse", "--json"], capsys)


HELD = {"alpha": TRUTH.params["alpha"], "beta": TRUTH.params["beta"]}


def test_held_exponents_stay_put_and_the_rest_is_recovered():
    runs = dense_runs(noise=0.01)
    fit = LawFitter("chinchilla", fixed=HELD).fit(runs)
    assert fit.params["alpha"] == HELD["alpha"] and fit.params["beta"] == HELD["beta"]  # exactly, not to rounding
    assert fit.fixed == HELD and fit.n_free == 3 and fit.n_starts == len(start_grid("chinchilla", "chinchilla", (3, 4)))
    assert "holding alpha=0.3478, beta=0.3658" in fit.provenance
    assert fit.params["E"] == pytest.approx(TRUTH.params["E"], rel=0.02)
    for k in ("A", "B"):  # the coefficients take the scatter of 1% noise; the held exponents pin their scale
        assert fit.params[k] == pytest.approx(TRUTH.params[k], rel=0.1), k
    free = LawFitter("chinchilla").fit(runs)
    assert fit.objective >= free.objective * (1 - 1e-9)  # holding can only cost objective
    boot = bootstrap(runs, "chinchilla", n_boot=30, fit=fit)
    assert (boot.samples["alpha"] == HELD["alpha"]).all() and (boot.samples["beta"] == HELD["beta"]).all()
    assert boot.samples["E"].std() > 0
    lo, hi = boot.ci()["E"]
    assert lo < TRUTH.params["E"] < hi


def test_held_parameters_count_against_the_runs_needed():
    runs = dense_runs().iloc[::16]  # 3 runs: too few for 5 parameters, enough for 3 free ones
    with pytest.raises(PlannerInputError, match="3 runs, but the chinchilla form has 5 parameters"):
        LawFitter("chinchilla", grid="coarse").fit(runs)
    assert LawFitter("chinchilla", grid="coarse", fixed=HELD).fit(runs).n_runs == 3
    with pytest.raises(PlannerInputError, match="2 runs, but the chinchilla form has 3 free parameters"):
        LawFitter("chinchilla", grid="coarse", fixed=HELD).fit(runs.iloc[:2])


@pytest.mark.parametrize("fixed, message", [
    ({"gamma": 1.0}, "cannot hold gamma"), ({"E": -1.0}, "finite positive"), ({"alpha": float("nan")}, "finite"),
    (dict(E=1.8, A=400.0, B=400.0, alpha=0.3, beta=0.3), "leave at least one free")])
def test_bad_held_parameters_are_refused(fixed, message):
    with pytest.raises(ValueError, match=message):
        LawFitter("unified", fixed=fixed)


def test_compare_forms_on_the_seed_pairs_with_held_exponents():
    table = compare_forms(seed_pairs(), grid="coarse", exponents=(HELD["alpha"], HELD["beta"]))
    assert table["form"].tolist() == ["unified", "chinchilla", "frantar", "effective"]
    assert table["n_free"].tolist() == [3, 3, 5, 7] and table["n_params"].tolist() == [5, 5, 7, 9]
    assert table["degenerate"].str.contains("vanished").all()  # 8 runs cannot pin the data term (see below)
    assert np.isfinite(table[["rmse", "heldout_rmse", "heldout_mae"]].to_numpy()).all()
    assert (table["heldout_rmse"] >= table["rmse"]).all()
    frantar = LawFitter("frantar", grid="coarse", fixed={"d": HELD["alpha"], "f": HELD["beta"]}).fit(seed_pairs())
    held = heldout_errors(seed_pairs(), "frantar", fit=frantar)
    assert held["scheme"] == "leave-one-group-out" and held["n_folds"] == 4
    assert held["heldout_rmse"] == pytest.approx(table.set_index("form").loc["frantar", "heldout_rmse"])


def test_cli_holds_parameters(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    dense_runs().to_csv(path, index=False)
    base = ["fit", str(path), "--form", "chinchilla", "--grid", "coarse", "--json"]
    for flags in (["--fix", "alpha=0.3478, beta=0.3658"], ["--fix-exponents", "epoch-replication"]):
        code, out = run_cli(base + flags, capsys)
        result = json.loads(out)
        assert code == 0 and set(result["params"]) == {"E", "A", "B", "alpha", "beta"}
        assert result["fixed"] == HELD and result["n_free_params"] == 3
        assert result["params"]["alpha"] == 0.3478 and result["params"]["beta"] == 0.3658
    dense_runs().assign(sparsity=0.0).to_csv(path, index=False)
    code, out = run_cli(["fit", str(path), "--form", "frantar", "--grid", "coarse", "--fix-exponents",
                         "epoch-replication", "--fix", "g=1.8", "--json"], capsys)
    assert json.loads(out)["fixed"] == {"d": 0.3478, "f": 0.3658, "g": 1.8}


@pytest.mark.parametrize("flags, message", [
    (["--fix", "alpha"], "--fix: expected NAME=VALUE"), (["--fix", "alpha=0.3,=2"], "--fix: expected NAME=VALUE"),
    (["--fix", "gamma=1"], "--fix: unknown parameter 'gamma'"), (["--fix", "alpha=x"], "--fix: alpha needs a number"),
    (["--fix", "B=0"], "--fix: held B must be a finite positive number"),
    (["--fix", "alpha=0.3,alpha=0.4"], "--fix: alpha is given twice"),
    (["--fix-exponents", "nope"], "--fix-exponents: unknown law preset 'nope'"),
    (["--fix-exponents", "epoch-replication", "--fix", "beta=0.3"], "--fix-exponents: beta also given by --fix")])
def test_cli_bad_fix_exits_2_with_one_line(tmp_path, capsys, flags, message):
    path = tmp_path / "runs.csv"
    dense_runs().to_csv(path, index=False)
    assert planner_main(["fit", str(path), "--grid", "coarse", *flags]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err, captured.err


def test_curvature_is_the_exact_hessian_inside_the_quadratic_zone(dense):
    prob = problem("chinchilla", load_runs(dense, "chinchilla"), {})
    theta = np.array([[0.6, 6.3, 9.1, 0.35, 0.43]])
    weights = np.random.default_rng(0).integers(1, 3, (1, len(dense))).astype(float)
    # delta 10: every residual is in the quadratic zone, where the curvature must be the exact Hessian
    _, g, H = evaluate(theta, prob, delta=10, weights=weights, hess=True)
    assert np.allclose(g, evaluate(theta, prob, delta=10, weights=weights)[1])
    eps = 1e-6
    fd = np.array([(evaluate(theta + eps * e, prob, 10, weights)[1] - evaluate(theta - eps * e, prob, 10, weights)[1])[0]
                   / (2 * eps) for e in np.eye(5)])
    assert np.allclose(H[0], fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def test_newton_objective_never_increases_and_converges(dense):
    prob = problem("chinchilla", load_runs(dense, "chinchilla"), {})
    starts = start_grid("chinchilla", "coarse")[::10]
    history = np.array([batched_newton(starts, prob, maxiter=k)[1] for k in range(1, 12)])
    ok = np.isfinite(history[0])
    assert (np.diff(history[:, ok], axis=0) <= 0).all()
    _, f, _, capped = batched_newton(starts, prob)
    f_bfgs = batched_bfgs(starts, prob)[1]
    assert not capped.any() and np.nanmin(f) <= np.nanmin(f_bfgs) * (1 + 1e-9)


def test_bootstrap_refits_reach_a_full_grid_refit(dense, dense_fit):
    table = load_runs(dense, "chinchilla")
    weights = np.random.default_rng(3).multinomial(len(table), np.full(len(table), 1 / len(table)), 5).astype(float)
    prob = problem("chinchilla", table, {})
    warm = refit_weighted(dense_fit, table, weights)
    grid = start_grid("chinchilla", "coarse")
    for w, theta in zip(weights, warm):
        full = batched_newton(batched_bfgs(grid, prob, weights=w[None])[0], prob, weights=w[None])[1]
        assert evaluate(theta, prob, weights=w[None])[0][0] <= np.nanmin(full) * (1 + 1e-6)


def test_huber_value_is_scipys_huber_of_the_log_residuals():
    """The summed objective against scipy.special.huber on log residuals computed here from the formula, with
    residuals on both sides of +-delta (an asymmetric clip would show)."""
    from scipy.special import huber
    runs = load_runs(dense_runs(noise=0.02, seed=4), "chinchilla")
    F, y = design("chinchilla", runs)
    n, d, loss = (runs[c].to_numpy() for c in ("n_final", "tokens", "loss"))
    truth = np.log([TRUTH.params[k] for k in ("E", "A", "B")]).tolist() + [TRUTH.params["alpha"], TRUTH.params["beta"]]
    theta = np.array([truth, np.add(truth, [0.0, 0.01, -0.01, 0.0, 0.0])])  # residuals: the 2% noise, both signs
    weights = np.random.default_rng(1).integers(0, 3, (2, len(runs))).astype(float)
    for delta in (0.005, 0.02):
        f, _ = objective(theta, F, y, delta=delta, weights=weights)
        for i, (log_e, log_a, log_b, alpha, beta) in enumerate(theta):
            r = np.log(np.exp(log_e) + np.exp(log_a) * n ** -alpha + np.exp(log_b) * d ** -beta) - np.log(loss)
            assert (r < -delta).any() and (r > delta).any() and (np.abs(r) <= delta).any()
            assert f[i] == pytest.approx(np.sum(weights[i] * huber(delta, r)), rel=1e-12)


@pytest.mark.parametrize("table, message", [
    (pd.DataFrame({"n": [1e8] * 6, "tokens": [1e10] * 6, "loss": [3, 3.1, 2.9, 3, 3.05, 2.95]}),
     "every run has the same 'n_final'"),
    (pd.DataFrame({"n": np.geomspace(1e7, 1e9, 6), "tokens": np.geomspace(1e9, 1e11, 6), "loss": [3.0] * 6}),
     "column 'loss' is 3 in every run"),
    (pd.DataFrame({"n": np.geomspace(1e300, 1e301, 6), "tokens": np.geomspace(1e9, 1e11, 6),
                   "loss": np.linspace(3, 2, 6)}), "above the plausible 1e+16")])
def test_runs_that_cannot_determine_a_fit_exit_2_with_one_line(tmp_path, capsys, table, message):
    path = tmp_path / "runs.csv"
    table.to_csv(path, index=False)
    assert planner_main(["fit", str(path), "--form", "chinchilla", "--grid", "coarse"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_a_degenerate_fit_says_so_in_one_line_instead_of_intervals(tmp_path, capsys):
    """A free 5-parameter fit to the seed's 8 runs: the exponents run off; no zero-width interval may be printed."""
    fit = LawFitter("chinchilla", grid="coarse").fit(seed_pairs())
    assert any("alpha" in note for note in fit.degenerate)
    path = tmp_path / "seed.csv"
    seed_pairs().to_csv(path, index=False)
    argv = ["fit", str(path), "--form", "chinchilla", "--grid", "coarse", "--bootstrap", "20"]
    assert planner_main(argv) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("warning: degenerate fit: ") and "[" not in out
    assert planner_main(argv + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["degenerate"] and "ci" not in data


def test_well_posed_fits_are_not_called_degenerate(dense_fit):
    assert dense_fit.degenerate == ()
    assert LawFitter("unified", grid="coarse").fit(sparse_runs()).degenerate == ()


def test_held_exponents_on_the_seed_pairs_leave_the_data_term_undetermined():
    """Each seed pair trains a different size for a different token count: with the exponents held, B runs to 0."""
    fit = LawFitter("unified", grid="coarse", fixed=HELD).fit(seed_pairs())
    assert any("B term has vanished" in note for note in fit.degenerate)


def test_bootstrap_resamples_groups_by_default_and_says_which(dense, dense_fit):
    auto = bootstrap(dense, "chinchilla", n_boot=30, seed=5, fit=dense_fit)
    grouped = bootstrap(dense, "chinchilla", n_boot=30, seed=5, fit=dense_fit, by_group=True)
    single = bootstrap(dense, "chinchilla", n_boot=30, seed=5, fit=dense_fit, by_group=False)
    pd.testing.assert_frame_equal(auto.samples, grouped.samples)
    assert "8 groups (column 'group')" in auto.method and "percentile" in auto.method
    assert "48 single runs" in single.method and not single.samples.equals(auto.samples)
    assert "single runs" in bootstrap(dense.drop(columns="group"), "chinchilla", n_boot=5, fit=dense_fit).method


def test_cli_reports_the_interval_method(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    dense_runs().to_csv(path, index=False)
    code, out = run_cli(["fit", str(path), "--form", "chinchilla", "--grid", "coarse", "--bootstrap", "10",
                         "--json"], capsys)
    assert code == 0 and "groups (column 'group')" in json.loads(out)["ci_method"]
    code, out = run_cli(["fit", str(path), "--form", "chinchilla", "--grid", "coarse", "--bootstrap", "10",
                         "--by-run"], capsys)
    assert code == 0 and "intervals: 95% percentile bootstrap, 10 refits resampling 48 single runs" in out


def test_effective_parameter_form_recovers_known_multipliers():
    """Frantar, Evci et al. 2025: L = A / (N eff(S))^alpha + B / D^beta + E, N counting every weight."""
    from planner import effective
    rng = np.random.default_rng(7)
    n0, d, s = (a.ravel() for a in np.meshgrid(np.geomspace(1e8, 3e9, 5), np.geomspace(1e10, 2e11, 4),
                                               [0.0, 0.5, 0.8], indexing="ij"))
    eff = np.select([s == 0.5, s == 0.8], [0.8, 0.5], 1.0)
    c = TRUTH.coefficients
    loss = (c["E"] + c["A"] * (n0 * eff) ** -c["alpha"] + c["B"] * d ** -c["beta"]) * np.exp(
        rng.normal(0, 0.002, n0.size))
    runs = pd.DataFrame({"loss": loss, "tokens": d, "n_total": n0, "n_final": n0 * (1 - s), "n_avg": n0 * (1 - s / 2),
                         "sparsity": s, "group": np.round(n0)})
    fit = effective.fit(runs, grid="coarse")
    assert fit.params["eff@0.5"] == pytest.approx(0.8, rel=0.03) and fit.params["eff@0.8"] == pytest.approx(0.5, rel=0.03)
    assert fit.rmse < 0.01 and effective.degeneracies(runs, fit) == ()
    np.testing.assert_allclose(fit.predict(load_runs(runs, "frantar")), loss, rtol=0.01)
    table = compare_forms(runs, forms=("unified", "effective"), grid="coarse")
    assert table.set_index("form").loc["effective", "n_params"] == 7
    with pytest.raises(PlannerInputError, match="n_total"):
        effective.fit(runs.drop(columns="n_total"), grid="coarse")


def test_only_a_vanished_term_or_an_implausible_exponent_stops_planning():
    """`identify.cannot_plan`, the Scaling laws page's rule: a flat direction alone leaves the predictions at the
    runs determined, so the fit may still plan."""
    from planner.identify import FLAT, cannot_plan
    flat = f"{FLAT} mixes beta and alpha (condition 9.3e-06): the runs cannot tell them apart"
    vanished = "the B term has vanished (B = 3.3e-130)"
    assert cannot_plan((flat,)) == () and cannot_plan((vanished,)) == (vanished,)
