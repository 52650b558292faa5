"""Scaling-laws page: fits of the seed's pairs (exponents held by default), bad uploads explained with st.error,
charts and the comparison table."""
import io

import numpy as np
import pandas as pd
import pytest

from app.ui.laws_view import degenerate_warning, fit_form
from planner.fit import compare_forms
from planner.laws import PRESETS, default_law
from planner.runs import seed_pairs
from test_app_common import assert_clean, chart_specs, encodings, metrics, open_page
from streamlit.testing.v1 import AppTest

PAGE = "views/laws.py"
EPOCH = PRESETS["epoch-replication"].exponents
EXPONENT = "Compute-optimal exponent a"


def laws_page(forms=("unified",)) -> AppTest:
    at = open_page()
    at.session_state["laws_forms"] = list(forms)  # one form keeps the test fast; the page defaults to all three
    at.switch_page(PAGE).run()
    assert_clean(at)
    return at


def upload(at: AppTest, name: str, text: str) -> AppTest:
    at.radio(key="laws_source").set_value("upload").run()
    at.file_uploader(key="laws_upload").set_value((name, text.encode(), "text/csv")).run()
    assert_clean(at)
    return at


def synthetic_csv(n: int = 12) -> str:
    """Runs that follow the default law exactly, with sparse and dense members (n_avg != n_final)."""
    rng = np.random.default_rng(0)
    n_avg = np.geomspace(5e7, 5e8, n)
    tokens = n_avg * rng.uniform(10, 100, n)
    sparsity = np.tile([0.0, 0.5, 0.8], n // 3)
    loss = default_law().predict(n_avg, tokens)
    return pd.DataFrame({"loss": loss, "tokens": tokens, "n_avg": n_avg, "n_final": n_avg * (1 - sparsity / 2),
                         "sparsity": sparsity}).to_csv(index=False)


def test_seed_pairs_hold_the_epoch_exponents_by_default():
    at = laws_page()
    assert at.checkbox(key="laws_hold_seed").value and at.selectbox(key="laws_preset").value == "epoch-replication"
    direct = fit_form(seed_pairs(), "unified", "coarse", 100, exponents=EPOCH)
    assert direct.fit.fixed == {"alpha": 0.3478, "beta": 0.3658}
    assert metrics(at)[EXPONENT] == f"{direct.fit.optimal_n_exponent:.3f}"
    assert metrics(at)["Held-out RMSE (nats)"] == f"{direct.heldout['heldout_rmse']:.4f}"
    assert any("8 runs for 3 free parameters" in w.value for w in at.warning)
    comparison = at.dataframe[0].value
    assert comparison["runs"].tolist() == [8] and comparison["free"].tolist() == [3]
    assert comparison["held"].tolist() == ["alpha = 0.3478, beta = 0.3658"]
    assert comparison["held-out RMSE (nats)"].tolist() == [direct.heldout["heldout_rmse"]]
    params = at.dataframe[1].value.set_index("parameter")
    assert params.loc["alpha", "source"] == "held" and params.loc["alpha", "value"] == 0.3478


def test_comparison_of_the_three_forms_equals_the_planner():
    at = laws_page(forms=("unified", "chinchilla", "frantar"))
    shown = at.dataframe[0].value
    direct = compare_forms(seed_pairs(), forms=("unified", "chinchilla", "frantar"), grid="coarse", exponents=EPOCH)
    assert len(shown) == 3 and shown["free"].tolist() == [3, 3, 5]
    np.testing.assert_array_equal(shown["held-out RMSE (nats)"], direct["heldout_rmse"])
    np.testing.assert_array_equal(shown["RMSE (nats)"], direct["rmse"])
    assert shown["held-out scheme"].tolist() == ["leave-one-group-out (4 folds)"] * 3
    # N_avg unifies the pairs: held out one pair at a time, it predicts better than N_final or a sparsity term
    assert direct.loc[0, "heldout_rmse"] < direct.loc[1:, "heldout_rmse"].min()


def test_pairs_chart_shows_loss_against_both_counts():
    at = laws_page()
    *panels, fit_spec, resid_spec = chart_specs(at)
    assert [encodings(p)["x"]["title"] for p in panels] == [
        "N_avg: average parameter count over training (count)", "N_final: non-zero parameters at the end (count)"]
    for p in panels:
        enc = encodings(p)
        assert enc["x"]["scale"]["type"] == "log" and enc["y"]["title"] == "Measured loss (nats/token)"
        assert enc["color"]["field"] == "pair" and enc["detail"]["field"] == "pair"  # a line joins each pair
    assert [p["title"] for p in panels] == ["Loss against N_avg", "Loss against N_final"]
    assert panels[0]["layer"][0]["encoding"]["x"]["scale"]["domain"] == \
        panels[1]["layer"][0]["encoding"]["x"]["scale"]["domain"]  # same frame: horizontal spreads compare
    assert encodings(fit_spec)["x"]["title"] == "Measured loss (nats/token)"
    assert encodings(fit_spec)["y"]["scale"]["zero"] is False
    assert encodings(resid_spec)["x"]["scale"]["type"] == "log"
    assert "nats/token" in encodings(resid_spec)["y"]["title"]


def test_free_fit_when_the_hold_is_off():
    at = laws_page()
    at.checkbox(key="laws_hold_seed").uncheck().run()
    assert_clean(at)
    direct = fit_form(seed_pairs(), "unified", "coarse", 100)
    assert metrics(at)[EXPONENT] == f"{direct.fit.optimal_n_exponent:.3f}"
    assert any("8 runs for 5 parameters" in w.value for w in at.warning)
    assert at.dataframe[0].value["free"].tolist() == [5] and at.dataframe[0].value["held"].tolist() == ["none"]


@pytest.mark.parametrize("csv, message", [
    ("loss,tokens\n2.5,1e9\n", "missing column 'n_avg'"),
    ("loss,tokens,n_avg\n2.5,1e9,abc\n", "column 'n_avg' has a non-numeric value 'abc'"),
    ("loss,tokens,n_avg\n2.5,1e9,1e8\n", "1 run, but the unified form has 3 free parameters (2 held)"),
])
def test_bad_uploads_name_the_problem(csv, message):
    at = upload(laws_page(), "mine.csv", csv)
    assert any(message in e.value and "mine.csv" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("vega_lite_chart")


def test_three_paired_runs_fit_with_held_exponents():
    three = seed_pairs().iloc[:3].to_csv(index=False)  # 3 runs: enough for E, A, B
    at = upload(laws_page(), "three.csv", three)
    assert not at.error and at.dataframe[0].value["free"].tolist() == [3]
    assert [encodings(p)["x"]["title"].split(":")[0] for p in chart_specs(at)[:2]] == ["N_avg", "N_final"]


def test_frantar_counts_free_parameters():
    at = upload(laws_page(forms=("frantar",)), "four.csv", "\n".join(synthetic_csv().split("\n")[:5]))
    assert at.multiselect(key="laws_forms").options == ["unified (N_avg)", "Chinchilla (N_final)"]  # frantar: off
    assert any("Frantar (S, N_final) is off: 4 runs, but the frantar form has 5 free parameters (2 held)" in c.value
               for c in at.caption)
    at.checkbox(key="laws_hold_upload").uncheck().run()
    assert [e.value for e in at.error] == ["four.csv: 4 runs, but the unified form has 5 parameters; give at least "
                                           "5 runs"]


def test_good_upload_recovers_the_law_with_a_free_fit():
    at = upload(laws_page(), "law.csv", synthetic_csv())
    at.checkbox(key="laws_hold_upload").uncheck().run()
    assert_clean(at)
    assert not at.error and len(chart_specs(at)) == 2  # no pairs chart without a 'group' column
    a = float(metrics(at)[EXPONENT])
    assert a == pytest.approx(default_law().optimal_n_exponent, abs=0.05)


def test_readme_runs_format_offers_the_unified_form_only():
    """loss, tokens, n_avg (the README's format): the N_final forms are off with their reason, and no error."""
    table = seed_pairs()[["loss", "tokens", "n_avg"]].to_csv(index=False)
    at = upload(laws_page(forms=("unified", "chinchilla", "frantar")), "readme.csv", table)
    assert not at.error
    assert at.multiselect(key="laws_forms").options == ["unified (N_avg)"]
    assert at.multiselect(key="laws_forms").value == ["unified"]
    offs = [c.value for c in at.caption if " is off: " in c.value]
    assert offs == ["Chinchilla (N_final) is off: missing column 'n_final' (or 'n' for dense runs) needed by the "
                    "chinchilla form.",
                    "Frantar (S, N_final) is off: missing column 'n_final' (or 'n' for dense runs) needed by the "
                    "frantar form."]
    assert at.dataframe[0].value["form"].tolist() == ["unified (N_avg)"]


@pytest.mark.parametrize("csv, message", [
    ("loss,tokens,n_avg\n2.5,1e9,1e8\n2.4,1e9,2e8,7\n", "bad.csv: not a readable CSV (line 3 has 4 comma-separated "
                                                      "fields but the header has 3)"),
    ("loss,tokens,n_avg,n_final\n2.5,1e9,-1,1e8\n", "bad.csv: column 'n_avg' must be positive; row 1 has -1"),
])
def test_a_bad_file_is_one_error_in_the_users_terms(csv, message):
    at = upload(laws_page(forms=("unified", "chinchilla", "frantar")), "bad.csv", csv)
    assert [e.value for e in at.error] == [message]


def test_a_fit_becomes_the_working_law_of_every_page():
    at = upload(laws_page(), "law.csv", synthetic_csv())
    at.checkbox(key="laws_hold_upload").uncheck().run()
    assert "epoch-replication preset" in at.sidebar.caption[0].value
    at.button(key="laws_use_unified").click().run()
    assert_clean(at)
    label = at.sidebar.caption[0].value
    assert "unified form fitted on law.csv (12 runs)" in label
    assert at.button(key="laws_use_unified").disabled  # in force
    at.switch_page("views/pareto.py").run()
    assert_clean(at)
    assert at.sidebar.caption[0].value == label
    interval = at.table[0].value.loc["95% interval of the loss", "selected"]
    if interval == "—":  # the selected plan lies outside the 12 runs: an extrapolation, said so, no interval
        assert any(c.value.startswith("extrapolation, no interval: ") for c in at.caption)
    else:
        low, high = (float(x) for x in interval.strip("[]").split(", "))
        assert low <= 2.6 <= high
        assert any(c.value == f"95% interval [{low:.3f}, {high:.3f}]" for c in at.caption)
    at.switch_page("views/schedule.py").run()
    assert_clean(at)
    assert "Predicted loss" in metrics(at)
    assert any(c.value.startswith(("95% interval [", "extrapolation, no interval: ")) for c in at.caption)
    at.switch_page("views/export.py").run()
    assert_clean(at)
    caption = next(c.value for c in at.caption if c.value.startswith("Law: "))
    assert "fitted on law.csv" in caption and ("95% CI [" in caption) == (interval != "—")
    # back to a preset with one click
    at.switch_page(PAGE).run()
    at.button(key="laws_use_preset").click().run()
    assert "epoch-replication preset" in at.sidebar.caption[0].value


def test_a_fit_that_cannot_plan_is_not_offered():
    """The seed's pairs lie near one compute budget: with α, β held, B fits to ~0, so the law says data never
    helps; such a fit stays on the page but cannot become the working law."""
    at = laws_page()
    assert at.button(key="laws_use_unified").disabled
    assert any("cannot plan" in w.value and "B = " in w.value for w in at.warning)


def test_working_law_plans_carry_the_fit_and_its_interval():
    from app.ui.pareto_view import PlannerInputs, search, selected_plan
    from app.ui.working_law import fitted_law

    runs = pd.read_csv(io.StringIO(synthetic_csv()))
    r = fit_form(runs, "unified", "coarse", 100)
    working = fitted_law(r.fit, r.posterior, r.profiles, r.table, "synthetic runs")
    inputs = PlannerInputs(law=working.key)
    comp = search(inputs, working)
    plan = selected_plan(inputs, comp, comp.best["plan_id"], working)
    assert plan.law.params == r.fit.params and "fitted on synthetic runs (12 runs)" in plan.law.provenance
    assert plan.law.ci["alpha"] == (r.profiles["alpha"].low, r.profiles["alpha"].high)
    p = plan.prediction
    assert abs(p.loss - 2.6) < 1e-3
    inside = bool(r.posterior.region.contains(plan.derived.n_avg, plan.budget.tokens))
    assert p.extrapolated != inside and (p.ci_low is not None) == inside  # one region: flag xor interval
    if inside:
        assert p.ci_low <= p.loss <= p.ci_high


def test_a_degenerate_coefficient_is_flagged():
    """The seed's pairs lie on one compute budget: with the exponents held, B collapses to ~0 (data never helps)."""
    r = fit_form(seed_pairs(), "unified", "coarse", 50, exponents=EPOCH)
    assert r.fit.params["B"] < 1e-6
    assert "B = " in degenerate_warning(r.fit)
    free = fit_form(seed_pairs(), "unified", "coarse", 50)  # a free fit of the same runs: β < 0
    assert "beta = -" in degenerate_warning(free.fit) and "outside the plausible" in degenerate_warning(free.fit)
    good = fit_form(pd.read_csv(io.StringIO(synthetic_csv())), "unified", "coarse", 50)
    assert degenerate_warning(good.fit) is None
