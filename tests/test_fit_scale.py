"""Large runs tables: the start grid fits a fixed sample of the runs and its best basins are refined on all of them,
so a fit's cost grows linearly with the table (planner.fit.GRID_RUNS)."""
import numpy as np
import pandas as pd

from planner import fit as fit_module
from planner.fit import LawFitter, grid_sample
from planner.laws import get_law


def _runs(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = np.exp(rng.uniform(np.log(4e7), np.log(1.6e10), n))
    tokens = np.exp(rng.uniform(np.log(5e9), np.log(5e11), n))
    loss = get_law("epoch-replication").predict(size, tokens) * np.exp(rng.normal(0, 0.015, n))
    return pd.DataFrame({"n": size, "tokens": tokens, "loss": loss})


def test_grid_sample_is_fixed_and_only_for_large_tables():
    assert grid_sample(fit_module.GRID_RUNS) is None
    sample = grid_sample(10 * fit_module.GRID_RUNS)
    assert len(sample) == fit_module.GRID_RUNS == len(set(sample)) and np.all(np.diff(sample) > 0)
    assert np.array_equal(sample, grid_sample(10 * fit_module.GRID_RUNS))


def test_a_sampled_grid_finds_the_full_grids_optimum(monkeypatch):
    """With the grid on 60 of 240 runs, refining its basins on all 240 reaches the optimum the full grid finds."""
    table = _runs(240)
    full = LawFitter("chinchilla", grid="coarse").fit(table)
    monkeypatch.setattr(fit_module, "GRID_RUNS", 60)
    sampled = LawFitter("chinchilla", grid="coarse").fit(table)
    assert "on a 60-run sample" in sampled.provenance and "sample" not in full.provenance
    assert sampled.objective <= full.objective * (1 + 1e-6), (sampled.objective, full.objective)
    assert abs(sampled.optimal_n_exponent - full.optimal_n_exponent) < 1e-4
    assert 0 < sampled.n_starts_at_best <= sampled.n_starts == full.n_starts
