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
    # 12 tests (test_trace_replay is skipped outside replay mode but counted)
    assert (res.tests, res.failures) == (13, 0), res.build_dir
    lat = _stat(res, "latency")
    assert lat["closed_read"] == 22 + 22 + 4 + 3 and lat["row_hit"] == 22 + 4 + 3
    assert _stat(res, "random")["requests"] == int(count)
    assert _stat(res, "refresh_saturation")["refreshes"] >= 6


@pytest.mark.skipif(not have_icarus(), reason="Icarus missing")
def test_bankctl_corner_mix_icarus():
    """Corner addresses (every field 0 or maximum), tag 0, back-to-back same-bank reads, the queue
    full under response back-pressure, refreshes mid-stream: zero violations, all data right."""
    res = run_bankctl("icarus", env={"PIMCAST_SEED": "13"}, testcase="test_corner_mix", **CONFIG)
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (1, 0), res.build_dir
    st = _stat(res, "corner_mix")
    assert st["refreshes_mid_stream"] >= 1 and st["req_blocked_cycles"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not have_verilator(), reason="Verilator missing")
def test_bankctl_long_random_verilator():
    res = run_bankctl("verilator", env={"PIMCAST_BANKCTL_LONG": "30000", "PIMCAST_SEED": "77"},
                      testcase="test_long_random", **CONFIG)
    assert (res.tests, res.failures) == (1, 0), res.build_dir
    assert _stat(res, "long")["requests"] == 30000


@pytest.mark.parametrize("simulator", [SIMS[0]])
def test_bankctl_stream_row0_bank0_core_config(simulator):
    """Regression: 16 reads at 0, 64, ..., 960 (row 0 / bank 0 / tag 0 on) with the PIM core's
    controller parameters hung on Icarus (``always @*`` blocks never evaluated at time 0 under
    ``-g2012``). On Verilator the same test runs in ``test_bankctl_directed_random_refresh``."""
    res = run_bankctl(simulator, preset="ddr4-3200", ranks=1, queue=16, read_buffer=16, tag_bits=5,
                      testcase="test_stream_row0_bank0_tag0")
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (1, 0), res.build_dir


@pytest.mark.skipif(not have_icarus(), reason="Icarus missing")
def test_bankctl_single_rank_ddr4_2400_icarus():
    res = run_bankctl("icarus", preset="ddr4-2400", ranks=1, rows=256, queue=4, read_buffer=4, tREFI=1800,
                      env={"PIMCAST_BANKCTL_COUNT": "600", "PIMCAST_SEED": "9"},
                      testcase=["test_read_latency_closed_bank_and_row_hit", "test_turnarounds_twtr_rd_to_wr_twr_trc",
                                "test_random_traffic"])
    assert (res.tests, res.failures) == (3, 0), res.build_dir
    lat = _stat(res, "latency")
    assert lat["closed_read"] == 16 + 16 + 4 + 3 and lat["row_hit"] == 16 + 4 + 3


def test_rtl_replay_rejects_bad_addresses():
    from pimcast.hdl.dram.timing import load_preset
    from pimcast.host.dram_rtl import replay_rtl

    t = load_preset("ddr4-3200", ranks=1)
    with pytest.raises(ValueError, match="not aligned"):
        replay_rtl(t, [0, 65])
    with pytest.raises(ValueError, match="beyond the capacity"):
        replay_rtl(t, [t.capacity_bytes])


@pytest.mark.slow
@pytest.mark.skipif(not have_verilator(), reason="Verilator missing")
def test_rtl_replay_matches_fast_model_roughly(tmp_path):
    """`--model rtl` path: a random trace and a stream through the full-size controller; the
    commands dumped are clean for the reference checker; cycles near the fast model's."""
    import numpy as np

    from pimcast.hdl.dram.timing import AddressMapping, check_sequence, load_preset
    from pimcast.host.dram_model import FastDRAMModel
    from pimcast.host.dram_rtl import replay_rtl

    t = load_preset("ddr4-3200", ranks=2)
    m = AddressMapping("rochrababgco", t)
    rng = np.random.default_rng(3)
    n = 1500
    a = rng.integers(0, m.capacity // 64, n) * 64
    w = rng.random(n) < 1 / 3
    dump = tmp_path / "cmds.csv"
    s = replay_rtl(t, a, w, queue=16, dump_commands=dump)
    assert (s["reads"], s["writes"], s["bytes"]) == (int((~w).sum()), int(w.sum()), 64 * n)
    lines = dump.read_text().splitlines()[1:]
    cmds = [(int(c), k, int(r), int(g), int(b), int(ro), int(co))
            for c, k, r, g, b, ro, co in (x.split(",") for x in lines)]
    assert check_sequence(cmds, t) == []
    assert sum(1 for c in cmds if c[1] == "ACT") == s["acts"]
    f = FastDRAMModel(t, "rochrababgco", queue=16).run(a, w).stats()
    assert 0.75 < s["cycles"] / f["cycles"] < 1.33, (s, f)
