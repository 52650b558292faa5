"""Runs page: a real trainer subprocess launched from the page, watched, cancelled; the concurrency limit."""
import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from app.ui import runs_view as rv
from app.ui.common import human
from planner.ladder import scale_down, tiny_plan
from planner.plan import Prediction
from planner.validation.verdict import seedless
from test_app_common import assert_clean, chart_specs, encodings, metrics, open_page
from train_backend import registry

PAGE = "views/runs.py"


def wait_for(folder, predicate):
    """Poll the registry until some run satisfies predicate; returns that run. Fails once every trainer the app
    started has ended without it (no clock: a busy machine is only slower)."""
    while True:
        ended = all(proc.poll() is not None for proc, _ in rv._STARTED.get(str(folder), []))  # before the read
        for run in registry.list_runs(folder):
            if predicate(run):
                return run
        if ended:
            raise AssertionError(f"no run reached the expected state: {registry.list_runs(folder)}")
        time.sleep(0.5)


def test_launch_from_the_page_and_read_back_after_restart(runs_dir):
    at = open_page(PAGE)
    assert at.info[0].value.startswith("No runs yet")
    assert at.selectbox(key="runs_choice").value.startswith("tiny preset")
    at.button(key="runs_launch").click().run()
    assert_clean(at)
    assert "Started tiny" in at.success[0].value
    assert not at.info  # never "Started…" beside "No runs yet": the launched run is in the table at once
    assert at.dataframe[0].value["status"].tolist()[0] in ("starting", "queued", "running")
    run = wait_for(runs_dir, lambda r: r["status"] in ("finished", "failed"))
    assert run["status"] == "finished", run["error"]
    at = open_page(PAGE)  # a fresh session: the run comes back from the registry
    table = at.dataframe[0].value
    steps = tiny_plan().budget.steps  # the preset's recipe: 100 steps of 16 x 128 tokens
    assert table["status"].tolist() == ["finished"] and table["steps"].tolist() == [f"{steps} / {steps}"]
    assert table["progress"].tolist() == [1.0]
    assert not table.isna().any().any() and "None" not in table.astype(str).to_numpy()
    assert table["validation loss (nats)"].tolist() == [f"{run['final_val_loss']:.4f}"]
    assert metrics(at)["Measured validation loss"] == f"{run['final_val_loss']:.4f}"
    assert f"step {steps} of {steps}" in at.get("progress")[0].proto.text  # one figure: table and bar agree
    pred = tiny_plan().prediction  # the bundled laptop law's, carried by the preset: a smoke run far below its runs
    assert pred.extrapolated and pred.ci_low is None
    assert table["predicted loss [95% CI]"].tolist() == [f"{pred.loss:.3f} (extrapolation)"]
    assert metrics(at)["Predicted loss"] == f"{pred.loss:.4f}"
    assert any("no interval" in c.value and "extrapolation" in c.value for c in at.caption)  # and why
    loss_spec, density_spec = chart_specs(at)
    assert encodings(loss_spec)["y"]["title"] == "Loss (nats/token)"
    assert loss_spec["title"] == "Loss (dashed: predicted final loss)"
    assert encodings(density_spec)["x"]["title"] == "Optimizer step"
    low, high = encodings(density_spec)["y"]["scale"]["domain"]
    assert 0.4 < low < 0.5 and high == 1.0  # framed on the run's 50%-100%, not a sliver of 0-1
    curves = rv.density_curves(rv.metrics_frame(run))
    final = curves[curves.series == "masks (measured)"]["density"].iloc[-1]
    assert final == pytest.approx(1 - tiny_plan().schedule.final_sparsity, abs=0.02)


def test_cancel_a_running_run(runs_dir):
    rv.launch(tiny_plan(steps=20_000), runs_dir)
    # the registry's step moves at checkpoints; the metrics file shows training has begun
    wait_for(runs_dir, lambda r: r["status"] == "running" and not rv.metrics_frame(r).empty)
    at = open_page(PAGE)
    assert at.dataframe[0].value["status"].tolist() == ["running"]
    at.button(key=f"cancel_{at.selectbox(key='runs_watch').value}").click().run()
    assert_clean(at)
    run = wait_for(runs_dir, lambda r: r["status"] != "running")
    assert run["status"] == "cancelled" and run["step"] < 20_000


def test_at_most_two_runs_at_once(runs_dir):
    for i in range(rv.MAX_CONCURRENT):  # two registered runs whose process (this one) is alive
        registry.create_run(runs_dir, f"busy{i}", f"busy{i}", tiny_plan().model_dump_json(), runs_dir / f"busy{i}",
                            200, status="running")
        registry.update_run(runs_dir, f"busy{i}", pid=os.getpid())
    at = open_page(PAGE)
    at.button(key="runs_launch").click().run()
    assert_clean(at)
    assert "at most 2 at once" in at.error[0].value
    assert not list((runs_dir / "plans").glob("*.yaml")) if (runs_dir / "plans").exists() else True


def fake_run(folder, run_id, plan, val_loss=None, steps=None, metrics=True):
    """A finished run in the registry (and a metrics file), without training: for the table and the pairs."""
    run_dir = folder / run_id
    registry.create_run(folder, run_id, plan.name, plan.model_dump_json(), run_dir, plan.budget.steps)
    registry.update_run(folder, run_id, status="finished", step=steps or plan.budget.steps, final_val_loss=val_loss,
                        n_avg_measured=plan.derived.n_avg, n_final=plan.derived.n_final, wall_seconds=83.4)
    if metrics:
        run_dir.mkdir(parents=True)
        lines = [{"step": i, "tokens": (i + 1) * 1024, "loss": 3.0 - i / 100, "target_density": 1.0,
                  "measured_density": 1.0, "n_avg": plan.derived.n_avg} for i in range(plan.budget.steps)]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_predicted_interval_beside_measured(runs_dir):
    plan = tiny_plan(steps=20).model_copy(update={"prediction": Prediction(loss=2.5, ci_low=2.4, ci_high=2.7)})
    fake_run(runs_dir, "r1", plan, val_loss=2.55)
    at = open_page(PAGE)
    assert at.dataframe[0].value["predicted loss [95% CI]"].tolist() == ["2.500 [2.400, 2.700]"]
    assert metrics(at)["Predicted loss"] == "2.5000"
    assert any("95% CI [2.4000, 2.7000]" in c.value for c in at.caption)
    loss_spec = chart_specs(at)[0]
    assert "shaded: its 95% interval" in loss_spec["title"]
    assert {layer["mark"]["type"] for layer in loss_spec["layer"]} >= {"rect", "rule", "line"}


def test_pairs_compare_by_the_plan_field_not_the_name(runs_dir):
    ladder = scale_down(tiny_plan(steps=40), rungs=1)
    sparse, dense = (p.model_copy(update={"name": f"run-{i}"}) for i, p in enumerate(ladder))  # names say nothing
    fake_run(runs_dir, "s", sparse, val_loss=2.61, metrics=False)
    fake_run(runs_dir, "d", dense, val_loss=2.58, metrics=False)
    fake_run(runs_dir, "t", tiny_plan(), val_loss=2.0, metrics=False)  # no pair: not in the comparison
    pairs = rv.pair_table(runs_dir)
    assert pairs["pair"].tolist() == [sparse.pair.id]
    assert pairs[rv.GAP].iloc[0] == pytest.approx(0.03)
    at = open_page(PAGE)
    shown = at.dataframe[1].value
    assert shown["sparse loss"].tolist() == ["2.6100"] and shown["dense at N_avg loss"].tolist() == ["2.5800"]
    assert shown[rv.GAP].tolist() == ["+0.0300"] and shown["N_avg"].tolist() == [human(sparse.derived.n_avg, 4)]
    assert shown[rv.VERDICT].tolist() == ["cannot tell"]  # one seed: +-1% is inside the run-to-run noise
    far_sparse, far_dense = (p.model_copy(update={"name": f"far-{i}", "pair": p.pair.model_copy(update={"id": "far"})})
                             for i, p in enumerate(ladder))
    fake_run(runs_dir, "fs", far_sparse, val_loss=3.2, metrics=False)
    fake_run(runs_dir, "fd", far_dense, val_loss=2.58, metrics=False)
    final = dense.model_copy(update={"name": "far-final", "pair": dense.pair.model_copy(update={
        "id": "far", "role": "dense_n_final"})})
    fake_run(runs_dir, "ff", final, val_loss=3.19, metrics=False)  # the sparse run matches its N_final partner
    table = rv.pair_table(runs_dir).set_index("pair")
    assert table[rv.VERDICT].to_dict() == {sparse.pair.id: "cannot tell", "far": "fails"}
    assert table[rv.CLOSER].to_dict() == {sparse.pair.id: "—", "far": "N_final"}


def _seeded_pairs(folder, losses: dict[int, tuple[float, float, float]]) -> pd.DataFrame:
    """A tiny rung (sparse, N_avg and N_final partners) under each seed of `losses` ({seed: the three losses}),
    in the registry, and the same runs as the study's report tabulates them."""
    rung_plans = scale_down(tiny_plan(steps=40), rungs=1, extras=("final",))
    rows = []
    for seed, seed_losses in losses.items():
        tag = f"-seed{seed}" if seed else ""
        for plan, loss in zip(rung_plans, seed_losses):
            pid = plan.pair.id + tag
            plan = plan.model_copy(update={"name": pid + plan.name.removeprefix(plan.pair.id),
                                           "pair": plan.pair.model_copy(update={"id": pid})})
            fake_run(folder, plan.name, plan, val_loss=loss, metrics=False)
            rows.append({"pair": pid, "role": plan.pair.role, "kind": "pair", "name": plan.name, "loss": loss,
                         "variant": "geometric", "sparsity": 0.5, "group": "g", "tokens_per_n_avg": 1.0,
                         "train_loss": loss, "seed": seed})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("losses", [
    {0: (2.61, 2.58, 2.612)},  # one seed: the laptop law's run-to-run noise stands in
    {0: (2.61, 2.58, 2.612), 1: (2.602, 2.59, 2.60), 2: (2.615, 2.57, 2.62)},  # repeats: their pooled gap noise
    {0: (2.90, 2.58, 2.70), 1: (2.91, 2.59, 2.71), 2: (2.905, 2.585, 2.70)},  # fails; N_final closer
])
def test_the_runs_page_judges_a_pair_as_the_study_report_does_and_names_its_noise(runs_dir, losses):
    from train_backend.study import report  # torch: only this test of the page's file needs the report
    df = _seeded_pairs(runs_dir, losses)
    per_batch = {n: np.array([loss, loss + 1e-3]) for n, loss in zip(df["name"], df["loss"])}
    gaps, noise = report.pair_gaps(df, per_batch, *report.noise_sd(df))
    counts = report.closer_counts(gaps, pd.DataFrame()).set_index("pair")
    verdicts = gaps[gaps["partner"] == "dense_n_avg"].set_index("pair")["verdict"]
    page = rv.pair_table(runs_dir)
    pair = seedless(page["pair"].iloc[0])
    assert set(page[rv.VERDICT]) == {verdicts[pair]} and set(page[rv.CLOSER]) == {counts.loc[pair, "closer"]}
    assert page.attrs[rv.NOISE] == noise["source"]
    assert ("laptop law" in noise["source"]) == (len(losses) == 1)


def test_table_formats_and_never_shows_none(runs_dir):
    fake_run(runs_dir, "r1", tiny_plan(steps=20).model_copy(update={"prediction": None}), val_loss=None,
             metrics=False)  # a plan without a prediction (the preset now carries the laptop law's)
    table = rv.runs_table(runs_dir)
    assert table.loc[0, "validation loss (nats)"] == "—" and table.loc[0, "predicted loss [95% CI]"] == "—"
    assert table.loc[0, "wall time"] == "1m 23s" and table.loc[0, "N_avg measured"].endswith("k")
    assert not table.isna().any().any() and "None" not in table.astype(str).to_numpy()
    assert not [c for c in rv.SHOWN_COLUMNS if "_" in c.replace("N_", "")]  # headers in words, not snake_case


def test_a_ladder_over_budget_leaves_the_tiny_preset_launchable():
    plan = tiny_plan(steps=40)
    choices, error = rv.launch_choices(plan, budget_minutes=1e-3)
    assert list(choices) == ["tiny preset (about a minute on one core)"]
    assert error.startswith(f"No validation ladder for {plan.name}: --budget-minutes 0.001")
    choices, error = rv.launch_choices(plan)
    assert error is None and [p.pair.role for p in list(choices.values())[1:]] == ["sparse", "dense_n_avg"] * 3
