"""litgpt check (its own venv): `check_litgpt.py EXPORT_DIR STEPS`.

Runs `litgpt pretrain --config` on each exported config inside the export folder (its files, its byte-level tokenizer,
two text files in data/) for STEPS optimizer steps, and asserts that it trains, evaluates and counts the parameters
the export's README gives.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from importlib.metadata import version


def main(folder, steps):
    folder = Path(folder)
    expect = json.loads((folder / "expect.json").read_text())
    litgpt_bin = Path(sys.executable).with_name("litgpt")
    results = []
    for config, n_params in expect["params"].items():
        train = yaml.safe_load((folder / config).read_text())["train"]
        tokens = steps * train["global_batch_size"] * train["max_seq_length"]
        cmd = [str(litgpt_bin), "pretrain", "--config", config, "--train.max_tokens", str(tokens),
               "--eval.max_iters", "2", "--data.num_workers", "0"]
        out = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        log = out.stdout + out.stderr
        assert out.returncode == 0, f"{config}: litgpt exited {out.returncode}\n{log[-2000:]}"
        total = int(re.search(r"Total parameters: ([\d,]+)", log).group(1).replace(",", ""))
        assert total == n_params, f"{config}: litgpt counts {total:,} parameters, the export {n_params:,}"
        assert f"step {steps} |" in log, f"{config}: no step {steps} in litgpt's log"
        val = float(re.search(r"Final evaluation \| val loss: ([\d.]+)", log).group(1))
        results.append(f"{config}: {total:,} parameters (the export's), final val loss {val:.3f}")
    print(f"litgpt {version('litgpt')}, {steps} steps from the export folder: {'; '.join(results)}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
