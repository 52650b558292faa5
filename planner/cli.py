"""`python -m planner`: one dispatcher over the subcommands. Bad input exits 2 with one line, never a traceback.

Each subcommand lives beside what it drives and registers itself with `register(subparsers)`. Only the subcommand
being run is built (its module imported): `--help` and the light commands never pay for another's imports (scipy,
pandas). This module itself imports the standard library only.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys

from planner.errors import MAX_COUNT, PlannerInputError, guarded

# Subcommand: (one-line help, "module:function" that adds its parser to the subparsers).
COMMANDS = {
    "schedule": ("mean and final density (and N_avg) of a sparsity schedule", "planner.cli:_register_schedule"),
    "fit": ("fit a scaling law (Chinchilla approach 3, Epoch-corrected) to runs.csv", "planner.cli_fit:register"),
    "plan": ("export a training plan (YAML, or JSON by suffix)", "planner.cli_search:register"),
    "frontier": ("Pareto frontier and the lifetime-optimal plan beside dense baselines", "planner.cli_search:register"),
    "check": ("validate a plan file (YAML or JSON) and its corpus: what `train` would refuse",
              "planner.cli:_register_check"),
    "export": ("write a plan as another stack's files (MaxText fork, PyTorch torch.ao, llm-compressor, litgpt), with a "
               "README saying what differs", "planner.export.cli:register"),
    "memory": ("training and serving memory per GPU, GPUs needed, roofline time per token",
               "planner.hardware.cli:register"),
    "next-runs": ("which runs narrow the target plan's predicted loss most per unit of cost",
                  "planner.uncertainty.cli_decide:register"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus a line and exits; this raises PlannerInputError, which the CLIs print as one line."""

    def error(self, message):
        raise PlannerInputError(f"{self.prog}: {message}")


def number(low: float | None = None, high: float | None = None, *, integer: bool = False, low_open: bool = False,
           high_open: bool = False):
    """An argparse `type=` for a finite number within [low, high] (either end open): nan, inf and out-of-range
    values are refused at parsing, with argparse naming the flag."""
    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if integer else 'a number'}, got {text!r}"
                                             ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if low is not None and (value < low or (low_open and value == low)):
            positive = (low == 0 and low_open) or (integer and low == 1)
            bound = "positive" if positive else f"{'>' if low_open else '>='} {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {'<' if high_open else '<='} {high:g}, got {text!r}")
        return value
    parse.__name__ = "integer" if integer else "number"  # argparse names the type in its message
    return parse


positive_int = number(1, MAX_COUNT, integer=True)
count = number(0, MAX_COUNT, integer=True)
positive = number(0, low_open=True)
non_negative = number(0)
fraction = number(0, 1)
sparsity = number(0, 1, high_open=True)


def _register_schedule(sub):
    from planner.shapes import PRESETS
    p = sub.add_parser("schedule", help=COMMANDS["schedule"][0])
    p.add_argument("--shape", default="geometric", choices=["dense", "one_shot", "linear", "cubic", "geometric"])
    p.add_argument("--final-sparsity", type=sparsity, default=0.5)
    p.add_argument("--initial-sparsity", type=sparsity, default=0.0)
    p.add_argument("--start-step", type=count)
    p.add_argument("--end-step", type=count)
    p.add_argument("--every", type=positive_int, help="pruning frequency in steps (geometric)")
    p.add_argument("--total-steps", type=positive_int)
    p.add_argument("--start-frac", type=fraction, default=0.25, help="window start, a fraction in --window-basis")
    p.add_argument("--end-frac", type=fraction, default=0.75)
    p.add_argument("--window-basis", choices=["tokens", "compute"], default="tokens",
                   help="what --start-frac/--end-frac are fractions of (steps use --start-step/--end-step)")
    p.add_argument("--model", choices=sorted(PRESETS), help="a model preset: adds N_avg and N_final")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_schedule)


def _schedule_from_args(a) -> dict:
    from planner.schedules import Schedule, compute_weighting
    from planner.shapes import PRESETS
    model = PRESETS[a.model] if a.model else None
    phi = 0.0 if model is None else compute_weighting(model)  # unpruned matrix work (a tied head); 0 without a model
    if not 0 <= a.final_sparsity < 1:
        raise PlannerInputError(f"--final-sparsity {a.final_sparsity} is outside [0, 1)")
    by_steps = a.start_step is not None or a.end_step is not None
    if by_steps:
        if None in (a.start_step, a.end_step, a.total_steps):
            raise PlannerInputError("--start-step, --end-step and --total-steps go together")
        if not 0 <= a.start_step <= a.end_step <= a.total_steps:
            raise PlannerInputError(f"--start-step {a.start_step} / --end-step {a.end_step} must satisfy "
                                    f"0 <= start <= end <= --total-steps {a.total_steps}")
        sched = Schedule.from_steps(a.shape, a.final_sparsity, a.start_step, a.end_step, a.total_steps, a.every,
                                    initial_sparsity=a.initial_sparsity)
    else:
        if not 0 <= a.start_frac <= a.end_frac <= 1:
            raise PlannerInputError(f"--start-frac {a.start_frac} / --end-frac {a.end_frac} must satisfy "
                                    f"0 <= start <= end <= 1")
        if a.every is not None and a.total_steps is None:
            raise PlannerInputError("--every is in steps: give --total-steps too")
        every = a.every / a.total_steps if a.every else None
        if a.window_basis == "compute":
            sched = Schedule.from_compute(a.shape, a.final_sparsity, a.start_frac, a.end_frac, phi, every,
                                          initial_sparsity=a.initial_sparsity)
        else:
            sched = Schedule(shape=a.shape, final_sparsity=a.final_sparsity, start=a.start_frac, end=a.end_frac,
                             every=every, initial_sparsity=a.initial_sparsity)
    c0, c1 = sched.compute_fraction([sched.start, sched.end], phi)
    out = {"shape": sched.shape, "final_sparsity": sched.final_sparsity, "mean_density": sched.mean_density(),
           "final_density": sched.final_density, "mean_sparsity": 1 - sched.mean_density(),
           "start_frac": sched.start, "end_frac": sched.end, "compute_start": float(c0), "compute_end": float(c1),
           "n_events": sched.n_events}
    if model is not None:
        fixed, prunable = model.n_params("total")
        out |= {"model": a.model, "n_total": model.total, "n_prunable": prunable, "n_avg": sched.n_avg(fixed, prunable),
                "n_final": sched.n_final(fixed, prunable)}
        out["compression"] = out["n_avg"] / out["n_final"]
    return out


def _run_schedule(a) -> int:
    from pydantic import ValidationError
    try:
        out = _schedule_from_args(a)
    except ValidationError as exc:
        raise PlannerInputError(f"schedule: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    if a.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:>16}  {value:.6g}" if isinstance(value, float) else f"{key:>16}  {value}")
    return 0


def _register_check(sub):
    from planner.preflight import BIN_DTYPES
    p = sub.add_parser("check", help=COMMANDS["check"][0])
    p.add_argument("plan")
    p.add_argument("--bin-dtype", choices=BIN_DTYPES, help="token dtype of a .bin corpus without sidecar (as train)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_check)


def _run_check(a) -> int:
    from planner.plan import load_plan
    from planner.preflight import preflight
    plan = load_plan(a.plan)
    try:
        corpus = preflight(plan, a.bin_dtype)  # the trainer runs the same checks before it allocates
    except PlannerInputError as exc:
        raise PlannerInputError(f"{a.plan}: {exc}") from None
    d = plan.derived
    summary = {"plan": a.plan, "valid": True, "name": plan.name, "schema_version": plan.schema_version,
               "n_total": d.n_total, "n_avg": d.n_avg, "n_final": d.n_final, "mean_density": d.mean_density,
               "tokens": plan.budget.tokens, "steps": plan.budget.steps, "corpus": corpus,
               "predicted_loss": plan.prediction.loss if plan.prediction else None,
               "warnings": plan.prediction.warnings if plan.prediction else []}
    if a.json:
        print(json.dumps(summary))
    else:
        print(f"{a.plan}: valid plan '{plan.name}' (schema {plan.schema_version}): N_total {d.n_total:,}, "
              f"N_avg {d.n_avg:,.0f}, N_final {d.n_final:,.0f}, {plan.budget.tokens:,} tokens in "
              f"{plan.budget.steps:,} steps")
        print(f"corpus {corpus['corpus']}: {corpus['tokens']:,} tokens ({corpus['train_tokens']:,} train, "
              f"{corpus['val_tokens']:,} validation)")
        for w in summary["warnings"]:
            print(f"warning: {w}")
    return 0


class _Only:
    """Subparsers that take only `command`'s parser from a register function (which may add several)."""

    def __init__(self, sub, command: str):
        self.sub, self.command = sub, command

    def add_parser(self, name, **kwargs):
        return self.sub.add_parser(name, **kwargs) if name == self.command else OneLineParser(prog=name)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser with `command`'s arguments (every subcommand's when None); the others by name and help."""
    parser = OneLineParser(prog="python -m planner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name, (summary, where) in COMMANDS.items():
        if command is None or name == command:
            module, function = where.split(":")
            getattr(importlib.import_module(module), function)(_Only(sub, name))
        else:
            sub.add_parser(name, help=summary)
    return parser


def main(argv=None) -> int:
    """Exit 0 done, 2 bad input (one line), 1 an internal error (one line naming where its traceback went)."""
    def body():
        words = sys.argv[1:] if argv is None else argv
        command = next((w for w in words if not str(w).startswith("-")), "")  # the top level has only -h
        args = build_parser(command).parse_args(argv)
        return args.func(args)
    # ValueError and OSError stay user errors here: the numeric core raises the first for values a flag or file
    # carried in, and the second names the file a user asked to read or write.
    return guarded(body, user_errors=(PlannerInputError, ValueError, OSError))
