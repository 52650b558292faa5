"""The validation study: the smoke preset trains, writes its runs table, fits, plots and a report naming every run;
re-running resumes (finished runs skipped, an interrupted one finished under its own id); the laptop law gives the
tiny preset and the ladder a predicted loss with an interval."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from planner.ladder import rung_cpu_minutes, scale_down, tiny_plan
from planner.laptop import LaptopLaw, fit_laptop_law, load_laptop_law, pair_warning, predict_plan, recipe_of
from planner.runs import load_runs
from planner.search import build_plan
from planner.shapes import PRESETS as SHAPES
from train_backend import registry
from train_backend.cli import main
from train_backend.study.design import design
from train_backend.study.runner import next_action
from train_backend.train import Options, run

SMOKE = design("smoke")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, one_thread):
    """The smoke study, one of its runs interrupted halfway first, then the study run twice."""
    root = tmp_path_factory.mktemp("study")
    out, runs_dir = root / "out", root / "runs"
    first = SMOKE[0]
    run(first.plan, Options(runs_dir=runs_dir, run_id=first.name, threads=1, max_steps=first.plan.budget.steps // 2))
    args = ["study", "--preset", "smoke", "--out", str(out), "--runs-dir", str(runs_dir), "--jobs", "1"]
    assert main(args + ["--save-law", str(root / "law.json")]) == 0
    ids_after_first = {r["run_id"] for r in registry.list_runs(runs_dir)}
    assert main(args) == 0
    return out, runs_dir, root, ids_after_first


@pytest.fixture(scope="module")
def one_thread():
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_smoke_study_writes_runs_fits_plots_and_a_report_naming_every_run(smoke):
    out, _, _, _ = smoke
    table = pd.read_csv(out / "runs.csv")
    assert sorted(table["name"]) == sorted(r.name for r in SMOKE)
    load_runs(table, "frantar")  # the planner's runs format, all three forms' columns present
    assert {"seed", "role", "epochs", "sparsity", "tokens_per_n_avg", "head_share", "verdict"} <= set(table.columns)
    sparse = table[table["role"] == "sparse"]
    assert (sparse["n_avg"] < sparse["n_total"]).all() and (sparse["n_final"] < sparse["n_avg"]).all()
    assert set(sparse["verdict"]) <= {"holds", "fails", "cannot tell"} and sparse["verdict"].notna().all()
    report = (out / "REPORT.md").read_text()
    assert all(r.name in report for r in SMOKE)
    for form in ("unified", "chinchilla", "frantar"):
        assert f"| {form} |" in report
    assert "Verdicts per pair" in report and "dense-only law" in report.lower()
    assert "no validation claim" in report and "N_avg or N_final?" in report
    assert "Profile-likelihood 95% intervals" in report and "- alpha (N_avg exponent): " in report
    assert "Nominal 95% interval of one run's loss" in report or "Leave-one-out coverage: " in report
    for png in ("loss_vs_n_avg.png", "predicted_vs_measured.png", "pair_gaps.png", "n_of_t.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_finished_runs_and_the_interrupted_run_was_resumed_not_restarted(smoke):
    _, runs_dir, _, ids_after_first = smoke
    rows = registry.list_runs(runs_dir)
    assert {r["run_id"] for r in rows} == ids_after_first == {r.name for r in SMOKE}  # no second attempts
    first = registry.get_run(runs_dir, SMOKE[0].name)
    assert first["status"] == "finished" and first["step"] == SMOKE[0].plan.budget.steps
    steps = [m["step"] for m in registry.read_metrics(runs_dir / SMOKE[0].name)]
    assert steps == list(range(SMOKE[0].plan.budget.steps))  # one line per step: resumed where it stopped


def test_a_study_whose_preset_changed_since_it_started_is_refused(smoke, capsys):
    out, runs_dir, _, _ = smoke
    plan = out / "plans" / f"{SMOKE[0].name}.json"
    original = plan.read_text()
    try:
        plan.write_text(original.replace('"seed": 0', '"seed": 7'))
        assert main(["study", "--preset", "smoke", "--out", str(out), "--runs-dir", str(runs_dir)]) == 2
        assert "changed since the study started" in capsys.readouterr().err
    finally:
        plan.write_text(original)


def test_next_action_restarts_a_run_that_died_before_its_first_checkpoint(tmp_path):
    row = {"run_id": "x", "status": "running", "alive": False, "step": 3, "total_steps": 10, "error": None,
           "run_dir": str(tmp_path)}
    assert next_action(row, "x") == ("new", "x.2")
    assert next_action({**row, "run_id": "x.2"}, "x") == ("new", "x.3")
    (tmp_path / "ckpt.pt").write_bytes(b"")
    assert next_action(row, "x") == ("resume", "x")
    assert next_action({**row, "status": "failed", "error": "non-finite loss (nan) at step 3"}, "x")[0] == "skip"
    assert next_action({**row, "status": "finished", "step": 10}, "x") == ("done", "x")
    assert next_action(None, "x") == ("new", "x")


def test_laptop_law_from_the_smoke_runs_predicts_with_an_interval_and_flags_extrapolation(smoke):
    _, _, root, _ = smoke
    law = LaptopLaw.model_validate_json((root / "law.json").read_text())
    assert (root / "law_runs.csv").exists() and law.n_runs == sum(r.kind != "ablation" for r in SMOKE)
    assert 180 <= len(law.draws["E"]) <= 200 and law.noise_sd > 0  # refits that overflowed are left out
    assert law.residual_sd > 0 and set(law.profiles) == {"alpha", "beta", "optimal_n_exponent"}
    assert law.interval_scale >= 1
    inside = next(r.plan for r in SMOKE if r.kind == "ladder")
    pred = predict_plan(inside, law)
    assert pred.ci_low < pred.loss < pred.ci_high and not pred.extrapolated
    far_n = inside.derived.model_copy(update={"n_avg": 50 * inside.derived.n_avg})
    far = inside.model_copy(update={"derived": far_n})
    assert predict_plan(far, law).extrapolated
    other_recipe = inside.model_copy(update={"run": inside.run.model_copy(update={"corpus": "my.txt"})})
    assert predict_plan(other_recipe, law) is None
    wider = predict_plan(inside.model_copy(update={"run": inside.run.model_copy(update={"eval_batches": 1})}), law)
    assert wider.ci_high - wider.ci_low > pred.ci_high - pred.ci_low  # fewer validation batches, more noise


def test_fit_laptop_law_needs_only_the_runs_table():
    rng = np.random.default_rng(0)
    n = np.repeat([2e4, 4e4, 8e4, 1.6e5], 3)
    d = n * np.tile([20, 40, 80], 4)
    loss = 1.0 + 300 * n ** -0.5 + 200 * d ** -0.4 + rng.normal(0, 0.002, n.size)
    table = pd.DataFrame({"loss": loss, "tokens": d, "n_avg": n})
    law = fit_laptop_law(table, 0.01, 0.03, 64, recipe_of(tiny_plan()), "test", n_boot=50)
    assert abs(law.law.params["alpha"] - 0.5) < 0.15 and len(law.draws["alpha"]) == 50


def test_tiny_preset_and_ladder_carry_the_bundled_laptop_law_prediction():
    law = load_laptop_law()
    pred = tiny_plan().prediction  # the smoke run: 2 tokens per N_avg, far below every run of the study
    assert pred.extrapolated and pred.ci_low is None and "tokens below the runs'" in pred.warnings[0]
    parent = build_plan(SHAPES["llama2-70m"], 0.8, "geometric", window_basis="compute", start=0.25, end=0.75,
                        tokens_per_param=80, batch_size=256, seq_len=2048, name="p")
    rungs = scale_down(parent)
    for p in (rung.prediction for rung in rungs):  # an interval inside the study's runs; outside, marked, none
        assert p is not None and (p.ci_low is None) == p.extrapolated
        assert p.ci_low < p.loss < p.ci_high if not p.extrapolated else "no interval: " in p.warnings[0]
    inside = [rung for rung in rungs if not rung.prediction.extrapolated]  # the largest dense rung: among the runs
    assert inside and all(rung.pair.role != "sparse" for rung in inside)
    wide = predict_plan(inside[0], law.model_copy(update={"interval_scale": 2.0}))  # the law's calibration widens it
    p = inside[0].prediction
    assert wide.ci_high - wide.ci_low == pytest.approx(2 / law.interval_scale * (p.ci_high - p.ci_low))
    failed = max((q for q in law.pairs if q["verdict"] == "fails"), key=lambda q: q["sparsity"])
    sparse = next(rung for rung in rungs if rung.pair.role == "sparse" and rung.derived.n_avg == max(
        r.derived.n_avg for r in rungs if r.pair.role == "sparse"))  # at the study's failing 80%: no interval
    assert failed["sparsity"] == 0.8 and sparse.prediction.ci_low is None
    assert any("the law under-predicts a sparse run here" in w for w in sparse.prediction.warnings)


def test_a_sparse_plan_hears_what_the_laws_own_pairs_found():
    law = load_laptop_law().model_copy(update={"pairs": [
        {"sparsity": 0.4, "seeds": 3, "gap_rel": 0.002, "low_rel": -0.004, "high_rel": 0.008, "verdict": "holds"},
        {"sparsity": 0.8, "seeds": 5, "gap_rel": 0.045, "low_rel": 0.037, "high_rel": 0.053, "verdict": "fails"}]})
    assert pair_warning(law, 0.0) is None and pair_warning(law, 0.5) is None  # dense; nearest pair below holds
    assert "+4.5% [+3.7%, +5.3%]" in pair_warning(law, 0.79) and "5 seeds" in pair_warning(law, 0.8)
    assert "above every pair" in pair_warning(law, 0.9) and "untested" in pair_warning(law, 0.9)
    assert pair_warning(law.model_copy(update={"pairs": None}), 0.9) is None  # a law without a study's pairs


def test_scale_down_keeps_tokens_per_n_avg_and_fits_the_cpu_budget():
    parent = build_plan(SHAPES["llama2-70m"], 0.8, "geometric", window_basis="compute", start=0.25, end=0.75,
                        tokens_per_param=80, batch_size=256, seq_len=2048, name="p")
    ratio = parent.budget.tokens / parent.derived.n_avg
    for budget in (20.0, 120.0):
        ladder = scale_down(parent, budget_minutes=budget)
        minutes = [rung_cpu_minutes(ladder[i:i + 2]) for i in range(0, len(ladder), 2)]
        assert sum(minutes) <= budget
        for p in ladder[::2]:
            assert abs(p.budget.tokens / p.derived.n_avg / ratio - 1) < 0.02
            assert any("CPU estimate" in note for note in p.notes)
    largest = [scale_down(parent, budget_minutes=m)[-2].model.total for m in (20, 120)]
    assert largest[1] > largest[0]


def test_plan_cli_writes_ladder_rungs_with_their_cpu_estimates(tmp_path, capsys):
    from planner.cli import main as planner_main
    code = planner_main(["plan", "--model", "llama2-70m", "--final-sparsity", "0.8", "--tokens-per-param", "20",
                         "--out", str(tmp_path / "p.yaml"), "--ladder", str(tmp_path / "ladder"),
                         "--budget-minutes", "10"])
    assert code == 0 and "CPU estimate" in capsys.readouterr().out and len(list((tmp_path / "ladder").iterdir())) == 6
    assert planner_main(["plan", "--model", "llama2-70m", "--final-sparsity", "0.8", "--tokens-per-param", "20",
                         "--out", str(tmp_path / "q.yaml"),
                         "--ladder", str(tmp_path / "l2"), "--budget-minutes", "0.001"]) == 2
    assert "--budget-minutes" in capsys.readouterr().err


def test_study_cli_rejects_bad_flags_in_one_line(capsys):
    assert main(["study", "--preset", "smoke", "--jobs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--jobs" in err
    assert json.dumps(recipe_of(tiny_plan()))  # the recipe is plain data (stored in the law file)


def test_head_kept_dense_prunes_only_the_other_linear_weights(tmp_path, one_torch_thread):
    """The full preset's ablation: `prune_head: false` keeps the byte head dense and counts it as fixed."""
    import torch

    from planner.ladder import cpu_budget
    from planner.plan import RunConfig, make_plan, resolve_schedule
    from train_backend import checkpoint
    model = tiny_plan().model
    schedule = resolve_schedule(model, 40, "geometric", 0.8, "compute", 0.25, 0.75, prune_head=False)
    plan = make_plan(model, schedule, cpu_budget(40), run=RunConfig(eval_every=40, eval_batches=2))
    assert plan.derived.n_fixed == tiny_plan().derived.n_fixed + model.embedding
    summary = run(plan, Options(runs_dir=tmp_path, threads=1))
    weights = checkpoint.load(tmp_path / summary["run_id"], quarantine=False)["model"]
    assert bool((weights["lm_head.weight"] != 0).all())
    assert summary["n_final"] == pytest.approx(plan.derived.n_final, abs=1)
    projections = [w for k, w in weights.items() if k.endswith("_proj.weight")]
    density = sum(int((w != 0).sum()) for w in projections) / sum(w.numel() for w in projections)
    assert density == pytest.approx(0.2, abs=1e-3) and isinstance(weights["lm_head.weight"], torch.Tensor)


def test_a_pairs_runs_share_the_data_order_and_validation_windows(tmp_path):
    """Sparse and dense partner of a pair train on the same windows in the same order (the seed is the plan's), so
    their gap is paired; another seed draws other windows."""
    from train_backend.train import load_batches
    pair = [r.plan for r in SMOKE if r.plan.pair and r.plan.pair.id == "smoke-L4d24-s80"]
    other = next(r.plan for r in SMOKE if r.plan.pair and r.plan.pair.id == "smoke-L4d24-s80-seed1")
    assert len({p.model for p in pair}) >= 3  # different shapes ...
    draws = []
    for plan in pair + [other]:
        batches = load_batches(plan, Options(runs_dir=tmp_path))
        val = next(batches.val_batches(1, plan.budget.batch_size))[0]
        draws.append(np.concatenate([batches.next_train()[0].numpy().ravel() for _ in range(3)] + [val.ravel()]))
    assert all((d == draws[0]).all() for d in draws[1:-1]) and not (draws[-1] == draws[0]).all()  # ... same data


def test_readme_paragraph_is_replaced_between_its_markers_only(tmp_path):
    from train_backend.study.writeup import README_MARKERS, update_readme
    readme = tmp_path / "README.md"
    readme.write_text("before\n" + "\n".join(README_MARKERS) + "\nafter\n")
    assert update_readme(readme, "first") and update_readme(readme, "second")
    assert readme.read_text() == f"before\n{README_MARKERS[0]}\nsecond\n{README_MARKERS[1]}\nafter\n"
    update_readme(readme, "word " * 100)
    assert max(map(len, readme.read_text().splitlines())) <= 120
    (tmp_path / "plain.md").write_text("no markers\n")
    assert not update_readme(tmp_path / "plain.md", "x") and (tmp_path / "plain.md").read_text() == "no markers\n"


def test_the_bundled_laptop_law_loads_with_law_like_any_saved_law(tmp_path, capsys):
    from planner.cli import main as planner_main
    from planner.laptop import LAW_PATH
    from planner.laws import load_law
    from planner.plan import load_plan
    law = load_laptop_law(LAW_PATH)
    assert load_law(LAW_PATH) == law.law
    args = ["plan", "--model", "tiny", "--final-sparsity", "0.5", "--tokens-per-param", "40", "--law", str(LAW_PATH)]
    assert planner_main(args + ["--out", str(tmp_path / "p.yaml")]) == 0
    assert load_plan(tmp_path / "p.yaml").law.params == law.law.params
    (tmp_path / "broken.json").write_text('{"law": {"params": {}}, "draws": {}}')
    assert planner_main(args[:-1] + [str(tmp_path / "broken.json"), "--out", str(tmp_path / "q.yaml")]) == 2
    assert "field 'form'" in capsys.readouterr().err


def test_the_quick_preset_is_designed_on_seed_like_proportions():
    """Issue 16's design, checked on the plans (nothing trained): head share <= 8%, >= 4 layers, pairs at 20-80% at
    >= 100 tokens per N_avg with partners of the same depth and width, 5 seeds at 60% and 80%, the 80% extras, a
    dense ladder of >= 4 sizes x 3 budgets of the same family, at most 4 epochs."""
    from planner.ladder import VAL_FRACTION, head_share
    from planner.preflight import corpus_tokens
    runs = design("quick")
    train_tokens = corpus_tokens("bible", 256, None)[0] * (1 - VAL_FRACTION)
    assert max(r.plan.budget.tokens for r in runs) / train_tokens <= 4
    sparse = [r.plan for r in runs if r.plan.pair and r.plan.pair.role == "sparse"]
    assert all(head_share(p.model) <= 0.08 and p.model.n_layer >= 4 for p in sparse)
    main = [p for p in sparse if r_variant(runs, p) == "geometric"]
    seeds = {s: sorted(p.run.seed for p in main if p.schedule.final_sparsity == s) for s in (0.2, 0.4, 0.6, 0.8)}
    assert seeds == {0.2: [0], 0.4: [0], 0.6: [0, 1, 2, 3, 4], 0.8: [0, 1, 2, 3, 4]}
    assert all(p.budget.tokens / p.derived.n_avg >= 99.5 for p in main)  # 100, to whole steps and the window's snap
    plans = {r.name: r.plan for r in runs}
    for p in main:
        partner = plans[p.name.replace("-sparse", "-dense")]
        assert (partner.model.n_layer, partner.model.d_model) == (p.model.n_layer, p.model.d_model)
        assert partner.budget.tokens == p.budget.tokens and partner.run.seed == p.run.seed
    roles = {r.plan.pair.role for r in runs if r.plan.pair and r.plan.schedule.final_sparsity in (0.0, 0.8)}
    assert {"dense_n_final", "dense_n_avg_width"} <= roles
    assert {r.variant for r in runs if r.kind == "ablation"} == {"per-layer", "head-dense"}
    ladder = [r.plan for r in runs if r.kind == "ladder"]
    assert len({p.model.d_model for p in ladder}) >= 4 and len({p.budget.tokens for p in ladder}) == 3
    assert len({(p.model.n_layer, p.model.d_ff / p.model.d_model) for p in ladder + sparse}) == 1  # one family


def r_variant(runs, plan):
    return next(r.variant for r in runs if r.plan is plan)


def test_study_plans_fix_their_pruning_frequency():
    """A study resumes only with the plans it started with: its geometric runs prune every 1% of their steps (at
    most 100), set by the design itself, not by the planner's default (which moved to the MaxText fork's 100 for
    plans of 1,000+ steps)."""
    for r in design("quick"):
        s, steps = r.plan.schedule, r.plan.budget.steps
        if s.shape == "geometric":
            assert s.every_steps == max(1, min(100, steps // 100)), r.name


def test_a_study_resumes_from_its_archive_without_its_runs_folder(smoke, tmp_path):
    """A fresh clone has the study folder (runs.csv, finished/, val/) but no runs folder: the finished runs come
    back from the archive (nothing retrains: every run is 'done'), and the report reads them as before."""
    import shutil
    out, runs_dir, _, _ = smoke
    assert sorted(p.name for p in (out / "finished").iterdir()) == sorted(
        r["run_id"] for r in registry.list_runs(runs_dir) if r["status"] == "finished")
    moved = tmp_path / "clone"
    shutil.copytree(out, moved, ignore=shutil.ignore_patterns("plans", "logs"))
    fresh = tmp_path / "fresh-runs"
    before = pd.read_csv(out / "runs.csv")
    assert main(["study", "--preset", "smoke", "--out", str(moved), "--runs-dir", str(fresh), "--report-only"]) == 0
    rows = registry.list_runs(fresh)
    assert all(next_action(max((r for r in rows if r["name"] == s.name), key=lambda r: r["created_at"]), s.name)[0]
               == "done" for s in SMOKE)
    after = pd.read_csv(moved / "runs.csv")
    pd.testing.assert_frame_equal(before.sort_values("name").reset_index(drop=True),
                                  after.sort_values("name").reset_index(drop=True), check_exact=False, rtol=1e-9)


def test_the_clis_preset_names_are_the_designs():
    from train_backend.study import PRESET_NAMES
    from train_backend.study.design import PRESETS
    assert sorted(PRESET_NAMES) == sorted(PRESETS)


def test_an_interrupt_of_the_study_alone_reaches_its_trainers(tmp_path, monkeypatch):
    """`kill -INT` (or a scheduler's signal) to the study process only: its trainers must stop too. They went on
    training, orphaned, when only a terminal's Ctrl-C (sent to the whole group) was expected."""
    import subprocess
    import sys
    from types import SimpleNamespace
    from train_backend.study import runner
    ready = tmp_path / "ready"
    child = ("import pathlib, signal, sys, time\n"
             "signal.signal(signal.SIGINT, lambda *a: sys.exit(130))\n"
             f"pathlib.Path({str(ready)!r}).touch()\n"
             "while True: time.sleep(1)\n")
    started = []
    monkeypatch.setattr(runner, "_command", lambda *a: [sys.executable, "-c", child])
    real = subprocess.Popen
    monkeypatch.setattr(runner.subprocess, "Popen", lambda *a, **k: started.append(real(*a, **k)) or started[-1])

    def sleep(_s):  # the first poll after the trainer is up: the study process gets its SIGINT
        while started and not ready.exists() and started[0].poll() is None:
            pass
        if started:
            raise KeyboardInterrupt
    monkeypatch.setattr(runner.time, "sleep", sleep)
    run = SimpleNamespace(name="r")
    try:
        with pytest.raises(KeyboardInterrupt):
            runner._parallel([(run, "new", "r")], 1, tmp_path, tmp_path, tmp_path, None, set(), {}, lambda m: None)
        assert started[0].poll() == 130  # it got the SIGINT and was waited for
    finally:
        for proc in started:
            proc.kill()
