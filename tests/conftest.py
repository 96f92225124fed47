"""Settings shared by every test."""

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models run fastest single-threaded, especially on a busy shared CPU (thread hand-offs dominate)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
