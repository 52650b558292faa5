"""A plan's predicted loss with its interval (`planner.uncertainty.plan_prediction`): one region rule, so no caller
flags a plan as an extrapolation and still gives it an interval."""
import numpy as np
import pandas as pd
import pytest

from app.ui.schedule_view import predict
from app.ui.working_law import WorkingLaw, caption
from planner.laws import PARAM_NAMES, default_law
from planner.regime import validated_region
from planner.search import build_plan, family_shape
from planner.uncertainty import LawPosterior, Region, plan_counts, plan_prediction

LAW = default_law()


def draws(k: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.column_stack([LAW.params[p] * (1 + 0.01 * rng.standard_normal(k)) for p in PARAM_NAMES[LAW.form]])


def plan_and_runs():
    """A dense plan and runs whose largest N is the plan's / 1.05: the plan lies outside the runs' hull but inside
    the posterior's Region (the hull widened by a factor ~1.105)."""
    plan = build_plan(family_shape(512), 0.0, "dense", tokens_per_param=40, law=LAW)
    n = plan.derived.n_avg / 1.05 * np.repeat([0.25, 0.5, 1.0], 3)
    runs = pd.DataFrame({"n_avg": n, "tokens": n * np.tile([20.0, 40.0, 80.0], 3), "loss": 3.0})
    return plan, runs, LawPosterior(LAW, draws(), 0.0, Region(runs["n_avg"], runs["tokens"]))


def test_a_plan_in_the_regions_margin_is_inside_and_carries_its_interval():
    plan, runs, post = plan_and_runs()
    assert not validated_region(runs).contains(plan.derived.n_avg, plan.budget.tokens)  # outside the bare hull
    assert post.region.contains(plan.derived.n_avg, plan.budget.tokens)  # inside the Region
    working = WorkingLaw("fit", LAW, post, runs)
    built = build_plan(family_shape(512), 0.0, "dense", tokens_per_param=40, law=LAW, posterior=post, runs=runs)
    for p in (predict(plan, working), built.prediction, plan_prediction(LAW, *plan_counts(plan), post, runs)):
        assert not p.extrapolated and p.warnings == []  # was: flagged extrapolated, yet with an interval
        assert p.ci_low < p.loss < p.ci_high


def test_outside_the_region_a_plan_is_flagged_with_its_reason_and_no_interval():
    plan, runs, post = plan_and_runs()
    far = plan.model_copy(update={"derived": plan.derived.model_copy(update={"n_avg": 2 * plan.derived.n_avg})})
    p = predict(far, WorkingLaw("fit", LAW, post, runs))
    assert p.extrapolated and p.ci_low is None and p.ci_high is None
    assert p.warnings[0].startswith("extrapolation, no interval: N above the runs'")
    assert caption(p, "unused") == p.warnings[0]
    assert p.loss == pytest.approx(float(LAW.predict(far.derived.n_avg, far.budget.tokens)))  # the number stays


def test_without_a_posterior_region_the_validated_region_decides_flag_and_interval():
    """No posterior (a preset without published uncertainty): flagged outside the runs' hull (the seed's range when
    there are no runs), never an interval. A posterior without a region follows the same region."""
    plan, runs, post = plan_and_runs()
    bare = LawPosterior(LAW, post.draws)  # region None
    for posterior in (None, bare):
        p = plan_prediction(LAW, *plan_counts(plan), posterior, runs)
        assert p.extrapolated and p.ci_low is None and f"outside {len(runs)} fitted runs" in p.warnings[0]
    inside = build_plan(family_shape(1024), 0.5, tokens_per_param=100, law=LAW, posterior=bare)  # the seed's range
    assert not inside.prediction.extrapolated and inside.prediction.ci_low < inside.prediction.loss
    assert caption(plan_prediction(LAW, *plan_counts(inside)), "none published") == "no interval: none published"


@pytest.mark.parametrize("target", [2.3, 2.6, 3.0])
def test_the_search_flags_candidates_where_the_chosen_plan_is_flagged(target):
    """With the default preset and its published draws, every row of the search (the chart's markers) carries the
    flag its own plan gets: the seed's range alone flagged the chart while the plan was judged on the preset's data
    (a validated-looking marker over a plan that said 'extrapolation, no interval')."""
    from planner.laws import DEFAULT_LAW
    from planner.search import lifetime_optimal, plan_from_candidate
    from planner.uncertainty import prediction_region
    from planner.uncertainty.priors import preset_posterior
    post = preset_posterior(DEFAULT_LAW, LAW)
    comp = lifetime_optimal(LAW, target, region=prediction_region(LAW, post), refine=False)
    rows = comp.table.reset_index(drop=True)
    for _, row in rows.iterrows():
        plan = plan_from_candidate(row, LAW, posterior=post)
        assert plan.prediction.extrapolated == bool(row["extrapolated"]), (target, row["plan_id"] if "plan_id" in
                                                                           row else row["d_model"])
        assert (plan.prediction.ci_low is None) == plan.prediction.extrapolated
