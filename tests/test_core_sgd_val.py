"""The core's SCATTER_SGD validation pass (state ``SG_CHK``) on the Amaranth simulator.

Every stream here fails validation (an out-of-range id or a duplicate), so the core never
reaches the DRAM and no DRAM model is needed.  Checked: the status, detail and position equal a
one-id-at-a-time reference (first bad id in list order); and the cycles the core is busy follow
the documented cost — one cycle for an id larger than every earlier id, ``floor(i/16) + 1``
cycles (16 earlier ids compared per cycle) for any other id ``i`` — so an ascending list
(tensor casting's unique rows) is checked in ``count`` cycles instead of quadratically many.
"""
from __future__ import annotations

import numpy as np
import pytest

from pimcast.hdl import isa
from pimcast.hdl.core import PIMCore
from pimcast.host import isa_codec as codec

NROWS, DIM, TABLE, BUF_BEATS = 1000, 16, 64, 128
S = isa.Status


def _reference(ids):
    """(status, detail, position, check cycles before the failing one's last cycle): a duplicate
    is found when the compare reaches the beat of its earlier copy."""
    seen, top, cycles = {}, -1, 0
    for i, x in enumerate(ids):
        if x >= NROWS:
            return S.ROW_OUT_OF_RANGE, x, i, cycles
        if x in seen:
            return S.DUPLICATE_ROW, x, i, cycles + seen[x] // 16
        cycles += 1 if x > top else i // 16 + 1
        top = max(top, x)
        seen[x] = i
    raise AssertionError("every case must fail")


def _cases(rng):
    asc = sorted(rng.choice(NROWS, 60, replace=False).tolist())
    out = [("ascending", asc + [NROWS + 3]),
           ("descending", asc[::-1] + [NROWS + 3]),
           ("ascending_then_dup", asc[:40] + [asc[7]]),
           ("dup_after_unsorted", [7, 3, 9, 3]),
           ("dup_first_pair", [5, 5])]
    for k in range(12):
        n = int(rng.integers(2, 70))
        ids = rng.choice(NROWS, n, replace=False)
        if k % 3 == 0:
            ids = np.sort(ids)
        if k % 2:
            j = int(rng.integers(1, n))
            ids[j] = ids[int(rng.integers(0, j))]           # a duplicate of an earlier id
        else:
            ids[-1] = NROWS + int(rng.integers(0, 50))    # only the last id is bad
        out.append((f"random{k}", [int(x) for x in ids]))
    return out


@pytest.mark.slow   # Amaranth simulation of the whole core: ~1 min
def test_sgd_validation_matches_reference_and_cost():
    from amaranth.sim import Simulator

    core = PIMCore(max_row_bytes=64, buf_beats=BUF_BEATS, tag_bits=1, queue=2, rows=64, columns=64)
    cases = _cases(np.random.default_rng(77))
    results = []

    async def put_insn(ctx, word):
        ctx.set(core.insn.payload, word)
        ctx.set(core.insn.valid, 1)
        while True:
            ready = ctx.get(core.insn.ready)
            await ctx.tick()
            if ready:
                break
        ctx.set(core.insn.valid, 0)

    async def bench(ctx):
        ctx.set(core.dout.ready, 1)
        for name, ids in cases:
            prog = codec.scatter_sgd_program(TABLE, NROWS, ids, np.ones((len(ids), DIM), np.float32), 0.5)
            beats = prog.beats_in
            assert len(beats) <= BUF_BEATS
            await put_insn(ctx, prog.insn)
            busy, fed = 0, 0
            while True:
                if fed < len(beats):
                    ctx.set(core.din.valid, 1)
                    ctx.set(core.din.payload.data, beats[fed])
                    ctx.set(core.din.payload.last, fed == len(beats) - 1)
                else:
                    ctx.set(core.din.valid, 0)
                if not ctx.get(core.busy):
                    break
                take = fed < len(beats) and ctx.get(core.din.ready)
                busy += 1
                await ctx.tick()
                fed += bool(take)
                assert busy < 20000, f"{name}: still busy"
            await put_insn(ctx, codec.encode(isa.Opcode.STATUS))
            status = None
            for _ in range(20):
                if ctx.get(core.dout.valid):
                    status = codec.decode_status(ctx.get(core.dout.payload.data))
                    break
                await ctx.tick()
            assert status is not None, f"{name}: no STATUS beat"
            await ctx.tick()
            results.append((name, ids, len(beats), busy, status))

    sim = Simulator(core)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    assert len(results) == len(cases)
    # the fixed part of an instruction's busy time: decode, the stream in (one beat per cycle),
    # the stream checks and the failing cycle -- from the ascending case, applied to all
    name, ids, nbeats, busy, _ = results[0]
    fixed = busy - nbeats - _reference(ids)[3]
    for name, ids, nbeats, busy, st in results:
        code, detail, pos, cycles = _reference(ids)
        assert (st["status"], st["detail"], st["position"]) == (code, detail, pos), (name, st)
        assert busy == fixed + nbeats + cycles, (name, busy, fixed + nbeats + cycles)
    # the ascending list of 60 ids: 60 cycles; the same ids descending: 1 + sum(i // 16 + 1)
    asc, desc = results[0][3], results[1][3]
    assert desc - asc == sum(i // 16 for i in range(1, 60))
