"""cocotb testbench for the reduction unit (``pimcast.hdl.reduce.ReductionUnit``, Verilog top ``reduce``).

Structure (cocotb ``matrix_multiplier`` style)::

    Workload (table, indices, offsets, weights)
      │  hdl.reduce.schedule: bags interleaved over accumulator slots
      ▼
    Driver ──► DUT ──► (o stream)            random idle cycles on i__valid,
      │                                      random back-pressure on o__ready
      ▼
    Monitor: every transfer on both streams (valid & ready at a clock edge)
      ├─ input transactions: checked to be the driven beats, in order
      └─ output transactions ──► Checker ◄── Model: models.tensor_cast.gather_reduce (golden),
                                                    NaN canonicalized, raw bits

The Model is the golden embedding-bag forward of the whole workload; the Checker maps each
output beat to (bag, beat) by the order in which the bags' last rows were driven (the unit's
documented output order) and compares raw bits, the ``last`` flag and the slot.

The first half of this module is plain numpy (importable outside the simulator; the Amaranth
tests in ``tests/test_reduce.py`` use the same workloads, stimulus and checker).

Settings (environment variables, set by ``pimcast.sim.runner``):

``PIMCAST_SEED``            seed (default 1)
``PIMCAST_REDUCE_BAGS``     bags per row size in ``test_sizes`` (default 6)
``PIMCAST_REDUCE_MAXLEN``   longest bag in ``test_sizes`` (default 40)
``PIMCAST_REDUCE_DIMS``     comma-separated row sizes D (default ``16,32,64,128,256``)
``PIMCAST_REDUCE_LATENCY``  the RTL's documented latency (``ReductionUnit.latency``)
``PIMCAST_REDUCE_RECURRENCE`` cycles between two dependent beats (``ReductionUnit.recurrence``;
                            default: the latency, a unit with forwarding)
``PIMCAST_STATS``           JSON-lines file receiving per-test figures (beats, cycles, seconds)
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

F32_ONE = 0x3F800000
CANONICAL_NAN = 0x7FC00000

# --------------------------------------------------------------------------------------------
# workloads, stimulus, model and checker (plain numpy)
# --------------------------------------------------------------------------------------------


@dataclass
class Workload:
    """An embedding-bag forward: ``table`` (rows, dim) float32, PyTorch-style ``offsets``."""

    table: np.ndarray
    indices: np.ndarray
    offsets: np.ndarray
    weights: Optional[np.ndarray]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(np.append(self.offsets, self.indices.size))

    @property
    def dim(self) -> int:
        return self.table.shape[1]


def extreme_values(rng: np.random.Generator, shape, p_special: float = 0.15) -> np.ndarray:
    """float32 values: mostly N(0, 1) at random scales, with a share ``p_special`` of specials —
    subnormals, ±0, ±inf, NaNs with random payloads, values near FLT_MAX (overflow)."""
    n = int(np.prod(shape))
    v = (rng.standard_normal(n) * np.exp2(rng.integers(-20, 21, n))).astype(np.float32).view(np.uint32)
    kind = rng.integers(0, 6, n)
    special = rng.random(n) < p_special
    sign = rng.integers(0, 2, n, dtype=np.uint32) << np.uint32(31)
    sub = rng.integers(1, 1 << 23, n, dtype=np.uint32)
    nan = np.uint32(0x7F800000) | rng.integers(1, 1 << 23, n, dtype=np.uint32)
    big = np.uint32(0x7F000000) | rng.integers(0, 1 << 23, n, dtype=np.uint32)
    spec = np.select([kind == 0, kind == 1, kind == 2, kind == 3, kind == 4],
                     [sub, np.zeros(n, np.uint32), np.full(n, 0x7F800000, np.uint32), nan, big], sub)
    spec = spec | sign
    # NaNs and infinities are rarer than the rest of the specials (they swamp a whole bag)
    rare = ((kind == 2) | (kind == 3)) & (rng.random(n) < 0.7)
    out = np.where(special & ~rare, spec, v)
    return out.astype(np.uint32).view(np.float32).reshape(shape)


def make_workload(rng: np.random.Generator, dim: int, lengths, *, weighted: bool, extreme: bool,
                  table_rows: int = 64, hot_row: bool = False) -> Workload:
    """Random table/indices for bags of ``lengths`` (duplicates happen; ``hot_row`` makes row 0
    a third of all lookups)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if extreme:
        table = extreme_values(rng, (table_rows, dim))
    else:
        table = rng.standard_normal((table_rows, dim)).astype(np.float32)
    nnz = int(lengths.sum())
    indices = rng.integers(0, table_rows, nnz)
    if hot_row:
        indices[rng.random(nnz) < 1 / 3] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if lengths.size else np.zeros(0, np.int64)
    weights = None
    if weighted:
        weights = extreme_values(rng, (nnz,), 0.05) if extreme else rng.standard_normal(nnz).astype(np.float32)
    return Workload(table, indices.astype(np.int64), offsets, weights)


def random_lengths(rng: np.random.Generator, bags: int, max_len: int, p_empty: float = 0.15) -> np.ndarray:
    lens = rng.integers(1, max_len + 1, bags)
    lens[rng.random(bags) < p_empty] = 0
    return lens


class Model:
    """The golden pooled rows: ``models.tensor_cast.gather_reduce``, as canonical-NaN uint32 bits."""

    def __call__(self, w: Workload) -> np.ndarray:
        import torch

        from pimcast.models.numerics import canonicalize_nan, f32_to_bits
        from pimcast.models.tensor_cast import gather_reduce

        out = gather_reduce(torch.from_numpy(w.table), torch.from_numpy(w.indices),
                            torch.from_numpy(w.offsets),
                            None if w.weights is None else torch.from_numpy(w.weights))
        return canonicalize_nan(f32_to_bits(out))


@dataclass
class Stimulus:
    """Input payloads for the DUT and the output transactions it must produce, in order."""

    payloads: list[int]
    expected: list[tuple[int, int, int]]  # (bag, beat, slot) per output beat
    row_beats: int
    contexts: int


def build_stimulus(w: Workload, lanes: int, slots: int, contexts: Optional[int] = None) -> Stimulus:
    from pimcast.hdl.reduce import pack_beats, schedule

    if (w.dim % lanes) != 0:
        raise ValueError(f"dim {w.dim} is not a multiple of {lanes} lanes")
    rb = w.dim // lanes
    beats = schedule(w.lengths.tolist(), rb, slots, contexts)
    tab_bits = w.table.view(np.uint32)
    wbits = None if w.weights is None else w.weights.view(np.uint32)
    offs = w.offsets

    def rows(bag, pos):
        return tab_bits[w.indices[offs[bag] + pos]]

    def weight(bag, pos):
        return F32_ONE if wbits is None else wbits[offs[bag] + pos]

    payloads = pack_beats(beats, rows, weight, lanes, slots)
    expected = [(b.bag, b.beat, b.slot) for b in beats if b.last]
    k = min(contexts or slots, slots // rb)
    return Stimulus(payloads, expected, rb, k)


def out_fields(lanes: int, slots: int) -> tuple[int, int]:
    """Offsets of ``slot`` and ``last`` in the output payload (from the hdl layout)."""
    from pimcast.hdl.reduce import reduce_out_layout

    off = {name: f.offset for name, f in reduce_out_layout(lanes, slots)}
    return off["slot"], off["last"]


class Checker:
    """Compares output payloads with the Model's pooled rows, in the stimulus' order, raw bits."""

    def __init__(self, w: Workload, stim: Stimulus, lanes: int, slots: int, golden=None):
        self.golden = Model()(w) if golden is None else golden
        self.stim, self.lanes, self.slots = stim, lanes, slots

    def check(self, outputs: list[int]) -> list[str]:
        lanes, rb = self.lanes, self.stim.row_beats
        slot_off, last_off = out_fields(lanes, self.slots)
        smask = self.slots - 1
        dmask = (1 << (32 * lanes)) - 1
        bad: list[str] = []
        exp = self.stim.expected
        if len(outputs) != len(exp):
            bad.append(f"{len(outputs)} output beats, expected {len(exp)}")
        for i, (got, (bag, beat, slot)) in enumerate(zip(outputs, exp)):
            want = self.golden[bag, beat * lanes:(beat + 1) * lanes]
            data = got & dmask
            vals = [(data >> (32 * k)) & 0xFFFFFFFF for k in range(lanes)]
            if vals != want.tolist():
                lanes_bad = [k for k in range(lanes) if vals[k] != int(want[k])]
                k = lanes_bad[0]
                bad.append(f"out #{i} bag {bag} beat {beat}: {len(lanes_bad)} lanes differ; lane {k}: "
                           f"rtl {vals[k]:08x} expected {int(want[k]):08x}")
            if ((got >> last_off) & 1) != int(beat == rb - 1):
                bad.append(f"out #{i} bag {bag} beat {beat}: last flag {(got >> last_off) & 1}")
            if ((got >> slot_off) & smask) != slot:
                bad.append(f"out #{i} bag {bag} beat {beat}: slot {(got >> slot_off) & smask}, expected {slot}")
        return bad


def report(name: str, bad: list[str], show: int = 8) -> None:
    if bad:
        lines = "\n  ".join(bad[:show])
        raise AssertionError(f"{name}: {len(bad)} mismatches; first:\n  {lines}")


# --------------------------------------------------------------------------------------------
# cocotb: Driver / Monitor (pimcast.sim.streams, shared with the FMA testbench) and tests
# --------------------------------------------------------------------------------------------

try:
    import cocotb

    from pimcast.sim import streams
    from pimcast.sim.streams import reset, start_clock
except ImportError:  # pragma: no cover - numpy helpers stay usable without cocotb
    cocotb = None


def dut_geometry(dut) -> tuple[int, int]:
    """``(lanes, slots)`` from the port widths: out = 32*lanes + log2(slots) + 1 bits."""
    ow = len(dut.o__payload)
    lanes, sb = divmod(ow - 1, 32)
    return lanes, 1 << sb


#: the salt of this testbench's idle/back-pressure patterns (see :func:`streams.run_stream`)
_SALT = 0xBEEF


async def run_stream(dut, payloads: list[int], n_out: int, *, idle: float, backpressure: float,
                     seed: int) -> "streams.Monitor":
    """:func:`pimcast.sim.streams.run_stream`: ``n_out`` pooled beats expected."""
    return await streams.run_stream(dut, payloads, n_out, idle=idle, backpressure=backpressure, seed=seed,
                                    salt=_SALT, drain_cycles=32, stall_limit=1000)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw, 0) if raw.strip() else default


def _stats(test: str, beats: int, cycles: int, seconds: float, **extra) -> None:
    rec = {"test": test, "vectors": beats, "cycles": cycles, "seconds": round(seconds, 4),
           "vectors_per_s": round(beats / seconds, 1) if seconds > 0 else None,
           "cycles_per_s": round(cycles / seconds, 1) if seconds > 0 else None, **extra}
    if cocotb is not None:
        cocotb.log.info("%s", json.dumps(rec))
    path = os.environ.get("PIMCAST_STATS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")


async def check_workload(dut, name: str, w: Workload, *, contexts: Optional[int], idle: float,
                         backpressure: float, seed: int) -> "streams.Monitor":
    lanes, slots = dut_geometry(dut)
    stim = build_stimulus(w, lanes, slots, contexts)
    t0 = time.perf_counter()
    mon = await run_stream(dut, stim.payloads, len(stim.expected), idle=idle, backpressure=backpressure,
                           seed=seed)
    secs = time.perf_counter() - t0
    if mon.inputs != stim.payloads:
        raise AssertionError(f"{name}: driven beats not all accepted in order ({len(mon.inputs)}/{len(stim.payloads)})")
    report(name, Checker(w, stim, lanes, slots).check(mon.outputs))
    busy = (mon.in_cycles[-1] - mon.in_cycles[0] + 1) if mon.in_cycles else 0
    _stats(name, len(stim.payloads), mon.cycles, secs, dim=w.dim, row_beats=stim.row_beats,
           contexts=stim.contexts, beats_per_cycle=round(len(stim.payloads) / busy, 4) if busy else None,
           bags=int(w.offsets.size), lookups=int(w.indices.size))
    return mon


if cocotb is not None:

    @cocotb.test()
    async def test_sizes(dut):
        """D in PIMCAST_REDUCE_DIMS: random bags (0..MAXLEN rows, empty bags), weighted and plain,
        extreme values and a hot row, random idle/back-pressure on both streams."""
        start_clock(dut)
        await reset(dut)
        seed = _env_int("PIMCAST_SEED", 1)
        rng = np.random.default_rng(seed)
        bags = _env_int("PIMCAST_REDUCE_BAGS", 6)
        max_len = _env_int("PIMCAST_REDUCE_MAXLEN", 40)
        dims = [int(x) for x in os.environ.get("PIMCAST_REDUCE_DIMS", "16,32,64,128,256").split(",")]
        for i, dim in enumerate(dims):
            for weighted in (False, True):
                w = make_workload(rng, dim, random_lengths(rng, bags, max_len), weighted=weighted,
                                  extreme=True, hot_row=(i % 2 == 0))
                await check_workload(dut, f"D{dim}-{'w' if weighted else 'sum'}", w, contexts=None,
                                     idle=0.2, backpressure=0.3, seed=seed + i)

    @cocotb.test()
    async def test_hazard(dut):
        """One-beat rows, one bag context (every beat depends on the previous one), long bags."""
        start_clock(dut)
        await reset(dut)
        lanes, _ = dut_geometry(dut)
        rng = np.random.default_rng(_env_int("PIMCAST_SEED", 1) + 3)
        w = make_workload(rng, lanes, [40, 0, 1, 33], weighted=True, extreme=False)
        await check_workload(dut, "hazard-bp", w, contexts=1, idle=0.2, backpressure=0.3, seed=5)
        w = make_workload(rng, lanes, [40, 40], weighted=False, extreme=False)
        mon = await check_workload(dut, "hazard-1ctx", w, contexts=1, idle=0.0, backpressure=0.0, seed=6)
        rec = _env_int("PIMCAST_REDUCE_RECURRENCE", _env_int("PIMCAST_REDUCE_LATENCY", 0))
        gaps = [b - a for a, b in zip(mon.in_cycles, mon.in_cycles[1:])]
        # dependent rows T (recurrence) cycles apart; the next bag's first row does not wait
        if rec and gaps != [rec] * 39 + [1] + [rec] * 39:
            raise AssertionError(f"1-beat rows of one bag should issue every {rec} cycles, gaps {gaps}")

    @cocotb.test()
    async def test_throughput(dut):
        """Full rate with enough bags interleaved (``K·R >= recurrence``); latency =
        ReductionUnit.latency."""
        start_clock(dut)
        await reset(dut)
        lanes, slots = dut_geometry(dut)
        lat = _env_int("PIMCAST_REDUCE_LATENCY", 5)
        rec = _env_int("PIMCAST_REDUCE_RECURRENCE", lat)
        rng = np.random.default_rng(_env_int("PIMCAST_SEED", 1) + 4)
        for rb, k in ((1, rec), (4, 2), (4, 1)):
            w = make_workload(rng, rb * lanes, [24] * (4 * k), weighted=True, extreme=False)
            mon = await check_workload(dut, f"rate-{rb}beat-{k}ctx", w, contexts=k, idle=0.0,
                                       backpressure=0.0, seed=7)
            busy = mon.in_cycles[-1] - mon.in_cycles[0] + 1
            rate = len(mon.inputs) / busy
            want = min(1.0, k * rb / rec)
            if rate < want * 0.97:
                raise AssertionError(f"{rb}-beat rows, {k} contexts: {rate:.3f} beats/cycle < {want:.3f}")
        # latency: a single-row bag (first & last) in cycle n leaves in cycle n + L
        w = make_workload(rng, lanes, [1], weighted=False, extreme=False)
        mon = await check_workload(dut, "latency", w, contexts=1, idle=0.0, backpressure=0.0, seed=8)
        got = mon.out_cycles[0] - mon.in_cycles[0]
        cocotb.log.info("latency %d cycles (ReductionUnit.latency = %d)", got, lat)
        if got != lat:
            raise AssertionError(f"latency {got} != documented {lat}")
