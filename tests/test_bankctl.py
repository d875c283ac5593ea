"""Amaranth-simulator checks of the bank controller (quick; the cocotb benches go further)."""
from __future__ import annotations

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from pimcast.hdl.dram.bankctl import BankController, RuleCounters
from pimcast.hdl.dram.cmdport import KIND_TO_CMD
from pimcast.hdl.dram.timing import Cmd, Scope, load_preset, timing_rules
from pimcast.sim.dram_device import ProtocolChecker, initial_data


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


def _run(dut, requests, max_cycles=600):
    """Drive ``requests`` ``[(addr, we, data, tag)]`` one after another (each as soon as
    accepted); emulate the DRAM with :class:`ProtocolChecker`; return (accept cycles, responses
    ``[(cycle, tag, data)]``, commands)."""
    t = dut.timing
    amap = dut.mapping
    chk = ProtocolChecker(t)
    store = {}
    read_ret, write_due = {}, {}
    accepted, responses, commands = [], [], []

    async def bench(ctx):
        pos = 0
        ctx.set(dut.resp.ready, 1)
        for cycle in range(max_cycles):
            data = read_ret.pop(cycle, None)
            ctx.set(dut.dq_r.valid, data is not None)
            ctx.set(dut.dq_r.data, data or 0)
            if pos < len(requests):
                addr, we, wdata, tag = requests[pos]
                ctx.set(dut.req.valid, 1)
                ctx.set(dut.req.payload.as_value(),
                        addr | (int(we) << dut.addr_bits) | (tag << (dut.addr_bits + 1))
                        | (wdata << (dut.addr_bits + 1 + dut.tag_bits)))
            else:
                ctx.set(dut.req.valid, 0)
            # sample
            if pos < len(requests) and ctx.get(dut.req.ready):
                accepted.append(cycle)
                pos += 1
            if ctx.get(dut.resp.valid):
                p = ctx.get(dut.resp.payload.as_value())
                responses.append((cycle, p & ((1 << dut.tag_bits) - 1), p >> dut.tag_bits))
            key = write_due.pop(cycle, None)
            if ctx.get(dut.dq_w.valid):
                assert key is not None, f"unexpected write data at {cycle}"
                store[key] = ctx.get(dut.dq_w.data)
            else:
                assert key is None, f"missing write data at {cycle}"
            if ctx.get(dut.cmd.valid):
                cmd = KIND_TO_CMD[ctx.get(dut.cmd.kind.as_value())]
                rk, bg, bk = ctx.get(dut.cmd.rank), ctx.get(dut.cmd.bg), ctx.get(dut.cmd.bank)
                row, col = ctx.get(dut.cmd.row), ctx.get(dut.cmd.col)
                if cmd in (Cmd.PREA, Cmd.REF, Cmd.PRE):
                    row = col = -1
                if cmd is Cmd.ACT:
                    col = -1
                commands.append((cycle, cmd.value, rk, bg, bk, row, col))
                bad = chk.issue(cycle, cmd, rk, bg, bk, row, col)
                assert not bad, "; ".join(map(str, bad))
                if cmd is Cmd.RD:
                    k = (rk, bg, bk, row, col)
                    read_ret[cycle + t.CL + t.BL2] = store.get(k, initial_data(*k))
                elif cmd is Cmd.WR:
                    write_due[cycle + t.CWL] = (rk, bg, bk, row, col)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return accepted, responses, commands


def _small(preset="ddr4-3200", ranks=1, **kw):
    return BankController(load_preset(preset, ranks=ranks), rows=64, columns=128, queue=4, read_buffer=4, **kw)


def test_one_read_closed_bank_latency():
    dut = _small()
    amap = dut.mapping
    addr = int(amap.encode(bg=1, ba=2, ro=5, co=3))
    acc, resp, cmds = _run(dut, [(addr, 0, 0, 7)], max_cycles=120)
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
    acc, resp, cmds = _run(dut, [(a, 1, data, 1), (a, 0, 0, 2), (b, 0, 0, 3)], max_cycles=200)
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
