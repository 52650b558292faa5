"""`python -m train_backend study --preset smoke|quick|full`: train a validation study, then analyse it.

Design in `design`, execution in `runner`, the runs table, fits, plots and REPORT.md in `report`.
"""
from __future__ import annotations

from pathlib import Path

from planner.errors import PlannerInputError

ROOT = Path(__file__).resolve().parents[2]  # the README's study paragraph is the quick study's, in its default folder
# design.PRESETS' names (tests/test_study.py holds them equal): the trainer's CLI lists them without importing the
# design, whose planner modules (pandas among them) a `train` command never uses
PRESET_NAMES = ("full", "quick", "smoke")


def add_parser(sub):
    s = sub.add_parser("study", help="train and analyse a validation study of the unified (N_avg) law")
    s.add_argument("--preset", choices=PRESET_NAMES, required=True)
    s.add_argument("--out", type=Path, help="study folder: plans, logs, runs.csv, REPORT.md, plots "
                                             "(default bench/study/<preset>)")
    s.add_argument("--runs-dir", type=Path, help="where the runs train (default runs/study-<preset>)")
    s.add_argument("--jobs", type=int, default=1, help="single-threaded trainers side by side")
    s.add_argument("--report-only", action="store_true", help="analyse the finished runs without training")
    s.add_argument("--save-law", type=Path, metavar="JSON",
                   help="also fit the laptop law to the runs and write it here (with <stem>_runs.csv beside it)")


def main(args) -> int:
    from train_backend.study import archive
    from train_backend.study.design import design
    from train_backend.study.runner import run_study
    if args.jobs <= 0:
        raise PlannerInputError("--jobs must be positive")
    out = args.out or Path("bench/study") / args.preset
    runs_dir = args.runs_dir or Path("runs") / f"study-{args.preset}"
    runs = design(args.preset)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    runs_dir.mkdir(parents=True, exist_ok=True)
    archive.restore(runs, runs_dir, out, log)  # runs finished in an earlier session, on another machine
    if not args.report_only:
        run_study(runs, out, runs_dir, args.jobs, log=log)
    from train_backend.study.report import write_report  # pandas/matplotlib only when analysing
    readme = ROOT / "README.md" if out.resolve() == (ROOT / "bench/study/quick").resolve() else None
    write_report(args.preset, runs, out, runs_dir, log=log, save_law=args.save_law, readme=readme)
    archive.save(runs, runs_dir, out)
    return 0
