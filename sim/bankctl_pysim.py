"""Amaranth-simulator harness for :class:`pimcast.hdl.dram.bankctl.BankController` (no HDL build).

The quick bank-controller tests (``tests/test_bankctl.py``, ``tests/test_bankctl_hbm2.py``) drive
the controller directly in Amaranth's simulator with this loop; the cocotb benches
(``sim/tb_bankctl.py``) do the same on Icarus / Verilator against the generated Verilog.
"""
from __future__ import annotations

import warnings

from amaranth.sim import Simulator

from pimcast.hdl.dram.cmdport import KIND_TO_CMD
from pimcast.hdl.dram.timing import Cmd
from pimcast.sim.dram_device import ProtocolChecker, initial_data

__all__ = ["run_bankctl"]


def run_bankctl(dut, requests, max_cycles: int = 2000, ready=None, stop_when_done: bool = True):
    """Drive ``requests`` ``[(addr, we, data, tag[, earliest cycle])]`` in order (each offered from
    its earliest cycle until accepted) into ``dut``'s request port; emulate the DRAM per burst
    (reads return the last written burst, or :func:`initial_data`; write data is expected ``CWL``
    cycles after its WR) and check every command with :class:`ProtocolChecker` (an assertion names
    the broken rule).  ``ready(cycle) -> bool`` is the response back-pressure (default: always
    ready).  Stops after ``max_cycles``, or (``stop_when_done``) once every request is accepted,
    every read answered and no DRAM data is pending.

    Returns ``(accept cycles, responses [(cycle, tag, data)], commands [(cycle, cmd, rank, bg,
    bank, row, col)], store {(rank, bg, bank, row, col): burst data})``.
    """
    t = dut.timing
    mask = (1 << (t.burst_bytes * 8)) - 1
    chk = ProtocolChecker(t)
    store: dict = {}
    read_ret, write_due = {}, {}
    accepted, responses, commands = [], [], []
    n_reads = sum(1 for r in requests if not r[1])

    async def bench(ctx):
        pos = 0
        for cycle in range(max_cycles):
            data = read_ret.pop(cycle, None)
            ctx.set(dut.dq_r.valid, data is not None)
            ctx.set(dut.dq_r.data, data or 0)
            rdy = True if ready is None else bool(ready(cycle))
            ctx.set(dut.resp.ready, rdy)
            offer = pos < len(requests) and (len(requests[pos]) < 5 or requests[pos][4] <= cycle)
            if offer:
                addr, we, wdata, tag = requests[pos][:4]
                ctx.set(dut.req.valid, 1)
                ctx.set(dut.req.payload.as_value(),
                        addr | (int(we) << dut.addr_bits) | (tag << (dut.addr_bits + 1))
                        | (wdata << (dut.addr_bits + 1 + dut.tag_bits)))
            else:
                ctx.set(dut.req.valid, 0)
            if offer and ctx.get(dut.req.ready):
                accepted.append(cycle)
                pos += 1
            if rdy and ctx.get(dut.resp.valid):
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
                    read_ret[cycle + t.CL + t.BL2] = store.get(k, initial_data(*k) & mask)
                elif cmd is Cmd.WR:
                    write_due[cycle + t.CWL] = (rk, bg, bk, row, col)
            if (stop_when_done and pos == len(requests) and len(responses) == n_reads
                    and not write_due and not read_ret):
                break
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.run()
    return accepted, responses, commands, store
