"""Trace I/O: DRAMsim3 / Ramulator round trips, error messages, the reference gather generator."""
from __future__ import annotations

import numpy as np
import pytest

from pimcast.host.trace import Trace, TraceError, random_gather_trace, read_trace, write_trace


@pytest.mark.parametrize("fmt", ["dramsim3", "ramulator"])
def test_roundtrip(tmp_path, fmt):
    rng = np.random.default_rng(0)
    addr = (rng.integers(0, 1 << 28, 1000) * 64).astype(np.uint64)
    wr = rng.random(1000) < 0.3
    cyc = np.sort(rng.integers(0, 10**6, 1000)) if fmt == "dramsim3" else np.zeros(1000, np.int64)
    p = tmp_path / "t.trace"
    write_trace(Trace(addr, wr, cyc), p, fmt)
    t = read_trace(p, fmt)
    assert (t.addr == addr).all() and (t.is_write == wr).all() and (t.cycle == cyc).all()
    assert t.where(3) == f"{p}:4"


def test_comments_and_blank_lines(tmp_path):
    p = tmp_path / "t.trace"
    p.write_text("# header\n0x40 READ 0\n\n0X80 WRITE 5\n")
    t = read_trace(p)
    assert t.addr.tolist() == [64, 128] and t.is_write.tolist() == [False, True]
    assert t.where(1) == f"{p}:4"


@pytest.mark.parametrize("fmt, text, line, value", [
    ("dramsim3", "0x40 READ 0\n0x80 LOAD 1\n", 2, "LOAD"),
    ("dramsim3", "0x40 READ 0\nzz80 READ 1\n", 2, "zz80"),
    ("dramsim3", "0x40 READ 0\n0x80 READ x1\n", 2, "x1"),
    ("dramsim3", "0x40 READ 0\n0x80 READ\n", 2, "0x80 READ"),
    ("dramsim3", "0x40 READ 0\n0x80 READ -4\n", 2, "-4"),
    ("ramulator", "LD 0x40\nST 0x80\nXX 0x100\n", 3, "XX"),
    ("ramulator", "LD 0x40\nLD 0xg0\n", 2, "0xg0"),
])
def test_malformed_lines_name_file_line_value(tmp_path, fmt, text, line, value):
    p = tmp_path / "bad.trace"
    p.write_text(text)
    with pytest.raises(TraceError) as e:
        read_trace(p, fmt)
    msg = str(e.value)
    assert f"{p}:{line}" in msg and value in msg


def test_missing_file_and_format(tmp_path):
    with pytest.raises(TraceError, match="cannot read"):
        read_trace(tmp_path / "nope.trace")
    with pytest.raises(TraceError, match="unknown trace format"):
        read_trace(tmp_path / "nope.trace", "pin")


def test_random_gather_trace_layout():
    t = random_gather_trace(1000, 256, seed=7)
    assert len(t) == 1000 and not t.is_write.any() and not t.cycle.any()
    a = t.addr.astype(np.int64).reshape(-1, 4)
    assert (a % 256 == 0)[:, 0].all() and (np.diff(a, axis=1) == 64).all()
    assert a.max() < 4 * 2**20 * 256
    rows = a[:, 0] // 256
    rng = np.random.default_rng(7)
    assert (rows == rng.integers(0, 4 * 2**20, 250)).all()
    # truncation to n_requests
    assert len(random_gather_trace(10, 1024)) == 10
    with pytest.raises(ValueError):
        random_gather_trace(10, 100)


def test_parse_speed(tmp_path):
    import time

    t = random_gather_trace(100_000, 64, seed=1)
    p = tmp_path / "big.trace"
    write_trace(t, p)
    t0 = time.perf_counter()
    back = read_trace(p)
    assert time.perf_counter() - t0 < 5.0
    assert (back.addr == t.addr).all()
