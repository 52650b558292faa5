"""Shared fixtures and helpers (test modules import the helpers: `from conftest import one_line_stderr`)."""
import os
import tempfile
from pathlib import Path

import pytest

# The trainer caches this machine's CPU peak in the user's cache folder; the suite (and the trainers it starts, which
# inherit the environment) uses one of its own per worker, so it neither reads nor writes the user's.
os.environ["SPARSEPLAN_CACHE_DIR"] = tempfile.mkdtemp(prefix="sparseplan-test-cache-")


@pytest.fixture
def one_torch_thread():
    """One torch thread per pytest worker: the suite runs with -n 2 on two cores."""
    import torch  # only the trainer's tests pay for importing torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """An empty runs folder, the one the app's Runs page reads ($SPARSEPLAN_RUNS_DIR)."""
    from app.ui.runs_view import RUNS_DIR_ENV  # streamlit: only for the tests that ask for this folder
    monkeypatch.setenv(RUNS_DIR_ENV, str(tmp_path))
    return tmp_path


def one_line_stderr(capsys) -> str:
    """What a command wrote to stderr, checked to be one line without a traceback: how every user error reads."""
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def require_chromium():
    """Call at the top of a browser test module: skips it where Debian's chromium is missing, except under CI
    (CI=true), where a missing browser is a failure (a skipped browser suite would pass CI unseen)."""
    from bench.browser import CHROMIUM
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser test"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def _hypothesis_profiles():
    """CI replays a fixed example sequence (a red CI must be reproducible); `HYPOTHESIS_PROFILE=thorough` digs deeper."""
    import os

    from hypothesis import settings
    settings.register_profile("ci", derandomize=True)
    settings.register_profile("thorough", max_examples=2000)
    profile = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else None)
    if profile:
        settings.load_profile(profile)


_hypothesis_profiles()
