"""Scaling-laws page: fits of the seed's pairs (exponents held by default), bad uploads explained with st.error,
charts and the comparison table."""
import numpy as np
import pandas as pd
import pytest

from app.ui.laws_view import fit_form
from planner.fit import compare_forms
from planner.laws import PRESETS, default_law
from planner.runs import seed_pairs
from test_app_common import assert_clean, chart_specs, encodings, metrics, open_page
from streamlit.testing.v1 import AppTest

PAGE = "views/laws.py"
EPOCH = PRESETS["epoch-replication"].exponents
EXPONENT = "Compute-optimal exponent a (N_opt ∝ C^a)"


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
    assert metrics(at)["Held-out RMSE"] == f"{direct.heldout['heldout_rmse']:.4f} nats"
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
    pairs, fit_spec, resid_spec = chart_specs(at)
    panels = pairs["hconcat"]
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
    ("loss,tokens,n_avg\n2.5,1e9,1e8\n", "1 runs, but the unified form has 3 free parameters (2 held)"),
])
def test_bad_uploads_name_the_problem(csv, message):
    at = upload(laws_page(), "mine.csv", csv)
    assert any(message in e.value and "mine.csv" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("vega_lite_chart")


def test_three_paired_runs_fit_with_held_exponents():
    three = seed_pairs().iloc[:3].to_csv(index=False)  # 3 runs: enough for E, A, B
    at = upload(laws_page(), "three.csv", three)
    assert not at.error and at.dataframe[0].value["free"].tolist() == [3]
    pairs = chart_specs(at)[0]
    assert [encodings(p)["x"]["title"].split(":")[0] for p in pairs["hconcat"]] == ["N_avg", "N_final"]


def test_frantar_counts_free_parameters():
    at = upload(laws_page(forms=("frantar",)), "four.csv", "\n".join(synthetic_csv().split("\n")[:5]))
    assert any("4 runs, but the frantar form has 5 free parameters (2 held)" in e.value for e in at.error)
    at.checkbox(key="laws_hold_upload").uncheck().run()
    assert any("4 runs, but the frantar form has 7 parameters" in e.value for e in at.error)


def test_good_upload_recovers_the_law_with_a_free_fit():
    at = upload(laws_page(), "law.csv", synthetic_csv())
    at.checkbox(key="laws_hold_upload").uncheck().run()
    assert_clean(at)
    assert not at.error and len(chart_specs(at)) == 2  # no pairs chart without a 'group' column
    a = float(metrics(at)[EXPONENT])
    assert a == pytest.approx(default_law().optimal_n_exponent, abs=0.05)
