"""Shared fixtures: the real datasets in ../shared/data, simulator availability."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PIMCAST_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_GOLDEN = SHARED_DATA.parent / "golden"


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n 2``), share the cores between the workers:
    each worker's PyTorch gets ``cores // workers`` threads instead of all of them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets (read by path, never copied); tests using it skip only where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_golden() -> Path:
    if not SHARED_GOLDEN.is_dir():
        pytest.skip(f"shared golden reference numbers not found at {SHARED_GOLDEN}")
    return SHARED_GOLDEN


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
