"""``pimcast verify-fp``: run Berkeley TestFloat vectors through the FMA RTL.

Every vector becomes one FMA operation: ``add`` = ``a*1.0 + b`` (b operand 0x3F800000),
``mul`` = ``a*b + (-0.0)`` (c operand 0x80000000), ``fma`` = ``a*b + c``. A result matches when
its bits equal the expected bits, or when both are NaN (TestFloat's reference returns its own
default NaN; the RTL always returns 0x7FC00000). The flags column is ignored: the RTL raises no
exception flags.

Simulators: ``amaranth`` (Amaranth's Python simulator, directly on the component), ``icarus`` and
``verilator`` (the generated Verilog under cocotb, through the testbench's vectors-file mode).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pimcast.sim.testfloat import OPS, TestFloatError, Vectors, fma_operands_for, parse_file

__all__ = ["VerifyResult", "run_amaranth", "run_rtl", "compare", "verify", "add_arguments", "main"]

SIMULATORS = ("amaranth", "icarus", "verilator")


def _is_nan(x: np.ndarray) -> np.ndarray:
    return ((x & np.uint32(0x7F800000)) == np.uint32(0x7F800000)) & ((x & np.uint32(0x007FFFFF)) != 0)


@dataclass
class VerifyResult:
    vectors: Vectors
    fma_ops: np.ndarray
    got: np.ndarray
    mismatches: np.ndarray  # indices into the vectors
    seconds: float
    simulator: str

    def lines(self, show: int) -> list[str]:
        v = self.vectors
        names = ["a", "b", "c"][: OPS[v.op][1]]
        out = []
        for i in self.mismatches[:show].tolist():
            ops = " ".join(f"{n}={x:08x}" for n, x in zip(names, v.operands[i].tolist()))
            fa, fb, fc = self.fma_ops[i].tolist()
            out.append(f"{v.path}:{int(v.lines[i])}: {OPS[v.op][0]} {ops} (fma {fa:08x} {fb:08x} {fc:08x}): "
                       f"rtl {int(self.got[i]):08x}, expected {int(v.expected[i]):08x} "
                       f"(flags {int(v.flags[i]):02x}, ignored)")
        return out


def compare(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Indices where ``got`` and ``expected`` differ (both NaN counts as equal)."""
    got = np.asarray(got, dtype=np.uint32)
    expected = np.asarray(expected, dtype=np.uint32)
    same = (got == expected) | (_is_nan(got) & _is_nan(expected))
    return np.nonzero(~same)[0]


def run_amaranth(fma_ops: np.ndarray) -> np.ndarray:
    """Results of the FMA component on Amaranth's Python simulator (valid and ready held high)."""
    from amaranth.sim import Simulator

    from pimcast.hdl.fp import FMA
    from pimcast.sim.tb_fma import pack

    dut = FMA()
    payloads = pack(fma_ops)
    n = len(payloads)
    results: list[int] = []

    async def testbench(ctx):
        payload = dut.i.payload.as_value()
        ctx.set(dut.o.ready, 1)
        k = 0
        stall = 0
        while len(results) < n:
            if k < n:
                ctx.set(payload, payloads[k])
                ctx.set(dut.i.valid, 1)
            else:
                ctx.set(dut.i.valid, 0)
            accepted = k < n and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                results.append(ctx.get(dut.o.payload))
                stall = 0
            else:
                stall += 1
                if stall > 10_000:
                    raise RuntimeError(f"FMA produced no result for 10000 cycles ({len(results)}/{n} done)")
            if accepted:
                k += 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(results, dtype=np.uint32)


def run_rtl(fma_ops: np.ndarray, simulator: str, build_dir: str | Path | None = None) -> np.ndarray:
    """Results from the generated Verilog under cocotb (the testbench's vectors-file mode)."""
    from pimcast.sim.runner import SimError, build_dir_for, run_cocotb

    bdir = Path(build_dir) if build_dir else build_dir_for("fma", simulator)
    bdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="verify-fp-", dir=bdir) as tmp:
        vin, vout = Path(tmp) / "vectors.txt", Path(tmp) / "results.txt"
        vin.write_text("".join(f"{a:08x} {b:08x} {c:08x}\n" for a, b, c in np.asarray(fma_ops).tolist()))
        res = run_cocotb("fma", "pimcast.sim.tb_fma", simulator, bdir, testcase="test_vectors_file",
                         extra_env={"PIMCAST_VECTORS": str(vin), "PIMCAST_VECTORS_OUT": str(vout)})
        if not res.ok or not vout.is_file():
            raise SimError(f"{simulator} vectors run failed: {res.tests} tests, {res.failures} failures"
                           f"{', ' + res.error if res.error else ''} (see {res.build_dir})")
        got = [int(t, 16) for t in vout.read_text().split()]
    return np.array(got, dtype=np.uint32)


def verify(vectors_file: str | Path, op: str, simulator: str = "amaranth") -> VerifyResult:
    """Parse ``vectors_file`` and run every vector through the RTL on ``simulator``."""
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; use one of {', '.join(SIMULATORS)}")
    vec = parse_file(vectors_file, op)
    ops = fma_operands_for(vec)
    t0 = time.perf_counter()
    got = run_amaranth(ops) if simulator == "amaranth" else run_rtl(ops, simulator)
    secs = time.perf_counter() - t0
    if len(got) != len(vec):
        raise RuntimeError(f"{len(vec)} vectors in, {len(got)} results out")
    return VerifyResult(vec, ops, got, compare(got, vec.expected), secs, simulator)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--op", required=True, choices=list(OPS), help="add (f32_add), mul (f32_mul), fma (f32_mulAdd)")
    parser.add_argument("--vectors", required=True, help="testfloat_gen output file")
    parser.add_argument("--simulator", default="amaranth", choices=SIMULATORS)
    parser.add_argument("--show", type=int, default=10, help="print the first N mismatches (default 10)")


def main(args: argparse.Namespace) -> int:
    try:
        res = verify(args.vectors, args.op, args.simulator)
    except TestFloatError as exc:
        print(f"pimcast verify-fp: {exc}", file=sys.stderr)
        return 2
    n, m = len(res.vectors), len(res.mismatches)
    print(f"{n} vectors, {m} mismatches ({OPS[args.op][0]} on {args.simulator}, {res.seconds:.1f} s; flags ignored)")
    for line in res.lines(args.show):
        print(f"  {line}")
    if m > args.show:
        print(f"  ... {m - args.show} more")
    return 1 if m else 0
