"""The fuzz suite's machinery: run a CLI's main(argv) in-process, classify the outcome, and generate bad input.

Outcomes (`verdict`): "ok" (exit 0), "exit2" (exit 2, exactly one stderr line starting 'error:'), "run_failed"
(the trainer's exit 1 for a diverged run, one line), and the failures the suite exists to catch: "traceback" (an
exception escaped main or a traceback reached stderr), "internal" (exit 1 'internal error'), "multiline" (exit 2 with more or fewer than one line), "warning" (a Python warning escaped), "accepted"
(exit 0 for input that must be refused: a non-finite number, or a flag `--preset` would ignore) and "disagree"
(`planner check` accepts a plan that `train` then refuses or cannot run).

`python tests/fuzz_tally.py [N]` tallies outcomes per category (the figures quoted in bench/RESULTS.md).
"""
from __future__ import annotations

import copy
import io
import json
import math
import os
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from hypothesis import strategies as st

GOOD = ("ok", "exit2", "run_failed")
# No case is judged by the clock (a busy machine would fail it): every case is bounded by what it does: a fit by
# its iteration cap, a training run by --max-steps and the plan's few steps, corpora by their size (FIFOs and
# devices are refused from stat, never opened).


@dataclass
class Outcome:
    rc: object
    out: str
    err: str
    exc: BaseException | None = None
    warned: list = field(default_factory=list)


def invoke(main, argv) -> Outcome:
    """main(argv) with stdout/stderr captured and warnings recorded."""
    out, err = io.StringIO(), io.StringIO()
    exc, rc = None, None
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        try:
            with redirect_stdout(out), redirect_stderr(err):
                rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc, exc = e.code, e
        except BaseException as e:  # noqa: BLE001 -- anything escaping main is what we are looking for
            rc, exc = "raised", e
    return Outcome(rc, out.getvalue(), err.getvalue(), exc, [str(w.message) for w in warned])


def verdict(o: Outcome, must_refuse: bool = False) -> str:
    """One word for an outcome (see the module docstring). `must_refuse`: the input is invalid, so exit 0 is wrong."""
    lines = o.err.strip().splitlines()
    if o.rc == "raised" or isinstance(o.exc, SystemExit) or "Traceback" in o.err:
        return "traceback"
    if o.warned or "Warning" in o.err:
        return "warning"
    if o.rc == 0:
        return "accepted" if must_refuse else "ok"
    if o.rc == 1 and "internal error" in o.err:
        return "internal"
    if o.rc == 1 and len(lines) == 1 and lines[0].startswith("run failed:"):
        return "run_failed"
    if o.rc == 2 and len(lines) == 1 and lines[0].startswith("error:"):
        return "exit2"
    return "multiline" if o.rc == 2 else f"exit{o.rc}"


# --- values ---------------------------------------------------------------------------------------------------------

NASTY = [math.nan, math.inf, -math.inf, 0, -1, 1, 0.5, 1.0, -0.0, 1e308, -1e308, 5e-324, 2**31, 2**53 + 1, 2**63,
         2**64, -2**63, 10**30, True, False, None, "", "x", "1e3", "nan", "-inf", [], {}, [1, 2, 3], {"a": 1},
         "a" * 5000, "..", "\x00", "\u202e"]
nasty = st.one_of(st.sampled_from(NASTY), st.integers(), st.floats(), st.text(max_size=12))
NASTY_FLAG = ["nan", "inf", "-inf", "0", "-1", "1", "0.5", "1e308", "-1e308", "1e-320", "2147483648",
              "9223372036854775808", "18446744073709551616", "1e30", "", "x", " ", "1,2", "--", "0x10", "1_0",
              "..", ".", ".cache", "runs.db", "plans", "/", "a/b", "\u202e", "a" * 300]
flag_value = st.one_of(st.sampled_from(NASTY_FLAG), st.integers().map(str), st.floats().map(repr),
                       st.text(max_size=8))


def non_finite(text: str) -> bool:
    """The flag text is a number outside float range or not finite."""
    try:
        return not math.isfinite(float(text))
    except (ValueError, OverflowError):
        return False


# --- runs CSVs ------------------------------------------------------------------------------------------------------

CSV_COLUMNS = ["loss", "tokens", "n_avg", "n_final", "n", "sparsity", "group", "name", " loss", "loss ", "extra"]
cell = st.one_of(st.sampled_from(["", "nan", "inf", "-inf", "-1", "0", "1e400", "abc", "1e9", "2.5", "  3.1 ",
                                  '"', "1,5", "None", "0.5", "1"]),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10, 10**12).map(str))


def valid_runs(n: int, jitter: float) -> list[list[str]]:
    rng = np.random.default_rng(n)
    n_avg = 1e7 * 2.0 ** rng.integers(0, 6, n)
    tokens = 20 * n_avg * 2.0 ** rng.uniform(-1, 1, n)
    loss = 1.7 + 400 / n_avg**0.34 + 410 / tokens**0.28 + jitter * rng.normal(size=n)
    return [[f"{a:.6g}", f"{b:.6g}", f"{c:.6g}"] for a, b, c in zip(loss, tokens, n_avg)]


@st.composite
def runs_csv(draw) -> str:
    """A runs table: a valid one damaged in one to three ways (cells, header, shape, encoding)."""
    n = draw(st.integers(0, 9))
    header = ["loss", "tokens", "n_avg"]
    rows = valid_runs(n, draw(st.sampled_from([0.0, 0.0, 0.01])))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["cell", "cell", "header", "dup", "drop", "ragged", "same", "bytes", "blank"]))
        if kind == "cell" and rows:
            rows[draw(st.integers(0, len(rows) - 1))][draw(st.integers(0, 2))] = draw(cell)
        elif kind == "header":
            header[draw(st.integers(0, 2))] = draw(st.sampled_from(CSV_COLUMNS))
        elif kind == "dup":
            header = header + [draw(st.sampled_from(["loss", " loss", "n_avg ", "tokens"]))]
            rows = [r + [draw(cell)] for r in rows]
        elif kind == "drop" and rows:
            rows.pop(draw(st.integers(0, len(rows) - 1)))
        elif kind == "ragged" and rows:
            rows[draw(st.integers(0, len(rows) - 1))].append("9")
        elif kind == "same" and rows:
            rows = [rows[0]] * len(rows)
        elif kind == "bytes":
            return "\n".join(",".join(r) for r in [header, *rows]) + draw(st.sampled_from(["\x00", "\udcff", "\ufeff"]))
        elif kind == "blank":
            rows.append([""] * len(header))
    return "\n".join(",".join(r) for r in [header, *rows]) + "\n"


# --- plan documents -------------------------------------------------------------------------------------------------

def base_plans() -> list[dict]:
    """Valid plans to mutate: the tiny preset (trainable here) and a full search plan (law, costs, hardware)."""
    from planner import search
    from planner.ladder import tiny_plan
    from planner.plan import plan_to_dict
    from planner.shapes import PRESETS
    full = search.build_plan(PRESETS["llama2-70m"], 0.5, tokens=2e9, lifetime_tokens=1e12, name="full")
    tiny = plan_to_dict(tiny_plan(steps=40))
    tiny["run"]["val_fraction"] = 0.001  # a small validation split keeps the largest accepted evaluation short
    return [tiny, plan_to_dict(full)]


def leaf_paths(doc, prefix=()) -> list[tuple]:
    if isinstance(doc, dict):
        return [prefix] + [p for k, v in doc.items() for p in leaf_paths(v, prefix + (k,))]
    if isinstance(doc, list):
        return [prefix] + [p for i, v in enumerate(doc) for p in leaf_paths(v, prefix + (i,))]
    return [prefix]


def _get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def _set(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _delete(doc, path):
    node = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


def rederive(doc: dict) -> dict:
    """Make a mutated plan's derived accounting and token count agree again, so deeper checks are reached."""
    from planner.plan import PlanSchedule, derive
    from planner.shapes import ModelShape
    try:
        b = doc["budget"]
        b["tokens"] = b["steps"] * b["batch_size"] * b["seq_len"]
        sched = PlanSchedule(**doc["schedule"])
        doc["derived"] = derive(ModelShape(**doc["model"]), sched.schedule(),
                                doc["derived"]["n_convention"]).model_dump(mode="json")
    except Exception:  # noqa: BLE001 -- a mutation the schema refuses anyway: leave it for check to report
        pass
    return doc


DEEP = "a: " + "[" * 3000 + "]" * 3000 + "\n"
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
SPECIAL_DOCS = [DEEP, LAUGHS, "!!python/object/apply:os.system [echo hi]\n", "--- 1\n--- 2\n", "", "[]\n", "3\n",
                "schema_version: 1\n", "{\n", "\t- x\n", "a: !!binary ZZZ\n", "? [a]\n: 1\n",
                "schema_version: true\nname: x\n", "<<: *nope\n"]


TRAINER_PATHS = [("budget", "betas", 0), ("budget", "betas", 1), ("run", "seed"), ("run", "eval_batches"),
                 ("run", "eval_every"), ("run", "val_fraction"), ("budget", "lr"), ("budget", "grad_clip"),
                 ("budget", "weight_decay"), ("budget", "warmup_steps"), ("budget", "min_lr_ratio"), ("name",),
                 ("schema_version",), ("run", "corpus")]


@st.composite
def plan_text(draw, bases, trainer_fields_only: bool = False) -> tuple[str, str]:
    """(text, fmt): a valid plan with one to three mutations (fields, corpus, duplicate keys, damaged text).
    `trainer_fields_only`: mutate what the trainer reads (budget, run), so the plan still passes the schema often."""
    if not trainer_fields_only and draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(SPECIAL_DOCS)), "yaml"
    doc = copy.deepcopy(draw(st.sampled_from(bases[:1] if trainer_fields_only else bases)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in leaf_paths(doc) if p]
        if trainer_fields_only:
            paths = TRAINER_PATHS
        path = draw(st.sampled_from(paths))
        ops = ["set", "scale", "scale", "corpus", "corpus"] if trainer_fields_only else \
            ["set", "set", "set", "scale", "corpus", "delete", "extra"]
        op = draw(st.sampled_from(ops))
        try:
            if op == "set":
                _set(doc, path, draw(nasty))
            elif op == "scale":
                value = _get(doc, path)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    factor = draw(st.sampled_from([-1, 0, 2, 10, 1000, 10**6, 10**12, 10**18]))
                    _set(doc, path, type(value)(value * factor) if math.isfinite(value * factor) else value)
            elif op == "corpus":
                doc.setdefault("run", {})["corpus"] = f"CORPUS-{draw(st.sampled_from(CORPUS_KEYS))}"
            elif op == "delete":
                _delete(doc, path)
            elif op == "extra":
                node = _get(doc, path[:-1])
                if isinstance(node, dict):
                    node[draw(st.sampled_from(["bogus", "schema_version", "lr", "seed"]))] = draw(nasty)
        except (KeyError, IndexError, TypeError):
            pass
    if draw(st.booleans()):
        doc = rederive(doc)
    fmt = draw(st.sampled_from(["yaml", "yaml", "json"]))
    text = json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc, sort_keys=False)
    if fmt == "yaml" and draw(st.integers(0, 5)) == 0:  # a duplicate key: an edited file with two `lr:` lines
        lines = text.splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        if ":" in lines[i] and not lines[i].lstrip().startswith("-"):
            key = lines[i].split(":", 1)[0]
            lines.insert(i + 1, f"{key}: {json.dumps(draw(st.sampled_from([0.1, 1, 'x'])))}\n")
            text = "".join(lines)
    if not trainer_fields_only and draw(st.integers(0, 9)) == 0:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["", "\x00", ": :", "\t", "{", "&a", "*b", "\udcff"])) + text[cut:]
    return text, fmt



CORPUS_KEYS = ["bible", "small", "empty", "notxt", "withfifo", "fifo", "fifo_bin", "big_ids", "odd", "dir_bin", "bytes",
               "sidecar", "latin", "zero", "null", "missing", "root", "proc"]


def fill_corpora(text: str, corpora: dict[str, str]) -> str:
    """Put the corpus files' real paths where a plan names CORPUS-<key> (paths exist only once a test runs)."""
    for key in sorted(corpora, key=len, reverse=True):
        text = text.replace(f"CORPUS-{key}", corpora[key])
    return text


def make_corpora(folder: Path) -> dict[str, str]:
    """Corpus values a plan may name: the good, the short, the empty, the FIFO, devices, folders and .bin files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "small.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 60)  # 2,640 tokens
    (folder / "empty.txt").write_text("")
    (folder / "notxt").mkdir(exist_ok=True)
    (folder / "notxt" / "a.md").write_text("x")
    (folder / "withfifo").mkdir(exist_ok=True)
    (folder / "withfifo" / "a.txt").write_text("hello " * 100)
    for fifo in (folder / "fifo.txt", folder / "withfifo" / "b.txt", folder / "fifo.bin"):
        if not fifo.exists():
            os.mkfifo(fifo)
    np.arange(5000, dtype=np.uint16).tofile(folder / "big-ids.bin")  # ids past a byte vocab
    (folder / "odd.bin").write_bytes(b"abc")
    (folder / "dir.bin").mkdir(exist_ok=True)
    (folder / "bytes.bin").write_bytes((np.arange(20000) % 256).astype(np.uint16).tobytes())
    (folder / "bad-sidecar.bin").write_bytes(b"\0\0" * 5000)
    (folder / "bad-sidecar.bin.json").write_text("{not json")
    (folder / "bad.utf8.txt").write_bytes(b"\xff\xfe" * 3000)
    names = {"bible": "bible", "small": folder / "small.txt", "empty": folder / "empty.txt",
             "notxt": folder / "notxt", "withfifo": folder / "withfifo", "fifo": folder / "fifo.txt",
             "fifo_bin": folder / "fifo.bin", "big_ids": folder / "big-ids.bin", "odd": folder / "odd.bin",
             "dir_bin": folder / "dir.bin", "bytes": folder / "bytes.bin", "sidecar": folder / "bad-sidecar.bin",
             "latin": folder / "bad.utf8.txt", "zero": "/dev/zero", "null": "/dev/null", "missing": folder / "nope.txt",
             "root": "/", "proc": "/proc/self/status"}
    return {k: str(v) for k, v in names.items()}


# --- CLI flags ------------------------------------------------------------------------------------------------------

PLANNER_FLAGS = {
    "schedule": (["schedule", "--model", "tiny"],
                 ["--final-sparsity", "--initial-sparsity", "--start-step", "--end-step", "--every", "--total-steps",
                  "--start-frac", "--end-frac"]),
    "plan": (["plan", "--model", "tiny", "--tokens", "1e6"],
             ["--final-sparsity", "--start", "--end", "--every-steps", "--tokens", "--tokens-per-param",
              "--batch-size", "--usd-per-gpu-hour", "--lifetime-tokens", "--prefill-share", "--context",
              "--seq-len", "--n-layer", "--d-ff", "--vocab", "--target-loss"]),
    "preset": (["plan", "--preset", "tiny"],
               ["--final-sparsity", "--d-model", "--tokens", "--batch-size", "--seq-len", "--name", "--shape",
                "--start", "--lifetime-tokens", "--hardware"]),
    "frontier": (["frontier", "--target-loss", "3.0", "--sparsities", "0,0.5", "--schedules", "geometric"],
                 ["--target-loss", "--usd-per-gpu-hour", "--lifetime-tokens", "--prefill-share", "--context",
                  "--seq-len", "--sparsities"]),
    "budget": (["frontier", "--budget-flops", "1e20", "--sparsities", "0,0.5", "--schedules", "geometric"],
               ["--budget-flops", "--lifetime-tokens", "--prefill-share", "--sparsities", "--seq-len"]),
    "fit": (["fit", "{runs}", "--grid", "coarse"], ["--bootstrap", "--seed", "--fix"]),
    "export": (["export", "{plan}", "--to", "torchao", "--out", "{out}"], ["--devices", "--to"]),
}
TRAINER_FLAGS = ["--max-steps", "--ckpt-every", "--threads", "--run-id", "--bin-dtype", "--resume", "--device"]


@st.composite
def planner_argv(draw) -> tuple[list[str], bool]:
    """(argv, must_refuse): a working command line with one to three flags replaced by bad values."""
    name = draw(st.sampled_from(sorted(PLANNER_FLAGS)))
    base, flags = PLANNER_FLAGS[name]
    argv, must_refuse = list(base), False
    for _ in range(draw(st.integers(1, 3))):
        flag, value = draw(st.sampled_from(flags)), draw(flag_value)
        if flag == "--fix":
            value = f"{draw(st.sampled_from(['alpha', 'beta', 'E', 'A', 'zeta']))}={value}"
        argv += [flag, value]
        must_refuse |= non_finite(value) or (name == "preset" and flag != "--final-sparsity")  # the preset's only
    return argv, must_refuse
