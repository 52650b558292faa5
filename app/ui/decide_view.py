"""Pareto page, under the working law's uncertainty: the probability that each candidate reaches the target (tooltip
and optional shading) and the cheapest plan at a confidence level beside the median plan (planner.uncertainty)."""
from __future__ import annotations

import copy
import dataclasses

import pandas as pd
import streamlit as st

from app.ui.pareto_view import PlannerInputs, cost_units, hardware, side_by_side
from app.ui.working_law import WorkingLaw
from planner.search import Comparison
from planner.uncertainty.decide import ConfidenceChoice, confidence_plan, with_reach
from planner.uncertainty.posterior import LawPosterior

MAX_DRAWS = 200  # draws the page evaluates: a confidence plan over every width stays near a second
P_REACH = {"field": "p_reach", "type": "quantitative", "format": ".0%", "title": "P(reach target)"}


def draws(working: WorkingLaw) -> LawPosterior | None:
    """The working law's posterior (a fit's parametric bootstrap, a preset's published uncertainty) with at most
    MAX_DRAWS draws; None without one."""
    post = working.posterior
    return None if post is None else dataclasses.replace(post, draws=post.draws[:MAX_DRAWS])


def with_probability(comp: Comparison, working: WorkingLaw, inputs: PlannerInputs) -> Comparison:
    """`p_reach` on every candidate in target-loss mode when the working law has draws; else unchanged."""
    post = draws(working)
    return comp if post is None or inputs.mode != "loss" else with_reach(comp, post, inputs.target_loss)


def chart(spec: dict, candidates: pd.DataFrame, shade: bool) -> dict:
    """The Pareto chart spec with P(reach target) in the points' tooltip and, with `shade`, as their colour."""
    if "p_reach" not in candidates:
        return spec
    spec = copy.copy(spec)
    spec["datasets"] = dict(spec["datasets"], candidates=spec["datasets"]["candidates"].assign(
        p_reach=candidates["p_reach"].to_numpy()))
    spec["layer"] = copy.deepcopy(spec["layer"])
    for layer in spec["layer"]:
        if layer.get("data", {}).get("name") != "candidates":
            continue
        enc = layer["encoding"]
        enc["tooltip"] = [*enc["tooltip"], P_REACH]
        if shade:  # extrapolated points stay hollow: the fill keeps its condition
            enc["color"] = {"field": "p_reach", "type": "quantitative", "title": "P(reach target)",
                            "scale": {"scheme": "redyellowgreen", "domain": [0, 1]}, "legend": {"format": ".0%"}}
            enc["fill"] = {**enc["color"], "condition": enc["fill"]["condition"]}
    return spec


def confident(inputs: PlannerInputs, working: WorkingLaw, confidence: float) -> ConfidenceChoice | None:
    """The cheapest plan reaching the target with probability `confidence` beside the median plan, or None."""
    post = draws(working)
    if post is None or inputs.mode != "loss":
        return None
    return confidence_plan(post, inputs.target_loss, confidence, cost_units(inputs), hardware=hardware(inputs),
                           lifetime_tokens=inputs.lifetime_tokens, schedules=inputs.schedules,
                           sparsities=inputs.sparsities, runs=working.runs)


def choice_table(choice: ConfidenceChoice) -> pd.DataFrame:
    """The confidence plan and the median plan as formatted columns (the Pareto page's side-by-side fields)."""
    table = side_by_side(choice.table.assign(plan_id=[_plan_id(r) for _, r in choice.table.iterrows()]))
    p = pd.DataFrame({name: [f"{v:.0%}"] for name, v in choice.table["p_reach"].items()},
                     index=["P(reach target)"])
    return pd.concat([table.iloc[:1], p, table.iloc[1:]])


def _plan_id(row) -> str:
    return f"d{int(row['d_model'])} · {round(row['final_sparsity'] * 100)}% · {row['schedule']}"


def section(inputs: PlannerInputs, working: WorkingLaw) -> None:
    """The page's 'plan at a confidence level' expander (a law with draws, target-loss mode)."""
    if draws(working) is None or inputs.mode != "loss":
        st.caption("Probabilities of reaching the target need a law with draws (a fit, or a preset with published "
                   "uncertainty) and a target loss.")
        return
    with st.expander("Plan at a confidence level"):
        q = st.slider("Probability of reaching the target", 0.5, 0.99, 0.9, 0.01, key="pareto_confidence")
        if not st.toggle("Find the cheapest plan at this probability", key="pareto_confident",
                         help="searches every family width under every draw: a few seconds, so only on request"):
            return
        choice = _confident(inputs, q, working)
        if choice is None:
            st.warning(f"No candidate reaches {inputs.target_loss:g} with probability {q:.0%}.")
            return
        st.table(choice_table(choice))
        st.caption(f"The extra certainty costs {choice.extra_pct:+.1f}% in {choice.cost_column} over the median "
                   f"plan. Its predicted loss hinges most on {choice.sensitive} (rank correlation "
                   f"{choice.correlation:+.2f} across the law's draws).")


@st.cache_resource(show_spinner="Finding the plan at that confidence…", max_entries=16)
def _confident(inputs: PlannerInputs, q: float, _working: WorkingLaw):  # inputs.law is the working law's key
    return confident(inputs, _working, q)
