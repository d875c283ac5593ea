"""The core's GATHER_REDUCE validation pass (state ``GR_VAL``: a run of lookups per cycle, all
ids of a bag in one input beat checked in parallel) against a one-word-per-cycle reference,
on the Amaranth simulator: random index streams (unweighted and weighted, bags starting and
ending anywhere in a beat, weighted pairs straddling beats, truncated streams, extra beats)
that all fail validation — so the core never reaches the DRAM and no DRAM model is needed.

Checked per stream: the status code, detail and position equal the serial reference's (the
FIRST bad id wherever it sits in its beat); and for a stream whose only bad id is the very
last lookup (the pass runs to its end) the cycles the core is busy equal
:func:`pimcast.host.timing.gather_setup_cycles` minus its fixed per-instruction part, which is
how that model stays exact for the RTL."""
from __future__ import annotations

import numpy as np
import pytest

from pimcast.hdl import isa
from pimcast.hdl.core import PIMCore
from pimcast.host import isa_codec as codec
from pimcast.host.timing import _CORE_INSN_CYCLES, gather_setup_cycles

NROWS, DIM, TABLE, BUF_BEATS = 50, 16, 64, 32
S = isa.Status


def _serial_reference(words, nin: int, bags: int, weighted: bool):
    """(status, detail, position) of the one-word-per-cycle validation pass."""
    per = 2 if weighted else 1
    words_in, wp, lookup = 16 * nin, 0, 0
    for _ in range(bags):
        if wp >= words_in:
            return S.STREAM_ENDED_EARLY, wp, nin
        n = int(words[wp])
        wp += 1
        for _ in range(n):
            if wp + per > words_in:
                return S.STREAM_ENDED_EARLY, wp, nin
            if int(words[wp]) >= NROWS:
                return S.ROW_OUT_OF_RANGE, int(words[wp]), lookup
            wp += per
            lookup += 1
    if -(-wp // 16) != nin:
        return S.STREAM_TOO_LONG, -(-wp // 16), nin
    return S.OK, 0, 0


def _cases(rng, n: int):
    out = []
    for k in range(n):
        weighted = bool(k % 2)
        lens = [int(x) for x in rng.integers(0, 40, rng.integers(1, 6))]
        kind = k % 8 // 2          # 0: random bad ids, 1: only the last lookup bad, 2: truncated, 3: extra beat
        if sum(lens) == 0 or kind == 1:
            lens[-1] = max(lens[-1], 1)   # kind 1: the failing run is the pass's last (no empty bag after it)
        total = sum(lens)
        idx = rng.integers(0, NROWS, total)
        if kind == 0:
            bad = rng.random(total) < rng.choice([0.02, 0.1, 0.5])
            bad[rng.integers(total)] = True
            idx = np.where(bad, NROWS + rng.integers(0, 1000, total), idx)
        elif kind == 1:
            idx[-1] = NROWS + 7
        w = rng.standard_normal(total).astype(np.float32) if weighted else None
        words = codec.gather_index_words(idx, np.cumsum([0] + lens[:-1]), w)
        beats = codec.words_to_beats(words)
        if kind == 2 and len(beats) >= 2:
            beats = beats[:int(rng.integers(1, len(beats)))]     # `last` comes early
        elif kind >= 2:
            beats = beats + [0]
        assert len(beats) <= BUF_BEATS
        insn = codec.encode(isa.Opcode.GATHER_REDUCE, table=TABLE, rows=NROWS, row_bytes=4 * DIM, bags=len(lens),
                            flags={"weighted": weighted})
        padded = np.array([(b >> (32 * j)) & 0xFFFFFFFF for b in beats for j in range(16)] + [0] * 16)
        ref = _serial_reference(padded, len(beats), len(lens), weighted)
        setup = gather_setup_cycles(total, len(lens), weighted, lengths=lens) if kind == 1 else None
        out.append((f"case{k}-{'w' if weighted else 'u'}{kind}-{lens}", insn, beats, ref, setup))
    return out


@pytest.mark.slow   # Amaranth simulation of the whole core: ~1-2 min
def test_gather_validation_runs_match_serial_reference_and_timing_model():
    from amaranth.sim import Simulator

    core = PIMCore(max_row_bytes=64, buf_beats=BUF_BEATS, tag_bits=1, queue=2, rows=64, columns=64)
    rng = np.random.default_rng(2024)
    cases = _cases(rng, 48)
    assert {c[3][0] for c in cases} >= {S.ROW_OUT_OF_RANGE, S.STREAM_ENDED_EARLY, S.STREAM_TOO_LONG}
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
        for name, insn, beats, ref, setup in cases:
            await put_insn(ctx, insn)
            busy, fed, status = 0, 0, None
            while True:
                if fed < len(beats):
                    ctx.set(core.din.valid, 1)
                    ctx.set(core.din.payload.data, beats[fed])
                    ctx.set(core.din.payload.last, fed == len(beats) - 1)
                else:
                    ctx.set(core.din.valid, 0)
                if not ctx.get(core.busy):
                    break
                assert ctx.get(core.dout.valid) == 0, f"{name}: output data for a failing instruction"
                take = fed < len(beats) and ctx.get(core.din.ready)
                busy += 1
                await ctx.tick()
                fed += bool(take)
                assert busy < 2000, f"{name}: still busy"
            await put_insn(ctx, codec.encode(isa.Opcode.STATUS))
            for _ in range(20):
                if ctx.get(core.dout.valid):
                    status = codec.decode_status(ctx.get(core.dout.payload.data))
                    break
                await ctx.tick()
            assert status is not None, f"{name}: no STATUS beat"
            await ctx.tick()
            results.append((name, ref, setup, busy, status))

    sim = Simulator(core)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    assert len(results) == len(cases)
    timed = 0
    for name, (code, detail, pos), setup, busy, st in results:
        assert (st["status"], st["detail"], st["position"]) == (code, detail, pos), (name, st)
        if setup is not None:
            # busy: DECODE + the stream in + CHECK + the validation pass (its last run fails) + DONE;
            # the model: _CORE_INSN_CYCLES + (1 to end the pass) + the stream in + the pass
            assert busy == setup - _CORE_INSN_CYCLES + 2, (name, busy, setup)
            timed += 1
    assert timed >= 10
