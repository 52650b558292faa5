"""litgpt: `litgpt pretrain --config` files for the plan's shape and budget. litgpt has no pruning.

A dense plan exports as itself. A sparse plan exports what litgpt can train for it: the dense partner at matched
N_avg on the same tokens (the seed's validation design: its loss should match the sparse run's), and the plan's own
shape trained dense (whose first gmp-start steps are the plan's dense phase, and which is the N_total baseline).
Each config is complete for `litgpt pretrain` run in the export folder: a custom `model_config` (with the
`model_name` key litgpt's CLI requires), the TextFiles data module, the csv logger (litgpt's default, tensorboard, is
an extra), and `tokenizer_dir: .`; a byte-level plan (vocab 256) ships its tokenizer there, any other vocabulary is
the user's to bring.
"""
from __future__ import annotations

import json

import yaml

from planner.errors import PlannerInputError
from planner.export.base import Export, n_avg_note, plan_window, stem
from planner.ladder import dense_partner_shape
from planner.plan import TrainingPlan
from planner.preflight import BYTE_VOCAB
from planner.shapes import ModelShape

VERSION = "0.5.13"  # the release tests/integrations pretrains the export with
BOS_BYTE = 2  # STX: litgpt's TextFiles starts every file with a BOS id, and a byte vocabulary has no spare id


def _byte_chars() -> list[str]:
    """The printable character that byte-level BPE (GPT-2's table, the `tokenizers` ByteLevel step) gives each byte."""
    kept = {*range(33, 127), *range(161, 173), *range(174, 256)}  # printable Latin-1 stays itself
    extra = iter(range(256, 512))
    return [chr(b) if b in kept else chr(next(extra)) for b in range(256)]


def byte_tokenizer() -> dict[str, str]:
    """tokenizer.json and tokenizer_config.json of a tokenizer whose id for each byte is the byte (this repository's
    byte tokenizer), in the Hugging Face `tokenizers` format litgpt reads."""
    chars = _byte_chars()
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
             "vocab": {c: b for b, c in enumerate(chars)}, "merges": []}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": level, "post_processor": None, "decoder": level, "model": model}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": chars[BOS_BYTE], "add_bos_token": False}
    return {"tokenizer.json": json.dumps(tok, ensure_ascii=False), "tokenizer_config.json": json.dumps(config)}


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
    return {"model_name": name, "model_config": model_config(name, m, b.seq_len), "out_dir": f"out/pretrain/{name}",
            "precision": "bf16-mixed" if plan.run.dtype == "bfloat16" else "32-true", "train": train,
            "eval": {"interval": plan.run.eval_every, "max_iters": plan.run.eval_batches},
            "optimizer": {"class_path": "torch.optim.AdamW",
                          "init_args": {"lr": b.lr, "weight_decay": b.weight_decay, "betas": list(b.betas)}},
            "devices": devices, "seed": plan.run.seed, "tokenizer_dir": ".", "logger_name": "csv",
            "data": {"class_path": "litgpt.data.TextFiles", "init_args": {"train_data_path": "data"}}}


def _dump(title: str, data: dict) -> str:
    return f"# {title}\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def build(plan: TrainingPlan, devices: int = 1) -> Export:
    m, b, convention, name = plan.model, plan.budget, plan.derived.n_convention, stem(plan)
    same = pretrain_config(plan, name, m, devices)
    byte = m.vocab == BYTE_VOCAB
    launch = ("# in this folder, with two or more .txt files in data/ (the first is the validation split):\n"
              "litgpt pretrain --config {}" + ("" if byte else "  --tokenizer_dir <your tokenizer folder>"))
    exact = [f"budget: {b.tokens:,} tokens (max_tokens) in steps of {b.batch_size} x {b.seq_len} "
             f"(global_batch_size, max_seq_length), warm-up {b.warmup_steps} steps, cosine to min_lr "
             f"{b.lr * b.min_lr_ratio:g}, AdamW lr {b.lr:g} betas {tuple(b.betas)} weight decay "
             f"{b.weight_decay:g}, clipping {b.grad_clip:g}"]
    notes = ["litgpt's AdamW decays every parameter (norm scales too; this repository's trainer: matrices only) "
             "and its warm-up ramps from 0",
             f"tokenizer: byte-level, id = byte, in tokenizer.json here; TextFiles starts each file with BOS = byte "
             f"{BOS_BYTE} (STX), which this repository's trainer does not add" if byte else
             f"tokenizer: bring your own with vocabulary {m.vocab} (set tokenizer_dir); the plan does not ship one",
             f"verified with litgpt {VERSION} (tests/integrations)"]
    tokenizer = byte_tokenizer() if byte else {}
    if plan.schedule.schedule().mean_density() == 1.0:
        files = {f"{name}.yaml": _dump(f"litgpt pretrain config for dense plan '{plan.name}' (sparseplan)", same),
                 **tokenizer}
        exact.insert(0, f"model shape: {m.n_layer} layers, d_model {m.d_model}, {m.n_head} heads ({m.kv_heads} KV) "
                        f"of {m.head_size}, d_ff {m.d_ff}, vocab {m.vocab}; {n_avg_note(plan, plan.derived.n_avg)}")
        return Export("litgpt", files, launch.format(f"{name}.yaml"), plan.derived.n_avg, exact, [], notes)
    partner = dense_partner_shape(m.n_layer, m.n_head, plan.derived.n_avg, m.d_model, convention, m.vocab)
    n_partner = float(sum(partner.n_params(convention)))
    pname, start = f"{name}-dense-partner", plan_window(plan)[0]
    files = {f"{pname}.yaml": _dump(f"dense partner of sparse plan '{plan.name}' at matched N_avg (sparseplan)",
                                    pretrain_config(plan, pname, partner, devices)),
             f"{name}-same-shape.yaml": _dump(f"plan '{plan.name}' shape trained dense: its first {start} steps are "
                                              f"the plan's dense phase (sparseplan)", same), **tokenizer}
    exact[:0] = [f"{pname}: dense, {partner.n_layer} layers, d_model {partner.d_model}, {partner.n_head} heads, "
                 f"d_ff {partner.d_ff}, vocab {partner.vocab}: N {n_partner:,.0f} = the plan's N_avg "
                 f"{plan.derived.n_avg:,.0f} {(n_partner / plan.derived.n_avg - 1) * 100:+.3f}%",
                 f"{name}-same-shape: the plan's own shape (N {m.total:,}), dense"]
    approx = ["litgpt has no pruning: neither file is the sparse plan (the partner matches its N_avg); prune it with "
              "--to maxtext, torch-ao or llm-compressor"]
    return Export("litgpt", files, launch.format(f"{pname}.yaml"), n_partner, exact, approx, notes)
