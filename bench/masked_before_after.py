"""Masked gradients, before and after: train the same plans with the same seeds on two checkouts of the trainer.

    python bench/masked_before_after.py CHECKOUT OUT.json   # CHECKOUT: a worktree of the commit to measure

Runs the tiny preset (`planner plan --preset tiny`) and one longer sparse run (80% final sparsity, 3 x 96, ~16
tokens per N_avg) through `train_backend.train.run` of CHECKOUT, one torch thread. Every call of
`clip_grad_norm_` is watched: the share of the squared gradient norm that sits on pruned weights, and whether
clipping was active. `python bench/masked_before_after.py --report BEFORE.json AFTER.json` writes the
`## Trainer: masked gradients` section of bench/RESULTS.md.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

LONG_STEPS = 3000


def plans():
    from planner.ladder import tiny_plan
    from planner.plan import Budget, RunConfig, make_plan, resolve_schedule
    from planner.shapes import ModelShape
    model = ModelShape(n_layer=3, d_model=96, n_head=4, d_ff=288, vocab=256)
    sched = resolve_schedule(model, LONG_STEPS, "geometric", 0.8, "compute", 0.25, 0.75,
                             every_steps=LONG_STEPS // 50)
    budget = Budget(tokens=LONG_STEPS * 16 * 128, seq_len=128, batch_size=16, steps=LONG_STEPS, lr=3e-3,
                    warmup_steps=LONG_STEPS // 20)
    long = make_plan(model, sched, budget, name="sparse80", run=RunConfig(seed=0, eval_every=LONG_STEPS // 4,
                                                                          eval_batches=16))
    return {"tiny": tiny_plan(), "sparse80": long}


def measure(checkout: Path, out: Path):
    sys.path.insert(0, str(checkout.resolve()))
    import torch
    import train_backend.pruning as pruning
    from train_backend.train import Options, run
    torch.set_num_threads(1)
    pruners, watch = [], []
    init, clip = pruning.Pruner.__init__, torch.nn.utils.clip_grad_norm_

    def keep_pruner(self, *a, **k):
        init(self, *a, **k)
        pruners.append(self)

    def watched_clip(params, max_norm, *a, **k):
        params = list(params)
        p = pruners[-1]
        total = sum(float(q.grad.double().pow(2).sum()) for q in params if q.grad is not None)
        dead = 0.0 if p.masks is None else sum(float(q.grad[~m].double().pow(2).sum())
                                               for q, m in zip(p.params, p.masks))
        watch.append({"pruned_share": dead / total, "clipped": total ** 0.5 > max_norm})
        return clip(params, max_norm, *a, **k)

    pruning.Pruner.__init__, torch.nn.utils.clip_grad_norm_ = keep_pruner, watched_clip
    result = {"checkout": str(checkout)}
    for name, plan in plans().items():
        watch.clear()
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            s = run(plan, Options(runs_dir=Path(tmp), threads=1))
        result[name] = {"final_val_loss": s["final_val_loss"], "final_train_loss": s["final_train_loss"],
                        "final_density": s["final_density"], "n_avg": s["n_avg_measured"],
                        "tokens": s["tokens"], "seconds": time.perf_counter() - t0,
                        "steps": plan.budget.steps, "watch": list(watch)}
        print(name, {k: v for k, v in result[name].items() if k != "watch"}, flush=True)
    out.write_text(json.dumps(result))


def report(before_path: Path, after_path: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.results import cpu_model, write_section
    before, after = json.loads(before_path.read_text()), json.loads(after_path.read_text())
    rows = []
    for name in ("tiny", "sparse80"):
        b, a = before[name], after[name]
        w = b["watch"]
        at = {k: w[min(k, len(w)) - 1]["pruned_share"] for k in (80, len(w) // 2, len(w))}
        rows.append(f"| {name} | {b['steps']} | {b['tokens'] / b['n_avg']:.1f} | {b['final_val_loss']:.4f} | "
                    f"{a['final_val_loss']:.4f} | {a['final_val_loss'] - b['final_val_loss']:+.4f} | "
                    f"{b['final_train_loss']:.4f} / {a['final_train_loss']:.4f} | "
                    + ", ".join(f"{v:.1%} at step {k}" for k, v in at.items()) + " | "
                    f"{max(x['pruned_share'] for x in w):.1%} | "
                    f"{sum(x['clipped'] for x in w)} / {sum(x['clipped'] for x in a['watch'])} of {len(w)} | "
                    f"{max(x['pruned_share'] for x in a['watch']):.0%} |")
    text = "\n".join([
        "## Trainer: masked gradients",
        "",
        f"Same plans and seeds, one torch thread, {cpu_model()}, trained by `bench/masked_before_after.py` on two "
        f"checkouts: before = `{Path(before['checkout']).name}` (commit f6433f3: masks re-applied after AdamW, "
        f"pruned weights still get gradients), after = `{Path(after['checkout']).name}` (pruned gradients zeroed "
        "before clipping and AdamW). `tiny` is `planner plan --preset tiny` (2 x 64, 50% final); `sparse80` is "
        f"3 x 96 (0.41M params), 80% final sparsity, geometric over 25-75% of compute, {LONG_STEPS} steps of "
        "16 x 128 tokens. Val loss over 16 (sparse80) / 4 (tiny) held-out batches, nats per byte. The pruned share "
        "is the fraction of the squared gradient norm (all parameters) that sits on pruned weights, as "
        "`clip_grad_norm_` saw it before the fix; 'clipped' counts the steps whose total norm exceeded grad_clip (1.0).",
        "",
        "| plan | steps | D / N_avg | val loss before | val loss after | after - before | train loss before / after "
        "| pruned share of grad norm^2 before | max | clipped steps (pruned present) | pruned share after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Reading: before the fix most of the gradient norm at high sparsity sat on weights that were about to be "
        "re-zeroed, so clipping fired on about half of the sparse80 steps instead of 2% and shrank the live "
        "weights' steps. The final val loss moved little: -0.0011 nats for sparse80 and under 0.0001 for tiny (one "
        "seed each; seed-to-seed noise was not measured here, so the sign is not established). The fix changes "
        "the optimizer's trajectory a lot and the loss at these scales little.",
        "",
    ])
    write_section("## Trainer: masked gradients", text)
    print(text)


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        report(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        measure(Path(sys.argv[1]), Path(sys.argv[2]))
