"""cocotb testbench for the binary32 FMA unit (``pimcast.hdl.fp.FMA``, Verilog top ``fma``).

Structure (cocotb ``matrix_multiplier`` style)::

    Driver ──► DUT ──► (o stream)
      │  random idle cycles on i__valid        random back-pressure on o__ready
      ▼
    Monitor: samples every transfer on both streams (valid & ready at a clock edge)
      ├─ input transactions ──► Model (pimcast.models.numerics.fma_f32_bits, vectorized)
      └─ output transactions ─────────────────────────► Checker (raw bits, in order)

Driver and Monitor are :func:`pimcast.sim.streams.run_stream` (one clocked loop, shared with the
reduction-unit testbench: ``RisingEdge`` to drive, ``ReadOnly`` to sample); the Model is
applied to all observed inputs at once with numpy, and the Checker compares raw bits (every NaN
must be exactly 0x7FC00000) and reports the first mismatches with operands in hex.

Settings come from environment variables (set by ``pimcast.sim.runner``):

``PIMCAST_FMA_COUNT``    random vectors in ``test_random`` (default 20000)
``PIMCAST_SEED``         seed for vectors, idle and back-pressure patterns (default 1)
``PIMCAST_FMA_LATENCY``  the RTL's documented latency (``FMA.latency``); checked in
                         ``test_backpressure`` (skipped check when absent)
``PIMCAST_VECTORS``      vectors-file mode: a file of ``a b c`` hex words per line; only
                         ``test_vectors_file`` runs and writes one result per line to
``PIMCAST_VECTORS_OUT``
``PIMCAST_STATS``        JSON-lines file receiving ``{"test", "vectors", "cycles", "seconds"}``
``PIMCAST_FMA_CORRUPT``  deliberately corrupt the Model (flip bit 0 of every 97th expected
                         result) to prove that the Checker fails the run
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import cocotb

from pimcast.sim import streams
from pimcast.sim.streams import Monitor, reset, start_clock

CANONICAL_NAN = 0x7FC00000
MASK32 = 0xFFFFFFFF

# --------------------------------------------------------------------------------------------
# vectors (plain numpy; importable outside the simulator)
# --------------------------------------------------------------------------------------------


def _f(x: float) -> int:
    return int(np.array(x, dtype=np.float32).view(np.uint32))


def directed_vectors() -> list[tuple[int, int, int]]:
    """Special cases: signed zeros, subnormals, inf, NaN, ties, cancellation, overflow, underflow."""
    one, neg_one, two, half = _f(1.0), _f(-1.0), _f(2.0), _f(0.5)
    pz, nz = 0x00000000, 0x80000000
    inf, ninf = 0x7F800000, 0xFF800000
    qnan, snan, nqnan = 0x7FC00000, 0x7F800001, 0xFFC12345
    maxf, minsub, maxsub, minnorm = 0x7F7FFFFF, 0x00000001, 0x007FFFFF, 0x00800000
    v = [
        # signed zeros: IEEE RNE sign rules
        (pz, pz, pz), (pz, pz, nz), (nz, pz, nz), (nz, nz, nz), (pz, neg_one, nz), (nz, one, pz),
        (one, one, neg_one), (neg_one, one, one), (one, pz, nz), (neg_one, pz, pz),
        # subnormal operands and results
        (minsub, one, pz), (maxsub, one, minsub), (minsub, half, pz), (minsub | 0x80000000, half, pz),
        (0x00000003, half, pz), (maxsub, two, pz), (minnorm, half, pz), (minsub, _f(1.5), pz),
        (minsub, _f(2.0 ** 23), pz), (maxsub, maxsub, pz), (maxsub, maxsub, minsub),
        (_f(2.0 ** -70), _f(2.0 ** -70), pz), (_f(2.0 ** -100), _f(2.0 ** -50), pz),
        (_f(-(2.0 ** -100)), _f(2.0 ** -50), pz), (_f(1.5 * 2.0 ** -100), _f(2.0 ** -49), pz),
        (minnorm, neg_one, minsub), (minnorm, one, minsub | 0x80000000),
        # infinities and NaN (every NaN result canonical)
        (inf, one, pz), (ninf, one, one), (inf, pz, one), (pz, ninf, one), (inf, one, ninf),
        (inf, neg_one, inf), (inf, inf, inf), (one, one, inf), (maxf, maxf, ninf),
        (qnan, one, pz), (one, snan, pz), (one, one, nqnan), (snan, pz, inf), (nqnan, inf, pz),
        (inf, pz, qnan), (0x7FFFFFFF, 0xFFFFFFFF, 0x7F800001),
        # ties to even
        (one, one, _f(2.0 ** -24)), (_f(1.0 + 2.0 ** -23), one, _f(2.0 ** -24)),
        (_f(3.0), _f(2.0 ** -25), one), (one, _f(2.0 ** -24), neg_one),
        (_f(1.0 + 2.0 ** -23), _f(1.0 + 2.0 ** -23), pz), (_f(2.0 ** 24), one, one),
        (_f(2.0 ** 24 + 2), one, one), (maxf, one, _f(2.0 ** 103)), (maxf, one, _f(2.0 ** 102)),
        (minsub, half, minsub), (_f(3 * 2.0 ** -150), half, pz),
        # cancellation (a*b ~ -c)
        (_f(1.0 + 2.0 ** -23), _f(1.0 - 2.0 ** -24), neg_one), (_f(0.1), _f(10.0), neg_one),
        (_f(1.0 / 3.0), _f(3.0), neg_one), (_f(-1.1), _f(1.1), _f(1.21)),
        (_f(12345.678), _f(-0.001), _f(12.345678)), (_f(1e-20), _f(1e-20), _f(-1e-40)),
        # overflow
        (maxf, two, pz), (maxf, _f(-2.0), pz), (maxf, one, maxf), (_f(2.0 ** 64), _f(2.0 ** 64), pz),
        (_f(2.0 ** 64), _f(2.0 ** 64), ninf), (maxf, _f(1.0 + 2.0 ** -23), _f(-(2.0 ** 104))),
        # underflow
        (_f(2.0 ** -100), _f(2.0 ** -100), pz), (_f(-(2.0 ** -100)), _f(2.0 ** -100), nz),
        (_f(2.0 ** -75), _f(2.0 ** -75), pz), (_f(2.0 ** -75), _f(1.5 * 2.0 ** -75), pz),
        (_f(2.0 ** -63), _f(2.0 ** -63), minsub), (minnorm, _f(1.0 - 2.0 ** -24), pz),
    ]
    return [(a & MASK32, b & MASK32, c & MASK32) for a, b, c in v]


def _u32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.uint64).astype(np.uint32)


def _pack_float(rng: np.random.Generator, n: int, exp_lo: int, exp_hi: int) -> np.ndarray:
    """Random sign, biased exponent in [exp_lo, exp_hi], random mantissa."""
    sign = rng.integers(0, 2, n, dtype=np.uint32) << np.uint32(31)
    exp = rng.integers(exp_lo, exp_hi + 1, n).astype(np.uint32) << np.uint32(23)
    man = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    return sign | exp | man


def random_vectors(count: int, seed: int) -> np.ndarray:
    """``count`` x 3 uint32 operands: a mix of uniform bit patterns and targeted generators.

    Kinds (about equal shares): uniform bits; normal operands of moderate range; subnormal
    operands; cancellation (c = -round(a*b) +- a few ulp); overflow (huge products);
    underflow (products near and below the subnormal range); exact ties (c + odd half-ulps).
    """
    from pimcast.models.numerics import fma_f32_bits

    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 7, count)
    out = np.empty((count, 3), dtype=np.uint32)
    for kind in range(7):
        idx = np.nonzero(kinds == kind)[0]
        n = idx.size
        if n == 0:
            continue
        if kind == 0:  # uniform bit patterns (hits NaN/inf/subnormal/zero at their natural rates)
            v = rng.integers(0, 1 << 32, (n, 3), dtype=np.uint64).astype(np.uint32)
        elif kind == 1:  # ordinary numbers of similar magnitude
            v = np.stack([_pack_float(rng, n, 100, 154) for _ in range(3)], axis=1)
        elif kind == 2:  # subnormal operands (one or more), mixed with small normals
            v = np.stack([_pack_float(rng, n, 1, 40) for _ in range(3)], axis=1)
            for col in range(3):
                sub = rng.random(n) < 0.5
                v[sub, col] &= np.uint32(0x807FFFFF)
            v[rng.random(n) < 0.3, 1] = _pack_float(rng, 1, 120, 200)[0]
        elif kind == 3:  # cancellation: c ~ -(a*b)
            a = _pack_float(rng, n, 60, 190)
            b = _pack_float(rng, n, 60, 190)
            p = fma_f32_bits(a, b, np.uint32(0x80000000))
            delta = rng.integers(-3, 4, n).astype(np.int64)
            c = ((p.astype(np.int64) + delta) & MASK32).astype(np.uint32) ^ np.uint32(0x80000000)
            finite = (p & np.uint32(0x7F800000)) != np.uint32(0x7F800000)
            c = np.where(finite, c, _pack_float(rng, n, 60, 190))
            v = np.stack([a, b, c], axis=1)
        elif kind == 4:  # overflow: products around and beyond FLT_MAX
            a = _pack_float(rng, n, 180, 254)
            b = _pack_float(rng, n, 180, 254)
            c = _pack_float(rng, n, 200, 254)
            c[rng.random(n) < 0.3] = np.uint32(0x7F7FFFFF)
            v = np.stack([a, b, c], axis=1)
        elif kind == 5:  # underflow: products near / below the subnormal range
            a = _pack_float(rng, n, 20, 90)
            b = _pack_float(rng, n, 20, 90)
            c = _pack_float(rng, n, 0, 20)
            c[rng.random(n) < 0.3] &= np.uint32(0x80000000)  # signed zero
            v = np.stack([a, b, c], axis=1)
        else:  # exact ties: a*b = odd * half-ulp(c)
            c = _pack_float(rng, n, 30, 220)
            cexp = ((c >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int64)
            odd = (2 * rng.integers(0, 4, n) + 1).astype(np.int64)  # 1,3,5,7
            # half ulp of c = 2**(cexp - 151); a = odd * 2**j, b = 2**(cexp - 151 - j)
            j = rng.integers(-10, 10, n).astype(np.int64)
            a_val = odd.astype(np.float64) * np.exp2(j.astype(np.float64))
            b_exp = cexp - 151 - j
            b_val = np.exp2(b_exp.astype(np.float64))
            a = np.asarray(a_val, dtype=np.float32).view(np.uint32)
            b = np.asarray(b_val, dtype=np.float32).view(np.uint32)
            a ^= (rng.integers(0, 2, n, dtype=np.uint32) << np.uint32(31))
            v = np.stack([a, b, c], axis=1)
        out[idx] = v
    return out


def pack(vectors: np.ndarray) -> list[int]:
    """Rows (a, b, c) -> ``i__payload`` ints (a = bits 31:0, b = 63:32, c = 95:64)."""
    v = np.asarray(vectors, dtype=np.uint64)
    lo = (v[:, 0] | (v[:, 1] << np.uint64(32))).tolist()
    hi = v[:, 2].tolist()
    return [x | (y << 64) for x, y in zip(lo, hi)]


def unpack(payloads: list[int]) -> np.ndarray:
    arr = np.array([[p & MASK32, (p >> 32) & MASK32, (p >> 64) & MASK32] for p in payloads], dtype=np.uint64)
    return arr.reshape(-1, 3).astype(np.uint32)


def read_vectors_file(path: str | Path) -> np.ndarray:
    """``a b c`` hex words per line (blank lines and ``#`` comments ignored)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            a, b, c = (int(t, 16) for t in line.split()[:3])
            rows.append((a, b, c))
    return np.array(rows, dtype=np.uint32).reshape(-1, 3)


# --------------------------------------------------------------------------------------------
# Model and Checker
# --------------------------------------------------------------------------------------------


class Model:
    """The bit-exact reference: :func:`pimcast.models.numerics.fma_f32_bits` on input transactions."""

    def __init__(self, corrupt: bool = False):
        from pimcast.models.numerics import fma_f32_bits

        self._fma = fma_f32_bits
        self.corrupt = corrupt

    def __call__(self, operands: np.ndarray) -> np.ndarray:
        if operands.size == 0:
            return np.zeros(0, dtype=np.uint32)
        exp = np.asarray(self._fma(operands[:, 0], operands[:, 1], operands[:, 2]), dtype=np.uint32).copy()
        if self.corrupt:  # deliberate fault injection, see PIMCAST_FMA_CORRUPT
            exp[::97] ^= np.uint32(1)
        return exp


@dataclass
class Mismatch:
    index: int
    a: int
    b: int
    c: int
    got: int | None
    expected: int | None

    def __str__(self) -> str:
        g = "missing" if self.got is None else f"{self.got:08x}"
        e = "extra" if self.expected is None else f"{self.expected:08x}"
        return f"#{self.index}: a={self.a:08x} b={self.b:08x} c={self.c:08x} -> rtl {g}, expected {e}"


class Checker:
    """Compares output transactions with the Model's results, in order, on raw bits."""

    def __init__(self, model: Model):
        self.model = model

    def check(self, inputs: list[int], outputs: list[int]) -> list[Mismatch]:
        ops = unpack(inputs)
        expected = self.model(ops).tolist()
        got = list(outputs)
        bad: list[Mismatch] = []
        for i in range(max(len(expected), len(got))):
            e = expected[i] if i < len(expected) else None
            g = got[i] if i < len(got) else None
            if e != g:
                a, b, c = (ops[i].tolist() if i < len(ops) else (0, 0, 0))
                bad.append(Mismatch(i, a, b, c, g, e))
        return bad


def _report(name: str, n: int, bad: list[Mismatch], show: int = 10) -> None:
    if bad:
        lines = "\n  ".join(str(m) for m in bad[:show])
        raise AssertionError(f"{name}: {len(bad)} mismatches in {n} vectors; first:\n  {lines}")


# --------------------------------------------------------------------------------------------
# Driver / Monitor: pimcast.sim.streams (shared with the reduction-unit testbench)
# --------------------------------------------------------------------------------------------

#: the salt of this testbench's idle/back-pressure patterns (see :func:`streams.run_stream`)
_SALT = 0x5EED


async def run_stream(dut, payloads: list[int], *, idle: float, backpressure: float, seed: int) -> Monitor:
    """:func:`pimcast.sim.streams.run_stream` with one output per input."""
    return await streams.run_stream(dut, payloads, idle=idle, backpressure=backpressure, seed=seed,
                                    salt=_SALT, drain_cycles=64, stall_limit=2000)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw, 0) if raw.strip() else default


def _stats(test: str, vectors: int, cycles: int, seconds: float) -> None:
    path = os.environ.get("PIMCAST_STATS")
    rec = {"test": test, "vectors": vectors, "cycles": cycles, "seconds": round(seconds, 4),
           "vectors_per_s": round(vectors / seconds, 1) if seconds > 0 else None}
    cocotb.log.info("%s: %d vectors, %d cycles, %.2f s (%.0f vectors/s)", test, vectors, cycles,
                    seconds, vectors / seconds if seconds > 0 else float("nan"))
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def _corrupt() -> bool:
    return os.environ.get("PIMCAST_FMA_CORRUPT", "") not in ("", "0")


async def _check_stream(dut, name: str, vectors: np.ndarray, *, idle: float, backpressure: float,
                        seed: int) -> Monitor:
    payloads = pack(vectors)
    t0 = time.perf_counter()
    mon = await run_stream(dut, payloads, idle=idle, backpressure=backpressure, seed=seed)
    secs = time.perf_counter() - t0
    _stats(name, len(payloads), mon.cycles, secs)
    if mon.inputs != payloads:
        raise AssertionError(f"{name}: the driver's {len(payloads)} vectors were not all accepted in "
                             f"order ({len(mon.inputs)} accepted)")
    bad = Checker(Model(_corrupt())).check(mon.inputs, mon.outputs)
    _report(name, len(payloads), bad)
    return mon


VECTORS_MODE = bool(os.environ.get("PIMCAST_VECTORS"))


@cocotb.test(skip=VECTORS_MODE)
async def test_directed(dut):
    """Special cases, with idle cycles and back-pressure."""
    start_clock(dut)
    await reset(dut)
    vec = np.array(directed_vectors(), dtype=np.uint32)
    await _check_stream(dut, "directed", vec, idle=0.3, backpressure=0.3, seed=_env_int("PIMCAST_SEED", 1))


@cocotb.test(skip=VECTORS_MODE)
async def test_random(dut):
    """PIMCAST_FMA_COUNT random vectors (uniform bits + targeted generators), random idle/back-pressure."""
    start_clock(dut)
    await reset(dut)
    count = _env_int("PIMCAST_FMA_COUNT", 20000)
    seed = _env_int("PIMCAST_SEED", 1)
    vec = random_vectors(count, seed)
    await _check_stream(dut, "random", vec, idle=0.1, backpressure=0.1, seed=seed)


@cocotb.test(skip=VECTORS_MODE)
async def test_backpressure(dut):
    """No loss/duplication under heavy back-pressure; 1 result/cycle and documented latency when ready is high."""
    start_clock(dut)
    await reset(dut)
    seed = _env_int("PIMCAST_SEED", 1) + 7
    # heavy, bursty back-pressure and idle input
    vec = random_vectors(2000, seed)
    await _check_stream(dut, "backpressure-heavy", vec, idle=0.5, backpressure=0.7, seed=seed)
    # full rate: valid and ready always high
    n = 512
    vec = random_vectors(n, seed + 1)
    mon = await _check_stream(dut, "full-rate", vec, idle=0.0, backpressure=0.0, seed=seed)
    if mon.i_ready_low_while_o_ready:
        raise AssertionError(f"i__ready was low in {mon.i_ready_low_while_o_ready} cycles although o__ready was high")
    lat = mon.out_cycles[0] - mon.in_cycles[0]
    gaps = [y - x for x, y in zip(mon.out_cycles, mon.out_cycles[1:])]
    if any(g != 1 for g in gaps):
        raise AssertionError(f"throughput below 1/cycle with ready high: output gaps {sorted(set(gaps))}")
    lats = {o - i for i, o in zip(mon.in_cycles, mon.out_cycles)}
    if lats != {lat}:
        raise AssertionError(f"latency not constant with ready high: {sorted(lats)}")
    doc = os.environ.get("PIMCAST_FMA_LATENCY")
    cocotb.log.info("measured latency %d cycles (input transfer -> output transfer); FMA.latency = %s", lat, doc)
    if doc is not None and int(doc) != lat:
        raise AssertionError(f"measured latency {lat} cycles != FMA.latency {doc}")


@cocotb.test(skip=not VECTORS_MODE)
async def test_vectors_file(dut):
    """Vectors-file mode (verify-fp): apply PIMCAST_VECTORS, write results to PIMCAST_VECTORS_OUT."""
    start_clock(dut)
    await reset(dut)
    vec = read_vectors_file(os.environ["PIMCAST_VECTORS"])
    payloads = pack(vec)
    t0 = time.perf_counter()
    mon = await run_stream(dut, payloads, idle=0.0, backpressure=0.0, seed=1)
    _stats("vectors-file", len(payloads), mon.cycles, time.perf_counter() - t0)
    if len(mon.outputs) != len(payloads):
        raise AssertionError(f"{len(payloads)} vectors in, {len(mon.outputs)} results out")
    out = os.environ.get("PIMCAST_VECTORS_OUT")
    if out:
        Path(out).write_text("".join(f"{r:08x}\n" for r in mon.outputs))
