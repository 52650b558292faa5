"""Tally fuzz outcomes per category instead of stopping at the first failure: `python tests/fuzz_tally.py [N]`.

N examples per category (N/4 check-then-train, N/2 trainer flag sets), derandomized, in-process; failures are printed
to stderr as they happen and the tally as JSON at the end. The before/after figures in bench/RESULTS.md come from
here (N = 250).
"""
import json
import sys
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fuzz_support import (GOOD, TRAINER_FLAGS, base_plans, fill_corpora, flag_value, invoke, make_corpora,  # noqa: E402
                          non_finite, plan_text, planner_argv, runs_csv, valid_runs, verdict)
from planner.cli import main as planner_main  # noqa: E402
from train_backend import train as train_module  # noqa: E402
from train_backend.cli import main as trainer_main  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
train_module.peak_flops = lambda *a, **k: (1e12, "stubbed in the fuzz tally")
tmp = Path(tempfile.mkdtemp(prefix="fuzz-"))
corpora = make_corpora(tmp / "corpora")
runs_file = tmp / "runs.csv"
runs_file.write_text("loss,tokens,n_avg\n" + "\n".join(",".join(r) for r in valid_runs(8, 0.01)) + "\n")
bases = base_plans()
tally: dict[str, dict[str, int]] = {}
counter = iter(range(10**9))
opts = settings(max_examples=n, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def note(category, word, detail=""):
    tally.setdefault(category, {}).setdefault(word, 0)
    tally[category][word] += 1
    if word not in GOOD:
        print(f"[{category}] {word}: {detail[:300]!r}", file=sys.__stderr__)


@opts
@given(runs_csv())
def csv_cases(text):
    path = tmp / f"runs{next(counter)}.csv"
    path.write_text(text, errors="surrogateescape")
    o = invoke(planner_main, ["fit", path, "--grid", "coarse"])
    note("runs CSV", verdict(o), o.err or repr(o.exc))


@opts
@given(plan_text(bases))
def plan_cases(case):
    text, fmt = case
    path = tmp / f"plan{next(counter)}.{fmt}"
    path.write_text(fill_corpora(text, corpora), errors="surrogateescape")
    o = invoke(planner_main, ["check", path])
    note("plan documents", verdict(o), o.err or repr(o.exc))


@settings(opts, max_examples=max(1, n // 4))
@given(plan_text(bases, trainer_fields_only=True))
def agree_cases(case):
    text, fmt = case
    path = tmp / f"plan{next(counter)}.{fmt}"
    path.write_text(fill_corpora(text, corpora), errors="surrogateescape")
    o = invoke(planner_main, ["check", path])
    word = verdict(o)
    if word == "ok":
        t = invoke(trainer_main, ["train", path, "--runs-dir", tmp / "runs", "--max-steps", 1, "--threads", 1])
        word = verdict(t)
        if word == "exit2" and "GiB" not in t.err:
            word = "disagree"
        o = t
    note("check vs train", word, f"{path}: {o.err or repr(o.exc)}")


@opts
@given(planner_argv())
def planner_flag_cases(case):
    argv, must_refuse = case
    places = {"{runs}": runs_file, "{plan}": plan_file, "{out}": tmp / "export"}
    argv = [places.get(a, a) for a in argv]
    o = invoke(planner_main, argv)
    note("planner flags", verdict(o, must_refuse), f"{argv} {o.err or repr(o.exc)}")


plan_file = tmp / "tiny.yaml"
plan_file.write_text(yaml.safe_dump(bases[0], sort_keys=False))
# A warm-up run: torch imports parts of itself on the first optimizer step; a time limit firing inside that import
# would leave it half-initialised for every later case.
assert trainer_main(["train", str(plan_file), "--runs-dir", str(tmp / "warm-up"), "--max-steps", "1"]) == 0


@settings(opts, max_examples=max(1, n // 2))
@given(st.lists(st.tuples(st.sampled_from(TRAINER_FLAGS), flag_value), min_size=1, max_size=2),
       st.sampled_from(["train", "runs", "export"]))
def trainer_flag_cases(pairs, cmd):
    argv = {"train": ["train", plan_file, "--max-steps", "1"], "runs": ["runs"],
            "export": ["export", "nope", "--hf", tmp / "hf"]}[cmd] + ["--runs-dir", tmp / "truns"]
    for flag, value in pairs:
        argv += [flag, value]
    o = invoke(trainer_main, argv)
    numeric = any(non_finite(v) for f, v in pairs if f in ("--max-steps", "--ckpt-every", "--threads"))
    note("trainer flags", verdict(o, numeric), f"{argv[1:]} {o.err or repr(o.exc)}")


for case in (csv_cases, plan_cases, agree_cases, planner_flag_cases, trainer_flag_cases):
    try:
        case()
    except Exception as exc:  # noqa: BLE001 -- a tally run reports, it does not stop
        print(f"{case.__name__} stopped: {type(exc).__name__}: {str(exc)[:200]}", file=sys.__stderr__)
print(json.dumps(tally, indent=1))
