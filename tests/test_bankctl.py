"""Amaranth-simulator checks of the bank controller (quick; the cocotb benches go further)."""
from __future__ import annotations

import pytest
from amaranth.hdl import Fragment

from pimcast.hdl.dram.bankctl import BankController, RuleCounters
from pimcast.hdl.dram.timing import Cmd, Scope, load_preset, timing_rules
from pimcast.sim.bankctl_pysim import run_bankctl
from pimcast.sim.dram_device import initial_data


@pytest.mark.parametrize("preset", ["ddr4-3200", "ddr4-2400"])
@pytest.mark.parametrize("ranks", [1, 2])
def test_elaborates(preset, ranks):
    t = load_preset(preset, ranks=ranks)
    dut = BankController(t)
    Fragment.get(dut, None)
    assert dut.closed_read_latency == t.tRCD + t.CL + t.BL2 + 3
    assert dut.hit_read_latency == t.CL + t.BL2 + 3
    assert dut.addr_bits == dut.mapping.total_bits
    # every issued-command rule of the table has a counter key
    ctr = RuleCounters(t)
    issued = {Cmd.ACT, Cmd.RD, Cmd.WR, Cmd.PRE, Cmd.PREA, Cmd.REF}
    for r in timing_rules(t):
        applies = not (r.scope is Scope.DIFF_RANK and ranks == 1)
        if r.prev in issued and r.next in issued and r.gap > 1 and applies:
            assert r.name in ctr.keys[(r.prev, r.scope, r.gap)]
    assert ctr.counter_count > 0
    if ranks == 1:  # no other rank: the rank-switch rules generate no counters
        assert not any("rank_switch" in n for names in ctr.keys.values() for n in names)


def test_rejects_bad_configs():
    with pytest.raises(ValueError, match="queue depth"):
        BankController(queue=0)
    with pytest.raises(ValueError, match="power of two"):
        BankController(rows=100)
    with pytest.raises(ValueError, match="tREFI"):
        BankController(tREFI=300)
    with pytest.raises(ValueError, match="read_buffer"):
        BankController(read_buffer=0)


def _small(preset="ddr4-3200", ranks=1, **kw):
    return BankController(load_preset(preset, ranks=ranks), rows=64, columns=128, queue=4, read_buffer=4, **kw)


def test_one_read_closed_bank_latency():
    dut = _small()
    amap = dut.mapping
    addr = int(amap.encode(bg=1, ba=2, ro=5, co=3))
    acc, resp, cmds, _ = run_bankctl(dut, [(addr, 0, 0, 7)], max_cycles=120, stop_when_done=False)
    t = dut.timing
    assert [c[1] for c in cmds] == ["ACT", "RD"]
    assert cmds[1][0] - cmds[0][0] == t.tRCD
    assert cmds[1][2:] == (0, 1, 2, 5, 3 * t.burst_length)
    assert len(resp) == 1 and resp[0][1] == 7
    assert resp[0][2] == initial_data(0, 1, 2, 5, 3 * t.burst_length)
    assert resp[0][0] - acc[0] == dut.closed_read_latency


def test_write_then_read_returns_new_data():
    dut = _small(preset="ddr4-2400", ranks=2)
    amap = dut.mapping
    a = int(amap.encode(ra=1, bg=3, ba=1, ro=9, co=2))
    b = int(amap.encode(ra=1, bg=3, ba=1, ro=9, co=3))
    data = (1 << 511) | 0x1234_5678
    acc, resp, cmds, _ = run_bankctl(dut, [(a, 1, data, 1), (a, 0, 0, 2), (b, 0, 0, 3)], max_cycles=200,
                                     stop_when_done=False)
    t = dut.timing
    kinds = [c[1] for c in cmds]
    assert kinds == ["ACT", "WR", "RD", "RD"]
    # the read of the written address waits for the write (same bank group: CWL + BL/2 + tWTR_L)
    assert cmds[2][0] - cmds[1][0] == t.wr_to_rd(True)
    got = {tag: d for _, tag, d in resp}
    assert got[2] == data
    assert got[3] == initial_data(1, 3, 1, 9, 3 * t.burst_length)
    # row hit: the second read follows at tCCD_L and arrives hit-latency after the first's issue
    assert cmds[3][0] - cmds[2][0] == t.tCCD_L
