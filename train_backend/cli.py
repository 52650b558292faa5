"""`python -m train_backend train|runs|export`. Bad input: one line on stderr and exit code 2, never a traceback.

Exit codes: 0 finished, 1 the run failed (a non-finite loss, a full disk, an internal error: one line saying
where the traceback went and whether the registry recorded it), 2 bad input, 128 + the signal's number when a
stop signal cancelled it (130 SIGINT, 143 SIGTERM, 129 SIGHUP; in the loop: after its checkpoint).
"""
from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from planner.cli import OneLineParser, number, positive_int
from planner.errors import PlannerInputError, guarded, say, write_error
from planner.io import not_regular
from planner.plan import load_plan
from train_backend import checkpoint, registry, study
from train_backend.export import export_hf
from train_backend.train import Cancelled, NonFinite, Options, RunFailed, run


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m train_backend",
                      description="Train, list and export sparse pre-training runs.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=OneLineParser)
    t = sub.add_parser("train", help="train a plan (YAML/JSON) or resume a run")
    t.add_argument("plan", nargs="?", help="plan file; optional with --resume (the run keeps its own plan)")
    t.add_argument("--runs-dir", type=Path, default=Path("runs"))
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    t.add_argument("--resume", metavar="RUN_ID")
    t.add_argument("--run-id", help="id for a new run (default: plan name, time and a random suffix)")
    t.add_argument("--max-steps", type=positive_int,
                   help="stop after this many optimizer steps (schedule keeps the plan's)")
    t.add_argument("--ckpt-every", type=positive_int, help="steps between checkpoints (default: the plan's eval_every)")
    t.add_argument("--threads", type=number(1, 4096, integer=True), help="CPU threads (fix it to compare runs bit "
                                                                          "for bit)")
    t.add_argument("--bin-dtype", choices=("uint16", "uint32"), help="token dtype of a .bin corpus without sidecar")
    r = sub.add_parser("runs", help="list the run registry (rows of dead processes are marked failed first)")
    r.add_argument("--runs-dir", type=Path, default=Path("runs"))
    r.add_argument("--rebuild", action="store_true", help="recreate a corrupt or missing runs.db from the run folders")
    e = sub.add_parser("export", help="write a Hugging Face Llama folder from a run's latest checkpoint")
    e.add_argument("run_id")
    e.add_argument("--hf", type=Path, required=True, metavar="DIR")
    e.add_argument("--compressed", action="store_true",
                   help="pruned matrices in compressed-tensors' sparse-bitmask (2:4: sparse-24-bitmask) layout")
    e.add_argument("--runs-dir", type=Path, default=Path("runs"))
    study.add_parser(sub)
    return p


def _train(args) -> int:
    if args.plan is None and not args.resume:
        raise PlannerInputError("train: give a plan file, or --resume RUN_ID")
    if args.resume and args.run_id:
        raise PlannerInputError("--run-id names a new run; --resume keeps the run's own id")
    if args.resume and not registry.RUN_ID.fullmatch(args.resume):
        raise PlannerInputError(f"--resume {args.resume[:60]!r}: no such run (not a run id)")
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise PlannerInputError("--device cuda: no CUDA device is available")
    plan = load_plan(args.plan) if args.plan else None
    if plan is not None and args.bin_dtype and not plan.run.corpus.endswith(".bin"):
        raise PlannerInputError(f"--bin-dtype: corpus {plan.run.corpus} is not a .bin file; the flag would be ignored")
    opts = Options(runs_dir=args.runs_dir, device=args.device, resume=args.resume, run_id=args.run_id,
                   max_steps=args.max_steps, ckpt_every=args.ckpt_every, threads=args.threads, bin_dtype=args.bin_dtype)
    try:
        summary = run(plan, opts, str(args.plan))
    except NonFinite as exc:
        kept = ("no checkpoint was written" if exc.checkpoint_step is None
                else f"the last good checkpoint (step {exc.checkpoint_step}) is kept")
        say(f"run failed: {exc}; {kept}")
        return 1
    except RunFailed as exc:
        say(f"error: {exc}")
        return 1
    except Cancelled as exc:
        say(f"cancelled by {signal.Signals(exc.signum).name} during start-up; " + (
            "no run was created" if exc.run_id is None else f"resume with --resume {exc.run_id}" if exc.resumable
            else f"run {exc.run_id} has no checkpoint to resume"))
        return 128 + exc.signum
    stopped = summary["stop_signal"]
    code = 128 + signal.Signals[stopped] if stopped else 0
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return code
    print(summary["run_id"])
    if stopped:
        say(f"cancelled by {stopped} at step {summary['steps']}; resume with --resume {summary['run_id']}")
    return code


def _runs(args) -> int:
    if os.path.exists(args.runs_dir) and not args.runs_dir.is_dir():  # /dev/null would list an empty table
        what = "a file" if args.runs_dir.is_file() else not_regular(args.runs_dir.stat().st_mode)
        raise PlannerInputError(f"--runs-dir {args.runs_dir}: is {what}, not a runs folder")
    if args.rebuild:
        n, aside = registry.rebuild(args.runs_dir)
        say(f"rebuilt {args.runs_dir / registry.DB_NAME} from {n} run folders"
            + (f"; the old registry is kept as {aside}" if aside else ""))
    try:
        registry.reconcile(args.runs_dir)
    except registry.RegistryError:
        pass  # a read-only registry still lists; a corrupt one fails just below with the rebuild hint
    cols = ("run_id", "status", "step", "total_steps", "final_train_loss", "final_val_loss", "n_avg_measured",
            "wall_seconds")
    rows = []
    for row in registry.list_runs(args.runs_dir):
        if row["status"] == "running" and not row["alive"]:
            row["status"] = "running (process gone)"
        rows.append([_fmt(row[c]) for c in cols])
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    for r in [list(cols)] + rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _export(args) -> int:
    run = registry.get_run(args.runs_dir, args.run_id)
    if run is None:
        raise PlannerInputError(f"export: no run {args.run_id} in {args.runs_dir / registry.DB_NAME}")
    plan = registry.run_plan(run)
    try:
        state = checkpoint.load(Path(run["run_dir"]), quarantine=False)
    except checkpoint.CheckpointError as exc:
        raise PlannerInputError(f"export: {exc}") from None
    try:
        export_hf(state["model"], plan.model, args.hf, max(2048, plan.budget.seq_len), args.compressed)
    except OSError as exc:
        raise write_error(exc, "--hf", args.hf) from None
    print(args.hf)
    return 0


def main(argv=None) -> int:
    """The error boundary: one line on stderr for any outcome; an internal error's traceback goes to
    `<runs dir>/error.log` (or a temp file, or the line says it could not be written)."""
    seen = {}

    def body():
        seen["args"] = args = _parser().parse_args(argv)
        return {"train": _train, "runs": _runs, "export": _export, "study": study.main}[args.cmd](args)

    return guarded(body, lambda: [seen["args"].runs_dir] if "args" in seen else [])
