"""The memory estimate against what a real run takes: the peak RSS a CPU run adds to its process, and
torch.cuda.max_memory_allocated on CUDA."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from planner.plan import Budget, RunConfig, make_plan, resolve_schedule
from planner.shapes import ModelShape
from train_backend.resources import estimate_memory
from train_backend.train import Options, run

ROOT = Path(__file__).resolve().parents[1]

# A real run in a fresh process: the runtime is warmed up first (a tiny model, AdamW and one step import and
# initialise what any run needs), then the plan trains; printed: the RSS before, the peak RSS after, the estimate.
SCRIPT = """
import json, resource, sys, torch
from planner.plan import Budget, RunConfig, make_plan, resolve_schedule
from planner.shapes import ModelShape
from train_backend.model import Transformer
from train_backend.resources import estimate_memory, peak_rss
from train_backend.train import Options, make_optimizer, run
torch.set_num_threads(1)
cfg = json.loads(sys.argv[2])
shape = ModelShape(**cfg["shape"])
seq, batch = cfg["seq_len"], cfg["batch_size"]
plan = make_plan(shape, resolve_schedule(shape, 3, "one_shot", 0.5, "steps", 1, 1),
                 Budget(tokens=3 * batch * seq, seq_len=seq, batch_size=batch, steps=3, lr=1e-4), name="mem",
                 run=RunConfig(eval_every=3, eval_batches=1, corpus="bible", tokenizer="byte", dtype="float32"))
warm = Transformer(ModelShape(n_layer=1, d_model=16, n_head=1, d_ff=16, vocab=256))
opt = make_optimizer(warm, plan)
warm(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long)).backward()
opt.step()
del warm, opt
before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
summary = run(plan, Options(runs_dir=sys.argv[1], threads=1))
peak = peak_rss()  # VmHWM: ru_maxrss would carry the parent's (the pytest worker's) peak over exec
print(json.dumps({"added": peak - before, "estimate": estimate_memory(plan), "summary": summary["memory_estimate"],
                  "status": summary["status"]}))
"""


# The shape the first tests train, and two more for the 15% check (deeper and narrower; wider with a larger vocabulary
# and shorter sequences), so the per-layer coefficient and the logits term are each held to a measurement.
SHAPES = {
    "2x256": {"shape": dict(n_layer=2, d_model=256, n_head=4, d_ff=768, vocab=256), "seq_len": 128, "batch_size": 16},
    "4x128": {"shape": dict(n_layer=4, d_model=128, n_head=4, d_ff=384, vocab=256), "seq_len": 256, "batch_size": 16},
    "3x384": {"shape": dict(n_layer=3, d_model=384, n_head=6, d_ff=1024, vocab=1024), "seq_len": 64,
              "batch_size": 32},
}


def _measure(tmp_path, shape="2x256", **env):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "runs"), json.dumps(SHAPES[shape])], cwd=ROOT,
                         capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                                      **env})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS and glibc's heap retention: Linux only")
def test_estimate_within_25_percent_of_a_real_cpu_runs_peak_rss(tmp_path):
    got = _measure(tmp_path)
    est = got["estimate"]
    assert got["status"] == "finished" and got["summary"] == est
    assert est["masks"] > 0 and est["activations"] > est["weights"]  # every part of the loop is exercised
    assert abs(est["total"] / got["added"] - 1) < 0.25, got


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc tunables: Linux only")
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_live_bytes_within_15_percent_of_rss_when_the_heap_retains_nothing(tmp_path, shape):
    """With a fixed small mmap threshold every freed tensor goes back to the OS, so peak RSS is peak live bytes: the
    planner's training_parts (activations per Korthikanti-style coefficient, states, masks) plus the trainer's
    transients, against a real run of each shape."""
    got = _measure(tmp_path, shape, MALLOC_MMAP_THRESHOLD_="65536")
    est = got["estimate"]
    assert est["activations"] > est["weights"]  # the activation formula carries the comparison
    print(f"{shape}: estimate/measured = {est['live'] / got['added']:.3f}")
    assert abs(est["live"] / got["added"] - 1) < 0.15, got


def _plan(dtype):
    shape = ModelShape(n_layer=4, d_model=512, n_head=8, d_ff=1536, vocab=256)
    return make_plan(shape, resolve_schedule(shape, 4, "one_shot", 0.5, "steps", 1, 1),
                     Budget(tokens=4 * 16 * 256, seq_len=256, batch_size=16, steps=4, lr=1e-4), name="mem",
                     run=RunConfig(eval_every=4, eval_batches=1, dtype=dtype))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: compares with max_memory_allocated")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_estimate_within_25_percent_of_cuda_max_memory_allocated(tmp_path, dtype):
    plan = _plan(dtype)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    summary = run(plan, Options(runs_dir=tmp_path / "runs", device="cuda"))
    added = torch.cuda.max_memory_allocated() - base
    est = estimate_memory(plan, device="cuda")
    assert summary["status"] == "finished" and est["total"] == est["live"]
    assert abs(est["total"] / added - 1) < 0.25, (est, added)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: compares with max_memory_allocated")
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_live_bytes_within_15_percent_of_cuda_max_memory_allocated(tmp_path, shape):
    """The CPU check's three shapes on CUDA (bench/gpu_check.sh runs it): fp32, no heap to retain."""
    cfg = SHAPES[shape]
    model = ModelShape(**cfg["shape"])
    seq, batch = cfg["seq_len"], cfg["batch_size"]
    plan = make_plan(model, resolve_schedule(model, 3, "one_shot", 0.5, "steps", 1, 1),
                     Budget(tokens=3 * batch * seq, seq_len=seq, batch_size=batch, steps=3, lr=1e-4), name="mem",
                     run=RunConfig(eval_every=3, eval_batches=1))
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    summary = run(plan, Options(runs_dir=tmp_path / "runs", device="cuda"))
    added = torch.cuda.max_memory_allocated() - base
    est = estimate_memory(plan, device="cuda")
    print(f"{shape} on CUDA: estimate/measured = {est['live'] / added:.3f}")
    assert summary["status"] == "finished" and abs(est["live"] / added - 1) < 0.15, (est, added)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status")
def test_a_childs_peak_rss_is_its_own(tmp_path):
    """Linux carries ru_maxrss over exec: a trainer started by a large process (a pytest worker, the app) would
    report its parent's peak. peak_rss reads the child's own high-water mark; this is why the peak-RSS tests can
    run inside the parallel suite."""
    ballast = bytearray(1 << 30)  # 1 GiB resident in this process
    ballast[::4096] = b"\1" * len(ballast[::4096])
    out = subprocess.run([sys.executable, "-c", "from train_backend.resources import peak_rss; print(peak_rss())"],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) < len(ballast) // 2, int(out.stdout)  # torch imported: a few hundred MB, not 1 GiB
    del ballast
