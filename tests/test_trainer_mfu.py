"""MFU done honestly: a cached CPU peak at the model's own GEMM shapes (MFU never above 1), exact GPU names against
the data-sheet table (no MFU for an unknown GPU), the plan's dtype on every device; and the CUDA paths (bf16,
torch.compile, no per-step host sync), which run only where CUDA is."""
import json
import warnings
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

from planner.hardware.costs import GPU_PEAKS, HARDWARE
from planner.ladder import tiny_plan
from train_backend import registry, resources, train
from train_backend.resources import gemm_shapes, gpu_peak
from train_backend.train import Options, autocast_for, run

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _with_dtype(plan, dtype, compile=False):
    return plan.model_copy(update={"run": plan.run.model_copy(update={"dtype": dtype, "compile": compile})})


def test_cpu_mfu_is_at_most_one_and_the_peak_is_the_best_of_the_first_runs_then_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "PEAK_MEASUREMENTS", 2)
    monkeypatch.setenv(resources.CACHE_ENV, str(tmp_path / "machine"))  # the machine's cache, not the runs folder's
    plan = tiny_plan(steps=30)
    first = run(plan, Options(runs_dir=tmp_path / "runs", threads=1))
    lines = registry.read_metrics(tmp_path / "runs" / first["run_id"])
    assert all(0 < line["mfu"] <= 1 for line in lines), max(line["mfu"] for line in lines)
    assert 0 < first["mfu_median"] <= 1 and first["threads"] == 1 and first["dtype"] == "float32"
    assert first["peak_flops"] > 1e8 and "1 threads, float32" in first["peak_flops_source"]
    assert "best of 1 measurement" in first["peak_flops_source"]
    sampled = []
    monkeypatch.setattr(resources, "_best_rate", lambda *a: sampled.append(a) or 1e6)  # a slow second sample
    second = run(plan, Options(runs_dir=tmp_path / "runs", threads=1))
    assert sampled and second["peak_flops"] == first["peak_flops"]  # the best is kept
    assert "best of 2 measurement" in second["peak_flops_source"]
    cache = json.loads((tmp_path / "machine" / "peak_flops.json").read_text())
    assert [(v["flops"], v["measurements"]) for v in cache.values()] == [(first["peak_flops"], 2)]
    monkeypatch.setattr(resources, "_best_rate", lambda *a: pytest.fail("the cached peak was measured again"))
    again = run(plan, Options(runs_dir=tmp_path / "other-runs", threads=1))  # a fresh runs folder: no new sample
    assert again["peak_flops"] == first["peak_flops"]
    assert not (tmp_path / "runs" / ".cache" / "peak_flops.json").exists()


def test_a_peak_cache_that_cannot_be_written_costs_only_the_cache(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(resources.CACHE_ENV, str(tmp_path / "file" / "cache"))  # under a file: mkdir fails
    summary = run(tiny_plan(steps=2), Options(runs_dir=tmp_path / "runs", threads=1))
    assert summary["status"] == "finished" and "not cached" in summary["peak_flops_source"]


def test_threads_follow_the_gemm_sizes_and_the_idle_cores(monkeypatch):
    """One thread for the tiny preset whatever the machine; a large model gets as many as are idle, never more;
    --threads and OMP_NUM_THREADS override."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    tiny, big = tiny_plan(), tiny_plan()
    big = big.model_copy(update={"model": big.model.model_copy(update={"d_model": 1024, "d_ff": 4096})})
    for idle, tiny_threads, big_threads in [(8.0, 1, 8), (1.2, 1, 1), (0.0, 1, 1), (3.95, 1, 4), (3.8, 1, 3)]:
        monkeypatch.setattr(resources, "idle_cores", lambda idle=idle: idle)
        assert resources.choose_threads(tiny)[0] == tiny_threads
        threads, how = resources.choose_threads(big)
        assert threads == big_threads and f"{idle:.1f} cores idle" in how, how
    assert resources.choose_threads(big, requested=5) == (5, "--threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert resources.choose_threads(big)[1] == "OMP_NUM_THREADS"


def test_idle_cores_reads_the_machine():
    import os
    idle = resources.idle_cores(window=0.05)
    assert 0 <= idle <= len(os.sched_getaffinity(0)) + 1e-9


def test_gemm_shapes_are_the_models_forward_and_both_gradients():
    plan = tiny_plan()
    m, b = plan.model, plan.budget
    rows = b.batch_size // b.grad_accum * b.seq_len  # tokens per micro-batch
    shapes = gemm_shapes(plan)
    assert (rows, m.d_model, m.d_ff) in shapes and (rows, m.d_ff, m.d_model) in shapes  # up/gate proj, its input grad
    assert (m.d_ff, rows, m.d_model) in shapes  # up/gate proj weight gradient
    assert (rows, m.d_model, m.vocab) in shapes and (m.vocab, rows, m.d_model) in shapes  # LM head fwd, weight grad
    assert all(max(s) <= 1024 for s in gemm_shapes(plan, cap=1024))


@pytest.mark.parametrize("name, dtype, peak", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", HARDWARE["h100"].peak_flops),
    ("NVIDIA H100 80GB HBM3", "float32", 66.9e12),
    ("NVIDIA H100 PCIe", "bfloat16", 756e12),  # not matched as SXM
    ("NVIDIA H100 NVL", "bfloat16", 835e12),
    ("NVIDIA A100-SXM4-80GB", "bfloat16", HARDWARE["a100"].peak_flops),
    ("NVIDIA H200", "bfloat16", HARDWARE["h200"].peak_flops),
    ("NVIDIA L4", "float32", 30.3e12),
])
def test_gpu_peak_by_exact_name_and_dtype(monkeypatch, name, dtype, peak):
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _: SimpleNamespace(name=name))
    got, how = gpu_peak(torch.device("cuda:0"), dtype)
    assert got == peak and name in how and dtype in how


@pytest.mark.parametrize("name", ["NVIDIA H100", "NVIDIA GeForce RTX 3090", "NVIDIA H100 80GB HBM3 (MIG 1g.10gb)"])
def test_unknown_gpu_reports_no_mfu(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _: SimpleNamespace(name=name))
    peak, how = gpu_peak(torch.device("cuda:0"), "bfloat16")
    assert peak is None and how.startswith("unknown GPU") and "MFU not reported" in how


def test_every_table_entry_has_both_dtypes_and_bf16_above_fp32():
    assert all(set(p) == {"bfloat16", "float32"} and p["bfloat16"] > p["float32"] for p in GPU_PEAKS.values())


def test_plan_dtype_decides_autocast_on_every_device():
    fp32, bf16 = tiny_plan(), _with_dtype(tiny_plan(), "bfloat16")
    assert isinstance(autocast_for(fp32, torch.device("cuda")), nullcontext)  # no silent bf16 on CUDA
    assert isinstance(autocast_for(fp32, torch.device("cpu")), nullcontext)
    ctx = autocast_for(bf16, torch.device("cpu"))
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16


@CUDA
@pytest.mark.parametrize("dtype, compile", [("bfloat16", False), ("bfloat16", True), ("float32", False)])
def test_cuda_run_bf16_and_compile(tmp_path, dtype, compile):
    plan = _with_dtype(tiny_plan(steps=40), dtype, compile)
    summary = run(plan, Options(runs_dir=tmp_path / "runs", device="cuda"))
    lines = registry.read_metrics(tmp_path / "runs" / summary["run_id"])
    assert summary["status"] == "finished" and [m["step"] for m in lines] == list(range(40))
    assert lines[-1]["loss"] < lines[0]["loss"] - 1.0 and summary["final_density"] == pytest.approx(0.5, abs=1e-4)
    known = summary["device"] in GPU_PEAKS
    assert (summary["peak_flops"] is not None) == known
    assert all((m["mfu"] is not None and 0 < m["mfu"] <= 1) if known else m["mfu"] is None for m in lines)


def _syncs(tmp_path, steps):
    """Host syncs CUDA's sync debug mode flags over a dense run of `steps` (evaluated and checkpointed at its end)."""
    plan = tiny_plan(final_sparsity=0.0, steps=steps)
    plan = plan.model_copy(update={"run": plan.run.model_copy(update={"eval_every": steps})})
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(plan, Options(runs_dir=tmp_path / "runs", device="cuda", ckpt_every=steps))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@CUDA
def test_cuda_loop_does_not_sync_every_step(tmp_path):
    """60 more steps add the syncs of 6 flushes (every SYNC_EVERY = 10 steps), not one or more per step."""
    extra = _syncs(tmp_path, 120) - _syncs(tmp_path, 60)
    assert extra <= 60 // train.SYNC_EVERY * 3, extra
