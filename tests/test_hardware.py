"""planner.hardware against oracles outside it: Transformer Math's 16 bytes per parameter, the KV-cache formula, what
autograd saves for this repo's block, compressed-tensors' bitmask layout as the exporter writes it, the roofline's
two regimes, and break-even speedups that do cost what the baseline costs."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from planner.cli import main
from planner.hardware.breakeven import BREAKEVEN_COLUMNS, FLOP_VS_DOLLAR, breakeven_speedups, dense_wins_note
from planner.hardware.memory import (activation_bytes_per_token, korthikanti_coefficient, kv_bytes_per_token,
                                     min_devices, serving_memory, training_parts, weight_bytes)
from planner.hardware.profiles import HARDWARE, KERNELS, hardware_profile, parse_gpus
from planner.hardware.report import memory_report, summary_lines
from planner.plan import dump_plan
from planner.search import build_plan, lifetime_optimal
from planner.shapes import PRESETS, ModelShape
from train_backend.export import _bitmask
from train_backend.model import Transformer, prunable_weights

LLAMA_1B = PRESETS["llama2-1b"]
GQA = ModelShape(n_layer=4, d_model=512, n_head=8, n_kv_head=2, d_ff=1536, vocab=1000)


def test_mixed_precision_adamw_is_16_bytes_per_parameter_and_zero_shards_it():
    n = LLAMA_1B.total
    states = ("weights", "grads", "optimizer")
    ddp = training_parts(LLAMA_1B, 0, False, "bf16-mixed", "ddp", 1)
    assert sum(ddp[k] for k in states) == 16 * n  # 2 + 2 + (4 master + 4 + 4 moments): Transformer Math
    assert sum(training_parts(LLAMA_1B, 0, False, "fp32")[k] for k in states) == 16 * n
    z1, z2, z3 = (training_parts(LLAMA_1B, 0, False, "bf16-mixed", f"zero{i}", 8) for i in (1, 2, 3))
    assert sum(z1[k] for k in states) == pytest.approx((2 + 2 + 12 / 8) * n)  # Rajbhandari et al. 2020, fig. 1
    assert sum(z2[k] for k in states) == pytest.approx((2 + 14 / 8) * n)
    assert sum(z3[k] for k in states) == pytest.approx(16 / 8 * n)
    masks = training_parts(LLAMA_1B, 0, True, "fp32")["masks"]
    assert masks == 5 * LLAMA_1B.prunable  # a bool and an fp32 copy per prunable weight, as the trainer keeps them


def test_smallest_device_count_is_the_first_that_fits():
    gpu = HARDWARE["h100"].memory_bytes
    kw = dict(precision="bf16-mixed", sharding="zero3")
    big = ModelShape(n_layer=40, d_model=8192, n_head=64, d_ff=22016, vocab=32000)  # ~33B: 530 GB of states
    k = int(min_devices(big, 2048, False, gpu, 0.1, **kw))

    def per_device(devices):
        return sum(training_parts(big, 2048, False, devices=devices, **kw).values())
    assert per_device(k) <= 0.9 * gpu < per_device(k - 1) and k > 1
    assert np.isnan(min_devices(big, 2048, False, gpu, 0.1, precision="bf16-mixed", sharding="ddp"))


def test_sequences_per_device_follow_the_trainers_split():
    from planner.hardware.memory import sequences_per_device
    # the trainer: batch_size / world rows per rank, in max(1, grad_accum / world) micro-batches
    for batch, accum, world in [(512, 8, 4), (512, 1, 4), (512, 8, 1), (64, 4, 8), (16, 1, 1)]:
        rows, micro = batch // world, max(1, accum // world)
        assert sequences_per_device(batch, accum, world) == rows // micro


def test_kv_cache_is_gqa_aware():
    context, batch = 4096, 16
    expected = 2 * 4 * context * batch * 2 * 64 * 2  # 2 n_layer context batch n_kv_head head_dim bytes (bf16)
    assert serving_memory(GQA, 1.0, "dense", context, batch)["kv_cache"] == expected
    assert kv_bytes_per_token(GQA, "float8") * context * batch == expected / 2
    assert kv_bytes_per_token(GQA) * 4 == kv_bytes_per_token(GQA.model_copy(update={"n_kv_head": 8}))


def test_largest_batch_and_fewest_gpus_for_serving():
    gpu = HARDWARE["l4"].memory_bytes
    mem = serving_memory(LLAMA_1B, 1.0, "dense", 2048, 500, gpu_bytes=gpu)
    b = int(mem["max_batch_per_gpu"])
    weights, kv = mem["weights"], mem["kv_per_sequence"]
    assert weights + b * kv <= 0.9 * gpu < weights + (b + 1) * kv
    g = int(mem["min_gpus"])
    assert mem["total"] <= g * 0.9 * gpu and mem["total"] > (g - 1) * 0.9 * gpu and g > 1


def _saved_bytes(model, idx):
    """Bytes autograd keeps for a forward (each storage once): the activations, plus the weights it also saves."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block = model.layers[0]
        block(model.embed_tokens(idx), *model._rope(idx.shape[1], idx.device))
    weights = {p.untyped_storage().data_ptr() for p in block.parameters()}
    return sum(v for k, v in seen.items() if k not in weights)


@pytest.mark.parametrize("shape", [ModelShape(n_layer=1, d_model=256, n_head=4, d_ff=768, vocab=64),
                                   ModelShape(n_layer=1, d_model=384, n_head=6, d_ff=1024, vocab=64, mlp="gelu"),
                                   ModelShape(n_layer=1, d_model=192, n_head=3, head_dim=96, d_ff=512, vocab=64)])
def test_block_coefficient_is_what_autograd_saves(shape):
    """The per-layer term of activation_bytes_per_token against the tensors autograd keeps for one fp32 block."""
    torch.manual_seed(0)
    model, (b, s) = Transformer(shape), (4, 64)
    measured = _saved_bytes(model, torch.randint(0, shape.vocab, (b, s)))
    layer = (activation_bytes_per_token(shape) - _head_bytes(shape)) * b * s  # n_layer = 1
    assert layer == pytest.approx(measured, rel=0.02)


def _head_bytes(shape):
    """The non-layer part by hand: final norm (input, normalised input, output; fp32) and the 12-vocab logits path."""
    return 3 * 4 * shape.d_model + 12 * shape.vocab


def test_korthikanti_style_coefficient_by_hand():
    """c = 4 r + a (2 + 2 + 2 + 4 d_ff / h) for this block: no s-dependent term (SDPA keeps no attention matrix),
    against GPT's 34 + 5 a s / h at 16 bits (Korthikanti et al. 2022, eq. 2)."""
    h = 2048
    shape = ModelShape(n_layer=1, d_model=h, n_head=16, d_ff=8 * h // 3 // 64 * 64, vocab=10)
    ff = shape.d_ff / h
    assert korthikanti_coefficient(shape, "bf16-mixed") == pytest.approx(4 * 2 + 2 * (6 + 4 * ff))
    assert korthikanti_coefficient(shape, "bf16-autocast") == pytest.approx(4 * 4 + 2 * (6 + 4 * ff))
    gpt = 34 + 5 * 16 * 2048 / h
    assert korthikanti_coefficient(shape, "bf16-mixed") < gpt
    full = activation_bytes_per_token(LLAMA_1B, "bf16-mixed")
    ckpt = activation_bytes_per_token(LLAMA_1B, "bf16-mixed", checkpointing=True)
    logits = 3 * 2 * 2048 + 12 * 32000  # the final norm and the fp32 logits path, kept either way
    assert ckpt - logits < (full - logits) / 5  # one block's activations plus every block's input


def _pruned_state(shape, density, two_four=False, dtype=torch.bfloat16):
    torch.manual_seed(0)
    model = Transformer(shape).to(dtype)
    weights = prunable_weights(model)
    with torch.no_grad():
        if two_four:
            for _, w in weights:
                g = w.view(-1, 4)
                g.scatter_(1, g.abs().topk(2, dim=1, largest=False).indices, 0.0)
        else:
            flat = torch.cat([w.flatten() for _, w in weights])
            keep = torch.zeros_like(flat, dtype=torch.bool)
            keep[torch.randperm(flat.numel())[:round(flat.numel() * density)]] = True
            for (_, w), m in zip(weights, keep.split([w.numel() for _, w in weights])):
                w.mul_(m.view_as(w))
    return model, weights


@pytest.mark.parametrize("two_four", [False, True])
def test_bitmask_layouts_match_the_exporters_tensors(two_four):
    """compressed-tensors' sparse-bitmask (values + a bit per weight by row + int64 row offsets + shape) and
    sparse-24-bitmask (half the values + bitmask + shape), as train_backend.export writes them, byte for byte."""
    shape = ModelShape(n_layer=2, d_model=96, n_head=3, d_ff=200, vocab=77)  # rows of 96 and 200: ragged bytes
    density = 0.5 if two_four else 0.3
    model, weights = _pruned_state(shape, density, two_four)
    names = {n for n, _ in weights}
    stored = sum(t.numel() * t.element_size() for n, w in weights for t in _bitmask(n, w, two_four).values())
    stored += sum(p.numel() * 2 for n, p in model.named_parameters() if n not in names)
    layout = "sparse-24" if two_four else "sparse-bitmask"
    assert weight_bytes(shape, density, layout)[0] == stored


def test_decode_is_bandwidth_bound_at_batch_1_and_compute_bound_at_large_batch():
    plan = build_plan(LLAMA_1B, 0.0, "dense", tokens=2e10)
    hw = hardware_profile("h100")
    # a short context: with 16 full KV heads each token's cache read (131 kB per token of context) soon outweighs
    # its share of the weights, and decode stays bandwidth-bound at any batch
    one = memory_report(plan, hw, batch=1, context=16)["roofline"]
    many = memory_report(plan, hw, batch=4096, context=16)["roofline"]
    long = memory_report(plan, hw, batch=4096, context=4096)["roofline"]
    assert one["decode_bound"] == "bandwidth" and many["decode_bound"] == "compute"
    weights = weight_bytes(LLAMA_1B, 1.0, "dense")[1]
    kv = 2 * 16 * 2048 * 2 * 16  # the cache a token reads at context 16
    assert one["decode_seconds_per_token"] == pytest.approx((weights + kv) / 3.35e12 / hw.mfu_decode)
    assert one["prefill_bound"] == "bandwidth" and long["prefill_bound"] == "compute"  # 16 prompt tokens vs 16M
    assert many["decode_seconds_per_token"] < one["decode_seconds_per_token"] / 100
    assert long["decode_bound"] == "bandwidth"


def test_a_sparse_layout_cuts_decode_bytes_only_with_its_kernel():
    plan = build_plan(LLAMA_1B, 0.5, "geometric", pattern="2:4", tokens=2e10)
    on, off = (memory_report(plan, hardware_profile("h100", "2:4", sparse_kernel=k), batch=1, context=16)
               for k in (True, False))
    assert on["serving"]["layout"] == "sparse-24" and off["serving"]["layout"] == "dense"
    ratio = on["roofline"]["decode_seconds_per_token"] / off["roofline"]["decode_seconds_per_token"]
    assert 0.55 < ratio < 0.65  # half the values plus a bit per weight (the embedding is looked up, not read)


def test_breakeven_speedups_cost_what_the_baseline_costs():
    hours = {f"{p}_gpu_hours": [3.0, 10.0, 2.0] for p in ("train", "prefill", "decode")}
    dense = {f"{p}_gpu_hours_dense_kernels": [3.0, 12.0, 2.0] for p in ("train", "prefill", "decode")}
    df = pd.DataFrame({**hours, **dense, "final_sparsity": [0.0, 0.9, 0.5]})
    base = 8.0
    be = breakeven_speedups(df, base)
    assert be.loc[0].isna().all()  # dense rows: none
    assert math.isinf(be.loc[1, "breakeven_train"])  # 20 h of serving alone exceed the 8 h baseline
    row = df.loc[2]
    for p in ("train", "prefill", "decode"):
        others = sum(row[f"{q}_gpu_hours"] for q in ("train", "prefill", "decode") if q != p)
        x = be.loc[2, f"breakeven_{p}"]
        assert others + row[f"{p}_gpu_hours_dense_kernels"] / x == pytest.approx(base)
    assert 3 * 2.0 / be.loc[2, "breakeven_all"] == pytest.approx(base)


def test_target_2_2_example_says_what_would_make_sparse_win_in_dollars():
    """Issue 17's example: target 2.2, 1e13 lifetime tokens, H100. FLOP picks a sparse plan, US$ a dense one; the
    sparse plan's break-even speedups are finite where it can win, and the advice never points past 1e16."""
    flops = lifetime_optimal(target_loss=2.2, lifetime_tokens=1e13, sparsities=(0.0, 0.5, 0.9))
    usd = lifetime_optimal(target_loss=2.2, lifetime_tokens=1e13, objective="usd", sparsities=(0.0, 0.5, 0.9))
    assert flops.best["final_sparsity"] > 0 and usd.best["final_sparsity"] == 0
    chosen = flops.best
    assert chosen["breakeven_all"] > 1 and set(BREAKEVEN_COLUMNS) <= set(flops.table.columns)
    note = dense_wins_note(usd.candidates, "train_usd", "inference_usd", 1e13, "usd", 1e16)
    assert "larger lifetime" not in note and FLOP_VS_DOLLAR in note and "faster than on dense kernels by" in note


def test_gpu_counts_parse_and_bad_ones_name_the_flag():
    assert parse_gpus("h100x8", "--fits-on") == ("h100", 8) and parse_gpus("rtx4090", "--x") == ("rtx4090", 1)
    assert parse_gpus("a100-40x2", "--x") == ("a100-40", 2)


def test_memory_cli_json_and_one_line_errors(tmp_path, capsys):
    plan = build_plan(PRESETS["llama2-70m"], 0.5, tokens=1e9)
    path = dump_plan(plan, tmp_path / "p.yaml")
    assert main(["memory", str(path), "--gpu", "l4", "--devices", "2", "--batch", "8", "--context", "512",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["training"]["devices"] == 2 and out["serving"]["batch"] == 8 and out["roofline"]["context"] == 512
    assert out["gpu_memory_bytes"] == HARDWARE["l4"].memory_bytes and out["training"]["fits"] in (True, False)
    assert main(["memory", str(path), "--gpu", "h999"]) == 2
    assert "--gpu" in capsys.readouterr().err


def test_memory_cli_ends_with_the_panels_verdicts_naming_the_plans_pattern(tmp_path, capsys):
    """`summary_lines` is the one wording of the verdicts: `planner memory` ends with them and the app's memory panel
    shows them. The kernel named is the plan's pattern's, also where the layout would suggest another (a 2:4 plan on
    a profile that serves the bitmask layout)."""
    plan = build_plan(LLAMA_1B, 0.5, "geometric", pattern="2:4", tokens=2e10)
    r = memory_report(plan, hardware_profile("h100", "unstructured", sparse_kernel=True))
    assert r["serving"]["layout"] == "sparse-bitmask" and KERNELS["2:4"] in summary_lines(r)[1]
    assert main(["memory", str(dump_plan(plan, tmp_path / "p.yaml")), "--gpu", "h100"]) == 0
    lines = summary_lines(memory_report(plan, hardware_profile("h100", "2:4")))
    assert capsys.readouterr().out.rstrip("\n").endswith("\n".join(lines))
    assert lines[0].startswith("Training (") and lines[2].startswith("Roofline per token: prefill")


def test_frontier_fits_on_keeps_only_plans_that_fit(capsys):
    args = ["frontier", "--target-loss", "2.3", "--sparsities", "0,0.5", "--json"]
    assert main(args) == 0
    every = json.loads(capsys.readouterr().out)["frontier"]
    assert main(args + ["--fits-on", "l4x1", "--serve-on", "l4x1"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert kept["frontier"] and max(r["n_total"] for r in kept["frontier"]) < max(r["n_total"] for r in every)
    l4 = 0.9 * HARDWARE["l4"].memory_bytes
    assert all(16 * r["n_total"] < l4 for r in kept["frontier"])  # bf16 mixed-precision states alone must fit
    assert "breakeven_all" in kept["comparison"][0] and kept["flop_vs_dollar"] == FLOP_VS_DOLLAR
    assert all(isinstance(r["breakeven_train"], float) or r["breakeven_train"] in (None, "unreachable")
               for r in kept["frontier"])
    assert main(args + ["--fits-on", "h100y8"]) == 2 and "--fits-on" in capsys.readouterr().err


def test_a_plans_derived_memory_and_roofline_round_trip_and_version_1_still_loads():
    from planner.plan import plan_from_text, plan_to_dict, plan_to_yaml
    plan = build_plan(PRESETS["llama2-70m"], 0.5, pattern="2:4", tokens=1e9)
    mem, roof = plan.derived.memory, plan.derived.roofline
    assert mem.serve_layout == "sparse-24" and mem.gpu_memory_bytes == HARDWARE["h100"].memory_bytes
    assert mem.serve_weight_bytes == weight_bytes(plan.model, 0.5, "sparse-24")[0]
    assert roof.decode_bound == "bandwidth" and roof.batch == plan.hardware.serve_batch
    assert plan_from_text(plan_to_yaml(plan)) == plan
    v1 = plan_to_dict(plan) | {"schema_version": 1}  # without any field version 2 added
    for part, fields in (("derived", ("memory", "roofline")), ("hardware", ("memory_bytes", "hbm_bandwidth", "devices",
                         "serve_batch", "serve_dtype", "sparse_layout", "sparse_kernel")),
                         ("costs", [k for k in v1["costs"] if "hours_dense" in k or k in ("prefill_gpu_hours",
                                                                                           "decode_gpu_hours",
                                                                                           "train_days")])):
        for field in fields:
            del v1[part][field]
    assert plan_from_text(json.dumps(v1), fmt="json").derived.memory is None


def test_frontier_sparse_kernel_flag_cuts_a_sparse_plans_serving_dollars(capsys):
    args = ["frontier", "--target-loss", "2.6", "--sparsities", "0,0.9", "--json"]
    usd = {}
    for kernel in ("off", "on"):
        assert main(args + ["--sparse-kernel", kernel]) == 0
        best = json.loads(capsys.readouterr().out)["comparison"][0]
        assert best["final_sparsity"] == 0.9  # FLOP objective: the sparse plan, whatever the kernel
        usd[kernel] = best["inference_usd"]
    assert usd["on"] < usd["off"]
