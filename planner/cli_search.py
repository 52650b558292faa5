"""`planner plan` (export a training plan) and `planner frontier` (Pareto frontier and lifetime-optimal comparison).

Laws are named presets (planner.laws.PRESETS); a Chinchilla preset is applied with N = N_avg (the unified law).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from planner import search
from planner.cli import COMMANDS, MAX_COUNT, non_negative, number, positive, positive_int, sparsity
from planner.hardware.costs import HARDWARE, LEDGER_COLUMNS, PATTERN_SPEEDUPS, PREFILL_SHARE, hardware_profile, \
    this_machine
from planner.errors import PlannerInputError, write_error
from planner.uncertainty import cli_decide as uncertainty, prediction_region
from planner.hardware import breakeven
from planner.hardware.fits import fits_mask
from planner.hardware.profiles import parse_gpus
from planner.ladder import scale_down, tiny_plan
from planner.laws import DEFAULT_LAW, PRESETS as LAW_PRESETS, resolve_law
from planner.plan import dump_plan, plan_to_yaml
from planner.shapes import PRESETS as SHAPE_PRESETS, ModelShape

PLAN_PRESETS = {"tiny": tiny_plan}
DEFAULT_LIFETIME_TOKENS = 1e12
THIS_MACHINE = "this-machine"
SHOWN = ["d_model", "n_layer", "final_sparsity", "schedule", "n_avg", "n_final", "tokens", "tokens_per_param", "loss"]


def _common(p) -> None:
    p.add_argument("--law", default=DEFAULT_LAW, metavar="PRESET|FILE",
                   help=f"a law preset ({', '.join(LAW_PRESETS)}; applied with N_avg) or a law file written by "
                        f"`fit --save-law`")
    p.add_argument("--hardware", choices=[*sorted(HARDWARE), THIS_MACHINE], default="h100")
    p.add_argument("--pattern", choices=sorted(PATTERN_SPEEDUPS), default="unstructured",
                   help="sparsity pattern: sets the hardware's sparse-phase speedups")
    p.add_argument("--usd-per-gpu-hour", type=non_negative, help="override the hardware profile's price")
    p.add_argument("--sparse-kernel", choices=["on", "off"], help="whether serving reads the sparse layout (2:4: "
                   "sparse tensor cores; unstructured: a load-as-sparse kernel); default on for 2:4, off otherwise")
    p.add_argument("--lifetime-tokens", type=non_negative, default=DEFAULT_LIFETIME_TOKENS,
                   help="tokens served over the model's life (prefill + decode)")
    p.add_argument("--prefill-share", type=number(0, 1), default=PREFILL_SHARE,
                   help="share of lifetime tokens that are prompt (prefill) tokens")
    p.add_argument("--context", type=positive_int, help="inference context for attention FLOPs (default: --seq-len)")
    p.add_argument("--seq-len", type=positive_int, default=search.DEFAULT_SEQ_LEN)
    p.add_argument("--objective", choices=sorted(search.COST_COLUMNS), default="flops",
                   help="lifetime cost: effective FLOPs, or dollars from wall-clock-equivalent GPU-hours")


def register(sub) -> None:
    p = sub.add_parser("plan", help=COMMANDS["plan"][0])
    p.add_argument("--preset", choices=sorted(PLAN_PRESETS), help="a ready plan (tiny: trains in seconds on a CPU)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", choices=sorted(SHAPE_PRESETS), help="a model-shape preset")
    model.add_argument("--d-model", type=positive_int, help="the search's Llama-style family at this width")
    for flag in ("--n-layer", "--n-head", "--head-dim", "--d-ff", "--vocab"):
        p.add_argument(flag, type=positive_int, help="override the family shape (with --d-model)")
    p.add_argument("--final-sparsity", type=sparsity)
    p.add_argument("--shape", choices=["dense", "one_shot", "linear", "cubic", "geometric"], default="geometric")
    p.add_argument("--window-basis", choices=["tokens", "steps", "compute"], default="compute")
    p.add_argument("--start", type=non_negative, default=0.25, help="window start in --window-basis units")
    p.add_argument("--end", type=non_negative, default=0.75, help="window end in --window-basis units")
    p.add_argument("--every-steps", type=positive_int, help="geometric pruning frequency in steps")
    tokens = p.add_mutually_exclusive_group()
    tokens.add_argument("--tokens", type=number(1, MAX_COUNT), help="training tokens (rounded to whole steps)")
    tokens.add_argument("--tokens-per-param", type=positive, help="training tokens per N_avg")
    p.add_argument("--batch-size", type=positive_int, default=search.DEFAULT_BATCH, help="sequences per optimizer step")
    p.add_argument("--name", default="plan")
    p.add_argument("--target-loss", type=positive, help="with --optimal: the loss the lifetime-optimal plan reaches")
    p.add_argument("--optimal", action="store_true", help="export the lifetime-optimal plan of the search")
    p.add_argument("--ladder", metavar="DIR", help="also write the scaled-down validation ladder here")
    p.add_argument("--budget-minutes", type=float, default=30.0, help="one-thread CPU minutes the ladder may take")
    p.add_argument("--ladder-partners", nargs="+", choices=("final", "width"), default=(),
                   help="extra dense partners per rung: final (at N_final), width (at N_avg, the width changed)")
    p.add_argument("--out", help="output file (.yaml/.yml or .json); default: YAML on stdout")
    _common(p)
    p.set_defaults(func=run_plan, plan_defaults=vars(p.parse_args([])))

    f = sub.add_parser("frontier", help=COMMANDS["frontier"][0])
    mode = f.add_mutually_exclusive_group(required=True)
    mode.add_argument("--target-loss", type=positive, help="every candidate reaches this loss; minimise cost")
    mode.add_argument("--budget-flops", type=positive, help="fixed training budget in FLOPs; minimise loss")
    f.add_argument("--budget-ledger", choices=sorted(LEDGER_COLUMNS), default="effective",
                   help="the training ledger the budget is counted in")
    f.add_argument("--sparsities", help="comma-separated final sparsities (default 0,0.1,...,0.9)")
    f.add_argument("--schedules", help=f"comma-separated schedule options from: {', '.join(search.SCHEDULE_OPTIONS)}")
    f.add_argument("--fits-on", metavar="GPUxK", help="keep plans whose training fits K GPUs (bf16 mixed precision, "
                                                      "ZeRO-3, one sequence per GPU), e.g. h100x8; K sets train_days")
    f.add_argument("--serve-on", metavar="GPUxG", help="keep plans whose weights and KV cache (32 sequences at the "
                                                       "context) fit G GPUs, e.g. h100x1")
    out = f.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--csv", metavar="OUT", help="also write the frontier to this CSV file")
    uncertainty.register_flags(f)
    _common(f)
    f.set_defaults(func=run_frontier)


def _setup(a) -> dict:
    """Law, hardware and the inference assumptions shared by both commands."""
    if a.lifetime_tokens < 0:
        raise PlannerInputError(f"--lifetime-tokens must be >= 0, got {a.lifetime_tokens:g}")
    if not 0 <= a.prefill_share <= 1:
        raise PlannerInputError(f"--prefill-share {a.prefill_share} is outside [0, 1]")
    if a.seq_len <= 0 or (a.context is not None and a.context <= 0):
        raise PlannerInputError("--seq-len and --context must be positive")
    law = resolve_law(a.law)
    over = {} if a.usd_per_gpu_hour is None else {"usd_per_gpu_hour": a.usd_per_gpu_hour}
    if a.sparse_kernel:
        over["sparse_kernel"] = a.sparse_kernel == "on"
    if a.usd_per_gpu_hour is not None and a.usd_per_gpu_hour < 0:
        raise PlannerInputError(f"--usd-per-gpu-hour must be >= 0, got {a.usd_per_gpu_hour}")
    hardware = this_machine(None, a.pattern, **over) if a.hardware == THIS_MACHINE else \
        hardware_profile(a.hardware, a.pattern, **over)
    return {"law": law, "hardware": hardware, "lifetime_tokens": a.lifetime_tokens, "context": a.context,
            "prefill_share": a.prefill_share, "seq_len": a.seq_len}


def _model(a) -> ModelShape:
    if a.model:
        return SHAPE_PRESETS[a.model]
    if a.d_model is None:
        raise PlannerInputError("give --preset, --model, --d-model, or --target-loss with --optimal")
    if a.d_model <= 0:
        raise PlannerInputError(f"--d-model must be positive, got {a.d_model}")
    base = search.family_shape(a.d_model)
    over = {k: v for k, v in (("n_layer", a.n_layer), ("n_head", a.n_head), ("head_dim", a.head_dim),
                              ("d_ff", a.d_ff), ("vocab", a.vocab)) if v is not None}
    for key, value in over.items():
        if value <= 0:
            raise PlannerInputError(f"--{key.replace('_', '-')} must be positive, got {value}")
    try:
        return ModelShape(**{**base.model_dump(), **over})
    except ValueError as exc:  # pydantic's ValidationError: heads that do not divide
        raise PlannerInputError(f"--d-model/--n-head/--head-dim: {exc.errors()[0]['msg']}") from None


PRESET_HONOURS = ("preset", "final_sparsity", "out", "ladder")  # what `plan --preset` reads; the rest is fixed


def _refuse_ignored(a) -> None:
    """A flag the preset would silently ignore is refused, so nobody trains a plan they did not ask for."""
    given = [k for k, v in a.plan_defaults.items() if k not in PRESET_HONOURS and getattr(a, k) != v]
    if given:
        raise PlannerInputError(f"--preset {a.preset}: --{given[0].replace('_', '-')} would be ignored (the preset "
                                f"fixes model, budget, schedule and name; it takes only --final-sparsity, --out, "
                                f"--ladder)")


def run_plan(a) -> int:
    if a.final_sparsity is not None and not 0 <= a.final_sparsity < 1:
        raise PlannerInputError(f"--final-sparsity {a.final_sparsity} is outside [0, 1)")
    if a.preset:
        _refuse_ignored(a)
        plan = PLAN_PRESETS[a.preset](**({} if a.final_sparsity is None else {"final_sparsity": a.final_sparsity}))
    elif a.optimal:
        if a.target_loss is None:
            raise PlannerInputError("--optimal needs --target-loss")
        setup = _setup(a)
        best = search.lifetime_optimal(target_loss=a.target_loss, objective=a.objective,
                                       sparsities=_pattern_sparsities(a.pattern, None), **setup).best
        plan = search.plan_from_candidate(best, batch_size=a.batch_size, name=a.name, **setup,
                                          pattern=a.pattern if best["final_sparsity"] > 0 else "unstructured")
    else:
        if a.target_loss is not None:
            raise PlannerInputError("--target-loss goes with --optimal")
        plan = search.build_plan(
            _model(a), 0.5 if a.final_sparsity is None else a.final_sparsity, a.shape, window_basis=a.window_basis,
            start=a.start, end=a.end, every_steps=a.every_steps, pattern=a.pattern, tokens=a.tokens,
            tokens_per_param=a.tokens_per_param, batch_size=a.batch_size, name=a.name, **_setup(a))
    if a.out:
        _write(plan, Path(a.out), "--out")
        print(f"wrote {a.out}: plan '{plan.name}', N_avg {plan.derived.n_avg:,.0f}, {plan.budget.tokens:,} tokens"
              + (f", predicted loss {plan.prediction.loss:.4f}" if plan.prediction else ""))
    else:
        print(plan_to_yaml(plan), end="")
    sched = plan.schedule
    if sched.shape != "dense" and not a.preset:  # whole steps move a window: say where it landed
        print(f"note: pruning window steps {sched.start_step}->{sched.end_step} of {plan.budget.steps}, "
              f"{sched.compute_start:.2%}->{sched.compute_end:.2%} of training compute", file=sys.stderr)
    if plan.prediction:
        for warning in plan.prediction.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if a.ladder:
        for rung in scale_down(plan, budget_minutes=a.budget_minutes, extras=tuple(a.ladder_partners)):
            _write(rung, Path(a.ladder) / f"{rung.name}.yaml", "--ladder")
            print(f"{rung.name}: {rung.notes[-1]}")
        print(f"wrote the validation ladder of {plan.name} to {a.ladder}")
    return 0


def _write(plan, path: Path, flag: str) -> None:
    try:
        dump_plan(plan, path)
    except OSError as exc:
        raise write_error(exc, flag, path) from None


def _floats(text: str | None, flag: str):
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise PlannerInputError(f"{flag} {text!r}: give comma-separated numbers") from None


def _pattern_sparsities(pattern: str, given):
    """The sparsities a pattern allows: 2:4 ends at 0.5 (its speedups must not reach other sparsities)."""
    allowed = (0.0, 0.5) if pattern == "2:4" else None
    sparsities = given or allowed or search.DEFAULT_SPARSITIES
    if any(not 0 <= s < 1 for s in sparsities):
        raise PlannerInputError(f"--sparsities {','.join(map(str, sparsities))}: each must lie in [0, 1)")
    if allowed and set(sparsities) - set(allowed):
        raise PlannerInputError(f"--sparsities: the 2:4 pattern allows only 0 and 0.5, got {sparsities}")
    return sparsities


def run_frontier(a) -> int:
    setup = _setup(a)
    sparsities = _pattern_sparsities(a.pattern, _floats(a.sparsities, "--sparsities"))
    schedules = tuple(a.schedules.split(",")) if a.schedules else search.DEFAULT_SCHEDULES
    unknown = [s for s in schedules if s not in search.SCHEDULE_OPTIONS]
    if unknown:
        raise PlannerInputError(f"--schedules: unknown option {unknown[0]!r}; choose from "
                                f"{', '.join(search.SCHEDULE_OPTIONS)}")
    train_on = parse_gpus(a.fits_on, "--fits-on") if a.fits_on else None
    serve_on = parse_gpus(a.serve_on, "--serve-on") if a.serve_on else None
    if train_on:
        setup["hardware"] = setup["hardware"].model_copy(update={"devices": train_on[1]})
    keep = fits_mask(train_on, serve_on, setup["hardware"], a.seq_len, a.context) if train_on or serve_on else None
    post = uncertainty.posterior(a, setup)  # with --runs: the fitted law replaces --law's numbers in setup
    kw = dict(objective=a.objective, sparsities=sparsities, schedules=schedules, keep=keep, **setup)
    if post is not None:  # candidates are flagged where the chosen plan is: outside the posterior's region
        kw["region"] = prediction_region(setup["law"], post, setup.get("runs"))
    if a.target_loss is not None:
        result = search.lifetime_optimal(target_loss=a.target_loss, **kw)
    else:
        result = search.budget_optimal(budget_flops=a.budget_flops, budget_ledger=a.budget_ledger, **kw)
    result, choice = uncertainty.decide(a, post, result, kw)
    costs = list(search.COST_COLUMNS[a.objective])
    if a.csv:
        try:
            result.frontier.to_csv(a.csv, index=False)
        except OSError as exc:
            raise PlannerInputError(f"--csv {a.csv}: cannot write ({exc.strerror or exc})") from None
    warnings = result.warnings
    if a.json:
        records = (lambda df: json.loads(breakeven.json_ready(df).to_json(orient="records")))
        print(json.dumps({"mode": "target_loss" if a.target_loss is not None else "budget",
                          "objective": a.objective, "objectives": list(result.objectives),
                          "frontier": records(result.frontier),
                          "comparison": records(result.table.reset_index()),
                          "savings": records(result.savings.reset_index()), "warnings": warnings,
                          "notes": list(result.notes), "flop_vs_dollar": breakeven.FLOP_VS_DOLLAR,
                          "nearest_in_region": None if result.nearest_in_region is None else
                          json.loads(result.nearest_in_region.to_json()),
                          **uncertainty.json_fields(post, choice)}))
        return 0
    head = (f"target loss {a.target_loss}" if a.target_loss is not None else
            f"training budget {a.budget_flops:.3g} FLOPs ({a.budget_ledger})")
    print(f"Pareto frontier at {head}: {len(result.frontier)} of {len(result.candidates):,} candidates, "
          f"minimising {' and '.join(result.objectives)}")
    flagged = [] if result.notes else ["extrapolated"]  # when every candidate extrapolates, the note says it once
    flagged += ["p_reach"] if post is not None and a.target_loss is not None else []
    print(_format(result.frontier[SHOWN + costs + flagged]))
    print(f"\nComparison ({a.objective}; lifetime inference {a.lifetime_tokens:.3g} tokens on {setup['hardware'].name}):")
    hardware_cols = [c for c in ("train_days", *breakeven.BREAKEVEN_COLUMNS) if c in result.table]
    print(_format(result.table[SHOWN + costs + hardware_cols + flagged]))
    if "breakeven_all" in result.table:
        print(f"\nbreakeven_*: the speedup over dense kernels at which a sparse plan costs what the cheapest dense "
              f"plan costs in US$ (train_days on {setup['hardware'].devices} GPUs). {breakeven.FLOP_VS_DOLLAR}")
    print("\nSaved by the first plan against each baseline:")
    print(_format(result.savings))
    for note in result.notes:
        print(f"\nnote: {note}")
    uncertainty.print_choice(choice, post, SHOWN + costs)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _format(df: pd.DataFrame) -> str:
    return df.to_string(float_format=lambda x: f"{x:.4g}")
