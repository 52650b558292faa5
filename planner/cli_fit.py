"""`planner fit RUNS.csv --form ...`: fit a scaling law to a runs table, optionally with bootstrap intervals."""
from __future__ import annotations

import json
import math
import sys
import warnings

from planner.cli import COMMANDS, number
from planner.errors import PlannerInputError, write_error
from planner.io import write_model
from planner.fit import LawFitter
from planner.identify import degenerate_line
from planner.laws import EXPONENTS, PARAM_NAMES, PRESETS
from planner.runs import load_runs
from planner.uncertainty import bootstrap, profile_intervals


def register(subparsers) -> None:
    p = subparsers.add_parser("fit", help=COMMANDS["fit"][0],
                              description="Fit a scaling law to a runs CSV (columns loss, tokens, n_avg or n, "
                                          "n_final, sparsity, group, name; see planner.runs).")
    p.add_argument("runs", help="runs CSV")
    p.add_argument("--form", choices=sorted(PARAM_NAMES), default="unified",
                   help="law form: unified (N = n_avg), chinchilla (N = n_final or n), frantar (n_final, sparsity)")
    p.add_argument("--grid", choices=("chinchilla", "coarse"), default="chinchilla", help="grid of starts")
    p.add_argument("--fix", metavar="NAME=VALUE[,...]",
                   help="hold parameters at natural-scale values, e.g. alpha=0.3478,beta=0.3658")
    p.add_argument("--fix-exponents", metavar="PRESET",
                   help=f"hold the N and D exponents (alpha, beta; Frantar's d, f) at a law preset's: "
                        f"{', '.join(PRESETS)}")
    p.add_argument("--bootstrap", type=number(0, 10_000, integer=True), default=0, metavar="B",
                   help="bootstrap refits for 95%% intervals")
    resample = p.add_mutually_exclusive_group()
    resample.add_argument("--by-group", dest="by_group", action="store_const", const=True, default=None,
                          help="bootstrap whole groups (the 'group' column); the default when it has 2+ groups")
    resample.add_argument("--by-run", dest="by_group", action="store_const", const=False,
                          help="bootstrap single runs even when a 'group' column exists")
    p.add_argument("--seed", type=number(0, 2**63 - 1, integer=True), default=0, help="bootstrap random seed")
    p.add_argument("--profile", action="store_true",
                   help="95%% profile-likelihood intervals of the exponents and the compute-optimal exponent, or "
                        "'unidentified' where the runs do not bound them (planner.uncertainty.profile)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save-law", metavar="PATH", help="write the fitted law (with bootstrap intervals) as YAML or "
                                                       "JSON, for `plan --law PATH` and `frontier --law PATH`")
    p.set_defaults(func=run)


def parse_fix(text: str | None, form: str) -> dict[str, float]:
    """'alpha=0.3478,beta=0.3658' -> {'alpha': 0.3478, 'beta': 0.3658}; PlannerInputError naming --fix."""
    fixed: dict[str, float] = {}
    for item in (text.split(",") if text is not None else []):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise PlannerInputError(f"--fix: expected NAME=VALUE[,NAME=VALUE...], got {item.strip()!r}")
        if name not in PARAM_NAMES[form]:
            raise PlannerInputError(f"--fix: unknown parameter {name!r}; the {form} form has "
                                    f"{', '.join(PARAM_NAMES[form])}")
        if name in fixed:
            raise PlannerInputError(f"--fix: {name} is given twice")
        try:
            fixed[name] = float(value)
        except ValueError:
            raise PlannerInputError(f"--fix: {name} needs a number, got {value!r}") from None
        if not math.isfinite(fixed[name]):
            raise PlannerInputError(f"--fix: {name} must be finite, got {value!r}")
    return fixed


def preset_exponents(preset: str, form: str) -> dict[str, float]:
    """The preset's N and D exponents under the names ``form`` gives them; PlannerInputError naming the flag."""
    if preset not in PRESETS:
        raise PlannerInputError(f"--fix-exponents: unknown law preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return dict(zip(EXPONENTS[form], PRESETS[preset].exponents))


def _fit(fitter: LawFitter, args):
    """The fit and its bootstrap (none around an undetermined fit: its intervals would look certain), with numpy's
    RuntimeWarnings (overflow, invalid values) collected for the one warning line rather than printed raw."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        fit = fitter.fit(args.runs)
        boot = None
        if args.bootstrap and not fit.degenerate:
            boot = bootstrap(args.runs, args.form, n_boot=args.bootstrap, seed=args.seed, by_group=args.by_group,
                             fit=fit)
    for w in caught:
        if not issubclass(w.category, RuntimeWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return fit, boot, sorted({str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)})


def run(args) -> int:
    if args.bootstrap < 0:
        raise PlannerInputError(f"--bootstrap must be a non-negative count, got {args.bootstrap}")
    fixed = parse_fix(args.fix, args.form)
    if args.fix_exponents is not None:
        exponents = preset_exponents(args.fix_exponents, args.form)
        both = sorted(set(exponents) & set(fixed))
        if both:
            raise PlannerInputError(f"--fix-exponents: {', '.join(both)} also given by --fix")
        fixed.update(exponents)
    try:
        fitter = LawFitter(args.form, grid=args.grid, fixed=fixed)
    except ValueError as exc:  # a held value out of range (e.g. a negative coefficient)
        raise PlannerInputError(f"--fix: {exc}") from None
    fit, boot, numeric = _fit(fitter, args)
    out = {"form": fit.form, "params": fit.params, "fixed": fit.fixed, "n_free_params": fit.n_free,
           "objective": fit.objective, "n_runs": fit.n_runs, "rmse": fit.rmse, "mae": fit.mae,
           "n_starts": fit.n_starts, "n_starts_at_best": fit.n_starts_at_best, "n_capped": fit.n_capped,
           "optimal_n_exponent": fit.optimal_n_exponent, "degenerate": list(fit.degenerate),
           "numeric_warnings": numeric}
    if boot is not None:
        out["ci"] = {k: list(v) for k, v in boot.ci().items()}
        out["ci_level"], out["ci_method"] = boot.level, boot.method
    if args.profile:
        table = load_runs(args.runs, args.form, n_held=len(fixed))
        profiles = profile_intervals(fit, table)
        out["profile"] = {k: {"status": p.status, "low": p.low if p.identified else None,
                              "high": p.high if p.identified else None, "note": p.note} for k, p in profiles.items()}
    if args.save_law:
        law = fit.law.model_copy(update={"ci": {k: tuple(v) for k, v in out.get("ci", {}).items()} or None})
        try:
            write_model(law, args.save_law)
        except OSError as exc:
            raise write_error(exc, "--save-law", args.save_law) from None
    if args.json:
        print(json.dumps(out))
        return 0
    notes = ([degenerate_line(fit.degenerate)] if fit.degenerate else []) + (
        [f"numpy reported {'; '.join(numeric)} during the fit (check the values)"] if numeric else [])
    if notes:
        print(f"warning: {'; '.join(notes)}", file=sys.stderr)
    print(f"{fit.form} law fitted to {fit.n_runs} runs ({args.grid} grid, {fit.n_starts} starts, "
          f"{fit.n_free} free parameters)")
    ci = out.get("ci", {})
    rows = [(k, v) for k, v in fit.params.items()] + [("optimal_n_exponent", fit.optimal_n_exponent)]
    for name, value in rows:
        interval = "  (held)" if name in fit.fixed else f"  [{ci[name][0]:.6g}, {ci[name][1]:.6g}]" if name in ci else ""
        print(f"  {name:<20}{value:>14.6g}{interval}")
    print(f"  objective {fit.objective:.6g}  rmse {fit.rmse:.4g}  mae {fit.mae:.4g}")
    print(f"  starts at best {fit.n_starts_at_best}/{fit.n_starts}  capped {fit.n_capped}")
    for name, p in out.get("profile", {}).items():
        shown = f"[{p['low']:.6g}, {p['high']:.6g}]" if p["status"] == "identified" else p["status"]
        print(f"  profile 95% {name:<20}{shown}" + (f"  ({p['note']})" if p["status"] == "unidentified" else ""))
    if ci:
        print(f"  intervals: {out['ci_method']}")
        print("  (A and alpha trade off, so their own intervals are wide; --profile gives the exponents' profile "
              "intervals, checked in bench/RESULTS.md)")
    return 0
