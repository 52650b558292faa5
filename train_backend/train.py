"""The training loop: one plan, one run folder, readable top to bottom.

Per step: prune if the schedule says so (before the forward), forward/backward over this rank's micro-batches, zero
the pruned weights' gradients (as the seed's forward with kernel * mask), clip, AdamW with warm-up + cosine LR, and
a metrics line. Metrics lines are written, and the loss checked for non-finite values, every step on CPU and every
SYNC_EVERY steps (and at every event, evaluation and checkpoint) on CUDA, so the GPU never waits for the host.
A fresh run checkpoints at step 0, before any update, then on a fixed cadence. A stop signal (SIGINT, SIGTERM,
SIGHUP) during start-up stops at once (Cancelled); during the loop it checkpoints at the end of the step and stops
(cancelled). On CPU a resumed run is bit-identical to an uninterrupted one: deterministic kernels, and every RNG, the
data position and the thread count (`resources.choose_threads`, unless --threads says otherwise) are checkpointed.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from planner.hardware.costs import model_train_flops_per_token
from planner.errors import PlannerInputError, details_note, one_line, say
from planner.preflight import preflight
from planner.plan import TrainingPlan, plan_to_json
from train_backend import checkpoint, registry
from train_backend.data import Batches, open_tokens
from train_backend.model import Transformer, prunable_weights
from train_backend.pruning import Pruner
from train_backend.resources import available_memory, choose_threads, estimate_memory, peak_flops, peak_rss
from train_backend.runtime import Cancelled, Stop, any_rank, broadcast, device_name, dist_env, launched, to_device, \
    torch_settings

SYNC_EVERY = 10  # CUDA: steps between host syncs (metrics lines, non-finite check, the stop flag across ranks)


@dataclass
class Options:
    runs_dir: Path = Path("runs")
    device: str = "cpu"
    resume: str | None = None
    run_id: str | None = None  # a new run's id, when the caller (the app) wants to know it up front
    max_steps: int | None = None
    ckpt_every: int | None = None  # default: the plan's eval_every
    threads: int | None = None
    bin_dtype: str | None = None


class NonFinite(RuntimeError):
    """A non-finite loss or weights: the run stops as failed and keeps its last finite checkpoint, if it has one."""

    def __init__(self, message: str, checkpoint_step: int | None = None):
        super().__init__(message)
        self.checkpoint_step = checkpoint_step  # step of the last good checkpoint; None when none was written


class RunFailed(RuntimeError):
    """A run that started and then failed; the message is the one line the CLI prints (what, where, recorded?)."""


def lr_at(step: int, plan: TrainingPlan) -> float:
    b = plan.budget
    if step < b.warmup_steps:
        return b.lr * (step + 1) / b.warmup_steps
    progress = (step - b.warmup_steps) / max(1, b.steps - b.warmup_steps)
    return b.lr * (b.min_lr_ratio + (1 - b.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, plan: TrainingPlan) -> torch.optim.AdamW:
    """AdamW, decaying matrices only; fused (one pass over each tensor) on CPU as on CUDA."""
    params = list({id(p): p for p in model.parameters()}.values())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": plan.budget.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=plan.budget.lr, betas=plan.budget.betas, fused=True)


def new_run_id(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", name).lstrip(".-")[:100] or "run"  # a plain folder name (registry.RUN_ID)
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"


def prepare(plan: TrainingPlan, opts: Options, source: str, device: torch.device, world: int
            ) -> tuple[str, Path, TrainingPlan, bool]:
    """Rank 0: check everything the user gave, then choose or create the run folder (nothing is created for bad
    input). Returns run_id, run_dir, plan (the run's own on resume), resuming."""
    runs_dir = Path(opts.runs_dir)
    registry.reconcile(runs_dir)  # rows a killed trainer left "running" become failed, with the reason
    if opts.resume:
        run = registry.get_run(runs_dir, opts.resume)
        if run is None:
            raise PlannerInputError(f"--resume {opts.resume}: no such run in {runs_dir / registry.DB_NAME}")
        stored = registry.run_plan(run)
        if plan is not None and plan_to_json(plan) != plan_to_json(stored):
            raise PlannerInputError(f"{source}: differs from the plan of run {opts.resume}; resume with its own plan")
        run_dir = Path(run["run_dir"])
        if not (run_dir / checkpoint.LATEST).exists() and not (run_dir / checkpoint.PREVIOUS).exists():
            raise PlannerInputError(f"--resume {opts.resume}: run folder {run_dir} has no checkpoint")
        if run["alive"]:
            raise PlannerInputError(f"--resume {opts.resume}: the run is still running (pid {run['pid']})")
        if registry.is_finished(run):
            raise PlannerInputError(f"--resume {opts.resume}: the run has already finished")
        _check(stored, device, world, opts)
        return opts.resume, run_dir, stored, True
    run_id = opts.run_id or new_run_id(plan.name)
    registry.check_run_id(runs_dir, run_id)
    _check(plan, device, world, opts)
    run_dir = registry.start_run(runs_dir, run_id, plan.name, plan_to_json(plan), plan.budget.steps)
    return run_id, run_dir, plan, False


def run(plan: TrainingPlan | None, opts: Options, source: str = "plan") -> dict:
    """Train a plan (or resume a run) to completion, cancellation or failure; returns the summary dict."""
    with Stop.installed(), torch_settings():  # first: a stop signal at any later moment exits in one line
        return _run(plan, opts, source)


def _run(plan: TrainingPlan | None, opts: Options, source: str) -> dict:
    rank, world, local_rank = dist_env()
    device = torch.device(f"cuda:{local_rank}" if opts.device == "cuda" else "cpu")
    if launched() and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)  # bit-identical resume
        torch.utils.deterministic.fill_uninitialized_memory = False  # a debugging aid: NaN-fills every torch.empty
        Stop.check()  # a signal deferred while that imported torch's compiler stack
    else:
        torch.cuda.set_device(device)
    prepared = None
    if rank == 0:
        try:
            prepared = prepare(plan, opts, source, device, world)
        except PlannerInputError as exc:
            prepared = exc
    prepared = broadcast(prepared, rank, world)
    if isinstance(prepared, Exception):
        raise prepared
    run_id, run_dir, plan, resuming = prepared
    threads_how = None
    if device.type == "cpu":
        threads, threads_how = choose_threads(plan, opts.threads)
        torch.set_num_threads(threads)
        if rank == 0 and sys.stderr.isatty():  # said where a person watches; recorded in summary.json always
            say(f"threads: {threads} ({threads_how})")
    try:
        return _train(plan, opts, run_id, Path(run_dir), resuming, device, rank, world, threads_how)
    except Cancelled as exc:
        exc.run_id = run_id
        exc.resumable = any((Path(run_dir) / name).exists() for name in (checkpoint.LATEST, checkpoint.PREVIOUS))
        if rank == 0:
            registry.update_run(opts.runs_dir, run_id, status="cancelled", finished_at=time.time(),
                                error=f"{signal.Signals(exc.signum).name} during start-up")
        raise
    except NonFinite:  # recorded where it is raised
        raise
    except Exception as exc:
        if rank != 0:
            raise
        # The outcome goes to the registry and the details to the run folder; either may fail (a full disk) and the
        # one line RunFailed carries to the CLI says so.
        recorded = registry.record_failure(opts.runs_dir, run_id, exc)
        if isinstance(exc, PlannerInputError) and not isinstance(exc, registry.RegistryError):
            raise  # bad input met late (no readable checkpoint to resume from): still a one-line exit 2
        where = details_note(exc, [run_dir])
        raise RunFailed(f"run {run_id} failed: {type(exc).__name__}: {one_line(exc)} ({where}; {recorded})") from exc
    finally:
        if launched():
            dist.destroy_process_group()


def _check(plan: TrainingPlan, device: torch.device, world: int, opts: Options):
    """Batch split, memory and corpus, before anything is allocated or created."""
    b = plan.budget
    if b.batch_size % world or (b.batch_size // world) % max(1, b.grad_accum // world):
        raise PlannerInputError(f"plan field 'budget.batch_size' ({b.batch_size}) does not split over {world} ranks "
                                f"and grad_accum {b.grad_accum}")
    need, have = estimate_memory(plan, world, device.type, launched())["total"], available_memory(device)
    if device.type == "cpu":
        need *= int(os.environ.get("LOCAL_WORLD_SIZE", 1))  # ranks on one host share its RAM
    if need > have:
        raise PlannerInputError(f"plan '{plan.name}' needs about {need / 2**30:.1f} GiB (params, grads, AdamW, "
                                f"masks, activations) but {device.type} has {have / 2**30:.1f} GiB available")
    preflight(plan, opts.bin_dtype)  # the checks `planner check` runs: corpus kind, splits, eval and batch counts
    load_batches(plan, opts)


def load_batches(plan: TrainingPlan, opts: Options) -> Batches:
    tokens = open_tokens(plan.run.corpus, Path(opts.runs_dir) / ".cache", plan.model.vocab, opts.bin_dtype)
    r = plan.run
    return Batches(tokens, plan.budget.seq_len, plan.budget.batch_size, r.val_fraction, r.seed, r.corpus)


def _train(plan, opts, run_id, run_dir, resuming, device, rank, world, threads_how) -> dict:
    b, m = plan.budget, plan.model
    batches = load_batches(plan, opts)
    torch.manual_seed(plan.run.seed)
    raw = Transformer(m).to(device)
    pruner = Pruner(prunable_weights(raw, plan.schedule.prune_head), plan.schedule, b.steps)
    optimizer = make_optimizer(raw, plan)
    fixed = plan.derived.n_fixed
    step, n_sum, wall_before, offset, last_val = 0, 0.0, 0.0, 0, None
    saved = None  # step of the last checkpoint written or resumed from
    if resuming:
        try:
            state = checkpoint.load(run_dir, quarantine=rank == 0)
        except checkpoint.CheckpointError as exc:
            raise PlannerInputError(str(exc)) from None
        raw.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        pruner.load_state_dict(state["pruner"])
        batches.load_state_dict(state["data"])
        checkpoint.set_rng_state(state["rng"])
        step, n_sum, wall_before = state["step"], state["n_sum"], state["wall_seconds"]
        offset, last_val = state["metrics_offset"], state["last_val"]
        if threads_how and threads_how.startswith("chosen") and state.get("threads"):
            torch.set_num_threads(state["threads"])  # the run's own choice: a resume replays it bit for bit
            threads_how = f"the run's own, chosen when it started ({state['threads']})"
        saved = step
        del state
    model = raw
    if launched():
        model = torch.nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.index is not None
                                                          else None)
    fwd = torch.compile(model) if plan.run.compile else model
    autocast = autocast_for(plan, device)

    end_step = min(b.steps, opts.max_steps or b.steps)
    ckpt_every = opts.ckpt_every or plan.run.eval_every
    sync_every = 1 if device.type == "cpu" else SYNC_EVERY
    tokens_per_step = b.batch_size * b.seq_len
    flops_per_step = model_train_flops_per_token(m, b.seq_len) * tokens_per_step
    peak, peak_how = peak_flops(plan, device) if rank == 0 else (None, "")
    rows = b.batch_size // world
    n_micro = max(1, b.grad_accum // world)
    metrics = None
    if rank == 0:
        path = run_dir / "metrics.jsonl"
        metrics = open(path, "r+b" if path.exists() else "wb")
        metrics.truncate(offset)  # drop lines written after the checkpoint we resume from
        metrics.seek(offset)
        registry.update_run(opts.runs_dir, run_id, status="running", pid=os.getpid(), started_at=time.time(),
                            step=step, error=None)
    t_start = time.perf_counter()
    bar = tqdm(total=end_step, initial=step, disable=rank != 0 or not sys.stderr.isatty(), unit="step")
    loss_val, status, pending, mfus = float("nan"), "finished", [], []

    def save(next_step: int):
        nonlocal saved
        if not all(bool(torch.isfinite(p).all()) for p in raw.parameters()):
            raise NonFinite(f"non-finite weights after step {next_step - 1}", saved)
        if rank == 0:
            metrics.flush()
            checkpoint.save(run_dir, {
                "step": next_step, "model": raw.state_dict(), "optimizer": optimizer.state_dict(),
                "pruner": pruner.state_dict(), "data": batches.state_dict(), "rng": checkpoint.rng_state(),
                "n_sum": n_sum, "wall_seconds": wall_before + time.perf_counter() - t_start,
                "metrics_offset": metrics.tell(), "last_val": last_val, "threads": torch.get_num_threads()})
            registry.update_run(opts.runs_dir, run_id, step=next_step, tokens=next_step * tokens_per_step)
        saved = next_step

    def write(lines: list[dict]):
        if rank == 0:
            metrics.write(b"".join((json.dumps(ln) + "\n").encode() for ln in lines))

    def flush(t_window: float):
        """One host sync for the pending lines: their loss and grad norm, the non-finite check, step times."""
        nonlocal loss_val
        values = torch.stack([torch.stack([ln["loss"], ln["grad_norm"]]) for ln in pending]).tolist()
        dt = (time.perf_counter() - t_window) / len(pending)
        for i, (line, (loss, grad_norm)) in enumerate(zip(pending, values)):
            if not math.isfinite(loss):
                write(pending[:i])  # the finite steps before it still get their lines
                raise NonFinite(f"non-finite loss ({loss}) at step {line['step']}", saved)
            mfu = flops_per_step / dt / (peak * world) if peak else None
            mfus.append(mfu)
            line.update(loss=loss, grad_norm=grad_norm, tokens_per_s=tokens_per_step / dt, mfu=mfu)
        loss_val = pending[-1]["loss"]

    try:
        if not resuming:
            save(0)  # before any update: every run can be resumed from its start
        Stop.check()
        Stop.armed = True
        t_window = time.perf_counter()
        while step < end_step:
            target = pruner.target_density(step)
            event = pruner.is_event(step)
            if event:
                pruner.prune(target, optimizer)
            x, y = batches.next_train()
            x, y = to_device(x[rank * rows:(rank + 1) * rows], device), to_device(y[rank * rows:(rank + 1) * rows], device)
            loss = forward_backward(fwd, model, x, y, n_micro, world, autocast)
            pruner.mask_grads()
            grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), b.grad_clip)
            lr = lr_at(step, plan)
            for g in optimizer.param_groups:
                g["lr"] = lr
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            alive = pruner.alive()
            n_sum += fixed + alive
            step += 1
            pending.append({"step": step - 1, "tokens": step * tokens_per_step, "loss": loss.detach(), "lr": lr,
                            "grad_norm": grad_norm.detach(), "target_density": target,
                            "measured_density": alive / pruner.n, "active_params": fixed + alive,
                            "n_avg": n_sum / step, "elapsed": wall_before + time.perf_counter() - t_start})
            evaluating = step % plan.run.eval_every == 0 or step == end_step
            checkpointing = step % ckpt_every == 0 or step == end_step
            if not (event or evaluating or checkpointing or step % sync_every == 0):
                continue
            flush(t_window)
            line = pending[-1]
            if evaluating:
                last_val = line["val_loss"] = evaluate(raw, batches, plan, device, autocast) if rank == 0 else None
            if event or evaluating:  # counted from the weights themselves, where a sync costs nothing
                measured, per_layer = pruner.measured()
                line["event"], line["weight_density"] = event, measured / pruner.n
                line["layer_density"] = {n: a / p.numel() for n, a, p in zip(pruner.names, per_layer, pruner.params)}
            write(pending)
            bar.update(len(pending))
            bar.set_postfix(loss=f"{loss_val:.3f}", density=f"{alive / pruner.n:.3f}")
            pending.clear()
            stop = any_rank(Stop.requested, world, device)
            if stop or checkpointing:
                save(step)
            if stop:
                status = "cancelled"
                break
            t_window = time.perf_counter()
    except NonFinite as exc:
        status = "failed"
        if rank == 0:
            registry.update_run(opts.runs_dir, run_id, status="failed", error=str(exc), finished_at=time.time())
        raise
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    alive = pruner.measured()[0]
    measured_mfu = [x for x in mfus if x is not None]
    summary = {"run_id": run_id, "status": status, "steps": step, "tokens": step * tokens_per_step,
               "final_train_loss": loss_val, "final_val_loss": last_val,
               "n_avg_measured": n_sum / max(step, 1), "n_final": fixed + alive, "final_density": alive / pruner.n,
               "n_avg_planned": plan.derived.n_avg, "n_final_planned": plan.derived.n_final,
               "predicted_loss": plan.prediction.loss if plan.prediction else None,
               "wall_seconds": wall_before + time.perf_counter() - t_start, "run_dir": str(run_dir),
               "dtype": plan.run.dtype, "device": device_name(device), "threads": torch.get_num_threads(),
               "threads_source": threads_how,
               "peak_flops": peak, "peak_flops_source": peak_how,
               "stop_signal": signal.Signals(Stop.signum).name if status == "cancelled" else None,
               "mfu_median": statistics.median(measured_mfu) if measured_mfu else None,
               "memory_estimate": estimate_memory(plan, world, device.type, launched()),
               "peak_memory_measured": (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                                        else peak_rss()),
               "peak_memory_measured_as": ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                                           else "peak RSS of the process (VmHWM), runtime included")}
    if rank == 0:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        registry.update_run(opts.runs_dir, run_id, status=status, finished_at=time.time(), step=step,
                            error=f"{summary['stop_signal']} at step {step}" if summary["stop_signal"] else None,
                            **{k: summary[k] for k in ("tokens", "final_train_loss", "final_val_loss", "n_avg_measured",
                                                       "n_final", "predicted_loss", "wall_seconds")})
    return summary


def autocast_for(plan: TrainingPlan, device: torch.device):
    """The plan's dtype on every device: bf16 autocast only when the plan says bfloat16 (weights stay fp32)."""
    return torch.autocast(device.type, torch.bfloat16) if plan.run.dtype == "bfloat16" else nullcontext()


def forward_backward(fwd, model, x, y, n_micro: int, world: int, autocast) -> torch.Tensor:
    """Gradients of the mean loss over this rank's rows, accumulated over micro-batches (DDP all-reduces on the
    last one, averaging over ranks); returns the global batch's mean loss as a 0-d tensor on the device (no sync)."""
    total = torch.zeros((), device=x.device)
    for i, (xm, ym) in enumerate(zip(x.chunk(n_micro), y.chunk(n_micro))):
        sync = not isinstance(model, torch.nn.parallel.DistributedDataParallel) or i == n_micro - 1
        with (nullcontext() if sync else model.no_sync()), autocast:
            loss = fwd(xm, ym) * (xm.shape[0] / x.shape[0])
        loss.backward()
        total += loss.detach()
    if world > 1:
        dist.all_reduce(total)
        total /= world
    return total


@torch.no_grad()
def evaluate(model, batches: Batches, plan: TrainingPlan, device, autocast) -> float:
    rows = plan.budget.batch_size // plan.budget.grad_accum
    losses = []
    for x, y in batches.val_batches(plan.run.eval_batches, rows):
        with autocast:
            losses.append(model(x.to(device), y.to(device)).item())
    return sum(losses) / len(losses)
