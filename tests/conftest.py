"""Shared fixtures."""
import pytest


@pytest.fixture
def one_torch_thread():
    """One torch thread per pytest worker: the suite runs with -n 2 on two cores."""
    import torch  # only the trainer's tests pay for importing torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
