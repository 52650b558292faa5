"""`frontier --runs/--confidence` (probability of reaching the target, the plan at a confidence level) and
`next-runs` (which runs narrow the target plan's prediction most per unit of cost)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from planner.cli import number, positive
from planner.costs import HARDWARE, hardware_profile
from planner.errors import PlannerInputError
from planner.laws import DEFAULT_LAW, resolve_law
from planner.plan import dump_plan, load_plan
from planner.runs import load_runs
from planner.uncertainty.decide import LawDraws, confidence_plan, fitted_draws, with_reach


def register_flags(p) -> None:
    """The frontier's uncertainty flags."""
    p.add_argument("--runs", metavar="RUNS.csv", help="fit --law's form on these runs: the fit replaces --law's "
                                                      "numbers and its bootstrap refits give every candidate a "
                                                      "probability of reaching the target (column p_reach)")
    p.add_argument("--draws", type=number(2, 10_000, integer=True), default=200,
                   help="bootstrap refits drawn with --runs")
    p.add_argument("--noise-sd", type=number(0), help="run-to-run spread of a measured loss in nats (default: the "
                                                      "fit's residual RMSE)")
    p.add_argument("--confidence", type=number(0, 1, low_open=True, high_open=True),
                   help="with --target-loss and --runs: also pick the cheapest plan that reaches the target with "
                        "this probability, beside the median (50%%) plan")


def posterior(a, setup: dict) -> LawDraws | None:
    """Draws of the law from --runs (replacing setup's law by the fit), else None."""
    if a.runs is None:
        if a.confidence is not None:
            raise PlannerInputError("--confidence needs draws of the law: give --runs RUNS.csv (its bootstrap refits)")
        return None
    table = load_runs(a.runs, setup["law"].form)
    post = fitted_draws(setup["law"], table, n_boot=a.draws, noise_sd=a.noise_sd)
    setup.update(law=post.law, runs=table)  # the search plans with the fit; its region is these runs
    return post


def decide(a, post, result, search_kw):
    """(comparison with p_reach, ConfidenceChoice or None)."""
    if post is None or a.target_loss is None:
        if a.confidence is not None:
            raise PlannerInputError("--confidence goes with --target-loss")
        return result, None
    result = with_reach(result, post, a.target_loss)
    if a.confidence is None:
        return result, None
    kw = {k: v for k, v in search_kw.items() if k not in ("law", "objective")}
    choice = confidence_plan(post, a.target_loss, a.confidence, search_kw["objective"], **kw)
    if choice is None:
        raise PlannerInputError(f"--confidence {a.confidence:g}: no candidate reaches target {a.target_loss:g} with "
                                f"that probability; lower it or raise --target-loss")
    return result, choice


def json_fields(post, choice) -> dict:
    if post is None:
        return {}
    out = {"draws": {"n": len(post.draws), "noise_sd": post.noise_sd, "source": post.source}}
    if choice is not None:
        out["confidence"] = {"level": choice.confidence, "cost_column": choice.cost_column,
                             "extra_cost": choice.extra_cost, "extra_pct": choice.extra_pct,
                             "most_sensitive_parameter": choice.sensitive, "rank_correlation": choice.correlation,
                             "plans": json.loads(choice.table.reset_index(names="plan").to_json(orient="records"))}
    return out


def print_choice(choice, post, columns) -> None:
    if post is None:
        return
    print(f"\np_reach: probability of reaching the target over {len(post.draws)} draws ({post.source}) with "
          f"run-to-run noise sd {post.noise_sd:.3g}")
    if choice is None:
        return
    print(f"\nCheapest plan reaching the target with probability {choice.confidence:g}, beside the median plan:")
    print(choice.table[columns + ["p_reach"]].to_string(float_format=lambda x: f"{x:.4g}"))
    print(f"the extra certainty costs {choice.extra_cost:.4g} {choice.cost_column} ({choice.extra_pct:+.1f}%)")
    if choice.sensitive:
        print(f"its predicted loss hinges most on {choice.sensitive} (rank correlation {choice.correlation:+.2f} "
              f"across draws)")
