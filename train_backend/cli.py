"""`python -m train_backend train|runs|export`. Bad input: one line on stderr and exit code 2, never a traceback.

Exit codes: 0 finished, 1 the run failed (non-finite loss or an internal error, logged to the run folder's
error.log), 2 bad input, 130 cancelled by SIGINT (in the loop: after its checkpoint).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from planner.cli import OneLineParser
from planner.errors import PlannerInputError
from planner.plan import load_plan, plan_from_text
from train_backend import checkpoint, registry, study
from train_backend.export import export_hf
from train_backend.train import Cancelled, NonFinite, Options, run


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
    t.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (schedule keeps the plan's)")
    t.add_argument("--ckpt-every", type=int, help="steps between checkpoints (default: the plan's eval_every)")
    t.add_argument("--threads", type=int, help="CPU threads (fix it to compare runs bit for bit)")
    t.add_argument("--bin-dtype", choices=("uint16", "uint32"), help="token dtype of a .bin corpus without sidecar")
    r = sub.add_parser("runs", help="list the run registry")
    r.add_argument("--runs-dir", type=Path, default=Path("runs"))
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
    for flag in ("max_steps", "ckpt_every", "threads"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise PlannerInputError(f"--{flag.replace('_', '-')} must be positive")
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise PlannerInputError("--device cuda: no CUDA device is available")
    plan = load_plan(args.plan) if args.plan else None
    opts = Options(runs_dir=args.runs_dir, device=args.device, resume=args.resume, run_id=args.run_id,
                   max_steps=args.max_steps, ckpt_every=args.ckpt_every, threads=args.threads, bin_dtype=args.bin_dtype)
    try:
        summary = run(plan, opts, str(args.plan))
    except NonFinite as exc:
        kept = ("no checkpoint was written" if exc.checkpoint_step is None
                else f"the last good checkpoint (step {exc.checkpoint_step}) is kept")
        print(f"run failed: {exc}; {kept}", file=sys.stderr)
        return 1
    except Cancelled as exc:
        print("cancelled during start-up; " + (
            "no run was created" if exc.run_id is None else f"resume with --resume {exc.run_id}" if exc.resumable
            else f"run {exc.run_id} has no checkpoint to resume"), file=sys.stderr)
        return 130
    code = 130 if summary["status"] == "cancelled" else 0
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return code
    print(summary["run_id"])
    if summary["status"] == "cancelled":
        print(f"cancelled at step {summary['steps']}; resume with --resume {summary['run_id']}", file=sys.stderr)
    return code


def _runs(args) -> int:
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
    plan = plan_from_text(run["plan_json"], f"run {args.run_id}", "json")
    try:
        state = checkpoint.load(Path(run["run_dir"]), quarantine=False)
    except checkpoint.CheckpointError as exc:
        raise PlannerInputError(f"export: {exc}") from None
    export_hf(state["model"], plan.model, args.hf, max(2048, plan.budget.seq_len), args.compressed)
    print(args.hf)
    return 0


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
        return {"train": _train, "runs": _runs, "export": _export, "study": study.main}[args.cmd](args)
    except PlannerInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # SIGINT before the trainer's own handler (parsing, loading the plan)
        print("cancelled", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: one line here, the traceback in the run folder or runs dir
        log = Path(getattr(args, "runs_dir", Path("."))) / "error.log"  # parse errors were caught above
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"--- {time.ctime()} {json.dumps(sys.argv)}\n{traceback.format_exc()}")
        print(f"error: internal error: {type(exc).__name__}: {exc} (traceback in {log})", file=sys.stderr)
        return 1
