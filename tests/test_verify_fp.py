"""TestFloat parsing and `pimcast verify-fp` on the committed vector files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pimcast.cli import main as cli
from pimcast.sim.testfloat import TestFloatError, parse_file, parse_lines
from pimcast.sim.toolchain import have_icarus, have_verilator
from pimcast.sim.verify_fp import compare, verify

DATA = Path(__file__).parent / "data" / "testfloat"
FILES = {"add": DATA / "f32_add.tv", "mul": DATA / "f32_mul.tv", "fma": DATA / "f32_mulAdd.tv"}
WRONG = DATA / "f32_mulAdd_wrong.tv"
MALFORMED = DATA / "f32_mulAdd_malformed.tv"
WRONG_LINES = [4, 17, 56, 69, 82, 95]  # lines whose expected result has its last bit flipped


def test_parse_files():
    for op, path in FILES.items():
        v = parse_file(path, op)
        assert len(v) == 300 and v.operands.shape == (300, 3 if op == "fma" else 2)
    v = parse_lines(["3F800000 40000000 C0000000 3F800000 01", "", "# comment"], "f32_mulAdd")
    assert v.op == "fma" and v.operands.tolist() == [[0x3F800000, 0x40000000, 0xC0000000]]
    assert v.expected.tolist() == [0x3F800000] and v.flags.tolist() == [1] and v.lines.tolist() == [1]


def test_malformed_names_file_line_and_token():
    with pytest.raises(TestFloatError) as exc:
        parse_file(MALFORMED, "fma")
    msg = str(exc.value)
    assert f"{MALFORMED}:3:" in msg and "'3F80000G'" in msg


def test_wrong_word_count_and_oversized_token():
    with pytest.raises(TestFloatError, match=r"x\.tv:2: bad token '<end of line>'.*5 hex words"):
        parse_lines(["3F800000 3F800000 3F800000 3F800000 00", "3F800000 3F800000 00"], "fma", "x.tv")
    with pytest.raises(TestFloatError, match=r"y\.tv:1: bad token '123456789'"):
        parse_lines(["123456789 3F800000 3F800000 00"], "add", "y.tv")
    with pytest.raises(TestFloatError, match=r"y\.tv:1: bad token '100'"):
        parse_lines(["3F800000 3F800000 3F800000 100"], "mul", "y.tv")


def test_compare_nan_matches_any_nan():
    got = np.array([0x7FC00000, 0x7FC00000, 0x7F800000, 0x3F800000], np.uint32)
    exp = np.array([0xFFC00000, 0x7F800001, 0x7F800001, 0x3F800001], np.uint32)
    assert compare(got, exp).tolist() == [2, 3]


@pytest.mark.parametrize("op", list(FILES))
def test_amaranth_passes(op, capsys):
    assert cli(["verify-fp", "--op", op, "--vectors", str(FILES[op]), "--simulator", "amaranth"]) == 0
    assert "300 vectors, 0 mismatches" in capsys.readouterr().out


def test_amaranth_wrong_file_reports_exact_mismatches(capsys):
    res = verify(WRONG, "fma", "amaranth")
    assert res.vectors.lines[res.mismatches].tolist() == WRONG_LINES
    assert cli(["verify-fp", "--op", "fma", "--vectors", str(WRONG), "--show", "2"]) == 1
    out = capsys.readouterr().out
    assert "100 vectors, 6 mismatches" in out
    assert f"{WRONG}:4: f32_mulAdd a=80000000 b=80000000 c=80000000" in out and "... 4 more" in out


def test_cli_malformed_exit_code(capsys):
    assert cli(["verify-fp", "--op", "fma", "--vectors", str(MALFORMED)]) == 2
    assert f"{MALFORMED}:3:" in capsys.readouterr().err


RTL_SIMS = [
    pytest.param("icarus", marks=pytest.mark.skipif(not have_icarus(), reason="Icarus missing")),
    pytest.param("verilator", marks=pytest.mark.skipif(not have_verilator(), reason="Verilator missing")),
]


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", RTL_SIMS)
def test_rtl_vectors(simulator):
    for op, path in FILES.items():
        res = verify(path, op, simulator)
        assert len(res.mismatches) == 0, res.lines(5)
    res = verify(WRONG, "fma", simulator)
    assert res.vectors.lines[res.mismatches].tolist() == WRONG_LINES
