"""Schedules and parameter accounting: closed forms against numerics, the seed's released 1B runs, exact counts."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from planner.plan import resolve_schedule
from planner.schedules import (Schedule, closest_step_window, compute_weighting, cumulative_density, density_at,
                               mean_density, window_from_compute)
from planner.shapes import PRESETS

CLOSED = ("dense", "one_shot", "linear", "cubic", "geometric")
GRID = (np.arange(400_000) + 0.5) / 400_000  # midpoints: error <= half a cell per unit of total jump


@st.composite
def schedules(draw, shapes=CLOSED + ("piecewise",)):
    shape = draw(st.sampled_from(shapes))
    if shape == "piecewise":
        ts = sorted(draw(st.lists(st.floats(0, 1), min_size=2, max_size=6, unique=True)))
        ds = sorted(draw(st.lists(st.floats(0.05, 1), min_size=len(ts), max_size=len(ts))), reverse=True)
        return Schedule(shape="piecewise", points=list(zip(ts, ds)))
    s_f = 0.0 if shape == "dense" else draw(st.floats(0.01, 0.95))
    t0 = draw(st.floats(0, 0.9))
    t1 = t0 if shape == "one_shot" else draw(st.floats(t0, 1))
    every = None
    if shape == "geometric" and draw(st.booleans()):
        every = max((t1 - t0) / draw(st.floats(1.3, 60)), 1e-3)  # odd `every`: need not divide the window
    s_i = draw(st.floats(0, s_f)) if shape in ("linear", "cubic") else 0.0
    return Schedule(shape=shape, final_sparsity=s_f, initial_sparsity=s_i, start=t0, end=t1, every=every)


@settings(max_examples=60, deadline=None)
@given(schedules())
def test_density_is_non_increasing_and_within_bounds(sched):
    d = sched.density(np.linspace(0, 1, 2001))
    assert np.all(np.diff(d) <= 1e-12)
    assert np.all(d <= 1 + 1e-12) and np.all(d >= sched.final_density - 1e-12)


@settings(max_examples=60, deadline=None)
@given(schedules())
def test_closed_form_mean_equals_the_numerical_integral(sched):
    assert sched.mean_density() == pytest.approx(sched.density(GRID).mean(), abs=5e-6)
    half = GRID[GRID < 0.5]
    assert float(sched.cumulative(0.5)) == pytest.approx(sched.density(half).sum() / GRID.size, abs=5e-6)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.01, 0.95), st.floats(0, 0.9), st.floats(0, 1))
def test_cubic_mean_sparsity_closed_form(s_f, t0, frac):
    t1 = t0 + frac * (1 - t0)
    mean_sparsity = 1 - Schedule(shape="cubic", final_sparsity=s_f, start=t0, end=t1).mean_density()
    assert mean_sparsity == pytest.approx(s_f * (0.75 * (t1 - t0) + (1 - t1)), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(("one_shot", "linear", "cubic", "geometric")), st.floats(0.05, 0.95), st.floats(0.02, 0.6),
       st.floats(0.05, 0.35), st.floats(0, 0.2))
def test_window_by_compute_lands_where_asked(shape, s_f, c0, width, phi):
    c1 = c0 if shape == "one_shot" else c0 + width
    sched = Schedule.from_compute(shape, s_f, c0, c1, fixed_ratio=phi)
    got = sched.compute_fraction(np.array([sched.start, sched.end]), phi)
    assert got == pytest.approx([c0, c1], abs=1e-7)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(CLOSED), st.lists(st.tuples(st.floats(0.01, 0.95), st.floats(0, 1), st.floats(0, 1)),
                                         min_size=1, max_size=8))
def test_vectorised_calls_equal_per_schedule_calls(shape, rows):
    s_f, a, b = (np.array(x) for x in zip(*rows))
    s_f = np.zeros_like(s_f) if shape == "dense" else s_f
    t0, t1 = np.minimum(a, b), np.maximum(a, b)
    t1 = t0 if shape == "one_shot" else t1
    scalar = [Schedule(shape=shape, final_sparsity=s, start=lo, end=hi) for s, lo, hi in zip(s_f, t0, t1)]
    assert mean_density(shape, s_f, t0, t1) == pytest.approx([x.mean_density() for x in scalar], abs=1e-13)
    t = np.linspace(0, 1, 7)[:, None]
    assert density_at(t, shape, s_f, t0, t1) == pytest.approx(np.array([x.density(t[:, 0]) for x in scalar]).T)
    assert cumulative_density(t, shape, s_f, t0, t1) == pytest.approx(
        np.array([x.cumulative(t[:, 0]) for x in scalar]).T, abs=1e-13)
    w0, w1 = window_from_compute(shape, s_f, 0.25, 0.75)
    one = [window_from_compute(shape, s, 0.25, 0.75) for s in s_f]
    assert w0 == pytest.approx([o[0] for o in one]) and w1 == pytest.approx([o[1] for o in one])


# The seed's released ~1B runs (model cards tjingrant/sparsellm-1b-*): geometric, every 100 steps unless stated.
SEED_RUNS = [(0.8, 2500, 12600, 100, 25050, 0.3984), (0.2, 2500, 8100, 100, 11200, 0.8919),
             (0.4, 2500, 8875, 125, 13050, 0.7651)]


@pytest.mark.parametrize("s_f, start, end, every, total, card", SEED_RUNS)
def test_seed_geometric_schedules_reproduce_the_model_cards(s_f, start, end, every, total, card):
    sched = Schedule.from_steps("geometric", s_f, start, end, total, every)
    assert sched.mean_density() == pytest.approx(card, abs=1e-3)
    assert sched.n_events == (end - start) // every + 1


@pytest.mark.parametrize("s_f, start, end, every, total, card", SEED_RUNS + [(0.6, 2500, 10100, 100, 16375, None)])
def test_compute_window_recovers_the_seed_windows(s_f, start, end, every, total, card):
    """25% -> 75% of compute on llama2-1b gives the released step windows within one pruning interval."""
    sched = resolve_schedule(PRESETS["llama2-1b"], total, "geometric", s_f, "compute", 0.25, 0.75, every_steps=every)
    assert abs(sched.start_step - start) <= every and abs(sched.end_step - end) <= every


def test_seed_80p_window_in_token_fractions():
    model = PRESETS["llama2-1b"]
    phi = compute_weighting(model)
    t0, t1 = window_from_compute("geometric", 0.8, 0.25, 0.75, phi, 100 / 25050)
    assert abs(t0 * 25050 - 2500) <= 100 and abs(t1 * 25050 - 12600) <= 100


def test_preset_parameter_counts():
    big, small = PRESETS["llama2-1b"].counts(), PRESETS["llama2-70m"].counts()
    assert round(big["total"] / 1e6, 2) == 1204.88 and round(big["prunable"] / 1e6, 2) == 1139.28
    assert round(small["total"] / 1e6, 2) == 57.94
    assert big["total"] == big["prunable"] + big["embedding"] + big["norm"]


def test_n_avg_and_n_final_follow_the_schedule():
    model = PRESETS["llama2-1b"]
    sched = Schedule.from_steps("geometric", 0.8, 2500, 12600, 25050, 100)
    fixed, prunable = model.n_params()
    assert sched.n_final(fixed, prunable) == pytest.approx(fixed + 0.2 * prunable)
    assert sched.n_avg(fixed, prunable) == pytest.approx(fixed + sched.mean_density() * prunable)
    fixed_ne, _ = model.n_params("non_embedding")
    assert fixed - fixed_ne == model.embedding


@pytest.mark.parametrize("bad", [dict(start=0.8, end=0.2), dict(shape="dense", final_sparsity=0.5),
                                 dict(final_sparsity=1.0), dict(shape="piecewise", points=[(0, 1), (0.5, 1.2)]),
                                 dict(initial_sparsity=0.6, final_sparsity=0.5)])
def test_invalid_schedules_are_rejected(bad):
    with pytest.raises(ValueError):
        Schedule(**bad)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(("geometric", "linear", "cubic", "one_shot")), st.floats(0.1, 0.95), st.floats(0.05, 0.6),
       st.floats(0.0, 0.35), st.integers(40, 300), st.integers(1, 25), st.floats(0, 0.3))
def test_closest_step_window_is_the_best_whole_step_window(shape, s_f, c0, width, T, every, phi):
    c1 = c0 if shape == "one_shot" else c0 + width
    start, end, a0, a1 = closest_step_window(shape, s_f, c0, c1, phi, T, every)
    chosen = Schedule.from_steps(shape, s_f, start, end, T, every if shape == "geometric" else None)
    assert chosen.compute_fraction(np.array([chosen.start, chosen.end]), phi) == pytest.approx([a0, a1], abs=1e-12)
    # brute force: every whole-step window the trainer could run (geometric: whole intervals; one-shot: a point)
    S, E = (a.ravel() for a in np.meshgrid(np.arange(T + 1), np.arange(T + 1), indexing="ij"))
    ok = (E >= S) & ((E - S) % every == 0 if shape == "geometric" else E == S if shape == "one_shot" else True)
    S, E = S[ok], E[ok]
    geo = every / T if shape == "geometric" else np.nan
    total = cumulative_density(1.0, shape, s_f, S / T, E / T, geo)
    f0, f1 = ((phi * t + cumulative_density(t, shape, s_f, S / T, E / T, geo)) / (phi + total) for t in (S / T, E / T))
    best = np.maximum(np.abs(f0 - c0), np.abs(f1 - c1)).min()
    assert max(abs(a0 - c0), abs(a1 - c1)) <= best + 1e-12


def test_window_solve_does_not_depend_on_the_iteration_cap():
    """A fixed pruning spacing makes the event count flip between iterates; the answer must not."""
    answers = {tuple(float(x) for x in window_from_compute("geometric", 0.9, 0.25, 0.75, 0.0, 50 / 1000, iters=k))
               for k in (40, 59, 60, 61, 200)}
    assert max(np.ptp(np.array(list(answers)), axis=0)) < 1e-9
    steps = {resolve_schedule(PRESETS["cpu-small"], 1000, "geometric", 0.9, "compute", 0.25, 0.75, 50).end_step
             for _ in range(3)}
    assert len(steps) == 1


def test_compute_window_of_a_tied_model_is_the_ledgers_compute():
    """A tied LM head multiplies but is never pruned: the window's compute fractions are the effective ledger's."""
    from planner.hardware.costs import hardware_profile, ledger_arrays, matmul_params
    from planner.shapes import ModelShape
    tied = ModelShape(n_layer=4, d_model=256, n_head=4, d_ff=768, vocab=32000, tied_embeddings=True)
    sched = resolve_schedule(tied, 10000, "geometric", 0.8, "compute", 0.25, 0.75, every_steps=10).schedule()
    fixed, prunable = matmul_params(tied)
    assert fixed > prunable  # the head dominates this model's matrix work

    def spent(t):  # effective training FLOPs of the first t of training (attention off: seq_len 0)
        return ledger_arrays(t * 1e9, fixed, prunable, float(sched.cumulative(t)) / t, 0.2, 0.0, 4, 256, 0,
                             hardware_profile("h100"))["train_flops_effective"]
    assert float(spent(sched.start) / spent(1.0)) == pytest.approx(0.25, abs=2e-4)
    assert float(spent(sched.end) / spent(1.0)) == pytest.approx(0.75, abs=2e-4)


@pytest.mark.parametrize("shape", ["geometric", "linear", "cubic"])
def test_zero_width_compute_window_is_one_pruning_event(shape, capsys):
    from planner.cli import main
    code = main(["schedule", "--shape", shape, "--final-sparsity", "0.6", "--window-basis", "compute",
                 "--start-frac", "0.5", "--end-frac", "0.5", "--json"])
    out = __import__("json").loads(capsys.readouterr().out)
    assert code == 0 and out["start_frac"] == out["end_frac"]
    assert out["compute_start"] == pytest.approx(0.5, abs=1e-9) and out["compute_end"] == pytest.approx(0.5, abs=1e-9)
    assert out["mean_density"] == pytest.approx(out["start_frac"] + 0.4 * (1 - out["start_frac"]))


@pytest.mark.parametrize("steps, s_f", [(15000, 0.9), (12000, 0.6), (25050, 0.7)])
def test_resolved_window_does_not_depend_on_the_iteration_cap(monkeypatch, steps, s_f):
    """d_model 2048 of the search family: before, the end step moved with the cap (5724, 5727 or 5728 at 15000)."""
    import functools

    import planner.schedules as schedules
    from planner.search import family_shape
    solve, windows = schedules.window_from_compute, set()
    for cap in (30, 59, 60, 61, 100):
        monkeypatch.setattr(schedules, "window_from_compute", functools.partial(solve, iters=cap))
        r = resolve_schedule(family_shape(2048), steps, "geometric", s_f, "compute", 0.25, 0.75)
        windows.add((r.start_step, r.end_step))
    assert len(windows) == 1
