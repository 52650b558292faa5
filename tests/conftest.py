"""Shared fixtures."""
import os
import tempfile

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
