"""Intervals a user can trust for fitted and preset scaling laws: profiles, parametric draws, the runs' region."""
from planner.uncertainty.bootstrap import BootstrapResult, bootstrap
from planner.uncertainty.posterior import LawPosterior, posterior_from_fit
from planner.uncertainty.prediction import plan_counts, plan_prediction, prediction_region
from planner.uncertainty.profile import ProfileInterval, profile_intervals
from planner.uncertainty.region import MARGIN, Region

__all__ = ["BootstrapResult", "bootstrap", "LawPosterior", "posterior_from_fit", "plan_counts", "plan_prediction",
           "prediction_region", "ProfileInterval", "profile_intervals", "MARGIN", "Region"]
