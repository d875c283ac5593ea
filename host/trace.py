"""Memory-request traces: DRAMsim3 and Ramulator formats in and out, and reference trace generators.

* DRAMsim3: one request per line, ``0xADDR READ|WRITE cycle`` (cycle = the request becomes
  eligible at that controller cycle).
* Ramulator (2.0) LoadStoreTrace: ``LD|ST 0xADDR`` (all requests eligible at cycle 0).

Blank lines and lines starting with ``#`` are skipped. Any other malformed line raises
:class:`TraceError` (a ``ValueError``) naming the file, the 1-based line number and the value.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Trace", "TraceError", "read_trace", "write_trace", "random_gather_trace", "FORMATS"]

FORMATS = ("dramsim3", "ramulator")


class TraceError(ValueError):
    """A malformed trace line (the message names file, line and value)."""


@dataclass
class Trace:
    """Requests in issue order: byte address (uint64), write flag, eligible cycle (int64)."""
    addr: np.ndarray
    is_write: np.ndarray
    cycle: np.ndarray
    source: str = "<memory>"
    lines: np.ndarray | None = None  # 1-based line number of each request in ``source``

    def __post_init__(self):
        self.addr = np.asarray(self.addr, dtype=np.uint64)
        n = len(self.addr)
        self.is_write = np.broadcast_to(np.asarray(self.is_write, dtype=bool), (n,)).copy()
        self.cycle = np.broadcast_to(np.asarray(self.cycle, dtype=np.int64), (n,)).copy()

    def __len__(self) -> int:
        return len(self.addr)

    def where(self, i: int) -> str:
        """``file:line`` of request ``i`` (for error messages)."""
        line = int(self.lines[i]) if self.lines is not None else i + 1
        return f"{self.source}:{line}"


def _parse_hex(tok: str, path, lineno: int) -> int:
    try:
        if not tok.lower().startswith("0x"):
            raise ValueError
        v = int(tok, 16)
    except ValueError:
        raise TraceError(f"{path}:{lineno}: bad address {tok!r} (expected 0x<hex>)") from None
    if v >= 1 << 64:
        raise TraceError(f"{path}:{lineno}: address {tok!r} does not fit in 64 bits")
    return v


def _slow_parse(lines, fmt, path):
    addr, wr, cyc, nos = [], [], [], []
    for no, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        tok = s.split()
        if fmt == "dramsim3":
            if len(tok) != 3:
                raise TraceError(f"{path}:{no}: expected '0xADDR READ|WRITE cycle', got {s!r}")
            a = _parse_hex(tok[0], path, no)
            op = tok[1].upper()
            if op not in ("READ", "WRITE"):
                raise TraceError(f"{path}:{no}: bad operation {tok[1]!r} (expected READ or WRITE)")
            try:
                c = int(tok[2], 10)
            except ValueError:
                raise TraceError(f"{path}:{no}: bad cycle {tok[2]!r}") from None
            if c < 0:
                raise TraceError(f"{path}:{no}: negative cycle {c}")
        else:
            if len(tok) != 2:
                raise TraceError(f"{path}:{no}: expected 'LD|ST 0xADDR', got {s!r}")
            op = tok[0].upper()
            if op not in ("LD", "ST"):
                raise TraceError(f"{path}:{no}: bad operation {tok[0]!r} (expected LD or ST)")
            a = _parse_hex(tok[1], path, no)
            c = 0
        addr.append(a)
        wr.append(op in ("WRITE", "ST"))
        cyc.append(c)
        nos.append(no)
    return addr, wr, cyc, nos


def read_trace(path: str | Path, fmt: str = "dramsim3") -> Trace:
    """Read a trace file. Fast path: whole-file tokenization; on any anomaly a line-by-line pass
    finds and reports the first bad line."""
    if fmt not in FORMATS:
        raise TraceError(f"unknown trace format {fmt!r} (known: {', '.join(FORMATS)})")
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read trace: {exc}") from exc
    lines = text.splitlines()
    width = 3 if fmt == "dramsim3" else 2
    # fast path: no comments/blank lines, uniform token count
    if "#" not in text and all(lines):
        tok = text.split()
        if len(tok) == width * len(lines):
            try:
                if fmt == "dramsim3":
                    a_tok, ops, c_tok = tok[0::3], tok[1::3], tok[2::3]
                    ok_ops = set(ops) <= {"READ", "WRITE"}
                    if ok_ops and all(x[:2] in ("0x", "0X") for x in a_tok):
                        addr = np.array([int(x, 16) for x in a_tok], dtype=np.uint64)
                        cyc = np.array(c_tok, dtype=np.int64)
                        if cyc.size == 0 or cyc.min() >= 0:
                            wr = np.array(ops) == "WRITE"
                            return Trace(addr, wr, cyc, str(path), np.arange(1, len(lines) + 1))
                else:
                    ops, a_tok = tok[0::2], tok[1::2]
                    if set(ops) <= {"LD", "ST"} and all(x[:2] in ("0x", "0X") for x in a_tok):
                        addr = np.array([int(x, 16) for x in a_tok], dtype=np.uint64)
                        wr = np.array(ops) == "ST"
                        return Trace(addr, wr, np.zeros(len(addr), np.int64), str(path),
                                     np.arange(1, len(lines) + 1))
            except (ValueError, OverflowError):
                pass
    addr, wr, cyc, nos = _slow_parse(lines, fmt, path)
    return Trace(np.array(addr, dtype=np.uint64), np.array(wr, dtype=bool), np.array(cyc, dtype=np.int64),
                 str(path), np.array(nos, dtype=np.int64))


def write_trace(trace: Trace, path: str | Path, fmt: str = "dramsim3") -> None:
    """Write a trace (the Ramulator format has no cycle column: cycles are dropped)."""
    if fmt not in FORMATS:
        raise TraceError(f"unknown trace format {fmt!r} (known: {', '.join(FORMATS)})")
    addr = [f"0x{int(a):x}" for a in trace.addr]
    if fmt == "dramsim3":
        ops = np.where(trace.is_write, "WRITE", "READ")
        body = "\n".join(f"{a} {o} {int(c)}" for a, o, c in zip(addr, ops, trace.cycle))
    else:
        ops = np.where(trace.is_write, "ST", "LD")
        body = "\n".join(f"{o} {a}" for a, o in zip(addr, ops))
    Path(path).write_text(body + ("\n" if body else ""))


def random_gather_trace(n_requests: int, row_bytes: int, n_rows: int = 4 * 2**20, seed: int = 0,
                        request_bytes: int = 64) -> Trace:
    """The embedding-gather reference trace of ``shared/golden/README.md``.

    Embedding rows of ``row_bytes`` bytes, ``n_rows`` of them laid out contiguously from address 0;
    rows are drawn uniformly (``numpy.random.default_rng(seed)``) and each is read as
    ``row_bytes/64`` consecutive 64 B requests; all requests are reads issued at cycle 0. The
    trace is cut to exactly ``n_requests`` requests.
    """
    if row_bytes <= 0 or row_bytes % request_bytes:
        raise ValueError(f"row_bytes must be a positive multiple of {request_bytes}, not {row_bytes}")
    per = row_bytes // request_bytes
    n_lookups = -(-n_requests // per)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n_rows, size=n_lookups, dtype=np.int64)
    addr = (rows[:, None] * row_bytes + np.arange(per, dtype=np.int64)[None, :] * request_bytes)
    addr = addr.reshape(-1)[:n_requests].astype(np.uint64)
    return Trace(addr, np.zeros(n_requests, bool), np.zeros(n_requests, np.int64), f"<gather row_B={row_bytes}>")
