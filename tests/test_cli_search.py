"""`python -m planner` plan / frontier / schedule / check: outputs, files, and one-line exit-2 errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from planner.cli import main
from planner.ladder import tiny_plan
from planner.plan import load_plan, plan_to_dict, plan_to_yaml

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--sparsities", "0,0.5,0.8", "--schedules", "geometric 25-75"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(capsys, argv, *needles):
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err


def test_quick_start_writes_the_tiny_plan(tmp_path):
    """The README's first command, as a user runs it."""
    out = tmp_path / "plan.yaml"
    proc = subprocess.run([sys.executable, "-m", "planner", "plan", "--preset", "tiny", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert load_plan(out) == tiny_plan()


def test_plan_from_a_model_preset_with_ladder(capsys, tmp_path):
    out, ladder = tmp_path / "p.json", tmp_path / "ladder"
    code, stdout, _ = run(capsys, "plan", "--model", "llama2-70m", "--final-sparsity", "0.6", "--shape", "geometric",
                          "--window-basis", "compute", "--tokens", "2e9", "--law", "epoch-replication",
                          "--hardware", "a100", "--lifetime-tokens", "1e11", "--out", str(out), "--ladder", str(ladder))
    assert code == 0 and "wrote" in stdout
    plan = load_plan(out)
    assert json.loads(out.read_text())["schedule"]["final_sparsity"] == 0.6
    assert plan.law.form == "unified" and plan.hardware.peak_flops == 312e12
    assert plan.costs.lifetime_inference_tokens == 1e11 and abs(plan.budget.tokens - 2e9) <= 512 * 2048
    assert sorted(p.name for p in ladder.iterdir()) == sorted(f"plan-r{i}-{k}.yaml" for i in range(3)
                                                              for k in ("sparse", "dense"))
    assert all(load_plan(p).derived.n_avg > 0 for p in ladder.iterdir())


def test_plan_from_the_family_to_stdout(capsys):
    code, stdout, _ = run(capsys, "plan", "--d-model", "1024", "--final-sparsity", "0.5", "--tokens-per-param", "80",
                          "--pattern", "2:4")
    assert code == 0
    data = yaml.safe_load(stdout)
    assert data["model"]["d_model"] == 1024 and data["model"]["n_layer"] == 8
    assert data["schedule"]["pattern"] == "2:4" and data["hardware"]["speedup_train"] == 1.2


def test_optimal_plan_reaches_the_target(capsys, tmp_path):
    out = tmp_path / "opt.yaml"
    code, _, _ = run(capsys, "plan", "--target-loss", "2.6", "--optimal", "--lifetime-tokens", "1e13",
                     "--out", str(out))
    assert code == 0
    plan = load_plan(out)
    assert plan.prediction.loss == pytest.approx(2.6, abs=2e-3) and plan.schedule.final_sparsity > 0


def test_frontier_target_loss_table_and_csv(capsys, tmp_path):
    csv = tmp_path / "front.csv"
    code, stdout, _ = run(capsys, "frontier", "--target-loss", "2.6", "--lifetime-tokens", "1e13", "--csv", str(csv),
                          *FAST)
    assert code == 0
    assert "Pareto frontier at target loss 2.6" in stdout and "lifetime-optimal" in stdout
    assert "dense Chinchilla-optimal" in stdout and "saved_lifetime_flops_pct" in stdout
    assert csv.read_text().startswith("d_model,")


def test_frontier_json_in_both_modes(capsys):
    code, stdout, _ = run(capsys, "frontier", "--target-loss", "2.6", "--json", "--objective", "usd", *FAST)
    data = json.loads(stdout)
    assert code == 0 and data["mode"] == "target_loss" and data["objectives"] == ["train_usd", "inference_usd"]
    assert [r["plan"] for r in data["comparison"]] == ["lifetime-optimal", "dense inference-aware",
                                                       "dense Chinchilla-optimal"]
    assert all(abs(r["loss"] - 2.6) < 1e-9 for r in data["frontier"])
    code, stdout, _ = run(capsys, "frontier", "--budget-flops", "1e21", "--json", *FAST)
    data = json.loads(stdout)
    assert code == 0 and data["mode"] == "budget" and data["comparison"][0]["plan"] == "lowest loss"


def test_opt_in_schedules_warn_in_json_csv_and_text(capsys, tmp_path):
    argv = ["frontier", "--target-loss", "2.6", "--lifetime-tokens", "1e13", "--sparsities", "0,0.8"]
    code, stdout, err = run(capsys, *argv, "--json")
    assert code == 0 and json.loads(stdout)["warnings"] == [] and err == ""  # the default search: validated only
    csv = tmp_path / "f.csv"
    code, _, err = run(capsys, *argv, "--schedules", "geometric 50-75", "--csv", str(csv))
    assert code == 0 and err.startswith("warning: lifetime-optimal: pruning window 50%->75%")
    assert "schedule_warning" in csv.read_text().splitlines()[0]
    code, stdout, _ = run(capsys, *argv, "--schedules", "geometric 50-75", "--json")
    data = json.loads(stdout)
    assert "dense share before 50%" in data["warnings"][0]
    assert data["comparison"][0]["schedule_flag"] != 0 and data["comparison"][0]["schedule_warning"]


def test_schedule_subcommand_reproduces_the_seed_80p_card(capsys):
    code, stdout, _ = run(capsys, "schedule", "--shape", "geometric", "--final-sparsity", "0.8", "--start-step",
                          "2500", "--end-step", "12600", "--every", "100", "--total-steps", "25050", "--model",
                          "llama2-1b", "--json")
    data = json.loads(stdout)
    assert code == 0 and abs(data["mean_density"] - 0.3984) < 1e-3 and data["n_final"] < data["n_avg"]


def test_check_subcommand(capsys, tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(plan_to_yaml(tiny_plan()))
    code, stdout, _ = run(capsys, "check", str(path))
    assert code == 0 and "valid plan 'tiny'" in stdout
    code, stdout, _ = run(capsys, "check", str(path), "--json")
    assert json.loads(stdout)["valid"] is True


def test_check_reads_hand_typed_1e18(capsys, tmp_path):
    data = plan_to_dict(tiny_plan())
    per_step = data["budget"]["batch_size"] * data["budget"]["seq_len"]
    text = plan_to_yaml(tiny_plan()).replace(f"tokens: {data['budget']['tokens']}", "tokens: 1e18").replace(
        f"steps: {data['budget']['steps']}", f"steps: {10**18 // per_step}")
    path = tmp_path / "typed.yaml"
    path.write_text(text)
    code, stdout, _ = run(capsys, "check", str(path), "--json")
    assert code == 0 and json.loads(stdout)["tokens"] == 10**18


def test_check_bad_field_and_missing_file(capsys, tmp_path):
    data = plan_to_dict(tiny_plan())
    data["schedule"]["final_sparsity"] = 1.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert_one_line_error(capsys, ["check", str(bad)], "bad.yaml", "schedule.final_sparsity")
    data = plan_to_dict(tiny_plan())
    data["derived"]["n_avg"] += 1000
    bad.write_text(yaml.safe_dump(data))
    assert_one_line_error(capsys, ["check", str(bad)], "derived.n_avg")
    assert_one_line_error(capsys, ["check", str(tmp_path / "absent.yaml")], "absent.yaml", "no such plan file")


@pytest.mark.parametrize("argv, needle", [
    (["plan", "--model", "llama2-1b", "--final-sparsity", "1.0", "--tokens", "1e9"], "--final-sparsity"),
    (["plan", "--preset", "huge"], "--preset"),
    (["plan", "--model", "llama2-7b", "--tokens", "1e9"], "--model"),
    (["plan", "--model", "tiny", "--tokens", "1e9", "--tokens-per-param", "20"], "--tokens-per-param"),
    (["plan", "--model", "tiny"], "--tokens"),
    (["plan", "--d-model", "1000", "--tokens", "1e9"], "--d-model"),
    (["plan", "--optimal"], "--target-loss"),
    (["plan", "--model", "tiny", "--tokens", "1e6", "--out", "/proc/no/such/dir/p.yaml"], "--out"),
    (["frontier"], "--target-loss"),
    (["frontier", "--target-loss", "1.0"], "raise the target"),
    (["frontier", "--target-loss", "2.6", "--sparsities", "0,1.2"], "--sparsities"),
    (["frontier", "--target-loss", "2.6", "--sparsities", "a,b"], "--sparsities"),
    (["frontier", "--target-loss", "2.6", "--schedules", "zigzag"], "--schedules"),
    (["frontier", "--target-loss", "2.6", "--pattern", "2:4", "--sparsities", "0.3"], "2:4"),
    (["frontier", "--budget-flops", "-5"], "--budget-flops"),
    (["frontier", "--target-loss", "2.6", "--hardware", "tpu"], "--hardware"),
    (["frontier", "--target-loss", "2.6", "--lifetime-tokens", "-1"], "--lifetime-tokens"),
    (["schedule", "--final-sparsity", "1.0"], "--final-sparsity"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, needle):
    assert_one_line_error(capsys, argv, needle)


def test_a_fitted_law_file_drives_the_plan(capsys, tmp_path):
    """fit --save-law writes the law with its intervals; plan --law FILE predicts with exactly that law."""
    import numpy as np
    import pandas as pd
    from planner.laws import get_law, load_law
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(5e7, 5e8, 4), np.geomspace(2e9, 2e10, 3)))
    noise = np.exp(np.random.default_rng(0).normal(0, 0.005, n.size))
    runs = tmp_path / "runs.csv"
    pd.DataFrame({"n_avg": n, "tokens": d, "loss": get_law("epoch-replication").predict(n, d) * noise,
                  "group": np.round(n)}).to_csv(runs, index=False)
    law_path = tmp_path / "law.json"
    code, _, err = run(capsys, "fit", str(runs), "--form", "unified", "--grid", "coarse", "--fix-exponents",
                       "epoch-replication", "--bootstrap", "20", "--save-law", str(law_path), "--json")
    assert code == 0, err
    law = load_law(law_path)
    assert law.form == "unified" and law.params["alpha"] == 0.3478 and law.ci["E"][0] <= law.params["E"]
    out = tmp_path / "plan.yaml"
    code, _, err = run(capsys, "plan", "--model", "llama2-70m", "--final-sparsity", "0.5", "--tokens-per-param",
                       "20", "--law", str(law_path), "--out", str(out))
    assert code == 0, err
    plan = load_plan(out)
    assert plan.law == law
    expected = law.predict(plan.derived.n_avg, plan.budget.tokens)
    assert plan.prediction.loss == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("spec, needle", [("nope", "neither a law preset"), ("absent.yaml", "no such law file")])
def test_bad_law_flag_is_one_line(capsys, tmp_path, spec, needle):
    assert_one_line_error(capsys, ["plan", "--model", "llama2-70m", "--final-sparsity", "0.5", "--law", spec,
                                   "--out", str(tmp_path / "p.yaml")], needle)


def test_all_extrapolated_is_one_note_not_a_flag_on_every_row(capsys):
    # at 2.1 every candidate lies outside the default preset's region (its data; for sparse plans the seed's range too)
    code, stdout, _ = run(capsys, "frontier", "--target-loss", "2.1")
    assert code == 0 and stdout.count("note: every one of the") == 1 and "nearest plan inside it" in stdout
    assert "extrapolated" not in stdout.split("note:")[0]
    code, stdout, _ = run(capsys, "frontier", "--target-loss", "2.1", "--json")
    data = json.loads(stdout)
    assert len(data["notes"]) == 1 and data["nearest_in_region"]["extrapolated"] is False


def test_plan_reports_the_compute_window_it_achieved(capsys, tmp_path):
    code, _, err = run(capsys, "plan", "--model", "llama2-1b", "--final-sparsity", "0.8", "--tokens", "2.1e11",
                       "--batch-size", "4096", "--every-steps", "100", "--out", str(tmp_path / "p.yaml"))
    plan = load_plan(tmp_path / "p.yaml")
    s = plan.schedule
    assert code == 0 and f"steps {s.start_step}->{s.end_step} of {plan.budget.steps}" in err
    assert abs(s.compute_start - 0.25) < 0.005 and abs(s.compute_end - 0.75) < 0.005
    assert f"{s.compute_start:.2%}->{s.compute_end:.2%}" in err
