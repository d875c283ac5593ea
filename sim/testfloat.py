"""Berkeley TestFloat vector files: parser and writer.

``testfloat_gen <op>`` prints one test case per line as hexadecimal words separated by spaces:

* ``f32_add``, ``f32_mul``:  ``a b result flags``
* ``f32_mulAdd``:            ``a b c result flags``   (``a*b + c``, one rounding)

Operands and results are binary32 bit patterns (8 hex digits), ``flags`` the IEEE exception
flags of the reference (SoftFloat bits: 0x01 inexact, 0x02 underflow, 0x04 overflow,
0x08 infinite, 0x10 invalid). pimcast's FP units raise no flags, so the flags column is parsed
(it must be hex) but **ignored** in comparisons.

A malformed line raises :class:`TestFloatError` naming the file, the 1-based line number and the
bad token. Blank lines and ``#`` comments are skipped (testfloat_gen writes neither; they help
hand-made files).

``python -m pimcast.sim.testfloat DIR`` regenerates the small TestFloat-format files committed
under ``tests/data/testfloat/`` (testfloat_gen itself is not installable here); their expected
results come from :mod:`pimcast.models.numerics` and their flags are computed exactly with
:class:`fractions.Fraction` arithmetic (inexact/underflow after rounding/overflow/invalid).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["OPS", "TestFloatError", "Vectors", "parse_file", "parse_lines", "write_file", "fma_operands_for",
           "generate_files"]

#: op name -> (TestFloat function name, number of operands)
OPS: dict[str, tuple[str, int]] = {
    "add": ("f32_add", 2),
    "mul": ("f32_mul", 2),
    "fma": ("f32_mulAdd", 3),
}
_ALIASES = {"f32_add": "add", "f32_mul": "mul", "f32_mulAdd": "fma", "mulAdd": "fma"}

ONE = 0x3F800000
NEG_ZERO = 0x80000000


class TestFloatError(ValueError):
    """A malformed TestFloat vector line (the message names file, line and token)."""

    __test__ = False  # not a pytest class


@dataclass
class Vectors:
    """Parsed vectors of one operation."""

    __test__ = False

    op: str                 # "add" | "mul" | "fma"
    operands: np.ndarray    # uint32 [n, arity] as in the file
    expected: np.ndarray    # uint32 [n]
    flags: np.ndarray       # uint8 [n] (informative only)
    lines: np.ndarray       # 1-based line numbers in the file
    path: str

    def __len__(self) -> int:
        return len(self.expected)


def _op_name(op: str) -> str:
    op = _ALIASES.get(op, op)
    if op not in OPS:
        raise ValueError(f"unknown operation {op!r}; use one of {', '.join(OPS)} "
                         f"(TestFloat: {', '.join(v[0] for v in OPS.values())})")
    return op


def _hex(tok: str, max_digits: int, what: str, where: str) -> int:
    if not tok or len(tok) > max_digits or any(ch not in "0123456789abcdefABCDEF" for ch in tok):
        raise TestFloatError(f"{where}: bad token {tok!r}: expected the {what} as at most "
                             f"{max_digits} hex digits")
    return int(tok, 16)


def parse_lines(lines, op: str, path: str = "<input>") -> Vectors:
    """Parse an iterable of lines (see the module docstring for the format)."""
    op = _op_name(op)
    arity = OPS[op][1]
    names = ["a", "b", "c"][:arity] + ["result", "flags"]
    ops, exp, flg, nums = [], [], [], []
    for lineno, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        toks = text.split()
        where = f"{path}:{lineno}"
        if len(toks) != arity + 2:
            bad = toks[arity + 2] if len(toks) > arity + 2 else "<end of line>"
            raise TestFloatError(f"{where}: bad token {bad!r}: {OPS[op][0]} lines have {arity + 2} hex words "
                                 f"({' '.join(names)}), this one has {len(toks)}")
        vals = [_hex(t, 8, n, where) for t, n in zip(toks[:-1], names[:-1])]
        ops.append(vals[:arity])
        exp.append(vals[arity])
        flg.append(_hex(toks[-1], 2, "flags", where))
        nums.append(lineno)
    return Vectors(op, np.array(ops, dtype=np.uint32).reshape(-1, arity), np.array(exp, dtype=np.uint32),
                   np.array(flg, dtype=np.uint8), np.array(nums, dtype=np.int64), path)


def parse_file(path: str | Path, op: str) -> Vectors:
    """Parse a ``testfloat_gen`` output file for ``op`` (add/mul/fma or the TestFloat name)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TestFloatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_lines(text.splitlines(), op, str(path))


def fma_operands_for(vectors: Vectors) -> np.ndarray:
    """The FMA operands ``(a, b, c)`` for each vector: add = a*1 + b, mul = a*b + (-0), fma as is."""
    o = vectors.operands
    n = len(o)
    if vectors.op == "add":
        return np.stack([o[:, 0], np.full(n, ONE, np.uint32), o[:, 1]], axis=1)
    if vectors.op == "mul":
        return np.stack([o[:, 0], o[:, 1], np.full(n, NEG_ZERO, np.uint32)], axis=1)
    return o.copy()


def write_file(path: str | Path, operands: np.ndarray, results: np.ndarray, flags: np.ndarray) -> None:
    """Write vectors in testfloat_gen's format (operands/results 8 hex digits, flags 2)."""
    rows = []
    for ops, r, f in zip(np.asarray(operands).tolist(), np.asarray(results).tolist(), np.asarray(flags).tolist()):
        rows.append(" ".join(f"{x:08X}" for x in (*ops, r)) + f" {f:02X}\n")
    Path(path).write_text("".join(rows))


# -- exact flags for the generated files ---------------------------------------------------------

def _value(bits: int) -> Fraction | None:
    """Exact value of a finite binary32 (None for inf/NaN)."""
    e, m = (bits >> 23) & 0xFF, bits & 0x7FFFFF
    if e == 0xFF:
        return None
    mag = Fraction(m, 1 << 149) if e == 0 else Fraction(m | 0x800000, 1) * Fraction(2) ** (e - 150)
    return -mag if bits >> 31 else mag


def _is_nan(bits: int) -> bool:
    return (bits & 0x7F800000) == 0x7F800000 and (bits & 0x7FFFFF) != 0


def _is_snan(bits: int) -> bool:
    return _is_nan(bits) and not bits & 0x400000


def exact_flags(a: int, b: int, c: int, result: int) -> int:
    """SoftFloat-style flags of ``fma(a, b, c) = result`` (tininess after rounding, like x86)."""
    if any(_is_snan(x) for x in (a, b, c)):
        return 0x10
    if {a & 0x7FFFFFFF, b & 0x7FFFFFFF} == {0, 0x7F800000}:
        return 0x10  # inf * 0 (invalid even with a quiet NaN addend)
    if any(_is_nan(x) for x in (a, b, c)):
        return 0
    if _is_nan(result):
        return 0x10  # inf*0 or inf - inf
    va, vb, vc = _value(a), _value(b), _value(c)
    if va is None or vb is None or vc is None:
        return 0  # exact infinite result from infinite operands
    exact = va * vb + vc
    vr = _value(result)
    if vr is None:  # finite operands, infinite result
        return 0x04 | 0x01
    flags = 0x01 if vr != exact else 0
    # tininess after rounding: the exact value rounded with unbounded exponent is below 2**-126;
    # approximate with the delivered result (differs only at the 2**-126 boundary)
    if flags and abs(vr) < Fraction(1, 1 << 126):
        flags |= 0x02
    return flags


def generate_files(out_dir: str | Path, count: int = 300, seed: int = 2024) -> dict[str, Path]:
    """Write ``f32_add.tv``, ``f32_mul.tv``, ``f32_mulAdd.tv`` plus the wrong/malformed test files."""
    from pimcast.models.numerics import fma_f32_bits
    from pimcast.sim.tb_fma import directed_vectors, random_vectors

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = np.concatenate([np.array(directed_vectors(), dtype=np.uint32), random_vectors(count, seed)])[:count]
    files = {}
    for op, (tf_name, _arity) in OPS.items():
        if op == "add":
            file_ops = base[:, [0, 2]].copy()
            # cancellation for the adder: every 5th row adds -a +- a few ulp
            rng = np.random.default_rng(seed + 1)
            rows = np.arange(len(directed_vectors()), count, 5)
            delta = rng.integers(-3, 4, rows.size).astype(np.int64)
            neg = (file_ops[rows, 0].astype(np.int64) + delta) & 0xFFFFFFFF
            file_ops[rows, 1] = (neg.astype(np.uint32) ^ np.uint32(0x80000000))
        elif op == "mul":
            file_ops = base[:, [0, 1]]
        else:
            file_ops = base
        fops = fma_operands_for(Vectors(op, file_ops, np.zeros(len(file_ops), np.uint32),
                                        np.zeros(len(file_ops), np.uint8), np.arange(len(file_ops)), ""))
        res = fma_f32_bits(fops[:, 0], fops[:, 1], fops[:, 2])
        # TestFloat's reference (SoftFloat, 8086 specialization) returns the default NaN 0xFFC00000
        res = np.where(res == 0x7FC00000, np.uint32(0xFFC00000), res).astype(np.uint32)
        flags = np.array([exact_flags(*map(int, f), int(r)) for f, r in zip(fops.tolist(), res.tolist())], np.uint8)
        path = out / f"{tf_name}.tv"
        write_file(path, file_ops, res, flags)
        files[op] = path
    # a deliberately wrong file: the first 100 mulAdd lines, the last result bit flipped in every
    # 13th line from line 4 whose expected result is not NaN (6 lines with the committed seed)
    lines = (out / "f32_mulAdd.tv").read_text().splitlines()[:100]
    flipped = 0
    for i in range(3, 100, 13):
        toks = lines[i].split()
        r = int(toks[3], 16)
        if _is_nan(r):
            continue
        toks[3] = f"{r ^ 1:08X}"
        lines[i] = " ".join(toks)
        flipped += 1
    (out / "f32_mulAdd_wrong.tv").write_text("\n".join(lines) + "\n")
    files["wrong"] = out / "f32_mulAdd_wrong.tv"
    # a malformed file: line 3 carries a non-hex token
    bad = (out / "f32_mulAdd.tv").read_text().splitlines()[:5]
    toks = bad[2].split()
    toks[1] = "3F80000G"
    bad[2] = " ".join(toks)
    (out / "f32_mulAdd_malformed.tv").write_text("\n".join(bad) + "\n")
    files["malformed"] = out / "f32_mulAdd_malformed.tv"
    return files


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pimcast.sim.testfloat",
                                description="write TestFloat-format vector files for the tests")
    p.add_argument("out_dir", nargs="?", default="tests/data/testfloat")
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--seed", type=int, default=2024)
    a = p.parse_args(argv)
    for name, path in generate_files(a.out_dir, a.count, a.seed).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
