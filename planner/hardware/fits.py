"""Which candidates fit: training memory per device on K GPUs, serving memory on G GPUs (`frontier --fits-on h100x8
--serve-on h100x1`), as masks over the search's candidates (`planner.search`'s `keep`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from planner.candidates import family_dims
from planner.hardware.memory import DEFAULT_HEADROOM, serving_memory, training_parts
from planner.hardware.profiles import HARDWARE
from planner.plan import Hardware


def _rows(df: pd.DataFrame) -> dict:
    """Shape dimensions of every candidate row (family shapes by d_model) as flat arrays."""
    widths, at = np.unique(df["d_model"].to_numpy(int), return_inverse=True)
    return {k: (v[at, 0] if isinstance(v, np.ndarray) else v) for k, v in family_dims(widths).items()}


def train_bytes_per_device(df: pd.DataFrame, devices: int, seq_len: int, micro_batch: int = 1,
                           precision: str = "bf16-mixed", sharding: str = "zero3", checkpointing: bool = False):
    """Training bytes per device of every candidate: `micro_batch` sequences of `seq_len` per device."""
    parts = training_parts(_rows(df), micro_batch * seq_len, df["final_sparsity"].to_numpy(float) > 0, precision,
                           sharding, devices, checkpointing)
    return sum(parts.values())


def serve_bytes(df: pd.DataFrame, hardware: Hardware, context: int):
    """Serving bytes of every candidate: weights in its serving layout plus the KV cache of hardware.serve_batch
    sequences at `context`."""
    rows, density = _rows(df), 1.0 - df["final_sparsity"].to_numpy(float)
    dense = serving_memory(rows, density, "dense", context, hardware.serve_batch, hardware.serve_dtype)["total"]
    if not hardware.sparse_kernel:
        return dense
    sparse = serving_memory(rows, density, hardware.sparse_layout, context, hardware.serve_batch,
                            hardware.serve_dtype)["total"]
    return np.where(density < 1, sparse, dense)


def fits_mask(train_on: tuple[str, int] | None, serve_on: tuple[str, int] | None, hardware: Hardware, seq_len: int,
              context: int | None = None, headroom: float = DEFAULT_HEADROOM, **train):
    """keep(df) -> bool mask of the candidates that train on `train_on` = (gpu, K) and serve on `serve_on` = (gpu, G)
    within (1 - headroom) of each GPU's memory; `train` passes on to `train_bytes_per_device`."""
    def keep(df):
        ok = np.ones(len(df), bool)
        if train_on:
            gpu, k = train_on
            ok &= train_bytes_per_device(df, k, seq_len, **train) <= HARDWARE[gpu].memory_bytes * (1 - headroom)
        if serve_on:
            gpu, g = serve_on
            ok &= serve_bytes(df, hardware, context or seq_len) <= g * HARDWARE[gpu].memory_bytes * (1 - headroom)
        return ok
    keep.label = " and ".join(f"{flag} {gpu}x{n}" for flag, on in (("--fits-on", train_on), ("--serve-on", serve_on))
                              if on for gpu, n in [on])
    return keep
