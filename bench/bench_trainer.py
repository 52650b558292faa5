"""Trainer benchmarks (not tests): the real loop against a minimal loop, masked vs dense, MFU, a pruning event.

Runs the real training loop (train_backend.train.run) and, for comparison, a bare PyTorch loop (sample, forward/
backward, clip, AdamW) on the same model and on a model written here from scratch, interleaved round by round so
machine load hits all alike. Writes the `## Trainer` section of bench/RESULTS.md.

FLOPs per token: planner.hardware.costs.model_train_flops_per_token (6 N_matmul + attention, forward and
backward). Peak:
the trainer's own CPU peak (train_backend.resources.cpu_peak: best single torch.mm at the model's GEMM shapes).
"""
from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import cpu_model, write_section  # noqa: E402
from planner.hardware.costs import model_train_flops_per_token  # noqa: E402
from planner.plan import Budget, RunConfig, make_plan, resolve_schedule  # noqa: E402
from planner.shapes import ModelShape  # noqa: E402
from train_backend import train as train_mod  # noqa: E402
from train_backend.data import Batches, open_tokens  # noqa: E402
from train_backend.model import Transformer, prunable_weights  # noqa: E402
from train_backend.pruning import Pruner  # noqa: E402
from train_backend.resources import available_memory, cpu_peak, estimate_memory  # noqa: E402
from train_backend.train import Options, make_optimizer, run  # noqa: E402

CLIP = torch.nn.utils.clip_grad_norm_  # the minimal loop's own: the real loop's is wrapped while it runs
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


class Probe:
    """CPU-time stamps inside a loop, taken by wrapping what it calls (a few microseconds each): the start of every
    iteration and the seconds spent in the step's core (forward/backward, gradient clipping, AdamW's step). Between
    two starts lies the whole iteration, metrics lines and progress bar included."""

    def __init__(self, turn=None):
        self.starts, self.core, self.turn = [], [], turn

    def start(self):
        if self.turn:
            self.turn()  # lockstep: the other loop runs one iteration meanwhile (this thread's clock stands still)
        self.starts.append(time.thread_time())
        self.core.append(0.0)

    def timed(self, fn):
        def wrapper(*args, **kwargs):
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.core[-1] += time.thread_time() - t0
        return wrapper

    def steps(self) -> list[tuple[float, float]]:
        """(iteration, core) CPU seconds per whole iteration, the first one (warm-up, the one-shot event) left out."""
        return [(b - a, c) for a, b, c in zip(self.starts[1:], self.starts[2:], self.core[1:])]


def loop_steps(plan, runs_dir, steps, turn=None):
    """(iteration, core) CPU seconds of the real loop's steps. Each iteration starts at Batches.next_train (its one
    call per step, after the schedule and any pruning event); the core is timed around forward_backward,
    clip_grad_norm_ and the optimizer's step."""
    wait_for_memory(plan)
    probe = Probe(turn)

    def next_train(self, _real=Batches.next_train):
        probe.start()
        return _real(self)

    def optimizer(model, plan, _real=train_mod.make_optimizer):
        opt = _real(model, plan)
        opt.step = probe.timed(opt.step)
        return opt

    with mock.patch.object(Batches, "next_train", next_train), \
            mock.patch.object(train_mod, "forward_backward", probe.timed(train_mod.forward_backward)), \
            mock.patch.object(torch.nn.utils, "clip_grad_norm_", probe.timed(torch.nn.utils.clip_grad_norm_)), \
            mock.patch.object(train_mod, "make_optimizer", optimizer):
        run(plan, Options(runs_dir=runs_dir, max_steps=steps + 2, ckpt_every=10**6))
    return probe.steps()[:steps]


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


def bare_steps(shape, seq, batch, steps, tokens, model_cls, turn=None):
    """(iteration, core) CPU seconds of a minimal loop (sample, forward/backward, clip, AdamW), first step left out."""
    torch.manual_seed(0)
    model = model_cls(shape)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    rng = np.random.default_rng(0)
    probe = Probe(turn)
    step, clip = probe.timed(opt.step), probe.timed(CLIP)
    backward = probe.timed(lambda x, y: model(x, y).backward())
    for _ in range(steps + 2):
        probe.start()
        starts = rng.integers(0, len(tokens) - seq - 1, batch)
        xy = torch.from_numpy(np.stack([tokens[s:s + seq + 1] for s in starts]).astype(np.int64))
        backward(xy[:, :-1], xy[:, 1:])
        clip(model.parameters(), 1.0)
        step()
        opt.zero_grad(set_to_none=True)
    return probe.steps()[:steps]


class Baton:
    """Two loops in two threads taking turns, one iteration each: every pair of iterations runs seconds apart, so
    this VM's speed drifting over tens of seconds hits both alike (its step-to-step scatter does not pair out)."""

    def __init__(self, first: str):
        self.turn, self.done, self.cv = first, set(), threading.Condition()

    def wait(self, me: str):
        with self.cv:
            self.cv.wait_for(lambda: self.turn == me)

    def hand_over(self, me: str, other: str):
        with self.cv:
            self.turn = other
            self.cv.notify_all()
            self.cv.wait_for(lambda: self.turn == me or other in self.done)

    def finish(self, me: str, other: str):
        with self.cv:
            self.done.add(me)
            self.turn = other
            self.cv.notify_all()


def lockstep(loops: dict) -> dict:
    """{name: (iteration, core) steps} of two loops run in turn (each `loop(turn)` calls turn() as an iteration
    starts). Each thread's CPU clock counts its own work only: torch runs one intra-op thread, in the caller."""
    (a, run_a), (b, run_b) = loops.items()
    baton, out, errors = Baton(a), {}, []

    def worker(me, other, loop):
        try:
            baton.wait(me)
            out[me] = loop(lambda: baton.hand_over(me, other))
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)
        finally:
            baton.finish(me, other)
    threads = [threading.Thread(target=worker, args=(a, b, run_a)), threading.Thread(target=worker, args=(b, a, run_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def compare(shape, seq, batch, steps, tokens, tmp, before_pair=None):
    """Lockstep pairs at one shape: the real loop (dense, and 50% masked) and the bare model's minimal loop, each
    against the minimal loop with our model: {pair: {name: (iteration, core) steps}}."""
    loops = {
        "ours, dense": lambda turn: loop_steps(plan_for(shape, seq, batch, 1000, False), tmp, steps, turn),
        "ours, 50% masked": lambda turn: loop_steps(plan_for(shape, seq, batch, 1000, True), tmp, steps, turn),
        "minimal loop, bare model": lambda turn: bare_steps(shape, seq, batch, steps, tokens, Bare, turn),
    }
    ref = "minimal loop, our model"
    out = {}
    for name, loop in loops.items():
        if before_pair:
            before_pair()
        out[name] = lockstep({name: loop, ref: lambda turn: bare_steps(shape, seq, batch, steps, tokens, Transformer,
                                                                        turn)})
        pair = out[name]
        print(name, f"{med([x for x, _ in pair[name]]):.3f}", ref, f"{med([x for x, _ in pair[ref]]):.3f}", flush=True)
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


REF = "minimal loop, our model"


def _row(steps_a, steps_b):
    """The ratio of paired iterations (k-th of one loop over the k-th of the other, run next to each other): its
    median over the pairs and a 95% bootstrap interval of that median (this VM's step time scatters ~15% step to
    step, so the interval, not the median alone, says how well a few percent is resolved)."""
    ratios = np.array([x / y for (x, _), (y, _) in zip(steps_a, steps_b)])
    boot = np.median(np.random.default_rng(0).choice(ratios, (2000, len(ratios))), axis=1)
    low, high = np.quantile(boot, [0.025, 0.975])
    a, b = [x for x, _ in steps_a], [y for y, _ in steps_b]
    return np.median(ratios), (f"{np.median(ratios):.3f}x (95% CI {low:.3f}-{high:.3f}x)",
                               f"best step {min(a):.3f} s vs {min(b):.3f} s ({min(a) / min(b):.3f}x); medians "
                               f"{med(a):.3f} s vs {med(b):.3f} s; {len(a)} pairs")


def _overhead(steps_a, steps_b):
    """What a loop adds per step outside the core (iteration - core, median ms) and the ratio it implies at the
    reference loop's median iteration: 1 + (ours - reference) / reference iteration."""
    ours, base = med([it - core for it, core in steps_a]), med([it - core for it, core in steps_b])
    step = med([it for it, _ in steps_b])
    implied = 1 + (ours - base) / step
    return implied, (f"{implied:.4f}x", f"outside forward/backward, clipping and AdamW's step: {ours * 1e3:.2f} ms "
                                        f"per step vs {base * 1e3:.2f} ms for the minimal loop (median iteration "
                                        f"{step * 1e3:.0f} ms)")


def main():
    torch.set_num_threads(1)  # the step timer reads one thread's CPU time: a second intra-op thread would go unseen
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench_trainer_"))
    tokens = open_tokens("bible", tmp / ".cache", 256)
    load_start = open("/proc/loadavg").read().split()[:3]
    shapes = {"tiny": (TINY, 128, 32, 60), "bench": (BENCH, 256, 8, 12)}
    peaks = []  # the bench shape's CPU peak, sampled before every pair: the best over the whole run is the peak

    def sample_peak():
        peaks.append(cpu_peak(plan_for(BENCH, 256, 8, 100, False), tmp / ".peak", measurements=10**6))
    results = {k: compare(s, seq, batch, steps, tokens, tmp, sample_peak if k == "bench" else None)
               for k, (s, seq, batch, steps) in shapes.items()}
    events, n_prunable = event_seconds(tmp)
    peak, how = peaks[-1]
    load_end = open("/proc/loadavg").read().split()[:3]

    rows = []
    for key, pairs in results.items():
        for name in ("ours, dense", "ours, 50% masked"):
            ratio, (result, detail) = _row(pairs[name][name], pairs[name][REF])
            rows.append((f"{key}: {name} / minimal loop (our model)", result, "<= 1.03x", ratio <= 1.03, detail))
            implied, (result, detail) = _overhead(pairs[name][name], pairs[name][REF])
            rows.append((f"{key}: {name}, loop overhead as a ratio", result, "<= 1.03x", implied <= 1.03, detail))
        bare = pairs["minimal loop, bare model"]
        _, (result, detail) = _row(bare[REF], bare["minimal loop, bare model"])
        rows.append((f"{key}: our model / bare model (both in the minimal loop)", result, "reference", None,
                     detail + "; the bare model fuses qkv and gate-up into one GEMM each"))
    fpt = model_train_flops_per_token(BENCH, 256) * 256 * 8
    for name in ("ours, dense", "ours, 50% masked", "minimal loop, bare model"):
        step = min(it for it, _ in results["bench"][name][name])
        rows.append((f"bench MFU: {name}", f"{fpt / step / peak:.1%}", "<= 100%", fpt / step / peak <= 1,
                     f"{fpt / step / 1e9:.1f} GFLOP per CPU second at the best step ({step:.3f} CPU s)"))
    event = max(events) / min(it for it, _ in results["bench"]["ours, dense"]["ours, dense"])
    rows.append(("bench: global pruning event / dense step", f"{event:.3f}", "<= 1", event <= 1,
                 f"events {', '.join(f'{e * 1e3:.0f} ms' for e in events)} over {n_prunable / 1e6:.1f}M prunable "
                 "weights (chunked radix select, AdamW moments zeroed)"))
    missed = [r[0] for r in rows if r[3] is not None and not r[3]]
    text = "\n".join([
        "## Trainer",
        "",
        f"Machine: {torch.get_num_threads()} torch threads, nproc {os.cpu_count()}, {cpu_model()}, "
        f"torch {torch.__version__}, Python {platform.python_version()}; load average {' '.join(load_start)} at the "
        f"start and {' '.join(load_end)} at the end. Loops run in lockstep: two loops in two threads take turns, "
        "one iteration each, so the k-th iteration of one runs next to the k-th of the other and this VM's speed "
        "drifting over tens of seconds hits both alike (its step-to-step scatter, ~15% even on an idle machine, does "
        "not pair out); a ratio is "
        "the median over those pairs, with a 95% bootstrap interval. Step times are CPU seconds of each loop's own "
        "thread (`time.thread_time`; torch runs one intra-op thread, in the caller) from the start of one iteration "
        "to the next (for the real loop: between its calls of Batches.next_train), so metrics lines and the "
        "progress bar count. The 'loop overhead' rows split each iteration into its core (forward/backward, "
        "clipping, AdamW's step, timed by wrapping those calls) and the rest (sampling, schedule, gradient masking, "
        "metrics lines, progress bar) and give the ratio the difference in the rest implies. The real loop turns on "
        "torch's deterministic mode (process-wide), so the minimal loop beside it runs in it too.",
        f"CPU peak for MFU: {peak / 1e9:.1f} GFLOP/s, sampled before each bench-shape pair ({how}).",
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
