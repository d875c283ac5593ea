"""Shared fixtures: the real datasets in ../shared/data, simulator availability."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PIMCAST_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_GOLDEN = SHARED_DATA.parent / "golden"


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
