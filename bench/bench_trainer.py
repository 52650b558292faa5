"""Trainer benchmarks (not tests): the real loop against a minimal loop, masked vs dense, MFU, a pruning event.

Runs the real training loop (train_backend.train.run) and, for comparison, a bare PyTorch loop (sample, forward/
backward, clip, AdamW) on the same model and on a model written here from scratch, interleaved round by round so
machine load hits all alike. Writes the `## Trainer` section of bench/RESULTS.md.

FLOPs per token: planner.costs.model_train_flops_per_token (6 N_matmul + attention, forward and backward). Peak:
the trainer's own CPU peak (train_backend.resources.cpu_peak: best single torch.mm at the model's GEMM shapes).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import cpu_model, write_section  # noqa: E402
from planner.costs import model_train_flops_per_token  # noqa: E402
from planner.plan import Budget, RunConfig, make_plan, resolve_schedule  # noqa: E402
from planner.shapes import ModelShape  # noqa: E402
from train_backend.data import open_tokens  # noqa: E402
from train_backend.model import Transformer, prunable_weights  # noqa: E402
from train_backend.pruning import Pruner  # noqa: E402
from train_backend.resources import available_memory, cpu_peak, estimate_memory  # noqa: E402
from train_backend.train import Options, make_optimizer, run  # noqa: E402

BENCH = ModelShape(n_layer=8, d_model=512, n_head=8, d_ff=1408, vocab=256)
TINY = ModelShape(n_layer=4, d_model=128, n_head=4, d_ff=384, vocab=256)
med = statistics.median


def plan_for(shape, seq, batch, steps, sparse):
    """Dense, or 50% one-shot at step 0 (every later step runs with masks and masked gradients)."""
    sched = (resolve_schedule(shape, steps, "one_shot", 0.5, "steps", 0, 0) if sparse
             else resolve_schedule(shape, steps, "dense", 0.0, "steps", 0, 0))
    budget = Budget(tokens=steps * batch * seq, seq_len=seq, batch_size=batch, steps=steps, lr=1e-4)
    return make_plan(shape, sched, budget, name="bench", run=RunConfig(eval_every=10**6, eval_batches=1))


def wait_for_memory(plan, limit=900):
    """On a shared machine other jobs may hold the RAM for a while: wait (up to `limit` s) until the trainer's own
    memory check would pass rather than fail the benchmark."""
    end = time.time() + limit
    while available_memory(torch.device("cpu")) < estimate_memory(plan)["total"] and time.time() < end:
        time.sleep(10)


def loop_steps(plan, runs_dir, steps):
    """Per-step seconds of the real loop (step 0 left out: warm-up and, when sparse, the one-shot event)."""
    wait_for_memory(plan)
    summary = run(plan, Options(runs_dir=runs_dir, max_steps=steps, ckpt_every=10**6))
    lines = [json.loads(x) for x in Path(summary["run_dir"], "metrics.jsonl").read_text().splitlines()]
    tokens = plan.budget.batch_size * plan.budget.seq_len
    return [tokens / m["tokens_per_s"] for m in lines[1:]]


# --- a bare PyTorch model of the same shape, written independently (fused qkv and gate-up) ----------------------

class Bare(nn.Module):
    def __init__(self, s: ModelShape):
        super().__init__()
        d, h, f = s.d_model, s.n_head, s.d_ff
        self.h, self.hd = h, d // h
        self.emb, self.head = nn.Embedding(s.vocab, d), nn.Linear(d, s.vocab, bias=False)
        self.qkv = nn.ModuleList(nn.Linear(d, 3 * d, bias=False) for _ in range(s.n_layer))
        self.o = nn.ModuleList(nn.Linear(d, d, bias=False) for _ in range(s.n_layer))
        self.gu = nn.ModuleList(nn.Linear(d, 2 * f, bias=False) for _ in range(s.n_layer))
        self.down = nn.ModuleList(nn.Linear(f, d, bias=False) for _ in range(s.n_layer))
        inv = 1.0 / (10000 ** (torch.arange(0, self.hd, 2) / self.hd))
        ang = torch.outer(torch.arange(4096.0), inv)
        self.register_buffer("cos", torch.cat([ang, ang], -1).cos(), persistent=False)
        self.register_buffer("sin", torch.cat([ang, ang], -1).sin(), persistent=False)

    def rope(self, x, t):
        a, b = x.chunk(2, -1)
        return x * self.cos[:t] + torch.cat([-b, a], -1) * self.sin[:t]

    def forward(self, idx, tgt):
        bsz, t = idx.shape
        x = self.emb(idx)
        for qkv, o, gu, down in zip(self.qkv, self.o, self.gu, self.down):
            q, k, v = (z.view(bsz, t, self.h, self.hd).transpose(1, 2)
                       for z in qkv(F.rms_norm(x, (x.shape[-1],))).chunk(3, -1))
            y = F.scaled_dot_product_attention(self.rope(q, t), self.rope(k, t), v, is_causal=True)
            x = x + o(y.transpose(1, 2).reshape(bsz, t, -1))
            g, u = gu(F.rms_norm(x, (x.shape[-1],))).chunk(2, -1)
            x = x + down(F.silu(g) * u)
        return F.cross_entropy(self.head(F.rms_norm(x, (x.shape[-1],))).view(-1, self.head.out_features),
                               tgt.reshape(-1))


def bare_steps(shape, seq, batch, steps, tokens, model_cls):
    """Seconds per step of a minimal loop (sample, forward/backward, clip, AdamW), first step left out."""
    torch.manual_seed(0)
    model = model_cls(shape)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        starts = rng.integers(0, len(tokens) - seq - 1, batch)
        xy = torch.from_numpy(np.stack([tokens[s:s + seq + 1] for s in starts]).astype(np.int64))
        model(xy[:, :-1], xy[:, 1:]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times[1:]


class ThreadClock:
    """Step times as CPU seconds of this (single-threaded) process's main thread, for the real loop and the minimal
    loop alike: `time.perf_counter` reads `time.thread_time` inside the block. On a machine shared with other jobs
    wall time counts the seconds they take from us; CPU time counts only the work of the step."""

    def __enter__(self):
        self.wall, time.perf_counter = time.perf_counter, time.thread_time

    def __exit__(self, *_):
        time.perf_counter = self.wall


def compare(shape, seq, batch, steps, rounds, tokens, tmp):
    """Step CPU seconds of the real loop (dense, and 50%-masked) and of the minimal loop (our model, the bare
    model), interleaved round by round, the order rotated each round."""
    kinds = {
        "ours, dense": lambda: loop_steps(plan_for(shape, seq, batch, 1000, False), tmp, steps),
        "minimal loop, our model": lambda: bare_steps(shape, seq, batch, steps, tokens, Transformer),
        "ours, 50% masked": lambda: loop_steps(plan_for(shape, seq, batch, 1000, True), tmp, steps),
        "minimal loop, bare model": lambda: bare_steps(shape, seq, batch, steps, tokens, Bare),
    }
    out = {k: [] for k in kinds}
    names = list(kinds)
    for r in range(rounds):
        for name in names[r % 4:] + names[:r % 4]:
            with ThreadClock():
                out[name] += kinds[name]()
        print({k: f"best {min(v):.3f} median {med(v):.3f}" for k, v in out.items()}, flush=True)
    return out


def event_seconds(tmp):
    """Two global pruning events (dense -> 80% -> 50%) at the bench shape, AdamW moments included."""
    torch.manual_seed(0)
    model = Transformer(BENCH)
    plan = plan_for(BENCH, 256, 8, 100, True)
    pruner = Pruner(prunable_weights(model), plan.schedule, 100)
    opt = make_optimizer(model, plan)
    times = []
    for density in (0.8, 0.5):
        t0 = time.perf_counter()
        pruner.prune(density, opt)
        times.append(time.perf_counter() - t0)
    return times, pruner.n


def _row(name, kinds, ref):
    a, b = kinds[name], kinds[ref]
    best, median = min(a) / min(b), med(a) / med(b)
    return best, median, f"best step {min(a):.3f} s vs {min(b):.3f} s; medians {med(a):.3f} s vs {med(b):.3f} s"


def main():
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench_trainer_"))
    tokens = open_tokens("bible", tmp / ".cache", 256)
    load_start = open("/proc/loadavg").read().split()[:3]
    shapes = {"tiny": (TINY, 128, 32, 12, 4), "bench": (BENCH, 256, 8, 4, 3)}
    results = {k: compare(s, seq, batch, steps, rounds, tokens, tmp)
               for k, (s, seq, batch, steps, rounds) in shapes.items()}
    events, n_prunable = event_seconds(tmp)
    peak, how = cpu_peak(plan_for(BENCH, 256, 8, 100, False), tmp / ".peak")
    load_end = open("/proc/loadavg").read().split()[:3]

    rows = []
    for key, (shape, seq, batch, *_) in shapes.items():
        kinds = results[key]
        for name in ("ours, dense", "ours, 50% masked"):
            best, median, detail = _row(name, kinds, "minimal loop, our model")
            rows.append((f"{key}: {name} / minimal loop (our model)", f"{best:.3f}x (median {median:.3f}x)",
                         "<= 1.03x", best <= 1.03, detail))
        best, median, detail = _row("minimal loop, our model", kinds, "minimal loop, bare model")
        rows.append((f"{key}: our model / bare model (both in the minimal loop)", f"{best:.3f}x (median {median:.3f}x)",
                     "reference", None, detail + "; the bare model fuses qkv and gate-up into one GEMM each"))
    fpt = model_train_flops_per_token(BENCH, 256) * 256 * 8
    for name in ("ours, dense", "ours, 50% masked", "minimal loop, bare model"):
        step = min(results["bench"][name])
        rows.append((f"bench MFU: {name}", f"{fpt / step / peak:.1%}", "<= 100%", fpt / step / peak <= 1,
                     f"{fpt / step / 1e9:.1f} GFLOP per CPU second at the best step ({step:.3f} CPU s)"))
    event = max(events) / min(results["bench"]["ours, dense"])
    rows.append(("bench: global pruning event / dense step", f"{event:.3f}", "<= 1", event <= 1,
                 f"events {', '.join(f'{e * 1e3:.0f} ms' for e in events)} over {n_prunable / 1e6:.1f}M prunable "
                 "weights (chunked radix select, AdamW moments zeroed)"))
    missed = [r[0] for r in rows if r[3] is False]
    text = "\n".join([
        "## Trainer",
        "",
        f"Machine: {torch.get_num_threads()} torch threads, nproc {os.cpu_count()}, {cpu_model()}, "
        f"torch {torch.__version__}, Python {platform.python_version()}; load average {' '.join(load_start)} at the "
        f"start and {' '.join(load_end)} at the end. The machine is shared with other engineers' jobs: every loop "
        "runs interleaved round by round with the others, and ratios are given on the best step of each kind (the "
        "least disturbed) with the ratio of medians beside them. Step times are CPU seconds of the process's one "
        "thread (`time.thread_time`, read by the trainer's own step timer and by the minimal loop), which other "
        "jobs' load does not inflate the way it inflates wall time.",
        f"CPU peak for MFU: {peak / 1e9:.1f} GFLOP/s ({how}).",
        "Bench shape: d_model 512, 8 layers, 8 heads, SwiGLU d_ff 1408, vocab 256, seq 256, batch 8, fp32; "
        "tiny shape: d_model 128, 4 layers, 4 heads, d_ff 384, seq 128, batch 32. 'ours' is the real loop "
        "(train_backend.train.run: data, pruning schedule, masked gradients, clipping, AdamW, metrics lines), "
        "'50% masked' a one-shot 50% plan (every timed step carries masks and zeroes the pruned gradients); the "
        "minimal loop samples, runs forward/backward, clips and steps AdamW, nothing else.",
        "",
        "| measure | result | target | met | detail |",
        "|---|---|---|---|---|",
        *[f"| {a} | {r} | {t} | {'-' if ok is None else 'yes' if ok else 'NO'} | {x} |" for a, r, t, ok, x in rows],
        "",
        ("Missed: " + "; ".join(missed) + "." if missed else "All targets met in this run."),
        "",
        f"Bench wall time: {time.perf_counter() - t_start:.0f} s.",
        "",
    ])
    write_section("## Trainer", text)
    print(text)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
