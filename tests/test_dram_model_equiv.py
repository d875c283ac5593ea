"""The fast DRAM model (:mod:`pimcast.host.dram_model`: per-bank candidates and one vectorised
scan of packed keys per step) against the scan-every-busy-bank kernel kept as
:mod:`pimcast.host.dram_model_ref`: the command list (cycle, command, rank, bank group, bank,
row, column), every request's completion cycle and the statistics must be identical, on the
20-trace RTL-comparison suite (``benchmarks/dram_fast_vs_rtl.py``) under several presets, rank
counts, queue depths and with duplicate merging on and off, and on random mixed traces."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from pimcast.hdl.dram.timing import AddressMapping, load_preset
from pimcast.host.dram_model import FastDRAMModel
from pimcast.host.dram_model_ref import ReferenceDRAMModel

_spec = importlib.util.spec_from_file_location(
    "dram_fast_vs_rtl_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "dram_fast_vs_rtl.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)


def _same(t, mapping, queue, merge, addr, wr, cyc):
    a = FastDRAMModel(t, mapping, queue=queue, merge_duplicates=merge).run(addr, wr, cyc, record_commands=True)
    b = ReferenceDRAMModel(t, mapping, queue=queue, merge_duplicates=merge).run(addr, wr, cyc,
                                                                              record_commands=True)
    assert len(a.commands) == len(b.commands)
    for k, (x, y) in enumerate(zip(a.commands, b.commands)):
        assert x == y, f"command {k} differs: fast {x} reference {y}"
    assert np.array_equal(a.completion, b.completion)
    assert a.stats() | {"requests_per_second": 0} == b.stats() | {"requests_per_second": 0}
    return a


CONFIGS = [("ddr4-3200", 2, 32, "rochrababgco"), ("ddr4-3200", 1, 8, "rochrababgco"),
           ("ddr4-2400", 4, 16, "robarabgchco"), ("hbm2", 2, 32, "rochrababgco"),
           ("ddr4-3200", 2, 3, "rorabacobgch")]


@pytest.mark.parametrize("preset, ranks, queue, mapping", CONFIGS, ids=lambda v: str(v))
def test_identical_commands_on_the_rtl_suite(preset, ranks, queue, mapping):
    t = load_preset(preset, ranks=ranks)
    suite = _bench.trace_suite(t, 1500, seed=ranks + queue)
    assert len(suite) >= 20
    for tr in suite:
        for merge in {tr["merge"], not tr["merge"]}:
            _same(t, mapping, queue, merge, tr["addr"], tr["is_write"], tr["cycle"])


@pytest.mark.parametrize("seed", range(6))
def test_identical_commands_on_random_mixes(seed):
    rng = np.random.default_rng(100 + seed)
    preset = ("ddr4-3200", "ddr4-2400", "hbm2")[seed % 3]
    t = load_preset(preset, ranks=1 + seed % 4)
    m = AddressMapping(("rochrababgco", "rorabacobgch", "robarabgchco")[seed % 3], t)
    n = 3000
    def rand(k):
        return m.encode(ra=rng.integers(0, t.ranks, k), bg=rng.integers(0, t.bankgroups, k),
                        ba=rng.integers(0, t.banks_per_group, k), ro=rng.integers(0, 64, k),
                        co=rng.integers(0, t.requests_per_row, k)).astype(np.int64)

    hot = rand(40)                                              # duplicates and same-address hazards
    addr = np.where(rng.random(n) < 0.3, hot[rng.integers(0, 40, n)], rand(n))
    wr = rng.random(n) < rng.uniform(0, 0.6)
    cyc = np.sort(rng.integers(0, int(rng.integers(1, 6)) * n, n))  # idle gaps, bursts, refreshes
    for merge in (False, True):
        _same(t, m, int(rng.integers(1, 40)), merge, addr.astype(np.uint64), wr, cyc)


def test_the_equivalence_check_can_fail():
    # a different queue depth changes the schedule: the comparison above would notice
    t = load_preset("ddr4-3200", ranks=2)
    tr = _bench.trace_suite(t, 600, seed=1)[0]
    with pytest.raises(AssertionError):
        a = FastDRAMModel(t, queue=32).run(tr["addr"], record_commands=True)
        b = ReferenceDRAMModel(t, queue=4).run(tr["addr"], record_commands=True)
        assert a.commands == b.commands


def test_unused_rank_code_is_an_error_naming_the_address():
    t = load_preset("ddr4-3200", ranks=3)
    m = AddressMapping("robarabgchco", t)      # rank bits in the middle: code 3 lies inside the capacity
    a = int(m.encode(ra=2, ro=1)) + (1 << m.shifts["ra"])
    assert a < m.capacity
    with pytest.raises(ValueError, match=rf"{hex(a)} at index 1 decodes to rank 3 .* 3 ranks"):
        FastDRAMModel(t, m).run(np.array([0, a], np.uint64))


def test_identical_commands_across_cycle_base_moves():
    # the int32 timing state counts cycles from a base that moves up every 2**28 cycles: bursts of
    # requests ~2**28 cycles apart (with every refresh in the idle gaps) must schedule exactly as the
    # int64 reference kernel
    t = load_preset("ddr4-3200", ranks=2)
    rng = np.random.default_rng(7)
    m = AddressMapping("rochrababgco", t)
    addr, cyc = [], []
    for k, start in enumerate((0, (1 << 28) - 3, (1 << 28) + 40_000, (1 << 29) + 17, 3 << 29)):
        n = 200
        addr.append(m.encode(ra=rng.integers(0, 2, n), bg=rng.integers(0, 4, n), ba=rng.integers(0, 4, n),
                             ro=rng.integers(0, 8, n), co=rng.integers(0, 128, n)))
        cyc.append(start + np.sort(rng.integers(0, 400, n)))
    a = _same(t, m, 32, False, np.concatenate(addr).astype(np.uint64), rng.random(1000) < 0.3,
              np.concatenate(cyc).astype(np.int64))
    assert a.completion.max() > 3 << 29 and a.refreshes > 100_000


def test_identical_commands_at_the_largest_timing_gap():
    # the int32 keys' cycle field is sized for the largest gap the constructor accepts (1,535
    # cycles): with tRFC there, refreshes under saturation, bursts and idle gaps of every length
    # around the base's moves must still schedule exactly as the int64 reference kernel
    import dataclasses

    t = dataclasses.replace(load_preset("ddr4-3200", ranks=2), tRFC=1535)
    rng = np.random.default_rng(21)
    m = AddressMapping("rochrababgco", t)
    n = 4000
    addr = m.encode(ra=rng.integers(0, 2, n), bg=rng.integers(0, 4, n), ba=rng.integers(0, 4, n),
                    ro=rng.integers(0, 8, n), co=rng.integers(0, 128, n)).astype(np.uint64)
    gaps = np.where(rng.random(n) < 0.02, rng.integers(0, 5000, n), 0)
    a = _same(t, m, 32, False, addr, rng.random(n) < 0.3, np.cumsum(gaps).astype(np.int64))
    assert a.refreshes > 10


def test_age_field_rebase_and_its_limit(monkeypatch):
    # the packed keys' age field (request index minus a moving base): compiled with a 4-bit field
    # (a window of 15 requests) the kernel moves the base hundreds of times and must still
    # schedule exactly as the reference; where a queued request is passed by more than 15 younger
    # ones, run() refuses with a clear error instead of mis-ordering
    import numba

    from pimcast.host import dram_model as dm

    monkeypatch.setattr(dm, "_AGE_BITS", 4)
    monkeypatch.setattr(dm, "_kernel", numba.njit(dm._kernel.py_func))   # globals frozen at compile
    t = load_preset("ddr4-3200", ranks=1)
    rng = np.random.default_rng(3)
    m = AddressMapping("rochrababgco", t)
    n = 2000
    addr = m.encode(ra=np.zeros(n, int), bg=rng.integers(0, 4, n), ba=rng.integers(0, 4, n),
                    ro=rng.integers(0, 4, n), co=rng.integers(0, 128, n)).astype(np.uint64)
    _same(t, m, 2, False, addr, rng.random(n) < 0.2, np.zeros(n, np.int64))
    with pytest.raises(RuntimeError, match=r"stayed queued while 15 younger requests passed it.*queue \(now 32\)"):
        FastDRAMModel(t, m, queue=32).run(addr)


@pytest.mark.parametrize("preset, ranks", [("ddr4-3200", 4), ("hbm2", 2)])
def test_identical_commands_at_the_largest_field_values(preset, ranks):
    # the kernel reads each request's fields from one packed word: the top rows, columns, banks and
    # ranks of the geometry must come back exactly (the commands carry them)
    t = load_preset(preset, ranks=ranks)
    rng = np.random.default_rng(11)
    m = AddressMapping("rochrababgco", t)
    n = 1500
    top = lambda hi, k: np.where(rng.random(k) < 0.7, hi - 1, rng.integers(0, hi, k))  # noqa: E731
    addr = m.encode(ra=top(t.ranks, n), bg=top(t.bankgroups, n), ba=top(t.banks_per_group, n),
                    ro=top(t.rows, n), co=top(t.requests_per_row, n)).astype(np.uint64)
    a = _same(t, m, 16, False, addr, rng.random(n) < 0.3, np.zeros(n, np.int64))
    assert max(c[5] for c in a.commands) == t.rows - 1
    assert max(c[2] for c in a.commands) == t.ranks - 1


@pytest.mark.parametrize("seed", range(3))
def test_identical_commands_when_the_previous_winner_is_withdrawn(seed):
    # a step without a timing change folds only the re-evaluated banks into the previous winner;
    # when the previous winner's own candidate changes (a row hit arriving at a bank whose PRE was
    # the winner withdraws that PRE) the kernel must scan every lane again. Few rows, few banks and
    # paced arrivals make that frequent: the schedule must still equal the reference's, and the
    # full scans must outnumber every other reason for one (the first step, the two refresh commands
    # of each refresh, a timing-base move per 1,024 cycles), so this path did run
    t = load_preset("ddr4-3200", ranks=1)
    rng = np.random.default_rng(300 + seed)
    m = AddressMapping("rochrababgco", t)
    n = 3000
    addr = m.encode(ra=np.zeros(n, int), bg=rng.integers(0, 2, n), ba=rng.integers(0, 2, n),
                    ro=rng.integers(0, 3, n), co=rng.integers(0, 128, n)).astype(np.uint64)
    cyc = np.cumsum(rng.integers(0, 2 * (seed + 1), n)).astype(np.int64)
    a = _same(t, m, 8, False, addr, rng.random(n) < 0.3, cyc)
    other = 1 + 2 * a.refreshes + (int(cyc[0]) + a.cycles) // 1024 + 1
    assert a.full_scans > other + 20, (a.full_scans, other)


def test_saturated_gathers_rarely_scan_every_lane():
    # under saturation nearly every step folds the banks it changed into the winner found during
    # the previous step's timing update: full scans stay a small fraction of the steps
    t = load_preset("ddr4-3200", ranks=2)
    tr = _bench.trace_suite(t, 4000, seed=5)[0]
    a = _same(t, "rochrababgco", 32, False, tr["addr"], tr["is_write"], tr["cycle"])
    assert a.steps > 3 * 4000 * 0.9 and a.full_scans < 0.02 * a.steps, (a.steps, a.full_scans)
