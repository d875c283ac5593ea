"""Host-side driver of the PIM core RTL (:class:`pimcast.hdl.core.PIMCore`) under cocotb.

:class:`CoreDriver` owns the clock loop of one simulated core: it drives the instruction and
data-in streams, takes the data-out stream, and runs the DRAM device model with its protocol
checker (:class:`pimcast.sim.dram_device.DRAMDevice`, fail-fast: any timing violation raises)
on the core's DRAM ports, every cycle.  Optional random idle cycles on ``insn``/``din`` and
random back-pressure on ``dout`` exercise every stream handshake.

Operations (``async``; one at a time — concurrent calls are serialised):

* ``await drv.write(addr, data)`` — bytes to unit-local byte address ``addr`` (64 B aligned,
  ``len(data)`` a multiple of 64).
* ``await drv.read(addr, nbytes)`` -> bytes.
* ``await drv.gather_reduce(base, row_bytes, indices, offsets, weights=None, rows=None)`` ->
  ``torch.float32`` tensor ``(bags, row_bytes // 4)`` (PyTorch-style start ``offsets``).
* ``await drv.scatter_sgd(base, row_bytes, rows, grads, lr, table_rows=None)``.
* ``await drv.status()`` -> the :class:`~pimcast.hdl.isa.StatusWord` fields (clears the error).
* ``await drv.execute(program)`` / ``await drv.send(insn, beats, lasts)`` — one raw
  instruction (:mod:`pimcast.host.isa_codec` programs, or hand-made streams for error tests).

Every operation ends with a ``STATUS`` instruction; a non-``OK`` status raises
:class:`PIMStatusError` (``code``, ``name``, the status fields).  Large operations are split
into instructions that fit the core's input buffer; for those the driver first checks, on the
host, the conditions the core would reject (row ids in range, SGD ids unique, address range)
and raises the same :class:`PIMStatusError` before sending anything, so a failing operation
never leaves a partial update.

Cycle accounting: ``drv.clock`` is the current clock cycle since reset; ``drv.cycles`` the
cycles spent in operations (from offering an operation's first instruction to receiving its
``STATUS`` beat — about 4 cycles of ``STATUS`` per instruction included); ``drv.op_cycles``
lists ``(operation, cycles)``; ``drv.last_cycles`` is the latest operation's count.
"""
from __future__ import annotations

import collections
import random
from typing import Optional, Sequence

import numpy as np

from pimcast.hdl import isa
from pimcast.host import isa_codec as codec

__all__ = ["CoreDriver", "PIMStatusError", "max_sgd_count"]

BEAT = isa.BEAT_BYTES


class PIMStatusError(RuntimeError):
    """The core reported an error status (``code`` int, ``name`` the :class:`isa.Status` name,
    ``status`` the decoded :class:`isa.StatusWord` fields)."""

    def __init__(self, code: int, name: str, status: Optional[dict] = None, where: str = ""):
        self.code = int(code)
        self.name = name
        self.status = dict(status or {})
        detail = ", ".join(f"{k}={v}" for k, v in self.status.items() if k not in ("status",))
        super().__init__(f"PIM core status {name} (0x{self.code:02x}){' ' + where if where else ''}"
                         f"{': ' + detail if detail else ''}")


def max_sgd_count(params: dict, row_bytes: int) -> int:
    """Most rows one ``SCATTER_SGD`` may carry (same formula as ``PIMCore.max_sgd_count``)."""
    r = row_bytes // BEAT
    nb, wpb = params["buf_beats"], isa.WORDS_PER_BEAT
    n = min(params["sgd_rows"], nb * wpb // (wpb * r + 1))
    while n > 0 and -(-n // wpb) + n * r > nb:
        n -= 1
    return n


def _status_error(st: dict, where: str = "") -> PIMStatusError:
    s = st["status"]
    code = s.value if isinstance(s, isa.Status) else int(s)
    name = s.name if isinstance(s, isa.Status) else f"UNKNOWN_STATUS_{code}"
    fields = {k: (v.name if isinstance(v, isa.Status) else v) for k, v in st.items()}
    return PIMStatusError(code, name, fields, where)


class CoreDriver:
    """Drives one simulated :class:`~pimcast.hdl.core.PIMCore` (see the module docstring).

    Parameters
    ----------
    dut : the cocotb handle of the ``core`` top.
    params : ``PIMCore.params()`` of the simulated core (buffer size, capacity, DRAM timing).
    seed : seed of the random stream pacing.
    idle : probability that ``insn``/``din`` offer nothing in a cycle (before a beat is offered;
        an offered beat is held until taken).
    backpressure : probability that ``dout.ready`` is low in a cycle.
    """

    def __init__(self, dut, params: dict, *, seed: int = 1, idle: float = 0.0, backpressure: float = 0.0):
        from pimcast.hdl.dram.timing import DRAMTiming
        from pimcast.sim.dram_device import DRAMDevice

        for name, p in (("idle", idle), ("backpressure", backpressure)):
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1), not {p!r}")
        self.dut = dut
        self.params = params
        self.t = DRAMTiming(**params["bankctl"]["timing"])
        self.dev = DRAMDevice(dut, self.t, record=False)
        self.rng = random.Random(seed)
        self.idle, self.backpressure = float(idle), float(backpressure)
        self.capacity_bytes = int(params["capacity_beats"]) * BEAT
        self.buf_beats = int(params["buf_beats"])
        self.clock = 0
        self.cycles = 0
        self.last_cycles = 0
        self.op_cycles: list[tuple[str, int]] = []
        self._insn_q: collections.deque = collections.deque()
        self._din_q: collections.deque = collections.deque()
        self._out: list[tuple[int, bool]] = []
        self._loop = None
        self._lock = None
        self._started = False
        self._busy = False
        #: cycles an instruction may take (plus 64 per input beat) before ``send`` fails
        self.max_cycles = 200_000

    # ------------------------------------------------------------------------------ clock loop
    async def start(self, reset_cycles: int = 3) -> None:
        """Start the clock, reset the core, start the per-cycle loop."""
        import cocotb
        from cocotb.triggers import Lock, RisingEdge

        from pimcast.sim.streams import start_clock

        dut = self.dut
        start_clock(dut)
        dut.insn__valid.value = 0
        dut.insn__payload.value = 0
        dut.din__valid.value = 0
        dut.din__payload.value = 0
        dut.dout__ready.value = 0
        self.dev.reset()
        dut.rst.value = 1
        for _ in range(reset_cycles):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        self._lock = Lock()
        self._loop = cocotb.start_soon(self._run())
        self._started = True

    async def _run(self) -> None:
        from cocotb.triggers import ReadOnly, RisingEdge

        dut, dev, rng = self.dut, self.dev, self.rng
        edge, ro = RisingEdge(dut.clk), ReadOnly()
        h_iv, h_ir, h_ip = dut.insn__valid, dut.insn__ready, dut.insn__payload
        h_dv, h_dr, h_dp = dut.din__valid, dut.din__ready, dut.din__payload
        h_ov, h_or, h_op = dut.dout__valid, dut.dout__ready, dut.dout__payload
        h_busy = dut.busy
        last_bit = isa.BEAT_BITS
        mask = (1 << last_bit) - 1
        ins_on = din_on = ready_on = False
        ins_drive = din_drive = False      # what the valid wires carry now
        cycle = 0
        idle, bp = self.idle, self.backpressure
        while True:
            await edge
            cycle += 1
            self.clock = cycle
            dev.drive(cycle)
            # a held beat stays; otherwise maybe offer the next one (valid drops when nothing is offered)
            if not ins_on and self._insn_q and (idle == 0.0 or rng.random() >= idle):
                h_ip.value = self._insn_q[0]
                ins_on = True
            if ins_on != ins_drive:
                h_iv.value = int(ins_on)
                ins_drive = ins_on
            if not din_on and self._din_q and (idle == 0.0 or rng.random() >= idle):
                d, last = self._din_q[0]
                h_dp.value = d | (int(last) << last_bit)
                din_on = True
            if din_on != din_drive:
                h_dv.value = int(din_on)
                din_drive = din_on
            r = bp == 0.0 or rng.random() >= bp
            if r != ready_on:
                h_or.value = int(r)
                ready_on = r
            await ro
            dev.sample(cycle)
            if ins_on and h_ir.value == 1:
                self._insn_q.popleft()
                ins_on = False
            if din_on and h_dr.value == 1:
                self._din_q.popleft()
                din_on = False
            if ready_on and h_ov.value == 1:
                v = h_op.value.to_unsigned()
                self._out.append((v & mask, bool(v >> last_bit)))
            self._busy = h_busy.value == 1

    # ------------------------------------------------------------------------------ raw access
    async def send(self, insn: int, beats: Sequence[int] = (), lasts: Optional[Sequence[bool]] = None,
                   name: str = "raw") -> tuple[list[int], dict]:
        """Send one instruction (with ``beats`` on ``din``; ``lasts`` default: ``last`` on the
        final beat) followed by ``STATUS``; return ``(data beats out, status fields)``.
        Raises nothing for an error status (see :meth:`execute`)."""
        from cocotb.triggers import RisingEdge

        if not self._started:
            raise RuntimeError("CoreDriver.start() has not been awaited")
        beats = [int(b) for b in beats]
        if lasts is None:
            lasts = [i == len(beats) - 1 for i in range(len(beats))]
        if len(lasts) != len(beats):
            raise ValueError(f"{len(lasts)} last flags for {len(beats)} beats")
        async with self._lock:
            start = self.clock
            self._out.clear()
            self._insn_q.append(int(insn))
            self._din_q.extend(zip(beats, (bool(x) for x in lasts)))
            self._insn_q.append(codec.encode(isa.Opcode.STATUS))
            edge = RisingEdge(self.dut.clk)
            limit = self.max_cycles + 64 * len(beats)
            while not (self._out and self._out[-1][1]):
                await edge
                if self.clock - start > limit:
                    raise AssertionError(
                        f"{name}: no STATUS beat after {self.clock - start} cycles (busy={self._busy}, "
                        f"{len(self._insn_q)} instructions and {len(self._din_q)} data beats not taken, "
                        f"{len(self._out)} beats out)")
            data = [d for d, st in self._out[:-1]]
            if any(st for _, st in self._out[:-1]):
                raise AssertionError("a status beat came before the operation's STATUS")
            status = codec.decode_status(self._out[-1][0])
            self._out.clear()
            n = self.clock - start
            self.last_cycles = n
            self.cycles += n
            self.op_cycles.append((name, n))
            return data, status

    async def execute(self, program: codec.Program, name: Optional[str] = None) -> list[int]:
        """Run one :class:`pimcast.host.isa_codec.Program`; return its output beats.
        Raises :class:`PIMStatusError` on an error status, ``AssertionError`` when the beat count
        differs from ``program.beats_out``."""
        op = name or codec.decode(program.insn)["opcode"].name
        data, st = await self.send(program.insn, program.beats_in, name=op)
        if st["status"] is not isa.Status.OK:
            raise _status_error(st, f"in {op}")
        if len(data) != program.beats_out:
            raise AssertionError(f"{op}: {len(data)} beats out, expected {program.beats_out}")
        return data

    async def status(self) -> dict:
        """The status word (``STATUS`` alone; clears the latched error)."""
        _, st = await self.send(codec.encode(isa.Opcode.NOP), name="status")
        return st

    # ------------------------------------------------------------------------------ operations
    def _check_addr(self, name: str, addr: int, nbytes: int) -> None:
        if isinstance(addr, bool) or not isinstance(addr, (int, np.integer)) or addr < 0:
            raise ValueError(f"{name} must be a non-negative integer byte address, not {addr!r}")
        if addr % BEAT:
            raise ValueError(f"{name} {addr:#x} is not aligned to {BEAT} B")
        if nbytes % BEAT:
            raise ValueError(f"length {nbytes} B is not a multiple of {BEAT} B")

    def _check_row_bytes(self, row_bytes: int) -> None:
        if isinstance(row_bytes, bool) or not isinstance(row_bytes, (int, np.integer)) or row_bytes <= 0 \
                or row_bytes % BEAT:
            raise ValueError(f"row_bytes must be a positive multiple of {BEAT}, not {row_bytes!r}")

    def _range_error(self, end_beat: int, where: str) -> PIMStatusError:
        return PIMStatusError(isa.Status.ADDR_OUT_OF_RANGE.value, "ADDR_OUT_OF_RANGE",
                              {"detail": end_beat, "capacity_beats": self.params["capacity_beats"]},
                              where + " (checked by the driver before sending)")

    async def write(self, addr: int, data: bytes) -> None:
        """Write ``data`` at unit-local byte address ``addr`` (one WRITE per buffer's worth)."""
        data = bytes(data)
        self._check_addr("addr", addr, len(data))
        beats = codec.bytes_to_beats(data)
        a = int(addr) // BEAT
        chunks = [(a + i, beats[i:i + self.buf_beats]) for i in range(0, len(beats), self.buf_beats)]
        if len(chunks) > 1 and a + len(beats) > self.params["capacity_beats"]:
            raise self._range_error(a + len(beats), "in write")
        for ca, cb in chunks:
            await self.execute(codec.write_program(ca, cb), "write")

    async def read(self, addr: int, nbytes: int) -> bytes:
        """Read ``nbytes`` from unit-local byte address ``addr``."""
        self._check_addr("addr", addr, int(nbytes))
        a, n = int(addr) // BEAT, int(nbytes) // BEAT
        step = 4096
        if n > step and a + n > self.params["capacity_beats"]:
            raise self._range_error(a + n, "in read")
        out = []
        for i in range(0, n, step):
            out += await self.execute(codec.read_program(a + i, min(step, n - i)), "read")
        return codec.beats_to_bytes(out)

    def _table_rows(self, base: int, row_bytes: int, rows: Optional[int]) -> int:
        if rows is None:
            return max(0, (self.capacity_bytes - int(base)) // int(row_bytes))
        if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 0:
            raise ValueError(f"rows must be a non-negative integer, not {rows!r}")
        return int(rows)

    async def gather_reduce(self, base: int, row_bytes: int, indices, offsets, weights=None, *,
                            rows: Optional[int] = None):
        """Pooled rows ``(bags, row_bytes // 4)`` float32 of the table at ``base`` (GATHER_REDUCE).

        ``indices``/``offsets``: 1-D integer tensors (PyTorch-style start offsets);
        ``weights``: optional float32 per lookup; ``rows``: table rows (default: up to capacity).
        """
        import torch

        self._check_addr("base", base, 0)
        self._check_row_bytes(row_bytes)
        nrows = self._table_rows(base, row_bytes, rows)
        idx = np.asarray(torch.as_tensor(indices).reshape(-1).cpu(), dtype=np.int64)
        offs = np.asarray(torch.as_tensor(offsets).reshape(-1).cpu(), dtype=np.int64)
        lengths = codec._lengths(offs, idx.size)   # validates offsets (ValueError naming them)
        w = None
        if weights is not None:
            if not isinstance(weights, torch.Tensor) or weights.dtype != torch.float32:
                raise ValueError(f"weights must be a float32 tensor, not {getattr(weights, 'dtype', type(weights))}")
            w = weights.detach().reshape(-1).cpu().numpy()
            if w.size != idx.size:
                raise ValueError(f"{w.size} weights for {idx.size} indices")
        dim = int(row_bytes) // 4
        # split the bags into instructions whose index stream fits the input buffer
        groups = codec.split_gather_bags(lengths, w is not None, self.buf_beats * isa.WORDS_PER_BEAT)
        if len(groups) > 1 and idx.size and (idx.min() < 0 or idx.max() >= nrows):
            bad = int(np.flatnonzero((idx < 0) | (idx >= nrows))[0])
            raise PIMStatusError(isa.Status.ROW_OUT_OF_RANGE.value, "ROW_OUT_OF_RANGE",
                                 {"detail": int(idx[bad]), "position": bad},
                                 "in gather_reduce (checked by the driver before sending)")
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        out_rows = []
        for g0, g1 in groups:
            s, e = int(starts[g0]), int(starts[g1])
            prog = codec.gather_reduce_program(int(base) // BEAT, nrows, dim, idx[s:e], starts[g0:g1] - s,
                                               None if w is None else w[s:e])
            beats = await self.execute(prog, "gather_reduce")
            out_rows.append(codec.beats_to_rows(beats, dim) if beats else np.zeros((0, dim), np.uint32))
        bits = np.concatenate(out_rows) if out_rows else np.zeros((0, dim), np.uint32)
        return torch.from_numpy(np.ascontiguousarray(bits).view(np.float32).reshape(-1, dim).copy())

    async def scatter_sgd(self, base: int, row_bytes: int, rows, grads, lr: float, *,
                          table_rows: Optional[int] = None) -> None:
        """``table[rows[i]] = fma(-lr, grads[i], table[rows[i]])`` in device memory (SCATTER_SGD).

        ``rows``: unique row ids; ``grads``: float32 ``(len(rows), row_bytes // 4)``.
        """
        import torch

        self._check_addr("base", base, 0)
        self._check_row_bytes(row_bytes)
        nrows = self._table_rows(base, row_bytes, table_rows)
        r = np.asarray(torch.as_tensor(rows).reshape(-1).cpu(), dtype=np.int64)
        dim = int(row_bytes) // 4
        if not isinstance(grads, torch.Tensor) or grads.dtype != torch.float32:
            raise ValueError(f"grads must be a float32 tensor, not {getattr(grads, 'dtype', type(grads))}")
        if tuple(grads.shape) != (r.size, dim):
            raise ValueError(f"grads must have shape ({r.size}, {dim}), not {tuple(grads.shape)}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise ValueError(f"lr must be a Python number, not {lr!r}")
        per = max_sgd_count(self.params, int(row_bytes))
        if per < 1:
            raise ValueError(f"row_bytes {row_bytes} does not fit the core's input buffer")
        if r.size > per:
            # several instructions: check on the host what the core would reject, before any write
            if r.min() < 0 or r.max() >= nrows:
                bad = int(np.flatnonzero((r < 0) | (r >= nrows))[0])
                raise PIMStatusError(isa.Status.ROW_OUT_OF_RANGE.value, "ROW_OUT_OF_RANGE",
                                     {"detail": int(r[bad]), "position": bad},
                                     "in scatter_sgd (checked by the driver before sending)")
            uniq, first = np.unique(r, return_index=True)
            if uniq.size != r.size:
                seen = set()
                for i, v in enumerate(r.tolist()):
                    if v in seen:
                        raise PIMStatusError(isa.Status.DUPLICATE_ROW.value, "DUPLICATE_ROW",
                                             {"detail": v, "position": i},
                                             "in scatter_sgd (checked by the driver before sending)")
                    seen.add(v)
        g = grads.detach().cpu().contiguous()
        for i in range(0, max(r.size, 1), per):
            if r.size == 0:
                break
            prog = codec.scatter_sgd_program(int(base) // BEAT, nrows, r[i:i + per], g[i:i + per], lr)
            await self.execute(prog, "scatter_sgd")
