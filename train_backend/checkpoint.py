"""Atomic checkpoints: the last good one and the one before it.

A checkpoint file is a sha256 digest followed by a torch.save payload; it is written to a temporary file, fsynced and
renamed into place, after the previous checkpoint has been renamed to ckpt.prev.pt. A file that fails its digest or
does not unpickle is reported in one line and the previous checkpoint is used instead.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

LATEST, PREVIOUS = "ckpt.pt", "ckpt.prev.pt"


class CheckpointError(RuntimeError):
    pass


def rng_state() -> dict:
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}


def set_rng_state(state: dict):
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def _fsync_dir(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(run_dir: Path, state: dict):
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getbuffer()  # a view: no second copy of the serialised state in memory
    tmp = run_dir / f"{LATEST}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(hashlib.sha256(payload).digest())
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # a full disk: give its space back (SQLite needs some to record the failure)
        tmp.unlink(missing_ok=True)
        raise
    finally:
        payload.release()
    if (run_dir / LATEST).exists():
        os.replace(run_dir / LATEST, run_dir / PREVIOUS)
    os.replace(tmp, run_dir / LATEST)
    _fsync_dir(run_dir)


def _read(path: Path) -> dict:
    blob = path.read_bytes()
    digest, payload = blob[:32], blob[32:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError("checksum mismatch")
    try:
        with warnings.catch_warnings():  # torch's advice to load untrusted files with weights_only=False: never
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        what = re.search(r"unsupported GLOBAL (\S+)", str(exc))
        raise CheckpointError(f"holds {f'a {what[1]} object' if what else 'objects'} besides tensors and plain "
                              f"values (refused, not run)") from None


def load(run_dir: Path, quarantine: bool = True) -> dict:
    """The newest readable checkpoint of a run; CheckpointError when none is. A corrupt file is renamed to
    `<name>.corrupt` (when `quarantine`: one process of a DDP job does it) so no later save rotates it over a good one.
    """
    tried = []
    for name in (LATEST, PREVIOUS):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = _read(path)
        except Exception as exc:  # any unreadable file: fall back to the previous checkpoint
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if quarantine:
                os.replace(path, run_dir / f"{name}.corrupt")
            tried.append(f"{name}: {reason}")
            continue
        if tried:  # said once, and only when a fallback worked; otherwise the error below says it
            print(f"checkpoint {'; '.join(tried)} is corrupt; resuming from {name}", file=sys.stderr)
        return state
    raise CheckpointError(f"run folder {run_dir}: no readable checkpoint"
                          + (f" ({'; '.join(tried)} corrupt)" if tried else ""))
