"""HBM2 pseudo-channel support of the bank controller (two 32 B bursts per 64 B request).

Quick checks run on the Amaranth simulator (no HDL build): the controller issues each request as
two column commands at consecutive column addresses, assembles the read bursts into one 64 B
response, splits write data into two bursts, and its command list is the fast model's
(:class:`pimcast.host.dram_model.FastDRAMModel`, the specification) cycle for cycle. The cocotb
benches (Icarus / Verilator) and the ``pimcast dram replay --standard hbm2 --model rtl`` check are
marked ``rtl``; the longer ones ``slow``.
"""
from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Fragment

from pimcast.hdl.dram.bankctl import BankController
from pimcast.hdl.dram.timing import check_sequence, load_preset
from pimcast.sim.bankctl_pysim import run_bankctl
from pimcast.sim.dram_device import initial_data, initial_request_data
from pimcast.sim.toolchain import have_icarus, have_verilator


def _small(**kw) -> BankController:
    kw = dict(dict(rows=64, queue=4, read_buffer=4), **kw)
    return BankController(load_preset("hbm2"), **kw)


def test_hbm2_ports_and_latency_facts():
    dut = _small()
    Fragment.get(dut, None)
    t = dut.timing
    assert (dut.bursts_per_request, dut.burst_bits) == (2, 256)
    assert len(dut.dq_r.data) == len(dut.dq_w.data) == t.burst_bytes * 8 == 256
    assert len(dut.resp.payload.data) == 512 and len(dut.req.payload.data) == 512
    # second burst of a request: tCCD_L after the first (same bank)
    assert dut.burst_gap == t.tCCD_L
    assert dut.closed_read_latency == t.tRCD + t.tCCD_L + t.CL + t.BL2 + 3 == 43
    assert dut.hit_read_latency == t.tCCD_L + t.CL + t.BL2 + 3 == 29
    # DDR4 unchanged: one burst, 512-bit data port
    d4 = BankController(load_preset("ddr4-3200", ranks=1))
    Fragment.get(d4, None)
    assert (d4.bursts_per_request, d4.burst_bits, len(d4.dq_r.data)) == (1, 512, 512)
    assert d4.closed_read_latency == 22 + 22 + 4 + 3


def test_hbm2_closed_read_two_bursts_assembled():
    dut = _small()
    t = dut.timing
    addr = int(dut.mapping.encode(bg=1, ba=2, ro=5, co=3))
    acc, resp, cmds, _ = run_bankctl(dut, [(addr, 0, 0, 7)], max_cycles=150)
    assert [c[1] for c in cmds] == ["ACT", "RD", "RD"]
    assert cmds[1][0] - cmds[0][0] == t.tRCD and cmds[2][0] - cmds[1][0] == t.tCCD_L
    # consecutive column addresses (co * 2 + burst) * BL
    assert [c[6] for c in cmds[1:]] == [6 * t.burst_length, 7 * t.burst_length]
    assert cmds[1][2:6] == cmds[2][2:6] == (0, 1, 2, 5)
    assert len(resp) == 1 and resp[0][1] == 7
    want = initial_request_data(t, 0, 1, 2, 5, 3)
    assert resp[0][2] == want
    lo, hi = want & ((1 << 256) - 1), want >> 256      # burst 0 in the low half (byte 0 first)
    assert lo == initial_data(0, 1, 2, 5, 6 * t.burst_length) & ((1 << 256) - 1)
    assert hi == initial_data(0, 1, 2, 5, 7 * t.burst_length) & ((1 << 256) - 1)
    assert resp[0][0] - acc[0] == dut.closed_read_latency


def test_hbm2_write_split_into_bursts_then_read_back():
    dut = _small()
    t = dut.timing
    a = int(dut.mapping.encode(bg=3, ba=1, ro=9, co=2))
    b = int(dut.mapping.encode(bg=3, ba=1, ro=9, co=3))
    data = (0xAB << 504) | (1 << 300) | 0x1234_5678
    acc, resp, cmds, store = run_bankctl(dut, [(a, 1, data, 1), (a, 0, 0, 2), (b, 0, 0, 3)], max_cycles=300)
    assert [c[1] for c in cmds] == ["ACT", "WR", "WR", "RD", "RD", "RD", "RD"]
    BL = t.burst_length
    assert store[(0, 3, 1, 9, 4 * BL)] == data & ((1 << 256) - 1)
    assert store[(0, 3, 1, 9, 5 * BL)] == data >> 256
    # the read of the written address waits for the write's last burst (tWTR_L)
    assert cmds[3][0] - cmds[2][0] == t.wr_to_rd(True)
    got = {tag: d for _, tag, d in resp}
    assert got[2] == data
    assert got[3] == initial_request_data(t, 0, 3, 1, 9, 3)
    assert [r[1] for r in resp] == [2, 3]


def _random_trace(dut, n, seed, write_frac=0.3, cols=4, rows=3):
    t, amap = dut.timing, dut.mapping
    rng = np.random.default_rng(seed)
    a = amap.encode(bg=rng.integers(0, t.bankgroups, n), ba=rng.integers(0, 2, n),
                    ro=rng.integers(0, rows, n), co=rng.integers(0, cols, n)).astype(np.uint64)
    w = rng.random(n) < write_frac
    return a, w


def _data_requests(dut, a, w, seed):
    """Requests with random write data, and the expected data of every read (by tag)."""
    t = dut.timing
    rng = np.random.default_rng(seed + 100)
    reqs, mem, expect = [], {}, {}
    for i, (x, we) in enumerate(zip(a.tolist(), w.tolist())):
        if we:
            d = int(rng.integers(0, 1 << 62)) << 400 | int(rng.integers(0, 1 << 62)) | i << 200
            mem[x] = d
            reqs.append((x, 1, d, 0))
        else:
            tag = i % 256
            f = dut.mapping.decode(np.array([x], np.uint64))
            expect[tag] = mem.get(x, initial_request_data(t, 0, int(f["bg"][0]), int(f["ba"][0]),
                                                          int(f["ro"][0]), int(f["co"][0])))
            reqs.append((x, 0, 0, tag))
    return reqs, expect


@pytest.mark.parametrize("seed", [1, 2])
def test_hbm2_command_list_equals_fast_model(seed):
    """Random reads / writes (row hits, conflicts, same-address hazards, interleaved bursts of
    different banks): the RTL issues exactly the fast model's commands, cycle for cycle, and
    every read returns the last data written to its address. (The fast model does not model the
    read-return credit or response back-pressure: 8 entries, always ready.)"""
    from pimcast.host.dram_model import FastDRAMModel

    dut = _small(queue=6, read_buffer=8)
    t = dut.timing
    a, w = _random_trace(dut, 120, seed)
    reqs, expect = _data_requests(dut, a, w, seed)
    acc, resp, cmds, _ = run_bankctl(dut, reqs, max_cycles=6000)
    assert len(resp) == int((~w).sum())
    for _, tag, d in resp:
        assert d == expect[tag], tag
    got = FastDRAMModel(t, dut.mapping.scheme, queue=6).run(a, w, record_commands=True).commands
    assert len(got) == len(cmds)
    bad = next((k for k, (x, y) in enumerate(zip(got, cmds)) if x != y), None)
    assert bad is None, f"command {bad}: fast {got[bad]} rtl {cmds[bad]}"
    assert check_sequence(cmds, t) == []
    assert sum(1 for c in cmds if c[1] in ("RD", "WR")) == 2 * len(reqs)


def test_hbm2_back_pressure_small_read_buffer_data():
    """Response back-pressure with a 3-entry read-return buffer (the credit binds; bursts of
    different requests interleave): every read returns its data, in first-RD order."""
    dut = _small(queue=6, read_buffer=3)
    a, w = _random_trace(dut, 100, 7, write_frac=0.25)
    reqs, expect = _data_requests(dut, a, w, 7)
    acc, resp, cmds, _ = run_bankctl(dut, reqs, max_cycles=8000, ready=lambda c: (c * 7919) % 10 < 4)
    assert len(resp) == int((~w).sum())
    for _, tag, d in resp:
        assert d == expect[tag], tag
    rds = [c for c in cmds if c[1] == "RD"]
    assert len(rds) == 2 * len(resp)
    # bursts of different requests interleaved somewhere: a first burst not followed by its second
    BL = dut.timing.burst_length
    assert any(x[6] % (2 * BL) == 0 and (y[2:6], y[6]) != (x[2:6], x[6] + BL) for x, y in zip(rds, rds[1:]))


def test_hbm2_rejections_name_the_value():
    import dataclasses

    with pytest.raises(ValueError, match="burst of 128 B"):
        BankController(dataclasses.replace(load_preset("hbm2"), burst_length=16))
    with pytest.raises(ValueError, match="queue depth"):
        _small(queue=0)
    with pytest.raises(ValueError, match="read_buffer"):
        _small(read_buffer=65)


# ------------------------------------------------------------------------------------------------
# cocotb benches and the `--model rtl` replay

SIMS = [
    pytest.param("icarus", marks=pytest.mark.skipif(not have_icarus(), reason="Icarus missing")),
    pytest.param("verilator", marks=pytest.mark.skipif(not have_verilator(), reason="Verilator missing")),
]

#: HBM2 pseudo-channel, fewer rows, short tREFI (refresh several times per run)
CONFIG = dict(preset="hbm2", ranks=1, rows=1024, queue=8, read_buffer=8, tREFI=1200)
TESTS = ["test_read_latency_closed_bank_and_row_hit", "test_row_hits_paced_by_tccd",
         "test_stream_row0_bank0_tag0", "test_act_spacing_trrd_and_tfaw", "test_turnarounds_twtr_rd_to_wr_twr_trc",
         "test_same_address_ordering", "test_refresh_interval_idle", "test_random_traffic",
         "test_refresh_under_saturation"]


def _stat(res, name):
    return next(s for s in res.stats if s["test"] == name)


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", SIMS)
def test_hbm2_cocotb_directed_random_refresh(simulator):
    """Directed rule tests, random traffic with random arrival and back-pressure (scoreboard:
    every read returns the last write), refresh under saturation; the device model checks every
    command against the rule table (zero violations)."""
    from pimcast.sim.tb_bankctl import run_bankctl

    count = "800" if simulator == "icarus" else "2000"
    res = run_bankctl(simulator, env={"PIMCAST_BANKCTL_COUNT": count, "PIMCAST_SEED": "3"},
                      testcase=TESTS, **CONFIG)
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (len(TESTS), 0), res.build_dir
    lat = _stat(res, "latency")
    assert lat["closed_read"] == 14 + 4 + 20 + 2 + 3 and lat["row_hit"] == 4 + 20 + 2 + 3
    assert _stat(res, "random")["requests"] == int(count)
    assert _stat(res, "refresh_saturation")["refreshes"] >= 3


@pytest.mark.rtl
@pytest.mark.skipif(not have_icarus(), reason="Icarus missing")
def test_hbm2_cocotb_corner_mix_icarus():
    from pimcast.sim.tb_bankctl import run_bankctl

    res = run_bankctl("icarus", env={"PIMCAST_SEED": "13"}, testcase="test_corner_mix", **CONFIG)
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (1, 0), res.build_dir
    st = _stat(res, "corner_mix")
    assert st["refreshes_mid_stream"] >= 1 and st["req_blocked_cycles"] > 0


def _csv_commands(path):
    rows = [r.split(",") for r in path.read_text().splitlines()[1:]]
    return [(int(r[0]), r[1], int(r[2])) + ((int(r[3]), int(r[4]), int(r[5]), int(r[6]))
                                           if r[1] not in ("PREA", "REF") else (0, 0, -1, -1)) for r in rows]


@pytest.mark.rtl
@pytest.mark.skipif(not have_icarus(), reason="Icarus missing")
def test_hbm2_cli_replay_rtl_equals_fast(tmp_path, capsys):
    """``pimcast dram replay --standard hbm2 --model rtl`` on a few traces: the dumped command list
    is the fast model's, cycle for cycle."""
    import json

    from pimcast.cli import main

    t = load_preset("hbm2")
    from pimcast.hdl.dram.timing import AddressMapping
    m = AddressMapping("rochrababgco", t)
    rng = np.random.default_rng(4)
    n = 150
    traces = {
        "gather": (rng.integers(0, m.capacity // 64, n) * 64, rng.random(n) < 0.3, np.zeros(n, np.int64)),
        "stream": (np.arange(n) * 64 + (1 << 20), np.zeros(n, bool), np.zeros(n, np.int64)),
        "paced-rmw": (np.repeat(rng.integers(0, m.capacity // 256, n // 4) * 256, 4)[:n] // 64 * 64,
                      np.tile([False, True], n // 2), np.arange(n) * 6),
    }
    for name, (a, w, c) in traces.items():
        p = tmp_path / f"{name}.trace"
        p.write_text("".join(f"{hex(int(x))} {'WRITE' if y else 'READ'} {int(z)}\n" for x, y, z in zip(a, w, c)))
        out = {}
        for model in ("fast", "rtl"):
            csv = tmp_path / f"{name}-{model}.csv"
            args = ["dram", "replay", "--trace", str(p), "--standard", "hbm2", "--model", model, "--queue", "8",
                    "--json", "-", "--dump-commands", str(csv)]
            if model == "rtl":
                args += ["--simulator", "icarus"]
            assert main(args) == 0
            out[model] = (json.loads(capsys.readouterr().out), _csv_commands(csv))
        (fs, fc), (rs, rc) = out["fast"], out["rtl"]
        assert (rs["reads"], rs["writes"]) == (fs["reads"], fs["writes"])
        assert len(fc) == len(rc) > 2 * n, name
        bad = next((k for k, (x, y) in enumerate(zip(fc, rc)) if x != y), None)
        assert bad is None, f"{name}: command {bad}: fast {fc[bad]} rtl {rc[bad]}"
        assert abs(rs["cycles"] / fs["cycles"] - 1) < 0.05


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(not have_verilator(), reason="Verilator missing")
def test_hbm2_long_random_verilator():
    from pimcast.sim.tb_bankctl import run_bankctl

    res = run_bankctl("verilator", env={"PIMCAST_BANKCTL_LONG": "20000", "PIMCAST_SEED": "77"},
                      testcase="test_long_random", **CONFIG)
    assert (res.tests, res.failures) == (1, 0), res.build_dir
    assert _stat(res, "long")["requests"] == 20000


@pytest.mark.rtl
@pytest.mark.skipif(not have_verilator(), reason="Verilator missing")
def test_hbm2_bankctl_lint_clean(tmp_path, capsys):
    """`pimcast verilog` / `pimcast lint --top` of an HBM2 controller (the replay's parameters):
    `verilator --lint-only -Wall` clean."""
    from pimcast.cli import main
    from pimcast.sim.tb_bankctl import register_top

    from pimcast.hdl import export

    top, _ = register_top("hbm2", ranks=1, name="bankctl_hbm2", queue=16, read_buffer=16)
    try:
        assert main(["lint", "--top", top, "--out", str(tmp_path)]) == 0
    finally:
        export.TOPS.pop(top, None)   # keep `--top all` of other tests to the shipped tops
    assert f"{top}: clean" in capsys.readouterr().out
    v = (tmp_path / f"{top}.v").read_text()
    assert "dq_r__data" in v and "[255:0] dq_r__data" in v
