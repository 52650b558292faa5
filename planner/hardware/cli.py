"""`python -m planner memory PLAN`: does the plan fit, for training and for serving, and how fast does it serve."""
from __future__ import annotations

import json

from planner.hardware.memory import DEFAULT_HEADROOM, PRECISIONS, SHARDINGS
from planner.hardware.profiles import HARDWARE, SOURCES, hardware_profile
from planner.hardware.report import GB, memory_report, summary_lines
from planner.plan import load_plan


def register(sub) -> None:
    from planner.cli import fraction, positive_int  # the dispatcher's flag types (it imports this module lazily)
    p = sub.add_parser("memory", help="training and serving memory per GPU, GPUs needed, roofline time per token")
    p.add_argument("plan")
    p.add_argument("--gpu", choices=sorted(HARDWARE), default="h100")
    p.add_argument("--devices", type=positive_int, help="training GPUs (default 8); the plan's micro-batch is split "
                                                        "over them")
    p.add_argument("--micro-batch", type=positive_int, help="training sequences per GPU (default: the plan's "
                                                            "micro-batch split over --devices)")
    p.add_argument("--batch", type=positive_int, help="serving batch (sequences); default 32")
    p.add_argument("--context", type=positive_int, help="serving context (tokens); default the plan's seq_len")
    p.add_argument("--precision", choices=sorted(PRECISIONS), help="default: the trainer's for the plan's dtype")
    p.add_argument("--sharding", choices=sorted(SHARDINGS), default="zero3")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing per block")
    p.add_argument("--headroom", type=fraction, default=DEFAULT_HEADROOM, help="share of GPU memory kept free")
    p.add_argument("--serve-dtype", choices=["bfloat16", "float16", "float8"], default="bfloat16")
    p.add_argument("--sparse-kernel", choices=["on", "off"],
                   help="whether a kernel reads the sparse layout (default: on for 2:4, off for unstructured)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_memory)


def run_memory(a) -> int:
    plan = load_plan(a.plan)
    over = {"serve_dtype": a.serve_dtype}
    if a.sparse_kernel:
        over["sparse_kernel"] = a.sparse_kernel == "on"
    hardware = hardware_profile(a.gpu, plan.schedule.pattern, **over)
    if a.headroom >= 1:
        from planner.errors import PlannerInputError
        raise PlannerInputError(f"--headroom {a.headroom} leaves no memory; give a fraction below 1")
    r = memory_report(plan, hardware, a.devices, a.batch, a.context, a.precision, a.sharding, a.checkpointing,
                      a.headroom, a.micro_batch)
    r["source"] = SOURCES[a.gpu]
    if a.json:
        print(json.dumps(r))
        return 0
    t, s, gb = r["training"], r["serving"], GB
    print(f"{plan.name} on {r['gpu']} ({r['gpu_memory_bytes'] / gb:.1f} GB, {r['headroom']:.0%} kept free; "
          f"{r['source']})")
    print(f"\nTraining, {t['precision']}, {t['sharding']} over {t['devices']} GPUs, {t['sequences_per_device']} "
          f"sequences per GPU{', checkpointed' if t['checkpointing'] else ''}: per GPU")
    for part, size in t["parts"].items():
        if size:
            print(f"  {part:<18}{size / gb:10.2f} GB")
    print(f"  {'total':<18}{t['total'] / gb:10.2f} GB")
    print(f"\nServing, {s['dtype']}, batch {s['batch']} x context {s['context']}, by layout:")
    for name, m in s["layouts"].items():
        print(f"  {name:<15} weights {m['weights'] / gb:8.3f} GB + KV {m['kv_cache'] / gb:8.3f} GB = "
              f"{m['total'] / gb:8.3f} GB; largest batch per GPU {m['max_batch_per_gpu']:.0f}; "
              f"GPUs for batch {s['batch']}: {m['min_gpus']:.0f}")
    print("\n" + "\n".join(summary_lines(r)))  # the verdicts, as the app's memory panel words them
    return 0
