"""Cost ledgers: FLOP conventions by hand, the three training ledgers, inference, money, hardware and memory."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from planner.hardware.costs import (DENSE_EQUIVALENT, EFFECTIVE, HARDWARE, LEDGER_COLUMNS, WALLCLOCK_EQUIVALENT,
                           attention_flops_per_token, cost_ledgers, final_mask_fraction, final_model_memory,
                           hardware_profile, ledger_arrays, matmul_params, measure_matmul_flops, serving_bytes,
                           this_machine)
from planner.plan import CostLedgers, resolve_schedule
from planner.schedules import Schedule
from planner.shapes import PRESETS, ModelShape

LLAMA_1B = PRESETS["llama2-1b"]  # 16 layers, d_model 2048, 8 heads of 256
PRUNABLE_1B = 1_139_277_824
H100 = hardware_profile("h100")


def stand_in(model, schedule, tokens=10**9, seq_len=2048):
    return SimpleNamespace(model=model, schedule=schedule, budget=SimpleNamespace(tokens=tokens, seq_len=seq_len))


def test_labels_name_the_ledger_columns():
    assert (DENSE_EQUIVALENT, EFFECTIVE, WALLCLOCK_EQUIVALENT) == ("dense-equivalent", "effective",
                                                                    "wall-clock-equivalent")
    assert set(LEDGER_COLUMNS.values()) <= set(CostLedgers.model_fields)


def test_matmul_params_are_the_prunable_weights_plus_a_tied_head():
    assert matmul_params(LLAMA_1B) == (0, PRUNABLE_1B)
    tied = LLAMA_1B.model_copy(update={"tied_embeddings": True})
    fixed, prunable = matmul_params(tied)
    assert fixed == 32000 * 2048 and prunable == PRUNABLE_1B - 32000 * 2048
    dense = Schedule(shape="dense")
    # tying shares storage, not work: the head still multiplies
    assert cost_ledgers(stand_in(tied, dense), H100) == cost_ledgers(stand_in(LLAMA_1B, dense), H100)


def test_dense_run_by_hand():
    """6 N per token for the weights plus 12 n_layer seq_len d_attn for QK^T and AV (no causal halving)."""
    tokens, seq = 10**9, 2048
    attn = 12 * 16 * seq * 2048
    assert attention_flops_per_token(16, 2048, seq, passes=3) == attn
    c = cost_ledgers(stand_in(LLAMA_1B, Schedule(shape="dense"), tokens, seq), H100, lifetime_tokens=1e9, context=4096)
    expected = tokens * (6 * PRUNABLE_1B + attn)
    assert c.train_flops_dense_equivalent == c.train_flops_effective == c.train_flops_wallclock_equivalent
    assert c.train_flops_dense_equivalent == pytest.approx(expected, rel=1e-12)
    assert c.inference_flops_per_token == pytest.approx(2 * PRUNABLE_1B + 4 * 16 * 4096 * 2048, rel=1e-12)
    assert c.lifetime_inference_flops == pytest.approx(1e9 * c.inference_flops_per_token)
    assert c.inference_context == 4096


def test_sparse_ledgers_by_hand():
    sched = Schedule.from_steps("geometric", 0.8, 2500, 12600, 25050, 100)
    tokens, attn = 200 * 10**9, 12 * 16 * 2048 * 2048
    c = cost_ledgers(stand_in(LLAMA_1B, sched, tokens), H100, lifetime_tokens=1e12)
    assert c.train_flops_dense_equivalent == pytest.approx(tokens * (6 * PRUNABLE_1B + attn))
    assert c.train_flops_effective == pytest.approx(tokens * (6 * PRUNABLE_1B * sched.mean_density() + attn))
    assert c.train_flops_wallclock_equivalent == c.train_flops_dense_equivalent  # unstructured: dense GEMMs
    assert c.inference_flops_per_token == pytest.approx(2 * PRUNABLE_1B * 0.2 + 4 * 16 * 2048 * 2048)


def test_two_four_speeds_up_only_the_sparse_phase_and_not_decode():
    plan = stand_in(PRESETS["llama2-70m"], Schedule(shape="geometric", final_sparsity=0.5, start=0.2, end=0.6))
    hw = hardware_profile("h100", "2:4")
    assert (hw.speedup_train, hw.speedup_prefill, hw.speedup_decode) == (1.2, 1.2, 1.0)
    base, fast = cost_ledgers(plan, H100, 1e12), cost_ledgers(plan, hw, 1e12)
    _, prunable = matmul_params(PRESETS["llama2-70m"])
    saved = 1e9 * 6 * prunable * 0.4 * (1 - 1 / 1.2)  # the last 40% of tokens run the final 2:4 mask
    assert base.train_flops_dense_equivalent - fast.train_flops_wallclock_equivalent == pytest.approx(saved)
    assert fast.train_flops_effective < fast.train_flops_wallclock_equivalent < fast.train_flops_dense_equivalent
    assert fast.inference_gpu_hours < base.inference_gpu_hours
    def decode(hardware):
        return cost_ledgers(plan, hardware, 1e12, prefill_share=0.0).inference_gpu_hours
    # decode gains no compute speedup; with the 2:4 kernel on (its default) it reads the sparse-24 layout's bytes
    assert decode(hw.model_copy(update={"sparse_kernel": False})) == pytest.approx(decode(H100))
    assert decode(hw) < decode(H100)


def test_speedups_never_apply_to_a_dense_model():
    plan = stand_in(PRESETS["llama2-70m"], Schedule(shape="dense"))
    fast = hardware_profile("h100", speedup_train=2.0, speedup_prefill=2.0, speedup_decode=2.0)
    assert cost_ledgers(plan, fast, 1e12) == cost_ledgers(plan, H100, 1e12)


def test_gpu_hours_and_dollars():
    hw = hardware_profile("a100", mfu_train=0.5, mfu_prefill=0.25, mfu_decode=0.1, usd_per_gpu_hour=3.0,
                          hbm_bandwidth=None)  # no bandwidth: FLOPs over peak (the roofline's bytes term drops)
    c = cost_ledgers(stand_in(LLAMA_1B, Schedule(shape="dense")), hw, lifetime_tokens=4e9, prefill_share=0.75)
    assert c.train_gpu_hours == pytest.approx(c.train_flops_wallclock_equivalent / (312e12 * 0.5) / 3600)
    per_token = c.inference_flops_per_token  # dense: executed FLOPs are the non-zero FLOPs
    hours = 4e9 * per_token * (0.75 / 0.25 + 0.25 / 0.1) / 312e12 / 3600
    assert c.inference_gpu_hours == pytest.approx(hours)
    assert (c.train_usd, c.inference_usd) == pytest.approx((3 * c.train_gpu_hours, 3 * c.inference_gpu_hours))


def test_array_version_equals_the_plan_version():
    """One formula, two callers: ledger_arrays over a batch equals cost_ledgers per plan."""
    model = PRESETS["llama2-70m"]
    fixed, prunable = matmul_params(model)
    scheds = [Schedule(shape="cubic", final_sparsity=s, start=a, end=b)
              for s, a, b in [(0.3, 0.1, 0.5), (0.9, 0.25, 0.75), (0.5, 0.0, 1.0)]]
    tokens = np.array([1e9, 3e10, 7e11])
    batch = ledger_arrays(tokens, fixed, prunable, [s.mean_density() for s in scheds],
                          [s.final_density for s in scheds], [1 - s.end for s in scheds], model.n_layer,
                          model.n_head * model.head_size, 1024, H100, 5e11, 512,
                          serving=serving_bytes(model, [s.final_density for s in scheds], H100))
    for i, sched in enumerate(scheds):
        one = cost_ledgers(stand_in(model, sched, int(tokens[i]), 1024), H100, 5e11, 512)
        for field, value in one.model_dump().items():
            assert np.broadcast_to(batch[field], (3,))[i] == pytest.approx(value, rel=1e-12)


def test_final_mask_fraction():
    assert final_mask_fraction(Schedule(shape="dense")) == 0.0
    assert final_mask_fraction(Schedule(shape="linear", final_sparsity=0.5, start=0.2, end=0.7)) == pytest.approx(0.3)
    piecewise = Schedule(shape="piecewise", points=[(0.1, 1.0), (0.4, 0.5), (0.9, 0.5)])
    assert final_mask_fraction(piecewise) == pytest.approx(0.6)


def test_plan_costs_through_resolve_schedule():
    model = PRESETS["llama2-70m"]
    sched = resolve_schedule(model, 1000, "geometric", 0.5, "compute", 0.25, 0.75)
    c = cost_ledgers(SimpleNamespace(model=model, schedule=sched, budget=SimpleNamespace(tokens=10**9, seq_len=512)),
                     H100)
    assert c.train_flops_effective < c.train_flops_dense_equivalent
    assert c.lifetime_inference_flops == 0 and c.inference_usd == 0


def test_hardware_profiles():
    assert HARDWARE["a100"].peak_flops == 312e12 and HARDWARE["h100"].peak_flops == 989e12
    assert HARDWARE["h200"].peak_flops == 989e12
    assert hardware_profile("H100", usd_per_gpu_hour=9.0).usd_per_gpu_hour == 9.0
    with pytest.raises(KeyError, match="unknown hardware"):
        hardware_profile("tpu")
    with pytest.raises(KeyError, match="pattern"):
        hardware_profile("h100", "1:8")
    with pytest.raises(ValueError, match="mfu_train"):
        hardware_profile("h100", mfu_train=1.5)


def test_this_machine_uses_a_measured_peak():
    peak = measure_matmul_flops(n=128, repeats=2)
    assert math.isfinite(peak) and peak > 0
    hw = this_machine(peak, "2:4")
    assert hw.peak_flops == peak and hw.name == "this machine" and hw.speedup_train == 1.2


def test_final_model_memory():
    model = LLAMA_1B
    total, prunable = model.total, model.prunable
    unpruned = (total - prunable) * 2
    mem = final_model_memory(model, [0.0, 0.5, 0.8], "bfloat16")
    assert np.all(mem["dense"] == total * 2)
    rows = 16 * (4 * 2048 + 2 * 8192 + 2048) + 32000  # output rows: q, k, v, o; gate, up; down; LM head
    shapes = (16 * 7 + 1) * 16  # compressed-tensors keeps each matrix's int64 shape; bitmask: int64 row offsets
    assert mem["bitmask"][1] == pytest.approx(unpruned + prunable * 0.5 * 2 + prunable / 8 + rows * 8 + shapes)
    pointers = (rows + 16 * 7 + 1) * 4
    assert mem["csr"][2] == pytest.approx(unpruned + round(prunable * 0.2) * (2 + 2) + pointers)
    assert np.isnan(mem["two_four"][[0, 2]]).all()
    assert mem["two_four"][1] == pytest.approx(unpruned + prunable / 2 * 2.25 + shapes)  # 2 bits per kept value
    assert mem["bitmask"][2] < mem["bitmask"][1] < mem["dense"][0] and mem["csr"][2] < mem["csr"][1]
    assert final_model_memory(model, 0.5, "float32")["dense"] == total * 4
    wide = ModelShape(n_layer=1, d_model=256, n_head=2, d_ff=70000, vocab=10)
    assert final_model_memory(wide, 0.9)["csr"] > final_model_memory(wide, 0.9, index_bytes=2)["csr"]


def test_distinct_phase_speedups_land_in_their_own_ledger():
    """Training, prefill and decode speedups set to different values, each ledger written out by hand: swapping any
    two phases, or pricing inference on the non-zero instead of the dense GEMMs, changes a number here."""
    hw = hardware_profile("h100", speedup_train=1.3, speedup_prefill=1.7, speedup_decode=1.1, mfu_train=0.4,
                          mfu_prefill=0.5, mfu_decode=0.05, usd_per_gpu_hour=3.0, hbm_bandwidth=None)  # FLOPs only
    sched = Schedule.from_steps("geometric", 0.8, 2500, 12600, 25050, 100)
    tokens, lifetime, share, ctx = 2e11, 1e12, 0.75, 4096
    c = cost_ledgers(stand_in(LLAMA_1B, sched, tokens), hw, lifetime_tokens=lifetime, context=ctx,
                     prefill_share=share)
    n, after = PRUNABLE_1B, 1 - 12600 / 25050  # the sparse phase: after the window, final mask in force
    attn_train, attn_infer = 12 * 16 * 2048 * 2048, 4 * 16 * ctx * 2048
    wallclock = tokens * (6 * n * ((1 - after) + after / 1.3) + attn_train)
    assert c.train_flops_wallclock_equivalent == pytest.approx(wallclock, rel=1e-12)
    assert c.train_gpu_hours == pytest.approx(wallclock / (989e12 * 0.4) / 3600, rel=1e-12)
    prefill_seconds = share * lifetime * (2 * n / 1.7 + attn_infer) / (989e12 * 0.5)
    decode_seconds = (1 - share) * lifetime * (2 * n / 1.1 + attn_infer) / (989e12 * 0.05)
    assert c.inference_gpu_hours == pytest.approx((prefill_seconds + decode_seconds) / 3600, rel=1e-12)
    assert c.inference_usd == pytest.approx(3.0 * c.inference_gpu_hours, rel=1e-12)
    assert c.train_usd == pytest.approx(3.0 * c.train_gpu_hours, rel=1e-12)
    assert c.lifetime_inference_flops == pytest.approx(lifetime * (2 * n * 0.2 + attn_infer), rel=1e-12)
    dense = cost_ledgers(stand_in(LLAMA_1B, Schedule(shape="dense"), tokens), hw, lifetime_tokens=lifetime,
                         context=ctx, prefill_share=share)  # a dense model gets no pattern speedup anywhere
    assert dense.train_flops_wallclock_equivalent == pytest.approx(tokens * (6 * n + attn_train), rel=1e-12)
    assert dense.inference_gpu_hours == pytest.approx(
        lifetime * (share * (2 * n + attn_infer) / (989e12 * 0.5) + (1 - share) * (2 * n + attn_infer)
                    / (989e12 * 0.05)) / 3600, rel=1e-12)


@pytest.mark.parametrize("target, lifetime", [(2.4, 1e11), (2.6, 1e12), (2.8, 1e13), (3.0, 1e14)])
def test_dollars_at_unstructured_1x_pick_a_dense_plan(target, lifetime):
    """On dense GEMMs (speedup 1.0) pruned weights still cost full price: the dollar objective picks a dense plan,
    while the FLOP objective (ideal sparse kernels) picks a sparse one when inference is heavy."""
    from planner.search import lifetime_optimal
    few = dict(sparsities=(0.0, 0.5, 0.8), lifetime_tokens=lifetime)
    usd = lifetime_optimal(target_loss=target, objective="usd", **few)
    assert usd.best["final_sparsity"] == 0.0
    assert usd.savings.loc["dense inference-aware", "saved_lifetime_usd"] == pytest.approx(0.0, abs=1e-6)
    if lifetime >= 1e12:
        assert lifetime_optimal(target_loss=target, objective="flops", **few).best["final_sparsity"] > 0
