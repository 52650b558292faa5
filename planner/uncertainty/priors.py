"""Published uncertainty of the preset laws, as draws a `LawPosterior` can use (planner/data/preset_priors.json).

Besiroglu et al. 2024 ('Chinchilla Scaling: A replication attempt', Epoch AI, arXiv:2404.10102) report their refit
with bootstrap standard errors: E 1.8172 (0.03), A 482.01 (124.58), B 2085.43 (1293.23), alpha 0.3478 (0.02),
beta 0.3658 (0.02), from 4000 bootstrap resamples of 240 points extracted from Hoffmann et al.'s Figure 4. Standard
errors alone cannot make an interval on a loss: A and alpha (B and beta) are strongly correlated, and drawing them
independently would spread the predicted loss far beyond what the data allow. So the draws in the data file are this
project's own bootstrap of the same points (same protocol: Huber delta 1e-3 summed, Chinchilla grid, 5 highest-loss
points dropped), moved in log space by the preset's offset from this project's refit of the points (so they centre
on the preset), and kept only because their standard deviations agree with the published ones (the file records
both; tests/test_uncertainty.py checks them). `build` writes the file from the extracted points.

The Hoffmann et al. presets get no draws: their published intervals cover the compute-optimal exponents only, and the
replication shows them to be implausibly narrow. The Frantar preset's paper gives no parameter uncertainty.
"""
from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from planner.laws import PARAM_NAMES, PRESETS, Law, resolve_law
from planner.uncertainty.posterior import LawPosterior
from planner.uncertainty.region import Region

PRIORS_PATH = Path(__file__).resolve().parents[1] / "data" / "preset_priors.json"
PUBLISHED_SE = {"epoch-replication": {"E": 0.03, "A": 124.58, "B": 1293.23, "alpha": 0.02, "beta": 0.02}}
SOURCE = ("Besiroglu, Erdil, Barnett, You 2024, 'Chinchilla Scaling: A replication attempt' (Epoch AI, "
          "arXiv:2404.10102), table of estimates with bootstrap standard errors")


@cache
def _priors() -> dict:
    return json.loads(PRIORS_PATH.read_text()) if PRIORS_PATH.exists() else {}


def preset_posterior(name: str, law: Law | None = None) -> LawPosterior | None:
    """The posterior of a preset from its published uncertainty (None when the preset has none). ``law`` is the
    preset as planned with (e.g. `resolve_law(name)`, the unified form); the region is the replication's points."""
    prior = _priors().get(name)
    if prior is None:
        return None
    law = law or resolve_law(name)
    draws = np.column_stack([prior["draws"][k] for k in PARAM_NAMES[law.form]])
    region = Region(prior["region"]["n"], prior["region"]["tokens"], source=prior["region"]["source"])
    return LawPosterior(law, draws, 0.0, region, f"{len(draws)} draws from the published uncertainty: "
                                                  f"{prior['source']}", preset=True)


def epoch_points(csv_path, drop_highest: int = 5) -> pd.DataFrame:
    """Runs (n, tokens, loss) from the replication's extracted points (columns 'Model Size', 'Training FLOP', 'loss'):
    tokens = FLOP / (6 N), and the `drop_highest` highest-loss points dropped, as the replication does."""
    raw = pd.read_csv(csv_path).sort_values("loss")
    raw = raw.iloc[:len(raw) - drop_highest]
    n = raw["Model Size"].to_numpy(float)
    return pd.DataFrame({"n": n, "tokens": raw["Training FLOP"].to_numpy(float) / (6 * n),
                         "loss": raw["loss"].to_numpy(float)})


def build(csv_path: str, n_boot: int = 400, seed: int = 0, drop_highest: int = 5) -> dict:
    """The data file's entry for 'epoch-replication' from the replication's extracted points (`epoch_points`)."""
    from planner.fit import LawFitter, theta_to_params
    from planner.uncertainty.bootstrap import bootstrap
    runs = epoch_points(csv_path, drop_highest)
    fit = LawFitter("chinchilla").fit(runs)
    boot = bootstrap(runs, "chinchilla", n_boot=n_boot, seed=seed, by_group=False, fit=fit)
    preset = PRESETS["epoch-replication"]
    # move every draw by the preset's offset from this refit, in log space: the spread stays the bootstrap's
    target = np.array([np.log(preset.coefficients[k]) if k in ("E", "A", "B") else preset.coefficients[k]
                       for k in PARAM_NAMES["chinchilla"]])
    logs = np.column_stack([np.log(boot.samples[k]) if k in ("E", "A", "B") else boot.samples[k]
                            for k in PARAM_NAMES["chinchilla"]])
    moved = theta_to_params("chinchilla", logs + (target - fit.theta))
    return {"epoch-replication": {
        "source": SOURCE,
        "published_se": PUBLISHED_SE["epoch-replication"],
        "draws_sd": {k: float(np.std(v)) for k, v in moved.items()},
        "method": f"{n_boot} bootstrap refits (single points resampled) of {len(runs)} points, moved in log space by "
                  f"the preset's offset from this project's refit "
                  f"(python -m planner.uncertainty.priors {Path(csv_path).name})",
        "region": {"n": runs["n"].tolist(), "tokens": runs["tokens"].tolist(),
                   "source": f"the replication's {len(runs)} points (N: total parameters)"},
        "draws": {k: [float(x) for x in v] for k, v in moved.items()},
    }}


if __name__ == "__main__":
    PRIORS_PATH.write_text(json.dumps(build(sys.argv[1]), indent=1))
