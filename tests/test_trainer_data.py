"""Corpora and batches: the bundled Bible, user corpora, deterministic sampling, one-line errors."""
import json

import numpy as np
import pytest
import torch

from planner.errors import PlannerInputError
from train_backend.data import Batches, bible_text, open_tokens


def test_bible_is_read_from_the_package():
    text = bible_text()
    assert text.startswith("In the beginning God created the heavens and the earth.")
    assert "{" not in text and len(text) > 4_000_000


def test_bible_tokens_cached(tmp_path):
    tokens = open_tokens("bible", tmp_path, 256)
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
    assert bytes(tokens[:6].astype(np.uint8)) == b"In the"
    assert len(list(tmp_path.glob("*.bin"))) == 1
    assert len(open_tokens("bible", tmp_path, 256)) == len(tokens)


def test_text_file_folder_and_bin(tmp_path):
    (tmp_path / "a.txt").write_text("hello " * 200)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "1.txt").write_text("abc " * 100)
    (tmp_path / "docs" / "2.txt").write_text("xyz " * 100)
    assert len(open_tokens(str(tmp_path / "a.txt"), tmp_path / "cache", 256)) == 1200
    folder = open_tokens(str(tmp_path / "docs"), tmp_path / "cache", 256)
    assert len(folder) == 801 and bytes(folder[-4:].astype(np.uint8)) == b"xyz "
    ids = np.arange(1000, dtype=np.uint32) * 70
    ids.tofile(tmp_path / "toks.bin")
    (tmp_path / "toks.bin.json").write_text(json.dumps({"dtype": "uint32"}))
    tokens = open_tokens(str(tmp_path / "toks.bin"), tmp_path / "cache", 70_000)
    assert tokens.dtype == np.uint32 and np.array_equal(tokens, ids)


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"), ("empty", "empty"), ("vocab", "byte tokenizer"), ("range", "outside"),
    ("short", "too short"), ("odd", "whole number"),
])
def test_corpus_errors_are_one_line(tmp_path, case, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("tiny corpus")
    (tmp_path / "big.bin").write_bytes(np.array([5, 600], dtype=np.uint16).tobytes())
    (tmp_path / "odd.bin").write_bytes(b"abc")
    corpus, vocab = {"missing": ("nope.txt", 256), "empty": ("empty.txt", 256), "vocab": ("short.txt", 100),
                     "range": ("big.bin", 256), "short": ("short.txt", 256), "odd": ("odd.bin", 256)}[case]
    with pytest.raises(PlannerInputError) as err:
        tokens = open_tokens(str(tmp_path / corpus), tmp_path / "cache", vocab)
        Batches(tokens, 64, 16, 0.1, 0, corpus)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_batches_deterministic_and_resumable(tmp_path):
    tokens = open_tokens("bible", tmp_path, 256)
    a = Batches(tokens, 32, 4, 0.05, seed=3)
    assert len(a.val) == int(len(tokens) * 0.05) and len(a.train) + len(a.val) == len(tokens)
    first = a.next_train()
    assert torch.equal(first[0][:, 1:], first[1][:, :-1])  # targets are inputs shifted by one
    state = a.state_dict()
    later = [a.next_train() for _ in range(3)]
    b = Batches(tokens, 32, 4, 0.05, seed=3)
    assert torch.equal(b.next_train()[0], first[0])
    b.load_state_dict(json.loads(json.dumps(state)))
    assert all(torch.equal(b.next_train()[0], x) for x, _ in later)
    v1, v2 = list(a.val_batches(2, 4)), list(b.val_batches(2, 4))
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(v1, v2))
