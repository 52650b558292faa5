"""litgpt: `litgpt pretrain --config` files for the plan's shape and budget. litgpt has no pruning.

A dense plan exports as itself. A sparse plan exports what litgpt can train for it: the dense partner at matched
N_avg on the same tokens (the seed's validation design: its loss should match the sparse run's), and the plan's own
shape trained dense (whose first gmp-start steps are the plan's dense phase, and which is the N_total baseline).
"""
from __future__ import annotations

import yaml

from planner.errors import PlannerInputError
from planner.export.base import Export, n_avg_note, plan_window, stem
from planner.ladder import dense_partner_shape
from planner.plan import TrainingPlan
from planner.shapes import ModelShape


def model_config(name: str, m: ModelShape, seq_len: int) -> dict:
    mlp = {"mlp_class_name": "LLaMAMLP"} if m.mlp == "swiglu" else {"mlp_class_name": "GptNeoxMLP",
                                                                     "gelu_approximate": "none"}
    return {"name": name, "block_size": seq_len, "vocab_size": m.vocab, "padded_vocab_size": m.vocab,
            "n_layer": m.n_layer, "n_head": m.n_head, "n_query_groups": m.kv_heads, "n_embd": m.d_model,
            "head_size": m.head_size, "intermediate_size": m.d_ff, "rotary_percentage": 1.0,
            "parallel_residual": False, "bias": False, "norm_class_name": "RMSNorm", "norm_eps": 1.0e-5,
            "rope_base": 10000, **mlp}


def pretrain_config(plan: TrainingPlan, name: str, m: ModelShape, devices: int) -> dict:
    b = plan.budget
    per_rank = b.batch_size // b.grad_accum
    if per_rank % devices:
        raise PlannerInputError(f"litgpt --devices {devices}: a micro-batch of {per_rank} sequences does not split "
                                f"evenly over {devices} devices")
    train = {"global_batch_size": b.batch_size, "micro_batch_size": per_rank // devices,
             "lr_warmup_steps": b.warmup_steps, "max_tokens": b.tokens, "max_seq_length": b.seq_len,
             "tie_embeddings": m.tied_embeddings, "max_norm": b.grad_clip, "min_lr": b.lr * b.min_lr_ratio,
             "save_interval": max(1, b.steps // 10), "log_interval": 1}
    return {"model_config": model_config(name, m, b.seq_len), "out_dir": f"out/pretrain/{name}",
            "precision": "bf16-mixed" if plan.run.dtype == "bfloat16" else "32-true", "train": train,
            "eval": {"interval": plan.run.eval_every, "max_iters": plan.run.eval_batches},
            "optimizer": {"class_path": "torch.optim.AdamW",
                          "init_args": {"lr": b.lr, "weight_decay": b.weight_decay, "betas": list(b.betas)}},
            "devices": devices, "seed": plan.run.seed}


def _dump(title: str, data: dict) -> str:
    return f"# {title}\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def build(plan: TrainingPlan, devices: int = 1) -> Export:
    m, b, convention, name = plan.model, plan.budget, plan.derived.n_convention, stem(plan)
    same = pretrain_config(plan, name, m, devices)
    launch = "litgpt pretrain --config {} --data <YourDataModule> --tokenizer_dir <dir>"
    exact = [f"budget: {b.tokens:,} tokens (max_tokens) in steps of {b.batch_size} x {b.seq_len} "
             f"(global_batch_size, max_seq_length), warm-up {b.warmup_steps} steps, cosine to min_lr "
             f"{b.lr * b.min_lr_ratio:g}, AdamW lr {b.lr:g} betas {tuple(b.betas)} weight decay "
             f"{b.weight_decay:g}, clipping {b.grad_clip:g}"]
    notes = ["litgpt's AdamW decays every parameter (norm scales too; this repository's trainer: matrices only) "
               "and its warm-up ramps from 0"]
    if plan.schedule.schedule().mean_density() == 1.0:
        files = {f"{name}.yaml": _dump(f"litgpt pretrain config for dense plan '{plan.name}' (sparseplan)", same)}
        exact.insert(0, f"model shape: {m.n_layer} layers, d_model {m.d_model}, {m.n_head} heads ({m.kv_heads} KV) "
                        f"of {m.head_size}, d_ff {m.d_ff}, vocab {m.vocab}; {n_avg_note(plan, plan.derived.n_avg)}")
        return Export("litgpt", files, launch.format(f"{name}.yaml"), plan.derived.n_avg, exact, [], notes)
    partner = dense_partner_shape(m.n_layer, m.n_head, plan.derived.n_avg, m.d_model, convention, m.vocab)
    n_partner = float(sum(partner.n_params(convention)))
    pname, start = f"{name}-dense-partner", plan_window(plan)[0]
    files = {f"{pname}.yaml": _dump(f"dense partner of sparse plan '{plan.name}' at matched N_avg (sparseplan)",
                                    pretrain_config(plan, pname, partner, devices)),
             f"{name}-same-shape.yaml": _dump(f"plan '{plan.name}' shape trained dense: its first {start} steps are "
                                              f"the plan's dense phase (sparseplan)", same)}
    exact[:0] = [f"{pname}: dense, {partner.n_layer} layers, d_model {partner.d_model}, {partner.n_head} heads, "
                 f"d_ff {partner.d_ff}, vocab {partner.vocab}: N {n_partner:,.0f} = the plan's N_avg "
                 f"{plan.derived.n_avg:,.0f} {(n_partner / plan.derived.n_avg - 1) * 100:+.3f}%",
                 f"{name}-same-shape: the plan's own shape (N {m.total:,}), dense"]
    approx = ["litgpt has no pruning: neither file is the sparse plan (the partner matches its N_avg); prune it with "
              "--to maxtext, torchao or llm-compressor"]
    return Export("litgpt", files, launch.format(f"{pname}.yaml"), n_partner, exact, approx, notes)
