"""Intervals on the pages: held exponents silence the advice to hold them, a disabled working-law button says why,
exponents show profile intervals or 'unidentified', and the default preset carries its published uncertainty."""
import numpy as np
import pandas as pd

from app.ui.laws_view import fit_form
from app.ui.uncertainty_view import exponent_caption, use_note
from app.ui.working_law import DEFAULT, interval_caption
from planner.laws import PRESETS, Law
from planner.runs import seed_pairs
from test_app_common import assert_clean, open_page

EPOCH = PRESETS["epoch-replication"].exponents
TRUTH = Law(form="unified", params={"E": 1.7, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28})


def test_held_exponents_do_not_advise_holding_them_and_the_disabled_button_says_why():
    at = open_page()
    at.session_state["laws_forms"] = ["unified", "chinchilla", "frantar"]
    at.switch_page("views/laws.py").run()
    assert_clean(at)
    assert at.checkbox(key="laws_hold_seed").value  # the seed pairs hold α, β by default
    warnings = [w.value for w in at.warning]
    assert warnings and not any("Hold the exponents" in w or "trust the derived" in w for w in warnings)
    for form in ("unified", "chinchilla", "frantar"):
        if at.button(key=f"laws_use_{form}").disabled:
            assert any(c.value.startswith("Not offered: this fit cannot plan (") for c in at.caption), form
    # without the hold the same advice is right, and is given
    at.checkbox(key="laws_hold_seed").uncheck().run()
    assert any("Hold the exponents" in w.value for w in at.warning)


def test_use_note_names_the_problem_of_a_held_fit():
    r = fit_form(seed_pairs(), "unified", "coarse", 50, exponents=EPOCH)
    assert use_note(r, in_force=False).startswith("Not offered: this fit cannot plan (the B term has vanished (B = ")
    assert use_note(r, in_force=True) == "In force on every page."
    assert exponent_caption(r, "epoch-replication") == "set by the held exponents (epoch-replication)"


def test_twelve_run_upload_shows_a_profile_interval_that_contains_the_truth_or_unidentified():
    rng = np.random.default_rng(0)
    n = np.repeat(np.geomspace(5e7, 4e8, 4), 3)
    d = n * np.tile([10.0, 20.0, 40.0], 4)
    runs = pd.DataFrame({"loss": TRUTH.predict(n, d) * np.exp(rng.normal(0, 0.003, n.size)), "tokens": d,
                         "n_avg": n})
    r = fit_form(runs, "unified", "coarse", 60)
    caption = exponent_caption(r, None)
    if caption.startswith("95% profile interval ["):
        low, high = (float(x) for x in caption.split("[")[1].strip("]").split(", "))
        assert low <= TRUTH.optimal_n_exponent <= high
    else:
        assert caption.startswith("unidentified, no interval: ")


def test_the_default_preset_carries_its_published_uncertainty():
    assert DEFAULT.posterior is not None and "published uncertainty" in DEFAULT.label
    # a 1B model on 20B tokens lies among the replication's points: an interval; a 1T model far outside: none
    assert interval_caption(DEFAULT, 1e9, 1e9, 0.0, 2e10).startswith("95% interval [")
    assert interval_caption(DEFAULT, 1e12, 1e12, 0.0, 2e13).startswith("extrapolation, no interval: N above")
