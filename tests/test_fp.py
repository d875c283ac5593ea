# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of :mod:`pimcast.hdl.fp` (pipelined binary32 FMA).

Every result is compared bit for bit against an exact oracle written here with
:class:`fractions.Fraction` (independent of the RTL's algorithm), and against
``pimcast.models.numerics.fma_f32_bits`` where that model is available.
"""
from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from pimcast.hdl.fp import (DEFAULT_PIPELINE, FMA, FP32_CANONICAL_NAN, FP32_NEG_ZERO, FP32_ONE,
                            STEPS, add_operands, fma_operands, mul_operands)

try:
    from pimcast.models.numerics import fma_f32_bits as _model_fma_bits
except ImportError:          # the model is written in parallel; the Fraction oracle still runs
    _model_fma_bits = None


# ---- exact oracle -------------------------------------------------------------------------------
NAN = FP32_CANONICAL_NAN
INF = 0x7F800000
MAX = 0x7F7FFFFF
MIN_SUB = 0x00000001
MIN_NORM = 0x00800000
NEG = 0x80000000


def decode(bits):
    """binary32 bits → ("nan",) | ("inf", sign) | ("num", sign, Fraction)."""
    sign = bits >> 31
    exp = (bits >> 23) & 0xFF
    frac = bits & 0x7FFFFF
    if exp == 0xFF:
        return ("nan",) if frac else ("inf", sign)
    if exp == 0:
        mag = Fraction(frac, 1 << 149)
    else:
        mag = Fraction(frac | 0x800000) * Fraction(2) ** (exp - 150)
    return ("num", sign, -mag if sign else mag)


def round_f32(value: Fraction) -> int:
    """Round a nonzero exact value to binary32 bits, nearest-even, with overflow to inf."""
    assert value != 0
    sign = 1 if value < 0 else 0
    mag = abs(value)
    e = mag.numerator.bit_length() - mag.denominator.bit_length()     # 2**e <= mag < 2**(e+2)
    if Fraction(2) ** e > mag:
        e -= 1
    assert Fraction(2) ** e <= mag < Fraction(2) ** (e + 1)
    q = max(e, -126) - 23                     # weight of the last significand bit
    scaled = mag / Fraction(2) ** q
    n = scaled.numerator // scaled.denominator
    rem = scaled - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n & 1):
        n += 1
    if n == 1 << 24:
        n >>= 1
        q += 1
    if n == 0:
        return sign << 31
    if n < 1 << 23:                           # subnormal (q == -149)
        assert q == -149
        return (sign << 31) | n
    biased = q + 150
    if biased >= 0xFF:
        return (sign << 31) | INF
    return (sign << 31) | (biased << 23) | (n - (1 << 23))


def oracle(a, b, c):
    """Exact binary32 fused multiply-add, RNE, canonical NaN."""
    da, db, dc = decode(a), decode(b), decode(c)
    if "nan" in (da[0], db[0], dc[0]):
        return NAN
    if da[0] == "inf" or db[0] == "inf":
        other = db if da[0] == "inf" else da
        if other[0] == "num" and other[2] == 0:
            return NAN                                            # inf * 0
        psign = da[1] ^ db[1]
        if dc[0] == "inf" and dc[1] != psign:
            return NAN                                            # inf - inf
        return (psign << 31) | INF
    if dc[0] == "inf":
        return c
    product = da[2] * db[2]
    total = product + dc[2]
    if total == 0:
        psign = da[1] ^ db[1]
        if product == 0 and dc[2] == 0:
            return (psign & dc[1]) << 31
        return 0
    return round_f32(total)


def test_oracle_sanity():
    assert oracle(FP32_ONE, FP32_ONE, FP32_ONE) == 0x40000000                  # 1*1+1 = 2
    assert oracle(0x40400000, 0x40400000, NEG) == 0x41100000                    # 3*3 = 9
    assert oracle(MIN_SUB, 0x3F000000, 0) == 0                                  # 2**-150 → 0 (tie)
    assert oracle(0x00000003, 0x3F000000, 0) == 0x00000002                      # 1.5 → 2 (tie)
    assert oracle(MAX, 0x40000000, 0) == INF
    assert oracle(NEG, 0, NEG) == NEG and oracle(NEG, 0, 0) == 0
    assert oracle(FP32_ONE, 0xBF800000, FP32_ONE) == 0                          # x - x = +0
    assert oracle(INF, 0, FP32_ONE) == NAN and oracle(INF, FP32_ONE, 0xFF800000) == NAN
    # FLT_MAX + half an ulp rounds to inf (ties to even: FLT_MAX has an odd significand)
    assert oracle(MAX, FP32_ONE, 0x73000000) == INF
    assert oracle(MAX, FP32_ONE, 0x72FFFFFF) == MAX


# ---- simulation harness ---------------------------------------------------------------------------
def run_stream(ops, *, pipeline=DEFAULT_PIPELINE, valid_prob=1.0, ready_prob=1.0, seed=0,
               max_cycles=None):
    """Stream ``ops`` (list of (a, b, c)) through an FMA with random valid/ready.

    Returns ``(results, in_cycles, out_cycles, latency)``: the output payloads in order and the
    cycle numbers of each input and output transfer.
    """
    dut = FMA(pipeline=pipeline)
    rng = random.Random(seed)
    packed = [fma_operands(*op) for op in ops]
    results, in_cycles, out_cycles = [], [], []
    limit = max_cycles or (len(ops) * 4 + 100) * (1 if valid_prob * ready_prob > 0.3 else 4)

    async def testbench(ctx):
        payload = dut.i.payload.as_value()
        sent = 0
        cycle = 0
        while len(results) < len(ops):
            assert cycle < limit, f"stuck: {sent} sent, {len(results)} received after {cycle} cycles"
            valid = sent < len(ops) and rng.random() < valid_prob
            ready = rng.random() < ready_prob
            ctx.set(dut.i.valid, valid)
            if valid:
                ctx.set(payload, packed[sent])
            ctx.set(dut.o.ready, ready)
            if valid and ctx.get(dut.i.ready):
                in_cycles.append(cycle)
                sent += 1
            if ready and ctx.get(dut.o.valid):
                results.append(ctx.get(dut.o.payload))
                out_cycles.append(cycle)
            await ctx.tick()
            cycle += 1
        # nothing more may come out
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(dut.latency + 2):
            assert not ctx.get(dut.o.valid), "spurious extra result"
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results, in_cycles, out_cycles, dut.latency


def check(ops, results):
    assert len(results) == len(ops)
    expected_model = None
    if _model_fma_bits is not None:
        import numpy as np
        arr = np.array(ops, dtype=np.uint32).reshape(-1, 3)
        expected_model = _model_fma_bits(arr[:, 0], arr[:, 1], arr[:, 2])
    failures = []
    for k, ((a, b, c), got) in enumerate(zip(ops, results)):
        want = oracle(a, b, c)
        if got != want:
            failures.append(f"fma({a:#010x}, {b:#010x}, {c:#010x}) = {got:#010x}, expected {want:#010x}")
        if expected_model is not None and int(expected_model[k]) != want:
            failures.append(f"model disagrees with oracle: fma({a:#010x}, {b:#010x}, {c:#010x}): "
                            f"model {int(expected_model[k]):#010x}, oracle {want:#010x}")
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures[:30])


# ---- directed vectors -------------------------------------------------------------------------------
CLASS_VALUES = [
    0x00000000, 0x80000000,                         # ±0
    0x00000001, 0x80000001, 0x007FFFFF, 0x803FF001,  # ±subnormal
    0x00800000, 0x3F800000, 0xBFC00000, 0x7F7FFFFF, 0xC0490FDB, 0x1F800001,  # ±normal
    0x7F800000, 0xFF800000,                         # ±inf
    0x7FC00000, 0xFFC00001, 0x7F800001,             # NaN (quiet, negative, signalling)
]


def directed_vectors():
    vecs = []
    # tie cases: normal and subnormal outputs
    vecs += [
        (0x3F800001, 0x3F800001, NEG),              # (1+u)^2 = 1+2u+u^2: above a tie
        (0x3F800000, FP32_ONE, 0x33800000),         # 1 + 2**-24: exact tie → even (1.0)
        (0x3F800001, FP32_ONE, 0x33800000),         # 1+u + 2**-24: tie → round up to even
        (0x3F800000, FP32_ONE, 0x33800001),         # just above the tie
        (0x3F800000, FP32_ONE, 0xB3800000),         # 1 - 2**-24: exact (below 1, finer ulp)
        (0x3F800000, FP32_ONE, 0xB3000000),         # 1 - 2**-25: tie → 1.0
        (0x00000003, 0x3F000000, 0),                # 1.5 min-sub → 2 (tie, even)
        (0x00000005, 0x3F000000, 0),                # 2.5 → 2
        (0x00000001, 0x3F000000, 0),                # 0.5 min-sub → +0
        (0x80000001, 0x3F000000, 0),                # -0.5 min-sub → -0 (keeps sign)
        (0x00000001, 0x3F000001, 0),                # just above half → min subnormal
        (0x00000001, 0x3F400000, NEG),              # 0.75 → 1
        (0x00FFFFFF, 0x3F000000, 0),                # normal → subnormal tie
        (0x00800001, 0x3F000000, 0),                # min normal+u halved: tie → even
        (0x007FFFFF, 0x3F800001, 0),                # subnormal * (1+u) → crosses
        (0x00FFFFFF, 0x3F7FFFFF, NEG),              # rounds up to min normal?
        (0x007FFFFF, 0x3F810000, 0),                # subnormal → normal via rounding
        (0x3F800000, 0x00800000, 0x80000001),       # min normal - min sub → max subnormal
    ]
    # massive cancellation
    vecs += [
        (0x3F800001, 0x3F800001, 0xBF800002),       # (1+u)^2 - (1+2u) = u^2 = 2**-46
        (0x3F800001, 0x3F7FFFFF, 0xBF800000),       # (1+u)(1-u/2) - 1
        (0x40490FDB, 0x40490FDB, 0xC11DE9E7),       # pi*pi - fl(pi*pi)
        (0x00800001, 0x3F800000, 0x80800000),       # min-normal difference → subnormal
        (0x00800000, 0x3F800000, 0x80800000),       # exact zero → +0
        (0x80800000, 0x3F800000, 0x00800000),       # exact zero → +0
        (0x3F800000, 0xBF800000, 0x3F800000),       # -1 + 1 = +0
        (0x01000001, 0x3F000000, 0x80800000),       # (2**-125(1+u))/2 - 2**-126 → min subnormal*2
        (0x3F801000, 0x3F7FE000, 0xBF800000),       # near-one product minus one
        (0x0C000001, 0x0C000001, 0x98800002),       # tiny cancellation result underflows
        (0x20000001, 0x1F7FFFFF, 0x80000001),
    ]
    # overflow / underflow
    vecs += [
        (MAX, 0x40000000, 0), (MAX, 0xC0000000, 0), (MAX, FP32_ONE, MAX),
        (MAX, FP32_ONE, 0x73000000), (MAX, FP32_ONE, 0x72FFFFFF), (MAX, FP32_ONE, 0xF3000000),
        (0x7F000000, 0x40000000, 0xFF7FFFFF),       # 2**128 - FLT_MAX (exact intermediate)
        (0x5F800000, 0x5F800000, 0xFF7FFFFF),       # 2**128 - FLT_MAX
        (0x5F800000, 0x5F800000, 0),                # 2**128 → inf
        (0x5F7FFFFF, 0x5F800000, 0),                # largest < 2**128 (exact: 2**128 - 2**104)
        (MIN_SUB, MIN_SUB, 0), (MIN_SUB, MIN_SUB, NEG), (0x80000001, MIN_SUB, 0),
        (MIN_SUB, 0x80000001, NEG), (MIN_SUB, MIN_SUB, MIN_SUB), (MIN_SUB, MIN_SUB, 0x80000001),
        (0x20000000, 0x20000000, 0),                # 2**-126 exactly (min normal) from product
        (0x1FFFFFFF, 0x20000000, 0),                # product just below min normal
        (0x1A000000, 0x1A000000, 0),                # 2**-150: tie → 0
        (0x1A000001, 0x1A000000, 0),                # just above → min subnormal
    ]
    # product in subnormal range with normal c, and the reverse
    vecs += [
        (0x00400000, 0x3F000000, FP32_ONE), (0x00400000, 0x40000000, 0x00800000),
        (0x00000001, 0x4B000000, 0x00800000), (0x00000001, 0x7F000000, 0x00000001),
        (0x00000001, 0x7F7FFFFF, 0x80000001), (0x3F800000, 0x3F800000, 0x00000001),
        (0x3F800000, 0x00000001, 0x007FFFFF), (0x00012345, 0x4F123456, 0xC0000000),
        (0x00000007, 0x3E800000, 0x00000001), (0x007FFFFF, 0x4B000000, 0xCB7FFFFF),
    ]
    # large exponent differences (sticky)
    vecs += [
        (0x7E000000, 0x40000000, MIN_SUB), (0x7E000000, 0x40000000, 0x80000001),
        (FP32_ONE, FP32_ONE, 0x80000001), (0x3F800000, 0x3F800001, 0x80000001),
        (FP32_ONE, 0x3F800001, 0xA0000000), (MIN_SUB, MIN_SUB, FP32_ONE),
        (MIN_SUB, 0x80000001, FP32_ONE), (MIN_SUB, 0x80000001, 0x00800000),
        (0x3F800001, FP32_ONE, 0xB3800001), (0x4B800000, FP32_ONE, 0xBF800000),
        (0x4B800000, FP32_ONE, 0x3F800000), (0x4B800001, FP32_ONE, 0xBF800000),
        (0x4B800000, FP32_ONE, 0x3F800001), (0x4B800000, FP32_ONE, 0xBF800001),
        (0x3F800000, 0x3F800000, 0x4C000000), (0x3F800000, 0xBF800000, 0x4C000000),
        (0x3F800001, 0x3F800000, 0x4C000000), (0x3F800001, 0xBF800000, 0x4C000000),
        (0x3FC00000, 0xBF800000, 0x4B800000), (0x3F400000, 0xBF800000, 0x4B800000),
        (0x2F800000, 0x2F800000, 0x80800000), (0x30000000, 0x20000000, 0x7F7FFFFF),
        (0x34000000, 0x34000000, 0xBF800000),
    ]
    # identities
    for x in (0x3F800000, 0x80000001, 0x7F7FFFFF, 0x12345678, 0x9FEDCBA9, 0, NEG, INF, NAN):
        vecs += [(FP32_ONE, x, 0), (FP32_ONE, x, NEG), (x, FP32_ONE, NEG), (x, FP32_ONE, 0)]
    return vecs


def test_all_class_combinations():
    ops = list(itertools.product(CLASS_VALUES, repeat=3))
    results, *_ = run_stream(ops)
    check(ops, results)


def test_directed():
    ops = directed_vectors()
    results, *_ = run_stream(ops, valid_prob=0.8, ready_prob=0.8, seed=1)
    check(ops, results)


def test_add_and_mul_helpers():
    ops = [(0x40490FDB, FP32_ONE, 0x3F800000), (0x3F800000, FP32_ONE, 0xBF800000),
           (0x40490FDB, 0xC0000000, FP32_NEG_ZERO), (0, 0x80000000, FP32_NEG_ZERO),
           (0, 0, FP32_NEG_ZERO), (0x80000000, 0x80000000, FP32_NEG_ZERO)]
    assert add_operands(0x40490FDB, 0x3F800000) == fma_operands(*ops[0])
    assert mul_operands(0x40490FDB, 0xC0000000) == fma_operands(*ops[2])
    results, *_ = run_stream(ops)
    check(ops, results)
    assert results[3:] == [0x80000000, 0x00000000, 0x00000000]   # products of zeros keep sign


# ---- random vectors ---------------------------------------------------------------------------------
def random_bits(rng):
    return rng.getrandbits(32)


def biased_vector(rng):
    """Operands whose product and addend are close in magnitude (cancellation, ties, subnormals)."""
    kind = rng.random()

    def make(sign, exp, frac):
        return (sign << 31) | ((exp & 0xFF) << 23) | (frac & 0x7FFFFF)

    def frac():
        r = rng.random()
        if r < 0.2:
            return 0
        if r < 0.4:
            return rng.choice([0x7FFFFF, 1, 0x400000, 0x7FFFFE, 0x3FFFFF])
        if r < 0.5:
            return rng.getrandbits(23) & ~((1 << rng.randrange(23)) - 1)   # trailing zeros
        return rng.getrandbits(23)

    if kind < 0.15:
        # all small exponents: subnormal / near-subnormal results
        ea, eb = rng.randrange(0, 90), rng.randrange(0, 90)
        pexp = ea + eb - 127
        ec = max(0, min(254, pexp + rng.randrange(-3, 4)))
        if rng.random() < 0.5:
            ec = rng.randrange(0, 3)
    elif kind < 0.25:
        # overflow region
        ea, eb = rng.randrange(150, 255), rng.randrange(150, 255)
        ec = rng.choice([254, 253, rng.randrange(0, 255)])
    else:
        ea = rng.randrange(1, 255)
        eb = rng.randrange(max(1, 127 - ea + 1), min(254, 127 - ea + 254))
        pexp = ea + eb - 127
        ec = max(0, min(254, pexp + rng.choice([0, 0, 0, 1, -1, 2, -2, rng.randrange(-30, 31)])))
    a = make(rng.getrandbits(1), ea, frac())
    b = make(rng.getrandbits(1), eb, frac())
    c = make(rng.getrandbits(1), ec, frac())
    if kind > 0.6:
        # exact-ish cancellation: c = -fl(a*b) (±1 ulp)
        p = decode(a)[2] * decode(b)[2]
        if p != 0:
            c = round_f32(-p)
            if (c & 0x7F800000) != INF and rng.random() < 0.5:
                c = (c + rng.choice([-1, 1])) & 0xFFFFFFFF if c & 0x7FFFFFFF else c
    return a, b, c


def random_ops(n, seed, biased_share=0.6):
    rng = random.Random(seed)
    ops = []
    for _ in range(n):
        if rng.random() < biased_share:
            ops.append(biased_vector(rng))
        else:
            ops.append((random_bits(rng), random_bits(rng), random_bits(rng)))
    return ops


def test_random_backpressure():
    ops = random_ops(1000, seed=2)
    results, in_cycles, out_cycles, _ = run_stream(ops, valid_prob=0.7, ready_prob=0.7, seed=3)
    check(ops, results)


def test_random_full_rate_latency_throughput():
    ops = random_ops(1500, seed=4)
    results, in_cycles, out_cycles, latency = run_stream(ops)
    check(ops, results)
    assert latency == FMA.latency == 5
    assert in_cycles == list(range(len(ops))), "input must be accepted every cycle"
    assert out_cycles == [n + latency for n in in_cycles], "constant latency, one result per cycle"


@pytest.mark.parametrize("pipeline", [
    ("round",),
    STEPS,
    ("partial", "count", "round"),
    ("unpack", "partial", "multiply", "add", "count", "normalize", "round"),   # the old seven
    ("classify", "lzc", "shift", "round"),
    ("zeros", "round"),
])
def test_pipeline_variants(pipeline):
    ops = random_ops(120, seed=5) + directed_vectors()
    results, in_cycles, out_cycles, latency = run_stream(ops, pipeline=pipeline)
    check(ops, results)
    assert latency == len(pipeline) == elaborated(pipeline=pipeline).latency
    assert out_cycles == [n + latency for n in in_cycles]
    ops = ops[:120]
    results, *_ = run_stream(ops, pipeline=pipeline, valid_prob=0.6, ready_prob=0.5, seed=6)
    check(ops, results)


def test_stall_patterns():
    """Ready held low for long stretches, toggling, and valid gaps: no loss, no duplication."""
    ops = random_ops(400, seed=7)
    for valid_prob, ready_prob, seed in ((1.0, 0.1, 8), (0.2, 1.0, 9), (0.5, 0.5, 10), (1.0, 0.95, 11)):
        results, *_ = run_stream(ops, valid_prob=valid_prob, ready_prob=ready_prob, seed=seed,
                                 max_cycles=len(ops) * 40 + 100)
        check(ops, results)


# The volume regression (random operands under random valid/ready, 5,000 vectors on Icarus and
# Verilator, 100,000 on Verilator) runs on the generated Verilog of this same FMA in
# tests/test_sim_fma.py: Amaranth's Python simulator needed ~11 min for 8,000 operations on a
# 2-core Zen 1 host, ~100x slower per vector than Verilator.


# ---- structure ------------------------------------------------------------------------------------
def test_verilog_convert():
    text = verilog.convert(FMA(), name="fma")
    for port in ("clk", "rst", "i__payload", "i__valid", "i__ready", "o__payload", "o__valid",
                 "o__ready"):
        assert port in text
    assert "module fma" in text


def elaborated(**kwargs):
    """An FMA that has been elaborated once (so Amaranth does not warn that it went unused)."""
    dut = FMA(**kwargs)
    Fragment.get(dut, None)
    return dut


def test_latency_attribute():
    assert FMA.latency == len(DEFAULT_PIPELINE) == 5
    assert elaborated().latency == 5
    assert elaborated(pipeline=STEPS).latency == len(STEPS) == 20
    assert elaborated(pipeline=["round", "unpack"]).pipeline == ("unpack", "round")
    with pytest.raises(AttributeError):
        elaborated().latency = 3


@pytest.mark.parametrize("pipeline, exc, msg", [
    ("round", TypeError, r"Pipeline must be an iterable of step names, not the string 'round'"),
    (3, TypeError, r"Pipeline must be an iterable of step names, not 3"),
    (("unpack", "bogus", "round"), ValueError,
     r"Pipeline step must be one of 'input', 'decode', 'classify', 'exponents', 'unpack', 'clamp', 'relay', 'align', 'partial', "
     r"'products', 'multiply', 'add', 'select', 'zeros', 'lzc', 'count', 'shift', 'normalize', 'pack', 'round', not 'bogus'"),
    (("round", "round"), ValueError, r"Pipeline step 'round' is listed more than once"),
    (("unpack", "add"), ValueError, r"Pipeline must include 'round' \(the output register\)"),
])
def test_constructor_validation(pipeline, exc, msg):
    with pytest.raises(exc, match=msg):
        FMA(pipeline=pipeline)


def test_dsp_primitive():
    """``dsp="ecp5"``: four MULT18X18D with input and output registers replace the align and
    partial registers of ma/mb and the products (synthesis only: no simulator models them)."""
    from amaranth.back import rtlil

    text = rtlil.convert(FMA(pipeline=STEPS, dsp="ecp5"))
    assert text.count("cell \\MULT18X18D") == 4
    for param in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert text.count(f'parameter \\{param} "CLK0"') == 4
    assert "MULT18X18D" not in rtlil.convert(FMA(pipeline=STEPS))
    assert FMA(pipeline=STEPS, dsp="ecp5").latency == FMA(pipeline=STEPS).latency == len(STEPS)
    with pytest.raises(ValueError, match=r"DSP must be one of None, 'ecp5', not 'xilinx'"):
        FMA(pipeline=STEPS, dsp="xilinx")
    with pytest.raises(ValueError, match=r"DSP 'ecp5' needs the 'align' and 'partial' steps registered"):
        FMA(dsp="ecp5")


def test_operand_helpers_validation():
    with pytest.raises(ValueError, match=r"Operand b must be a 32-bit unsigned integer, not -1"):
        fma_operands(0, -1, 0)
    with pytest.raises(ValueError, match=r"Operand c must be a 32-bit unsigned integer"):
        fma_operands(0, 0, 1 << 32)
