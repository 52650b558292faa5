#!/usr/bin/env bash
# One prepared GPU check (about 5 minutes on one H100/H200-class GPU), for a session that has a CUDA machine:
#   1. the trainer's CUDA tests (bf16, torch.compile, no per-step host sync, memory vs max_memory_allocated);
#   2. a ~20M-parameter sparse plan (6 x 512, SwiGLU 1536, 50% geometric), 200 steps, bf16 autocast, torch.compile,
#      DDP through torchrun on 1 GPU, then a Hugging Face export of the result;
#   3. prints step time, tokens/s, MFU (data-sheet peak for this GPU's exact name), memory estimate vs measured.
# Usage: bash bench/gpu_check.sh [OUT_DIR]   (PYTHON=... to choose the interpreter; OUT_DIR defaults to $OUT or /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${1:-${OUT:-/tmp}}/gpu_check
mkdir -p "$OUT_DIR"
export PYTHONPATH=$PWD
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device visible')"
"$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}')"

echo "== 1. CUDA tests"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -p no:xdist -x -k "cuda" \
    tests/test_trainer_mfu.py tests/test_trainer_memory.py -s 2>&1 | grep -v "^$" | tail -15 || echo "CUDA tests FAILED (above)"

echo "== 2. 20M-parameter plan: bf16, compile, DDP on 1 GPU, export"
"$PY" - "$OUT_DIR/plan.yaml" <<'EOF'
import sys
from planner.plan import Budget, RunConfig, dump_plan, make_plan, resolve_schedule
from planner.shapes import ModelShape
shape = ModelShape(n_layer=6, d_model=512, n_head=8, d_ff=1536, vocab=256)
steps = 200
sched = resolve_schedule(shape, steps, "geometric", 0.5, "compute", 0.25, 0.75, every_steps=10)
budget = Budget(tokens=steps * 32 * 512, seq_len=512, batch_size=32, steps=steps, lr=1e-3, warmup_steps=20)
plan = make_plan(shape, sched, budget, name="gpu-check",
                 run=RunConfig(eval_every=100, eval_batches=4, dtype="bfloat16", compile=True))
print(f"plan: {sum(shape.n_params('total')) / 1e6:.1f}M parameters, {steps} steps of 32 x 512 tokens")
dump_plan(plan, sys.argv[1])
EOF
rm -rf "$OUT_DIR/runs" "$OUT_DIR/hf"
START=$(date +%s)
timeout 240 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m train_backend train \
    "$OUT_DIR/plan.yaml" --device cuda --runs-dir "$OUT_DIR/runs" --run-id gpu-check \
    > "$OUT_DIR/train.out" 2> "$OUT_DIR/train.err" || { echo "training FAILED:"; tail -20 "$OUT_DIR/train.err"; exit 1; }
echo "trained in $(( $(date +%s) - START )) s (compile included)"
"$PY" -m train_backend export gpu-check --hf "$OUT_DIR/hf" --runs-dir "$OUT_DIR/runs"
ls -la "$OUT_DIR/hf"

echo "== 3. figures"
"$PY" - "$OUT_DIR/runs/gpu-check" <<'EOF'
import json, statistics, sys
from pathlib import Path
run = Path(sys.argv[1])
s = json.loads((run / "summary.json").read_text())
lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
steady = lines[20:]  # past compilation and warm-up
tps = statistics.median(m["tokens_per_s"] for m in steady)
mfu = [m["mfu"] for m in steady if m["mfu"] is not None]
est, measured = s["memory_estimate"], s["peak_memory_measured"]
print(f"device {s['device']}, dtype {s['dtype']}, status {s['status']}, steps {s['steps']}")
print(f"median step time {32 * 512 / tps * 1e3:.1f} ms ({tps:,.0f} tokens/s) over steps 20-199")
print(f"MFU median {statistics.median(mfu):.1%} (peak {s['peak_flops']})" if mfu else f"MFU: {s['peak_flops_source']}")
print(f"memory: estimate {est['total'] / 2**30:.2f} GiB, {s['peak_memory_measured_as']} {measured / 2**30:.2f} GiB "
      f"(ratio {est['total'] / measured:.2f})")
print(f"final train loss {s['final_train_loss']:.3f}, val loss {s['final_val_loss']:.3f}, density {s['final_density']:.3f}")
EOF
