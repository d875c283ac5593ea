# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of :mod:`pimcast.hdl.reduce` (the reduction unit) against the golden
``models.tensor_cast.gather_reduce``, raw bits, NaN canonical.

Workloads, stimulus and checker are shared with the cocotb testbench (:mod:`pimcast.sim.tb_reduce`).
The 16-lane unit simulates at a few hundred cycles per second here, so the row-size sweep uses
it with a few bags; longer random runs use fewer lanes (the lane datapath is identical) and the
cocotb/Verilator tests carry the volume.
"""
from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from pimcast.hdl.fp import FAST_PIPELINE
from pimcast.hdl.reduce import ReductionUnit, from_config, pack_beats, reduce_in_layout, schedule
from pimcast.sim.tb_reduce import (Checker, Workload, build_stimulus, make_workload, random_lengths,
                                   report)

_CACHE: dict = {}


def simulate(dut: ReductionUnit, payloads, n_out, *, idle=0.0, backpressure=0.0, seed=0,
             max_cycles=200_000):
    """Drive ``payloads``; return (outputs, in_cycles, out_cycles)."""
    rng = np.random.default_rng(seed)
    res = {}

    async def tb(ctx):
        i_pay, o_pay = dut.i.payload.as_value(), dut.o.payload.as_value()
        pos, offered, cycle = 0, False, 0
        outs, inc, outc = [], [], []
        drain = 0
        while drain < 2 * dut.latency + 4:
            v = pos < len(payloads) and (offered or rng.random() >= idle)
            offered = v
            ctx.set(dut.i.valid, v)
            if v:
                ctx.set(i_pay, payloads[pos])
            r = len(outs) >= n_out or rng.random() >= backpressure
            ctx.set(dut.o.ready, r)
            if v and ctx.get(dut.i.ready):
                pos += 1
                offered = False
                inc.append(cycle)
            if r and ctx.get(dut.o.valid):
                outs.append(ctx.get(o_pay))
                outc.append(cycle)
            if len(outs) >= n_out and pos == len(payloads):
                drain += 1
            await ctx.tick()
            cycle += 1
            assert cycle < max_cycles, f"stuck: {pos}/{len(payloads)} in, {len(outs)}/{n_out} out"
        res.update(outs=outs, inc=inc, outc=outc)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return res["outs"], res["inc"], res["outc"]


def check(w: Workload, lanes=16, slots=32, contexts=None, unit=None, **kw):
    dut = ReductionUnit(lanes=lanes, slots=slots, **(unit or {}))
    stim = build_stimulus(w, lanes, slots, contexts)
    outs, inc, outc = simulate(dut, stim.payloads, len(stim.expected), **kw)
    report("amaranth", Checker(w, stim, lanes, slots).check(outs))
    return stim, inc, outc, dut.latency


# -- the row-size sweep on the default 16-lane unit ------------------------------------------------

# The 16-lane row-size sweep (D = 16..256, empty and long bags, duplicates, extreme values,
# weights, idle and back-pressure) runs on the generated Verilog of the default 16-lane unit:
# tests/test_sim_reduce.py::test_reduce_verilator_regression_16_lanes (40 bags per size, up to
# 100 lookups). Amaranth's Python simulator needed ~7 min for a much smaller sweep on a 2-core
# Zen 1 host, so this file checks the same datapath with fewer lanes.


# -- randomized, fewer lanes (same lane datapath) ---------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True], ids=["sum", "weighted"])
@pytest.mark.parametrize("row_beats", [1, 3, 8])
def test_random_bags_backpressure(row_beats, weighted):
    lanes, slots = 2, 16
    rng = np.random.default_rng(100 * row_beats + weighted)
    lengths = random_lengths(rng, 5, 12, p_empty=0.25)
    lengths[0] = 0
    lengths[1] = 40 if row_beats == 1 else 13
    w = make_workload(rng, lanes * row_beats, lengths, weighted=weighted, extreme=True,
                      table_rows=16, hot_row=True)
    check(w, lanes=lanes, slots=slots, idle=0.3, backpressure=0.4, seed=row_beats)


def test_only_empty_bags_give_positive_zero():
    w = make_workload(np.random.default_rng(3), 32, [0, 0, 0], weighted=False, extreme=False)
    stim, *_ = check(w, lanes=16, slots=4)
    assert len(stim.expected) == 3 * 2


def test_negative_zero_rows_sum_to_positive_zero():
    w = Workload(np.full((2, 4), -0.0, np.float32), np.array([0, 1, 1]), np.array([0, 1]), None)
    check(w, lanes=4, slots=4)
    w.weights = np.array([1.0, -0.0, 0.5], np.float32)
    check(w, lanes=4, slots=4)


# -- the read-after-write hazard -------------------------------------------------------------------

def test_hazard_one_beat_rows_single_context():
    """Each beat depends on the result of the previous one (L cycles away): no lost or reordered
    accumulation, and exactly one row per L cycles."""
    rng = np.random.default_rng(7)
    w = make_workload(rng, 4, [40, 40], weighted=True, extreme=False)
    stim, inc, outc, lat = check(w, lanes=4, slots=8, contexts=1)
    gaps = [b - a for a, b in zip(inc, inc[1:])]
    # L cycles between dependent rows; the first row of the next bag needs no wait
    assert gaps == [lat] * 39 + [1] + [lat] * 39
    # the same with back-pressure and idle input
    check(w, lanes=4, slots=8, contexts=1, idle=0.3, backpressure=0.5, seed=9)


def test_hazard_detects_wrong_order():
    """The checker is sharp: folding a bag's rows in another order changes the bits."""
    w = Workload(np.array([[1.0], [2.0 ** -24], [2.0 ** -24]], np.float32).repeat(4, 1),
                 np.array([0, 1, 2]), np.array([0]), None)
    stim = build_stimulus(w, 4, 8, 1)
    golden = Checker(w, stim, 4, 8).golden
    assert golden[0, 0] == 0x3F800000  # (1 + 2^-24) + 2^-24 rounds to 1 twice
    w2 = Workload(w.table, np.array([1, 2, 0]), np.array([0]), None)
    assert Checker(w2, stim, 4, 8).golden[0, 0] != golden[0, 0]
    check(w, lanes=4, slots=8, contexts=1)


@pytest.mark.parametrize("row_beats,contexts,rate", [(1, 5, 1.0), (4, 2, 1.0), (4, 1, 0.8), (1, 2, 0.4)])
def test_throughput(row_beats, contexts, rate):
    lanes = 2
    w = make_workload(np.random.default_rng(1), lanes * row_beats, [12] * (2 * contexts), weighted=True,
                      extreme=False)
    stim, inc, outc, lat = check(w, lanes=lanes, slots=16, contexts=contexts)
    assert lat == 5
    measured = len(inc) / (inc[-1] - inc[0] + 1)
    assert measured == pytest.approx(min(1.0, row_beats * contexts / lat), abs=0.03)
    assert measured == pytest.approx(rate, abs=0.03)


def test_latency():
    w = make_workload(np.random.default_rng(2), 4, [1], weighted=False, extreme=False)
    stim, inc, outc, lat = check(w, lanes=4, slots=4)
    assert outc[0] - inc[0] == lat == ReductionUnit(lanes=4, slots=4).latency


# -- the fast pipeline and the decoupled (free-running lanes, buffered output) unit -----------------

FAST_DECOUPLED = {"pipeline": FAST_PIPELINE, "decoupled": True}


@pytest.mark.parametrize("unit", [{"pipeline": FAST_PIPELINE}, FAST_DECOUPLED, {"decoupled": True}],
                         ids=["fast", "fast-decoupled", "default-decoupled"])
def test_fast_and_decoupled_backpressure(unit):
    lanes, slots = 2, 16
    rng = np.random.default_rng(42)
    lengths = random_lengths(rng, 6, 12, p_empty=0.25)
    lengths[1] = 30
    w = make_workload(rng, lanes * 3, lengths, weighted=True, extreme=True, table_rows=16, hot_row=True)
    check(w, lanes=lanes, slots=slots, unit=unit, idle=0.3, backpressure=0.6, seed=4)
    w = make_workload(rng, lanes, [20, 0, 7], weighted=True, extreme=True, table_rows=8)
    check(w, lanes=lanes, slots=slots, unit=unit, idle=0.1, backpressure=0.8, seed=5)


@pytest.mark.parametrize("unit,recurrence", [
    (FAST_DECOUPLED, 21),                              # decoupled: no forwarding by default
    ({**FAST_DECOUPLED, "forward": True}, 20),
    ({"forward": False}, 6),                           # default pipeline (latency 5), stalling
], ids=["fast-decoupled", "fast-decoupled-forward", "default-noforward"])
def test_hazard_recurrence_and_latency(unit, recurrence):
    """Dependent rows ``recurrence`` cycles apart (the latency, plus one without forwarding),
    output latency = ``latency`` (20 with FAST_PIPELINE) either way."""
    dut = ReductionUnit(lanes=4, slots=8, **unit)
    dut._MustUse__silence = True
    assert dut.recurrence == recurrence == dut.latency + (0 if dut.forward else 1)
    w = make_workload(np.random.default_rng(7), 4, [40, 40], weighted=True, extreme=False)
    stim, inc, outc, lat = check(w, lanes=4, slots=8, contexts=1, unit=unit)
    assert [b - a for a, b in zip(inc, inc[1:])] == [recurrence] * 39 + [1] + [recurrence] * 39
    w = make_workload(np.random.default_rng(2), 4, [1], weighted=False, extreme=False)
    stim, inc, outc, lat = check(w, lanes=4, slots=4, unit=unit)
    assert outc[0] - inc[0] == lat == dut.latency


def test_decoupled_credits():
    """With ``o.ready`` low, a decoupled unit accepts exactly ``out_buffer_depth`` final beats
    (one-row bags), then releases everything in order once ``o.ready`` rises."""
    lanes, slots = 1, 64
    dut = ReductionUnit(lanes=lanes, slots=slots, decoupled=True)
    depth = dut.out_buffer_depth
    assert depth == dut.latency + 4 == 9
    n = depth + 6
    beats = schedule([1] * n, 1, slots)
    payloads = pack_beats(beats, lambda bag, pos: [0x3F800000 + bag], lambda bag, pos: 0x40000000,
                          lanes, slots)
    # bag j: 2.0 * (1.0 + j ulp) = 2.0 + 2j ulp(1.0)
    expected = [0x40000000 + bag for bag in range(n)]
    res = {}

    async def tb(ctx):
        i_pay, o_pay = dut.i.payload.as_value(), dut.o.payload.as_value()
        accepted = 0
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        for cycle in range(3 * n):
            ctx.set(i_pay, payloads[min(accepted, n - 1)])
            if ctx.get(dut.i.ready):
                accepted += 1
            await ctx.tick()
        res["blocked"] = accepted
        ctx.set(dut.o.ready, 1)
        outs = []
        for cycle in range(4 * n):
            if accepted < n:
                ctx.set(dut.i.valid, 1)
                ctx.set(i_pay, payloads[accepted])
            else:
                ctx.set(dut.i.valid, 0)
            if accepted < n and ctx.get(dut.i.ready):
                accepted += 1
            if ctx.get(dut.o.valid):
                outs.append(ctx.get(o_pay) & 0xFFFFFFFF)
            await ctx.tick()
        res["outs"] = outs

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert res["blocked"] == depth
    assert res["outs"] == expected


def test_lane_groups_match_one_group():
    """Lanes in control groups (2 + 1 here) give the same results in the same cycles as one
    group, ``ext`` beats (per-lane addends) and back-pressure included; bit-exact against the
    golden model on a plain workload."""
    lanes, slots = 3, 8
    rng = np.random.default_rng(11)
    w = make_workload(rng, lanes * 2, [5, 0, 9, 1, 3], weighted=True, extreme=True, table_rows=8)
    stim = build_stimulus(w, lanes, slots, None)
    off = {name: f.offset for name, f in reduce_in_layout(lanes, slots)}
    payloads = list(stim.payloads)
    ext_bits = []
    for n in range(6):     # ext beats anywhere in the stream: they touch no accumulator
        word = 0
        for k, v in enumerate(rng.integers(0, 1 << 32, 2 * lanes + 1, dtype=np.uint64).tolist()):
            word |= int(v) << (off["data"] + 32 * k if k < lanes else
                               off["addend"] + 32 * (k - lanes) if k < 2 * lanes else off["weight"])
        word |= (1 << off["ext"]) | (int(rng.integers(0, slots)) << off["slot"])
        ext_bits.append(word)
        payloads.insert(int(rng.integers(0, len(payloads))), word)
    runs = {}
    for group in (lanes, 2):
        dut = ReductionUnit(lanes=lanes, slots=slots, decoupled=True, group=group)
        assert dut.group == group
        runs[group] = simulate(dut, payloads, len(stim.expected) + len(ext_bits), idle=0.2,
                               backpressure=0.5, seed=3)
    assert runs[2] == runs[lanes]
    outs = runs[2][0]
    assert len(outs) == len(stim.expected) + len(ext_bits)
    dut = ReductionUnit(lanes=lanes, slots=slots, decoupled=True, group=1)
    plain = simulate(dut, stim.payloads, len(stim.expected), backpressure=0.3, seed=1)[0]
    report("amaranth", Checker(w, stim, lanes, slots).check(plain))


def test_lane_group_arguments():
    assert ReductionUnit(lanes=16, decoupled=True).group == 4
    assert ReductionUnit(lanes=3, decoupled=True).group == 3
    assert ReductionUnit(lanes=16).group == 16
    with pytest.raises(ValueError, match=r"Group must be in 1..4 \(the lanes\), not 5"):
        ReductionUnit(lanes=4, decoupled=True, group=5)
    with pytest.raises(ValueError, match=r"Group must be in 1..4 \(the lanes\), not 0"):
        ReductionUnit(lanes=4, decoupled=True, group=0)
    with pytest.raises(ValueError, match="Group 2 < lanes 4 needs decoupled=True"):
        ReductionUnit(lanes=4, group=2)
    with pytest.raises(TypeError, match="Group must be an integer or None, not '2'"):
        ReductionUnit(lanes=4, decoupled=True, group="2")


def test_from_config_pipeline_decoupled():
    u = from_config({"lanes": 2, "slots": 8, "pipeline": "fast", "decoupled": True})
    u._MustUse__silence = True
    assert (u.lanes, u.slots, u.latency, u.decoupled) == (2, 8, len(FAST_PIPELINE), True)
    with pytest.raises(ValueError, match="Pipeline must be one of 'default', 'fast' or a list of steps, not 'quick'"):
        from_config({"pipeline": "quick"})
    with pytest.raises(TypeError, match="Decoupled must be a bool, not 1"):
        ReductionUnit(decoupled=1)
    with pytest.raises(TypeError, match="Forward must be a bool or None, not 'yes'"):
        ReductionUnit(forward="yes")
    for cfg, forward in (({"decoupled": True}, False), ({"decoupled": True, "forward": True}, True),
                         (None, True)):
        u = from_config(cfg)
        u._MustUse__silence = True      # built to read its attributes only
        assert u.forward is forward


# -- interface ---------------------------------------------------------------------------------------

def test_arguments():
    with pytest.raises(ValueError, match="Lanes must be at least 1, not 0"):
        ReductionUnit(lanes=0)
    with pytest.raises(ValueError, match="Slots must be a power of two, at least 2, not 12"):
        ReductionUnit(slots=12)
    with pytest.raises(TypeError, match="Lanes must be an integer"):
        ReductionUnit(lanes=2.0)
    with pytest.raises(ValueError):
        ReductionUnit(pipeline=("unpack",))
    u = ReductionUnit(lanes=16, slots=32)
    assert (u.lanes, u.slots, u.latency) == (16, 32, 5)
    lay = reduce_in_layout(16, 32)
    assert lay.size == 16 * 32 + 32 + 5 + 4 + 1 + 16 * 32   # + ext, addend (SCATTER_SGD)
    assert ReductionUnit(lanes=1, slots=2, pipeline=("unpack", "partial", "multiply", "add", "count",
                                                      "normalize", "round")).latency == 7


def test_schedule():
    s = schedule([2, 0, 1], row_beats=2, slots=4)
    # two contexts; bag 1 (empty) is taken by context 1 right away, then bag 2
    assert [(b.bag, b.pos, b.beat, b.slot) for b in s] == [
        (1, -1, 0, 2), (1, -1, 1, 3),
        (0, 0, 0, 0), (0, 0, 1, 1), (2, 0, 0, 2), (2, 0, 1, 3), (0, 1, 0, 0), (0, 1, 1, 1)]
    assert [b.end for b in s] == [False, True] * 4
    assert s[2].first and not s[2].last and s[4].first and s[4].last and s[6].last
    with pytest.raises(ValueError, match="Row beats must be in 1..4, not 5"):
        schedule([1], row_beats=5, slots=4)
