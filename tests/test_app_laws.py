"""Scaling-laws page: fits of the seed's pairs, bad uploads explained with st.error, charts and comparison."""
import numpy as np
import pandas as pd
import pytest

from app.ui.laws_view import fit_form
from planner.laws import default_law
from planner.runs import seed_pairs
from test_app_common import assert_clean, chart_specs, encodings, metrics, open_page
from streamlit.testing.v1 import AppTest

PAGE = "views/laws.py"


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


def test_seed_pairs_fit_matches_planner():
    at = laws_page()
    direct = fit_form(seed_pairs(), "unified", "coarse", 100)
    assert metrics(at)["Compute-optimal exponent a (N_opt ∝ C^a)"] == f"{direct.fit.optimal_n_exponent:.3f}"
    assert metrics(at)["Held-out RMSE"] == f"{direct.heldout['heldout_rmse']:.4f} nats"
    assert any("8 runs for 5 parameters" in w.value for w in at.warning)  # honest about 8 runs
    comparison = at.dataframe[0].value
    assert comparison["runs"].tolist() == [8] and comparison["parameters"].tolist() == [5]
    fit_spec, resid_spec = chart_specs(at)
    assert encodings(fit_spec)["x"]["title"] == "Measured loss (nats/token)"
    assert encodings(resid_spec)["x"]["scale"]["type"] == "log"
    assert "nats/token" in encodings(resid_spec)["y"]["title"]


@pytest.mark.parametrize("csv, message", [
    ("loss,tokens\n2.5,1e9\n", "missing column 'n_avg'"),
    ("loss,tokens,n_avg\n2.5,1e9,abc\n", "column 'n_avg' has a non-numeric value 'abc'"),
    ("loss,tokens,n_avg\n2.5,,1e8\n", "column 'tokens' is empty (NaN) in row 1"),
    ("loss,tokens,n_avg\n2.5,1e9,1e8\n2.4,2e9,1e8\n", "2 runs, but the unified form has 5 parameters"),
])
def test_bad_uploads_name_the_problem(csv, message):
    at = upload(laws_page(), "mine.csv", csv)
    assert any(message in e.value and "mine.csv" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("vega_lite_chart")


def test_frantar_needs_seven_runs():
    at = laws_page(forms=("frantar",))
    header_and_five = "\n".join(synthetic_csv().split("\n")[:6])
    upload(at, "five.csv", header_and_five)
    assert any("5 runs, but the frantar form has 7 parameters" in e.value for e in at.error)


def test_good_upload_recovers_the_law():
    at = upload(laws_page(), "law.csv", synthetic_csv())
    assert not at.error
    a = float(metrics(at)["Compute-optimal exponent a (N_opt ∝ C^a)"])
    assert a == pytest.approx(default_law().optimal_n_exponent, abs=0.05)
