"""`planner fit RUNS.csv --form ...`: fit a scaling law to a runs table, optionally with bootstrap intervals."""
from __future__ import annotations

import json

from planner.errors import PlannerInputError
from planner.fit import LawFitter, bootstrap
from planner.laws import PARAM_NAMES


def register(subparsers) -> None:
    p = subparsers.add_parser("fit", help="fit a scaling law (Chinchilla approach 3, Epoch-corrected) to runs.csv",
                              description="Fit a scaling law to a runs CSV (columns loss, tokens, n_avg or n, "
                                          "n_final, sparsity, group, name; see planner.runs).")
    p.add_argument("runs", help="runs CSV")
    p.add_argument("--form", choices=sorted(PARAM_NAMES), default="unified",
                   help="law form: unified (N = n_avg), chinchilla (N = n_final or n), frantar (n_final, sparsity)")
    p.add_argument("--grid", choices=("chinchilla", "coarse"), default="chinchilla", help="grid of starts")
    p.add_argument("--bootstrap", type=int, default=0, metavar="B", help="bootstrap refits for 95%% intervals")
    p.add_argument("--by-group", action="store_true", help="bootstrap whole groups (the 'group' column)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.bootstrap < 0:
        raise PlannerInputError(f"--bootstrap must be a non-negative count, got {args.bootstrap}")
    fit = LawFitter(args.form, grid=args.grid).fit(args.runs)
    out = {"form": fit.form, "params": fit.params, "objective": fit.objective, "n_runs": fit.n_runs,
           "rmse": fit.rmse, "mae": fit.mae, "n_starts": fit.n_starts, "n_starts_at_best": fit.n_starts_at_best,
           "n_capped": fit.n_capped, "optimal_n_exponent": fit.optimal_n_exponent}
    if args.bootstrap:
        boot = bootstrap(args.runs, args.form, n_boot=args.bootstrap, seed=args.seed, by_group=args.by_group,
                         fit=fit)
        out["ci"] = {k: list(v) for k, v in boot.ci().items()}
        out["ci_level"] = boot.level
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{fit.form} law fitted to {fit.n_runs} runs ({args.grid} grid, {fit.n_starts} starts)")
    ci = out.get("ci", {})
    rows = [(k, v) for k, v in fit.params.items()] + [("optimal_n_exponent", fit.optimal_n_exponent)]
    for name, value in rows:
        interval = f"  [{ci[name][0]:.6g}, {ci[name][1]:.6g}]" if name in ci else ""
        print(f"  {name:<20}{value:>14.6g}{interval}")
    print(f"  objective {fit.objective:.6g}  rmse {fit.rmse:.4g}  mae {fit.mae:.4g}")
    print(f"  starts at best {fit.n_starts_at_best}/{fit.n_starts}  capped {fit.n_capped}")
    if ci:
        print("  (A and alpha trade off: trust the intervals on the exponent and on predictions, not on A or alpha)")
    return 0

