"""cocotb bank-controller benches on Icarus and Verilator: directed per-rule tests, random
traffic with back-pressure, refresh under saturation, a long run (slow)."""
from __future__ import annotations

import pytest

from pimcast.sim.tb_bankctl import run_bankctl
from pimcast.sim.toolchain import have_icarus, have_verilator

pytestmark = pytest.mark.rtl

SIMS = [
    pytest.param("icarus", marks=pytest.mark.skipif(not have_icarus(), reason="Icarus missing")),
    pytest.param("verilator", marks=pytest.mark.skipif(not have_verilator(), reason="Verilator missing")),
]

#: the variant under test: DDR4-3200, 2 ranks (rank-switch rules), fewer rows, short tREFI
CONFIG = dict(preset="ddr4-3200", ranks=2, rows=1024, queue=8, read_buffer=8, tREFI=2400)


def _stat(res, name):
    return next(s for s in res.stats if s["test"] == name)


@pytest.mark.parametrize("simulator", SIMS)
def test_bankctl_directed_random_refresh(simulator):
    count = "1500" if simulator == "icarus" else "4000"
    res = run_bankctl(simulator, env={"PIMCAST_BANKCTL_COUNT": count, "PIMCAST_SEED": "5"}, **CONFIG)
    assert res.error is None, res.error
    # 10 tests (test_trace_replay is skipped outside replay mode but counted)
    assert (res.tests, res.failures) == (11, 0), res.build_dir
    lat = _stat(res, "latency")
    assert lat["closed_read"] == 22 + 22 + 4 + 3 and lat["row_hit"] == 22 + 4 + 3
    assert _stat(res, "random")["requests"] == int(count)
    assert _stat(res, "refresh_saturation")["refreshes"] >= 6


@pytest.mark.slow
@pytest.mark.skipif(not have_verilator(), reason="Verilator missing")
def test_bankctl_long_random_verilator():
    res = run_bankctl("verilator", env={"PIMCAST_BANKCTL_LONG": "30000", "PIMCAST_SEED": "77"},
                      testcase="test_long_random", **CONFIG)
    assert (res.tests, res.failures) == (1, 0), res.build_dir
    assert _stat(res, "long")["requests"] == 30000


@pytest.mark.skipif(not have_icarus(), reason="Icarus missing")
def test_bankctl_single_rank_ddr4_2400_icarus():
    res = run_bankctl("icarus", preset="ddr4-2400", ranks=1, rows=256, queue=4, read_buffer=4, tREFI=1800,
                      env={"PIMCAST_BANKCTL_COUNT": "600", "PIMCAST_SEED": "9"},
                      testcase=["test_read_latency_closed_bank_and_row_hit", "test_turnarounds_twtr_rd_to_wr_twr_trc",
                                "test_random_traffic"])
    assert (res.tests, res.failures) == (3, 0), res.build_dir
    lat = _stat(res, "latency")
    assert lat["closed_read"] == 16 + 16 + 4 + 3 and lat["row_hit"] == 16 + 4 + 3
