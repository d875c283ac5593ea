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


# Test files by cost, heaviest first: approximate worker-seconds of each file in `make test` on a
# 2-core AMD EPYC (Zen 1, 2.0 GHz) host, measured 2026-11-28 from the per-test durations (after
# the cuts made that day). `make test` runs pytest-xdist with `--dist loadfile
# --no-loadscope-reorder`, so files are handed to the two workers in collection order; putting the
# long simulator runs first (longest-processing-time-first) keeps both workers busy to the end.
# Without it xdist orders files by their number of tests, and the few-test, many-minute simulator
# files came last (one worker idle for minutes). Unlisted files keep their collection order after
# these; the table only schedules, it selects or skips nothing.
FILE_COST_S = {
    "test_sim_core.py": 1350, "test_reduce.py": 850, "test_export_lint.py": 1250,
    "test_sim_reduce.py": 750, "test_fp.py": 650, "test_train.py": 380, "test_core_window.py": 350,
    "test_sim_bankctl.py": 330, "test_dram_rtl_suite.py": 300, "test_rtl_backend.py": 460,
    "test_rtl_backend_bankgroup.py": 540,
    "test_core_gr_val.py": 240, "test_llm_real.py": 200, "test_synth.py": 190,
    "test_bankctl_hbm2.py": 190, "test_verify_fp.py": 170, "test_sim_fma.py": 150,
    "test_core_sgd_val.py": 100,
}


def pytest_collection_modifyitems(session, config, items):
    """Order the collected tests by FILE_COST_S (stable: a file's own order is kept)."""
    items.sort(key=lambda item: -FILE_COST_S.get(Path(str(item.fspath)).name, 0))


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


def _device_ops(dev, table, idx, offs, psw, dy, casted) -> dict:
    """One round of every device operation the PIM core runs, on a fresh table ``t`` (and ``dy``):
    forward, weighted forward, tensor-cast backward over ``dy``, SCATTER_SGD of the backward rows,
    read-back; returns the results and ``stats()`` (for rtl vs golden comparisons)."""
    dev.alloc("t", *table.shape)
    dev.write("t", table)
    dev.alloc("dy", *dy.shape)
    dev.write("dy", dy)
    dev.reset_stats()
    r = {"fwd": dev.gather_reduce("t", idx, offs),
         "wfwd": dev.gather_reduce("t", idx, offs, per_sample_weights=psw),
         "bwd": dev.gather_reduce("dy", casted.casted_index, casted.casted_offsets[:casted.unique.numel()])}
    dev.scatter_sgd("t", casted.unique, r["bwd"], 0.25)
    r["table"] = dev.read("t")
    r["stats"] = dev.stats()
    return r


@pytest.fixture
def device_ops():
    """:func:`_device_ops`: the rtl backend tests' round of device operations."""
    return _device_ops


def _rtl_golden_round(rtl, gold, table, idx, lengths, g, prepare=None) -> tuple:
    """Bags of ``lengths`` over ``idx``: their offsets, random per-sample weights and ``dY`` (drawn
    from ``g`` in that order) and the tensor cast; one :func:`_device_ops` round on ``rtl`` and on
    ``gold`` (``prepare(dev)`` first on each).  Returns ``(out, offs, dy, cast)``, ``out`` keyed
    ``"rtl"`` / ``"golden"``; the rtl device stays open."""
    import torch

    from pimcast.models import tensor_cast as tc

    offs = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    psw = torch.randn(idx.numel(), generator=g)
    dy = torch.randn(len(lengths), table.shape[1], generator=g)
    c = tc.cast(idx, offs)
    out = {}
    for name, dev in (("rtl", rtl), ("golden", gold)):
        if prepare is not None:
            prepare(dev)
        out[name] = _device_ops(dev, table, idx, offs, psw, dy, c)
    return out, offs, dy, c


@pytest.fixture
def rtl_golden_round():
    """:func:`_rtl_golden_round`: workload arrays + one device-operation round on rtl and golden."""
    return _rtl_golden_round

