"""Runs page: which laptop runs would narrow the selected plan's predicted loss most per CPU minute, from the
finished runs (planner.uncertainty.next_runs), offered for launch."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app.ui.common import human
from app.ui.runs_view import fit_table
from planner.runs import load_runs
from planner.plan import TrainingPlan
from planner.uncertainty.decide import fitted_posterior
from planner.uncertainty.next_runs import laptop_options, next_runs

MIN_RUNS = 6  # finished runs before a five-parameter fit has anything to bootstrap
DRAWS = 100
KEY = "next_runs"  # session state: (target name, budget, finished runs) -> (table, plans)


def suggest(plan: TrainingPlan, folder: Path, budget_minutes: float) -> tuple[pd.DataFrame, list[TrainingPlan]] | str:
    """(readable table, plans) of the runs to train next within `budget_minutes`, or why there are none."""
    runs = fit_table(folder)
    if len(runs) < MIN_RUNS:
        return f"Suggestions need {MIN_RUNS} finished runs to fit the unified law on; {len(runs)} finished so far."
    post = fitted_posterior("unified", load_runs(runs, "unified"), n_draws=DRAWS, grid="coarse")
    found = next_runs(post, plan, laptop_options(post, plan), budget_minutes)
    if found.chosen.empty:
        return f"No run within {budget_minutes:g} CPU minutes narrows the prediction of {plan.name}."
    table = found.table
    shown = pd.DataFrame({"step": table["step"], "plan": table["plan"], "N_avg": [human(x, 3) for x in table["n_avg"]],
                          "tokens": [human(x, 3) for x in table["tokens"]],
                          "CPU minutes (pair)": table["cost"].map("{:.1f}".format),
                          "90% interval after (nats)": table["width_after"].map("{:.4f}".format)})
    return shown, found.plans


def section(plan: TrainingPlan, folder: Path) -> dict[str, TrainingPlan]:
    """The 'what to run next' expander; returns the suggested plans to add to the launch choices."""
    with st.expander("What to run next"):
        st.caption(f"Ranks laptop runs (the validation ladder's sizes at several run lengths, sparse with its dense "
                   f"partner) by how much they are expected to narrow the 90% interval of {plan.name}'s predicted "
                   f"loss per CPU minute, from the unified law fitted on the finished runs ({DRAWS} parametric-bootstrap draws).")
        budget = st.number_input("CPU minutes to spend", 1.0, 600.0, 30.0, 5.0, key="next_runs_budget")
        if st.button("Suggest runs", key="next_runs_go"):
            st.session_state[KEY] = suggest(plan, folder, budget)
        found = st.session_state.get(KEY)
        if isinstance(found, str):
            st.info(found)
        elif found is not None:
            st.dataframe(found[0], hide_index=True, width="stretch")
            return {f"next: {p.name}": p for p in found[1]}
    return {}
