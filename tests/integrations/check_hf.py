"""Hugging Face check (its own venv): `check_hf.py CASE_DIR [--load-hf]`.

The plain folder must load through `AutoModelForCausalLM.from_pretrained` with the trainer's logits (within 1e-4);
the compressed one must either load with exactly the plain folder's logits (a loader that decompresses sparse-bitmask)
or raise (one that does not): a loaded model with other logits is a silent random model and fails the check.
`--load-hf` also loads the compressed folder with train_backend.export.load_hf (run from the project's .venv).
"""
import sys
from pathlib import Path

import compressed_tensors
import torch
import transformers
from safetensors.torch import load_file


def logits(model, ids):
    with torch.no_grad():
        return model.eval()(ids).logits


def main(case, load_hf=False):
    case = Path(case)
    torch.set_num_threads(1)
    ref = load_file(str(case / "reference.safetensors"))
    auto = transformers.AutoModelForCausalLM
    plain = logits(auto.from_pretrained(case / "plain", dtype=torch.float32), ref["ids"])
    gap = (plain - ref["logits"]).abs().max().item()
    assert gap < 1e-4, f"plain folder: logits {gap:.2e} from the trainer's"
    try:
        packed = logits(auto.from_pretrained(case / "packed", dtype=torch.float32), ref["ids"])
    except Exception as exc:  # a loud refusal is a pass: the user is told, not handed a random model
        result = f"compressed folder refused ({type(exc).__name__}: {str(exc).splitlines()[0][:90]})"
    else:
        assert torch.equal(packed, plain), f"compressed folder loaded with logits {(packed - plain).abs().max():.2e} " \
                                           f"off: a silent random model"
        result = "compressed folder loads natively, identical logits"
    if load_hf:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from train_backend.export import load_hf as ours
        assert torch.equal(logits(ours(case / "packed"), ref["ids"]), plain), "load_hf: logits differ"
        result += "; load_hf: identical logits"
    print(f"transformers {transformers.__version__} + compressed-tensors {compressed_tensors.__version__} "
          f"{case.name}: plain folder within {gap:.1e} of the trainer's logits; {result}")


if __name__ == "__main__":
    main(sys.argv[1], "--load-hf" in sys.argv[2:])
