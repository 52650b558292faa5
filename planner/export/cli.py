"""`python -m planner export PLAN --to TARGET [--out DIR] [--devices N]`: a plan as the target stack's own files."""
from __future__ import annotations

import json

from planner.cli import COMMANDS
from planner.errors import write_error
from planner.export import ALIASES, TARGETS, export_plan
from planner.export.base import stem
from planner.plan import load_plan


def register(sub) -> None:
    p = sub.add_parser("export", help=COMMANDS["export"][0])
    p.add_argument("plan", help="plan file (YAML or JSON)")
    p.add_argument("--to", required=True, choices=TARGETS + tuple(ALIASES),
                   help="target stack (torchao: the old name of torch-ao)")
    p.add_argument("--out", help="output folder (default: <plan name>-<target>)")
    p.add_argument("--devices", type=int, default=1, help="accelerators the batch is split over (per-device batch)")
    p.add_argument("--exact", action="store_true", help="refuse (exit 2) rather than approximate the pruning")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    p.set_defaults(func=run)


def run(a) -> int:
    plan = load_plan(a.plan)
    out = a.out or f"{stem(plan)}-{a.to}"
    try:
        ex = export_plan(plan, a.to, out, a.devices, a.exact)
    except OSError as exc:
        raise write_error(exc, "--out" if a.out else "export", out) from None
    if a.json:
        print(json.dumps({"target": ex.target, "out": out, "files": sorted(ex.files), "n_avg": ex.n_avg,
                          "plan_n_avg": plan.derived.n_avg, "exact": ex.exact, "approx": ex.approx,
                          "notes": ex.notes,
                          "launch": ex.launch}))
        return 0
    print(f"{out}: {', '.join(sorted(ex.files))}")
    for note in ex.approx:
        print(f"approximates: {note}")
    return 0
