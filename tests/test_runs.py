"""The runs table: validation messages and the bundled seed pairs."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from planner.errors import PlannerInputError
from planner.runs import load_runs, seed_pairs

GOOD = "loss,tokens,n_avg,n_final,sparsity,group\n" + "\n".join(
    f"{3 - 0.1 * i},{1e10 * (i + 1)},{1e8 * (i + 1)},{0.8e8 * (i + 1)},0.2,g{i % 3}" for i in range(8))


def write(tmp_path, text, name="runs.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_valid_csv_gives_canonical_columns(tmp_path):
    runs = load_runs(write(tmp_path, GOOD), "frantar")
    assert list(runs.columns[:5]) == ["loss", "tokens", "n_avg", "n_final", "sparsity"]
    assert runs["tokens"].dtype == float and len(runs) == 8
    assert runs["group"].tolist()[:3] == ["g0", "g1", "g2"] and runs["name"].iloc[0] == "run1"


def test_dense_runs_may_give_n_for_both_counts():
    runs = load_runs(pd.DataFrame({"loss": np.linspace(3, 2, 6), "tokens": 1e10, "n": np.geomspace(1e7, 1e9, 6)}),
                     "chinchilla")
    np.testing.assert_array_equal(runs["n_avg"], runs["n_final"])
    assert (runs["sparsity"] == 0).all()


@pytest.mark.parametrize("edit, form, words", [
    (lambda t: t.replace("2.9,", "abc,", 1), "unified", ["runs.csv", "'loss'", "non-numeric", "'abc'", "row 2"]),
    (lambda t: t.replace("loss,", "los,", 1), "unified", ["runs.csv", "missing column 'loss'"]),
    (lambda t: t.replace(",n_avg,", ",avg,", 1), "unified", ["missing column 'n_avg'"]),
    (lambda t: t.replace(",sparsity,", ",s,", 1), "frantar", ["missing column 'sparsity'"]),
    (lambda t: t.replace("2.9,", ",", 1), "unified", ["'loss'", "NaN", "row 2"]),
    (lambda t: t.replace("2.9,", "-2.9,", 1), "unified", ["'loss'", "positive", "row 2"]),
    (lambda t: t.replace(",0.2,", ",1.0,", 1), "frantar", ["'sparsity'", "[0, 1)", "row 1"]),
    (lambda t: "\n".join(t.splitlines()[:5]), "unified", ["4 runs", "5 parameters"]),
    (lambda t: "\n".join(t.splitlines()[:7]), "frantar", ["6 runs", "7 parameters"]),
])
def test_bad_input_names_file_and_column(tmp_path, edit, form, words):
    with pytest.raises(PlannerInputError) as err:
        load_runs(write(tmp_path, edit(GOOD)), form)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_missing_file_and_unknown_form(tmp_path):
    with pytest.raises(PlannerInputError, match="nope.csv"):
        load_runs(tmp_path / "nope.csv")
    with pytest.raises(PlannerInputError, match="form"):
        load_runs(write(tmp_path, GOOD), "kaplan")


def test_chinchilla_form_does_not_need_n_avg(tmp_path):
    text = GOOD.replace(",n_avg,", ",unused,", 1)
    assert len(load_runs(write(tmp_path, text), "chinchilla")) == 8
    with pytest.raises(PlannerInputError, match="n_avg"):
        load_runs(write(tmp_path, text), "unified")


def test_seed_pairs_count_parameters_from_the_cards():
    card = pd.read_csv(Path(__file__).parents[1] / "planner" / "data" / "seed_1b_pairs.csv")
    runs = seed_pairs()
    assert len(runs) == 8 and runs["group"].nunique() == 4
    fixed = card["total_params"] - card["linear_params"]
    np.testing.assert_allclose(runs["n_avg"], card["avg_linear_params"] + fixed)
    np.testing.assert_allclose(runs["n_final"], card["nonzero_linear_params"] + fixed)
    dense = runs["sparsity"] == 0
    np.testing.assert_array_equal(runs.loc[dense, "n_avg"], runs.loc[dense, "n_final"])
    assert (runs.loc[~dense, "n_avg"] > runs.loc[~dense, "n_final"]).all()
    # each sparse model ends smaller than its small-dense partner yet matches or beats its loss
    sparse, partner = runs[~dense].set_index("group"), runs[dense].set_index("group")
    assert (sparse["n_final"] < partner["n_final"]).all() and (sparse["loss"] <= partner["loss"]).all()
