"""`frontier --runs/--confidence` (probability of reaching the target, the plan at a confidence level) and
`next-runs` (which runs narrow the target plan's prediction most per unit of cost)."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path


from planner.cli import number, positive
from planner.hardware.costs import HARDWARE, hardware_profile
from planner.errors import PlannerInputError
from planner.laws import DEFAULT_LAW, PRESETS, Law, resolve_law
from planner.plan import dump_plan, load_plan
from planner.runs import load_runs
from planner.uncertainty.decide import confidence_plan, fitted_posterior, with_reach
from planner.uncertainty.posterior import LawPosterior
from planner.uncertainty.priors import preset_posterior


def register_flags(p) -> None:
    """The frontier's uncertainty flags."""
    p.add_argument("--runs", metavar="RUNS.csv", help="fit --law's form on these runs: the fit replaces --law's "
                                                      "numbers and its parametric-bootstrap draws (else a preset's "
                                                      "published uncertainty) give every candidate a "
                                                      "probability of reaching the target (column p_reach)")
    p.add_argument("--draws", type=number(2, 10_000, integer=True), default=200,
                   help="parametric-bootstrap refits drawn with --runs")
    p.add_argument("--noise-sd", type=number(0), help="run-to-run sd of a run's log loss, e.g. 0.003 for 0.3%% "
                                                      "(default: the fit's residual sd)")
    p.add_argument("--confidence", type=number(0, 1, low_open=True, high_open=True),
                   help="with --target-loss and draws (--runs, or a preset with published uncertainty): also pick "
                        "the cheapest plan that reaches the target with this probability, beside the median (50%%) "
                        "plan")


def law_posterior(spec: str, law: Law, runs, n_draws: int, rel_noise_sd: float | None) -> LawPosterior | None:
    """Draws of `law`: its form fitted on a validated runs table, else the preset `spec`'s published uncertainty,
    else None. `rel_noise_sd` overrides the run-to-run noise."""
    if runs is not None:
        return fitted_posterior(law.form, runs, n_draws=n_draws, rel_noise_sd=rel_noise_sd,
                                n_convention=law.n_convention)
    post = preset_posterior(spec, law) if spec in PRESETS else None
    return post if post is None or rel_noise_sd is None else dataclasses.replace(post, rel_noise_sd=rel_noise_sd)


def posterior(a, setup: dict) -> LawPosterior | None:
    """The frontier's draws; with --runs the fit replaces setup's law and its runs bound the region."""
    table = None if a.runs is None else load_runs(a.runs, setup["law"].form)
    post = law_posterior(a.law, setup["law"], table, a.draws, a.noise_sd)
    if post is None and a.confidence is not None:
        raise PlannerInputError(f"--confidence needs draws of the law: {a.law} has no published uncertainty; "
                                f"give --runs RUNS.csv (they are fitted)")
    if table is not None:
        setup.update(law=post.law, runs=table)
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
    out = {"draws": {"n": len(post.draws), "rel_noise_sd": post.rel_noise_sd, "method": post.method}}
    if choice is not None:
        out["confidence"] = {"level": choice.confidence, "cost_column": choice.cost_column,
                             "extra_cost": choice.extra_cost, "extra_pct": choice.extra_pct,
                             "most_sensitive_parameter": choice.sensitive, "rank_correlation": choice.correlation,
                             "plans": json.loads(choice.table.reset_index(names="plan").to_json(orient="records"))}
    return out


def print_choice(choice, post, columns) -> None:
    if post is None:
        return
    print(f"\np_reach: probability of reaching the target over {len(post.draws)} draws ({post.method}) and "
          f"run-to-run noise of {post.rel_noise_sd:.2%} of the loss; like the loss, it extrapolates outside the "
          f"law's runs")
    if choice is None:
        return
    print(f"\nCheapest plan reaching the target with probability {choice.confidence:g}, beside the median plan:")
    print(choice.table[columns + ["p_reach"]].to_string(float_format=lambda x: f"{x:.4g}"))
    print(f"the extra certainty costs {choice.extra_cost:.4g} {choice.cost_column} ({choice.extra_pct:+.1f}%)")
    if choice.sensitive:
        print(f"its predicted loss hinges most on {choice.sensitive} (rank correlation {choice.correlation:+.2f} "
              f"across draws)")


def register(sub) -> None:
    """`next-runs`."""
    p = sub.add_parser("next-runs", help="which runs narrow the target plan's predicted loss most per unit of cost")
    p.add_argument("--law", default=DEFAULT_LAW, metavar="PRESET|FILE", help="the law (its form is fitted on --runs)")
    p.add_argument("--runs", metavar="RUNS.csv", help="the runs so far (planner.runs columns); without them, the "
                                                      "preset's published uncertainty")
    p.add_argument("--target", required=True, metavar="PLAN", help="the plan whose prediction should narrow")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-minutes", type=positive, help="one-thread CPU minutes (laptop recipe runs)")
    budget.add_argument("--budget-gpu-hours", type=positive, help="training GPU-hours on --gpu (family runs)")
    p.add_argument("--gpu", choices=sorted(HARDWARE), default="h100", help="with --budget-gpu-hours")
    p.add_argument("--draws", type=number(3, 10_000, integer=True), default=200,
                   help="parametric-bootstrap refits of the law")
    p.add_argument("--noise-sd", type=number(0), help="run-to-run sd of a run's log loss (default: the residuals')")
    p.add_argument("--max-runs", type=number(1, 1000, integer=True), default=8,
                   help="most candidates chosen (a sparse pair counts once)")
    p.add_argument("--out", metavar="DIR", help="write the chosen runs' plans here (YAML)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_next_runs)


def run_next_runs(a) -> int:
    from planner.uncertainty import next_runs as nr  # the ladder and trainer recipe only for this command
    target = load_plan(a.target)
    law = resolve_law(a.law)
    post = law_posterior(a.law, law, None if a.runs is None else load_runs(a.runs, law.form), a.draws, a.noise_sd)
    if post is None:
        raise PlannerInputError(f"--law {a.law}: no published uncertainty to start from; give --runs RUNS.csv")
    if a.budget_minutes is not None:
        options, budget = nr.laptop_options(post, target), a.budget_minutes
    else:
        hardware = hardware_profile(a.gpu, target.schedule.pattern)
        options, budget = nr.gpu_options(post, target, hardware, a.budget_gpu_hours), a.budget_gpu_hours
    found = nr.next_runs(post, target, options, budget, max_runs=a.max_runs)
    chosen, table, point = found.chosen, found.table, found.point
    if a.out:
        for plan in found.plans:
            try:
                dump_plan(plan, Path(a.out) / f"{plan.name}.yaml")
            except OSError as exc:
                raise PlannerInputError(f"--out {a.out}: cannot write ({exc.strerror or exc})") from None
    before = chosen["width_before"].iloc[0] if len(chosen) else float("nan")
    after = chosen["width_after"].iloc[-1] if len(chosen) else before
    if a.json:
        print(json.dumps({"target": target.name, "predicted_loss": float(post.law.predict(*point)),
                          "interval_width_before": before, "interval_width_after": after, "cost_unit": options.unit,
                          "budget": budget, "spent": float(chosen["cost"].sum()) if len(chosen) else 0.0,
                          "draws": len(post.draws), "rel_noise_sd": post.rel_noise_sd,
                          "runs": json.loads(table.to_json(orient="records"))}))
        return 0
    print(f"target {target.name}: predicted loss {post.law.predict(*point):.4f} over {len(post.draws)} draws "
          f"({post.method})")
    if table.empty:
        print(f"no run within {budget:g} {options.unit} narrows its interval", file=sys.stderr)
        return 0
    print(f"90% interval width {before:.4g} nats now; the runs to add, in order:")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"expected width after these runs: {after:.4g} nats, spending {chosen['cost'].sum():.3g} of {budget:g} "
          f"{options.unit}")
    if a.out:
        print(f"wrote {len(table)} plans to {a.out}")
    return 0
