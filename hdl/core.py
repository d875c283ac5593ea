"""The PIM core: one near-memory unit — instruction decoder, address generation, bank controller,
reorder buffer and reduction unit, executing the instruction set of :mod:`pimcast.hdl.isa`.

Data path::

    insn ─► decode/validate ─► address generation ─► BankController ─► DRAM (cmd, dq_w, dq_r)
    din  ─► input buffer ──┘            │ tag = ROB slot      │ resp (tag, data), any order
                                        ▼                     ▼
                                  ROB info (weight, flags)  ROB data ─► in-order retire
                                                                         │
             dout ◄── READ beats ◄───────────────────────────────────────┤
             dout ◄── pooled rows ◄── ReductionUnit (lanes FMAs) ◄────────┘
             BankController ◄── SGD write-back (w = fma(-lr, g, w)) ◄──┘

One core is one unit: a rank-level unit (the default placement ``rank``, TensorDIMM/RecNMP
style) owns one rank and sees it as a one-rank channel with its own :class:`BankController`.
The device address space of the rank placement (``robabgcorach``) stripes consecutive 64 B
beats of a table row over the ranks, so every unit holds the same element slice of every row;
the host sends each unit the same index stream and every unit reduces its slice in the exact
golden order (no cross-unit combining: the result is bit-exact).  A multi-unit device is N
cores side by side, each with the unit-local beat addresses (``device beat // N``).  The
bank-group placement with partial sums is the same core with ``units`` > 1 (next section).

Bank-group units (``units`` = bank groups, ``placement: bankgroup``, ``accumulate: partial``)
----------------------------------------------------------------------------------------------
TRiM style: one reduction unit per bank group, commands generated per rank by the core's one
:class:`BankController`, which gets the *bank-group data path*
(:meth:`~pimcast.hdl.dram.timing.DRAMTiming.with_data_path`: read data stays in the bank group,
so reads of different bank groups are not ``tCCD_S`` apart) and a read-return buffer of
:func:`~pimcast.hdl.dram.bankctl.min_read_buffer` entries.  Every table row lives whole in one
bank group (the host allocates rows so: ``Device.alloc`` rejects a row that straddles units);
the unit of a lookup is the bank group of its row's first beat.  Per bag, each unit sums its
rows in index order (``acc = fma(w, row, acc)``, the first from ``+0.0``) in its own
accumulators; after the bag's last row the issue stage sends ``units × R`` *flush* entries
(no DRAM read): a unit that holds rows of the bag emits its sum as ``fma(1.0, -0.0, acc)``
(exactly ``acc`` for every value, ``-0.0`` included), a unit without rows emits ``+0.0``.  The
*rank buffer's adder* (a second :class:`ReductionUnit`, ``comb``) adds the units' sums of each
beat in unit order from ``+0.0``; adding an absent unit's ``+0.0`` never changes the sum (it is
never ``-0.0``), so the result is bit-exact to
:func:`pimcast.models.tensor_cast.gather_reduce_partial` with one combiner for the rank (the
host adds the ranks' results in rank order).  The units' accumulators are ``units ×
unit_slots`` slots of one 16-lane FMA datapath in this RTL: the rank's command bus delivers at
most one 64 B beat per cycle to all its bank groups together, so one datapath has the
throughput of the ``units`` datapaths a chip would place one per bank group (their area is
not counted).  Cost per bag beyond the rows: ``units × R`` flush entries through the ROB (one
per cycle) and ``units × R`` adder beats (two to one slot ``latency`` apart).  The adder takes
its beats in order and its back-pressure stalls the units' datapath, so a bag holds the datapath
for about ``(units - 1) × max(R, latency) + R`` cycles of dependent adds plus part of a wait for
its last row's result (16–21 for D = 16, ~18 measured at pooling 1; overlapping bags would need
their flushes interleaved).  READ, WRITE and
``SCATTER_SGD`` are as in the rank-level core (SGD's writes keep the shared-bus timing).

Striped bank-group units (``units = 1``, ``data_path="bankgroup"``; ``placement: bankgroup``, ``accumulate: sequential``)
------------------------------------------------------------------------------------------------------------------------
The bank-group placement with the golden numerics (``bankgroup-ddr4-3200``): the device mapping
(``robacobgrach``) stripes consecutive 64 B beats over the ranks and, inside a rank, over its bank
groups, so one row's beats sit in several bank-group units and a bag's column slice visits them
in index order.  The core is the rank-level core on the *bank-group data path*: one
:class:`BankController` per rank generating the commands of all its bank groups, reads staying
in their bank group, and one accumulator per (bag, beat) that every bank-group unit of the rank
updates in index order — in a chip the accumulator of a column slice is *forwarded* from unit to
unit (a forwarding chain in index order); this RTL keeps the rank's accumulators in one 16-lane datapath fed
at up to one beat per cycle (the rank's command bus delivers no more), so forwarding inside a
rank costs nothing here (its wires are not modelled).  Numerics, instructions and errors are the
rank-level core's: bit-exact to the golden model.

Operation
---------
Each instruction is taken from ``insn`` (one 256-bit word), checked (opcode, ``row_bytes``,
address range, buffer limits), and its whole input data stream is then received into the
*input buffer* (``buf_beats`` beats of 64 B) before anything else happens.  The buffered data
is validated (stream length, every row id ``< rows``, ``SCATTER_SGD`` ids unique) and only
then executed: an instruction that fails validation issues no DRAM access at all, so it
changes no memory and produces no data; its :class:`~pimcast.hdl.isa.Status` is latched for
``STATUS``.  Hosts split large transfers into instructions that fit the buffer
(:class:`pimcast.sim.core_driver.CoreDriver` does).

Execution issues one 64 B request per cycle to the bank controller (FR-FCFS, open page).
Every read gets a *reorder-buffer* (ROB) entry whose index is the request tag: read data
returns in DRAM issue order, is written into the ROB by tag, and leaves it strictly in request
order — so rows reach the reduction unit in index order and pooled rows leave in bag order.
Up to ``2**tag_bits`` reads are in flight (the many-bags-in-flight window: requests of later
lookups and later bags are issued while earlier data is still coming back).

* ``WRITE``: buffered beats are written from ``addr`` upward (one request per cycle).
* ``READ``: ``beats`` reads, data out on ``dout`` in address order, raw bits.
* ``GATHER_REDUCE``: the index stream is parsed (one word per cycle: bag header or lookup);
  each lookup issues the ``R = row_bytes/64`` reads of its row (``table + row·R + b``); beat
  ``b`` of a row goes to accumulator slot ``b`` of the :class:`ReductionUnit`
  (``acc = fma(w, row, acc)``, first row with ``+0.0``); an empty bag sends ``R`` ``empty``
  beats (+0.0 out).  Output: the pooled rows, ``R`` beats each, in bag order.
* ``SCATTER_SGD``: for each listed row (in order) and beat ``b``: read ``w``, compute
  ``fma(-lr, g, w)`` in the same FMA lanes with ``w`` as the external addend
  (:class:`ReductionUnit` ``ext`` mode: ``-0.0`` stays ``-0.0``), write the result back to
  the same address.  Read-before-write of each beat holds by construction (the write is made
  from the read's data) and the controller never reorders requests to the same address; the
  ids are unique (``DUPLICATE_ROW`` otherwise — the golden ``sgd`` also rejects duplicates).
* ``STATUS``: one ``dout`` beat with ``status = 1`` and a :class:`~pimcast.hdl.isa.StatusWord`.

Numerics
--------
Bit-exact to ``models.tensor_cast`` (``gather_reduce``, ``tc_backward``, ``sgd``): binary32
FMA with one rounding per step (:class:`pimcast.hdl.fp.FMA`), sequential per bag in index
order, ``+0.0`` for empty bags; READ/WRITE move raw bits.

Latency and throughput
----------------------
Cycles are controller cycles (one tCK).  Per instruction: 2 cycles decode; the input stream
at one beat per cycle (``ceil(words/16)`` beats for an index stream); validation (GATHER_REDUCE:
one cycle per bag header, one per *run* of a bag — its lookups whose row id lies in one input
beat, up to 16 ids or 8 weighted (id, weight) pairs checked by parallel comparators, the first
bad one reported — and one to end: about ``bags + lookups/16`` (``/8`` weighted) plus one run
per beat boundary a bag crosses; :func:`pimcast.host.timing.gather_setup_cycles` counts it
exactly) or, for the ``count`` SGD ids, one cycle per id larger than every earlier id (an
ascending list — tensor casting's unique rows — takes ``count`` cycles) and ``floor(i/16)+1``
cycles for any other id ``i`` (duplicate check against 16 earlier ids per cycle); then execution.  Execution issues at most one request per cycle plus one cycle per lookup and
per bag header; the DRAM bounds it to one 64 B burst per ``tCCD_S`` (4 tCK on DDR4) at best:
reads of a gather run near the controller's streaming rate while the ROB has free entries
(``2**tag_bits``; the controller's ``read_buffer`` = 16 in-flight RDs).  A read reaches the
reduction unit ``closed/hit read latency`` + 1 cycles after its request and a pooled row
leaves ``ReductionUnit.latency`` (FMA pipeline depth, :attr:`latency`) cycles after its last
beat.  Within one bag, beat ``b`` of consecutive rows is serialised by the FMA latency
(``R`` beats per ``max(R, latency)`` cycles), so bags of 1-beat rows (D = 16) run at one row
per ``latency`` cycles when that exceeds the DRAM's 4 cycles per beat.  ``SCATTER_SGD`` costs
one read and one write per beat (write-backs have priority at the controller's request port).

Queue depths
------------
Input buffer ``buf_beats`` (default 1024 beats = 64 KiB); ROB ``2**tag_bits`` entries (default
32); controller request queue ``queue`` (default 16) and read-return buffer 16; write-back FIFO
``latency + 4``.  :func:`from_config` takes the ROB size and the queue from the PIM config
(``rob_tags``, ``queue``; the default config ``rank-ddr4-3200`` has 128 and 32: 32 reads in
flight bound a random gather to 58-79 % of the rank-level ceiling against the ~100+ tCK read
latency of row misses, 128 reach 88-97 % at pooling 20; see README "PIM core speedup").

Errors: see :mod:`pimcast.hdl.isa` ("Errors"): the first error is kept (code, opcode, tag, detail,
position) until ``STATUS``; ``retired`` counts completed instructions (failed ones included).

Members
-------
insn : ``In(stream.Signature(256))`` instruction words.
din : ``In(stream.Signature(isa.InBeat))`` input data beats (``last`` ends an instruction's data).
dout : ``Out(stream.Signature(isa.OutBeat))`` output beats.
cmd, dq_w, dq_r : the bank controller's DRAM ports (:class:`BankController`).
busy : ``Out(1)``: an instruction is in the core (from its acceptance to its completion).
"""
from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from pimcast.hdl import isa
from pimcast.hdl.dram.bankctl import BankController, min_read_buffer
from pimcast.hdl.dram.cmdport import command_signature, dq_signature
from pimcast.hdl.dram.timing import DRAMTiming, load_preset
from pimcast.hdl.fp import DEFAULT_PIPELINE
from pimcast.hdl.reduce import ReductionUnit

__all__ = ["PIMCore", "from_config", "ONE_F32"]

#: binary32 1.0 (the weight of an unweighted lookup)
ONE_F32 = 0x3F800000
_W = isa.WORD_BITS
_WPB = isa.WORDS_PER_BEAT


def _bits(n: int) -> int:
    return max(1, int(math.ceil(math.log2(n)))) if n > 1 else 1


def _check_int(name: str, v, lo: int, hi: int | None = None, pow2: bool = False) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an integer, not {v!r}")
    if v < lo or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be in {rng}, not {v}")
    if pow2 and v & (v - 1):
        raise ValueError(f"{name} must be a power of two, not {v}")
    return v


class PIMCore(wiring.Component):
    """One PIM unit (see the module docstring for operation, numerics, latency and errors).

    Parameters
    ----------
    timing : DRAMTiming or str, default ``"ddr4-3200"``
        DRAM preset of the unit's rank; must have one rank (a unit owns one rank).
    mapping : str, default ``"robabgcorach"``
        the unit-local address mapping (DRAMsim3 style) handed to the :class:`BankController`.
    lanes : int, default 16
        fp32 FMA lanes; only 16 (one 64 B beat per cycle) is supported by the core.
    queue : int, default 16
        controller request-queue depth (FR-FCFS window), 1..32.
    tag_bits : int, default 5
        ROB entries ``2**tag_bits`` (reads in flight), 1..8.
    buf_beats : int, default 1024
        input-buffer beats (a power of two, 16..65536).
    max_row_bytes : int, default 1024
        largest ``row_bytes`` (a multiple of 64 up to 4096): D <= 256 by default.
    sgd_rows : int, default 64
        most row ids per ``SCATTER_SGD`` (the duplicate check is quadratic in it unless the ids
        ascend).
    pipeline : FMA pipeline steps (:class:`pimcast.hdl.fp.FMA`).
    rows, columns, tREFI : optional controller overrides for small simulations.
    capacity_beats : int, optional
        usable beats (default: the whole rank, ``2**(address bits - 6)``).
    units : int, default 1
        bank-group units of the rank: 1 = one accumulator file for the rank (sequential numerics);
        the preset's ``bankgroups`` = the bank-group placement with partial sums (see the module
        docstring "Bank-group units"); the controller then gets the bank-group data path
        (:meth:`DRAMTiming.with_data_path`).
    data_path : ``"channel"`` (default) or ``"bankgroup"``
        the controller's read data path: ``"bankgroup"`` keeps read data in the bank group (the
        bank-group placement; implied by ``units`` > 1).  With ``units = 1`` it gives the striped
        bank-group core (module docstring "Striped bank-group units").

    Raises
    ------
    TypeError, ValueError
        for a bad parameter, naming it and its value (before anything is built).
    """

    def __init__(self, timing: DRAMTiming | str | None = None, mapping: str = "robabgcorach", *,
                 lanes: int = 16, queue: int = 16, tag_bits: int = 5, buf_beats: int = 1024,
                 max_row_bytes: int = 1024, sgd_rows: int = 64, pipeline=DEFAULT_PIPELINE,
                 rows: int | None = None, columns: int | None = None, tREFI: int | None = None,
                 capacity_beats: int | None = None, units: int = 1, data_path: str = "channel"):
        self._MustUse__silence = True    # a constructor that raises leaves no 'unused' warning
        if timing is None:
            timing = load_preset("ddr4-3200", ranks=1)
        elif isinstance(timing, str):
            timing = load_preset(timing, ranks=1)
        if not isinstance(timing, DRAMTiming):
            raise TypeError(f"timing must be a DRAMTiming or a preset name, not {type(timing).__name__}")
        if timing.ranks != 1:
            raise ValueError(f"timing has {timing.ranks} ranks; a PIM core is one rank-level unit "
                             "(use timing.with_ranks(1) and one core per rank)")
        if timing.bursts_per_request != 1:
            raise ValueError(f"{timing.name}: a 64 B beat needs {timing.bursts_per_request} bursts of "
                             f"{timing.burst_bytes} B; the PIM core reads one burst per 64 B beat (DDR4 x64 "
                             "BL8 presets). The bank controller alone supports HBM2 (pimcast verilog --top "
                             "bankctl --dram hbm2)")
        if lanes != 16:
            raise ValueError(f"lanes must be 16 (one 64 B beat per cycle) for the core, not {lanes!r}")
        _check_int("tag_bits", tag_bits, 1, 8)
        _check_int("buf_beats", buf_beats, 16, 65536, pow2=True)
        _check_int("max_row_bytes", max_row_bytes, 64, 4096)
        if max_row_bytes % isa.BEAT_BYTES:
            raise ValueError(f"max_row_bytes must be a multiple of 64, not {max_row_bytes}")
        _check_int("sgd_rows", sgd_rows, 1, 65536)
        _check_int("units", units, 1)
        if data_path not in ("channel", "bankgroup"):
            raise ValueError(f"data_path must be 'channel' or 'bankgroup', not {data_path!r}")
        if units > 1:
            if units != timing.bankgroups:
                raise ValueError(f"units must be 1 (rank-level) or the preset's {timing.bankgroups} bank groups "
                                 f"(one unit per bank group), not {units}")
            if data_path != "bankgroup":
                raise ValueError(f"units={units} (one unit per bank group) needs data_path 'bankgroup', "
                                 f"not {data_path!r}")
        if data_path == "bankgroup":
            timing = timing.with_data_path("bankgroup")
        self.data_path = timing.data_path
        self._ctl_args = dict(timing=timing, mapping=mapping, queue=queue,
                              read_buffer=max(16, min_read_buffer(timing)),
                              tag_bits=tag_bits, rows=rows, columns=columns, tREFI=tREFI)
        probe = BankController(**self._ctl_args)   # validates mapping, queue and overrides
        probe._MustUse__silence = True
        self._ctl_params = probe.params()
        self.addr_bits = probe.addr_bits
        self._cmd_sig = (probe.rank_bits, probe.bg_bits, probe.bank_bits, probe.row_bits, probe.col_bits)
        full = 1 << (probe.addr_bits - 6)
        if capacity_beats is None:
            capacity_beats = full
        _check_int("capacity_beats", capacity_beats, 1, full)
        self.max_row_beats = max_row_bytes // isa.BEAT_BYTES
        self.unit_slots = 1 << _bits(max(2, self.max_row_beats))   # accumulators per unit
        slots = units * self.unit_slots
        self.units = units
        self._bg_field = (probe.mapping.shifts["bg"] - 6, probe.mapping.bits["bg"])   # in beat addresses
        self._ru_args = dict(lanes=lanes, slots=slots, pipeline=tuple(pipeline))
        ru = ReductionUnit(**self._ru_args)   # validates the pipeline
        ru._MustUse__silence = True
        self._latency = ru.latency
        self.timing = probe.timing
        self.mapping = probe.mapping.scheme
        self.lanes, self.slots, self.queue, self.tag_bits = lanes, slots, queue, tag_bits
        self.buf_beats, self.max_row_bytes, self.sgd_rows = buf_beats, max_row_bytes, sgd_rows
        self.capacity_beats = capacity_beats
        self.rob_depth = 1 << tag_bits
        del self._MustUse__silence
        super().__init__({
            "insn": In(stream.Signature(isa.INSN_BITS)),
            "din": In(stream.Signature(isa.InBeat)),
            "dout": Out(stream.Signature(isa.OutBeat)),
            "cmd": Out(command_signature(*self._cmd_sig)),
            "dq_w": Out(dq_signature(isa.BEAT_BITS)),
            "dq_r": In(dq_signature(isa.BEAT_BITS)),
            "busy": Out(1),
        })

    @property
    def latency(self) -> int:
        """The FMA / reduction pipeline latency in cycles."""
        return self._latency

    def max_sgd_count(self, row_bytes: int) -> int:
        """Most rows one ``SCATTER_SGD`` of ``row_bytes`` may update (row limit and buffer)."""
        r = row_bytes // isa.BEAT_BYTES
        n = min(self.sgd_rows, self.buf_beats * _WPB // (_WPB * r + 1))
        while n > 0 and -(-n // _WPB) + n * r > self.buf_beats:
            n -= 1
        return n

    def params(self) -> dict:
        """Facts for testbenches and host drivers (JSON-serialisable)."""
        return {"bankctl": self._ctl_params, "lanes": self.lanes, "slots": self.slots, "queue": self.queue,
                "tag_bits": self.tag_bits, "rob_depth": self.rob_depth, "buf_beats": self.buf_beats,
                "max_row_bytes": self.max_row_bytes, "sgd_rows": self.sgd_rows,
                "capacity_beats": self.capacity_beats, "latency": self.latency, "mapping": self.mapping,
                "data_path": self.data_path,
                **({"units": self.units, "bg_field": list(self._bg_field)} if self.units > 1 else {})}

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        m.submodules.ctl = ctl = BankController(**self._ctl_args)
        m.submodules.ru = ru = ReductionUnit(**self._ru_args)
        U = self.units
        if U > 1:
            # the rank buffer's adder: the units' partial sums of a bag, added in unit order
            m.submodules.comb = cmb = ReductionUnit(**{**self._ru_args, "slots": self.unit_slots})
        wiring.connect(m, wiring.flipped(self.cmd), ctl.cmd)
        wiring.connect(m, wiring.flipped(self.dq_w), ctl.dq_w)
        wiring.connect(m, wiring.flipped(self.dq_r), ctl.dq_r)

        TB = self.tag_bits
        NROB = self.rob_depth
        NB = self.buf_beats
        MRB = self.max_row_beats
        CAP = self.capacity_beats
        SB = _bits(self.slots)
        rbw = _bits(MRB + 1)              # width of a row-beat count
        bbw = _bits(NB + 1) + 1           # beat counters (room to count past the buffer)
        wpw = _bits(NB * _WPB + 2) + 1    # word pointers

        # ---------------------------------------------------------------- instruction register
        ir = Signal(isa.INSN_BITS)
        hdr = data.View(isa.Header, ir[:32])
        ma = data.View(isa.MemAccess, ir)
        gr = data.View(isa.GatherReduce, ir)
        sg = data.View(isa.ScatterSGD, ir)
        opc = Signal(8)
        m.d.comb += opc.eq(ir[:8])
        is_wr, is_rd = opc == isa.Opcode.WRITE.value, opc == isa.Opcode.READ.value
        is_gr, is_sg = opc == isa.Opcode.GATHER_REDUCE.value, opc == isa.Opcode.SCATTER_SGD.value
        weighted = Signal()
        m.d.comb += weighted.eq(gr.flags.weighted)
        row_bytes = Signal(16)
        table = Signal(32)
        nrows = Signal(32)
        m.d.comb += [row_bytes.eq(Mux(is_gr, gr.row_bytes, sg.row_bytes)),
                     table.eq(Mux(is_gr, gr.table, sg.table)), nrows.eq(Mux(is_gr, gr.rows, sg.rows))]
        rbeats = Signal(rbw)
        m.d.comb += rbeats.eq(row_bytes[6:])
        neg_lr = Signal(32)
        m.d.comb += neg_lr.eq(sg.lr ^ 0x80000000)

        # ---------------------------------------------------------------- error / status
        err_code = Signal(8)
        err_op = Signal(8)
        err_tag = Signal(16)
        err_detail = Signal(32)
        err_pos = Signal(32)
        retired = Signal(32)
        e_valid = Signal()
        e_code = Signal(8)
        e_detail = Signal(32)
        e_pos = Signal(32)
        clear_err = Signal()
        with m.If(clear_err):
            m.d.sync += err_code.eq(0)
        with m.Elif(e_valid & (err_code == 0)):
            m.d.sync += [err_code.eq(e_code), err_op.eq(opc), err_tag.eq(hdr.tag),
                         err_detail.eq(e_detail), err_pos.eq(e_pos)]
        failed = Signal()   # the current instruction failed (drain its stream, then finish)

        def fail(code, detail=0, pos=0):
            return [e_valid.eq(1), e_code.eq(code.value), e_detail.eq(detail), e_pos.eq(pos)]

        status_word = Signal(data.Layout.cast(isa.StatusWord).size)
        sw = data.View(isa.StatusWord, status_word)
        m.d.comb += [sw.status.eq(err_code), sw.opcode.eq(Mux(err_code == 0, 0, err_op)),
                     sw.tag.eq(Mux(err_code == 0, 0, err_tag)), sw.detail.eq(Mux(err_code == 0, 0, err_detail)),
                     sw.position.eq(Mux(err_code == 0, 0, err_pos)), sw.retired.eq(retired)]

        # ---------------------------------------------------------------- input buffer
        m.submodules.buf = buf = Memory(shape=isa.BEAT_BITS, depth=NB, init=[])
        bw = buf.write_port()
        rpa = buf.read_port(domain="comb")
        rpb = buf.read_port(domain="comb")
        rpc = buf.read_port(domain="comb")
        nin = Signal(bbw)          # beats received (saturates above the buffer)
        over = Signal()            # more beats than the buffer holds
        din_p = self.din.payload

        # ---------------------------------------------------------------- ROB
        info_layout = data.StructLayout({"weight": 32, "slot": SB, "first": 1, "last": 1, "empty": 1,
                                         "end": 1, "addr": 32, **({"flush": 1} if U > 1 else {})})
        m.submodules.rob_data = rob_data = Memory(shape=isa.BEAT_BITS, depth=NROB, init=[])
        m.submodules.rob_info = rob_info = Memory(shape=info_layout, depth=NROB, init=[])
        rd_w = rob_data.write_port()
        rd_r = rob_data.read_port(domain="comb")
        ri_w = rob_info.write_port()
        ri_r = rob_info.read_port(domain="comb")
        head = Signal(TB)
        tail = Signal(TB)
        count = Signal(TB + 1)
        rvalid = Signal(NROB)
        iss = Signal()             # an entry is allocated this cycle
        iss_empty = Signal()       # ... and needs no DRAM read
        ret = Signal()             # the head entry retires this cycle
        m.d.comb += [ri_w.addr.eq(tail), ri_w.en.eq(iss), rd_w.addr.eq(ctl.resp.payload.tag),
                     rd_w.data.eq(ctl.resp.payload.data), rd_w.en.eq(ctl.resp.valid), ctl.resp.ready.eq(1),
                     rd_r.addr.eq(head), ri_r.addr.eq(head)]
        set_resp = Mux(ctl.resp.valid, Const(1, NROB) << ctl.resp.payload.tag, 0)
        set_iss = Mux(iss & iss_empty, Const(1, NROB) << tail, 0)
        clr_ret = Mux(ret, Const(1, NROB) << head, 0)
        m.d.sync += rvalid.eq((rvalid & ~clr_ret) | set_resp | set_iss)
        with m.If(iss):
            m.d.sync += tail.eq(tail + 1)
        with m.If(ret):
            m.d.sync += head.eq(head + 1)
        m.d.sync += count.eq(count + iss - ret)
        rob_free = Signal()
        head_ready = Signal()
        m.d.comb += [rob_free.eq(count < NROB), head_ready.eq((count != 0) & rvalid.bit_select(head, 1))]
        head_info = ri_r.data

        # ---------------------------------------------------------------- SGD write-back FIFO
        m.submodules.wbq = wbq = fifo.SyncFIFO(width=32, depth=self._latency + 4)
        ru_out_pending = Signal(range(self._latency + 8))

        # ---------------------------------------------------------------- request port arbitration
        # priority: SGD write-back > bulk WRITE > reads of the issue stage
        wb_req = Signal()
        wb_addr = Signal(32)
        wr_req = Signal()
        wr_addr = Signal(32)
        wr_data = Signal(isa.BEAT_BITS)
        rd_req = Signal()
        rd_addr = Signal(32)
        q = ctl.req.payload
        with m.If(wb_req):
            m.d.comb += [ctl.req.valid.eq(1), q.addr.eq(wb_addr << 6), q.we.eq(1), q.data.eq(ru.o.payload.data)]
        with m.Elif(wr_req):
            m.d.comb += [ctl.req.valid.eq(1), q.addr.eq(wr_addr << 6), q.we.eq(1), q.data.eq(wr_data)]
        with m.Elif(rd_req):
            m.d.comb += [ctl.req.valid.eq(1), q.addr.eq(rd_addr << 6), q.we.eq(0), q.tag.eq(tail)]
        rd_go = Signal()   # a read request is accepted this cycle
        m.d.comb += rd_go.eq(rd_req & ~wb_req & ~wr_req & ctl.req.ready)

        # ---------------------------------------------------------------- modes
        MODE_RD, MODE_GR, MODE_SG = 1, 2, 3
        mode = Signal(2)

        # retire: READ -> dout; GATHER -> ru.i; SGD -> ru.i (ext) + wbq
        gp = Signal(bbw)   # next gradient beat in the buffer (SGD)
        m.d.comb += rpc.addr.eq(gp)
        rup = ru.i.payload
        m.d.comb += [rup.weight.eq(Mux(mode == MODE_SG, neg_lr, head_info.weight)),
                     rup.slot.eq(head_info.slot), rup.first.eq(head_info.first), rup.last.eq(head_info.last),
                     rup.empty.eq(head_info.empty), rup.end.eq(head_info.end), rup.ext.eq(mode == MODE_SG)]
        for k in range(self.lanes):
            row_lane = rd_r.data[32 * k:32 * (k + 1)]
            if U > 1:   # a flush beat adds -0.0 (x + -0.0 == x for every x, -0.0 included)
                row_lane = Mux(head_info.flush, 0x80000000, row_lane)
            lane_data = Mux(mode == MODE_SG, rpc.data[32 * k:32 * (k + 1)], row_lane)
            m.d.comb += [rup.data[k].eq(lane_data), rup.addend[k].eq(rd_r.data[32 * k:32 * (k + 1)])]
        dout_from_rob = Signal()
        dout_from_ru = Signal()
        dout_status = Signal()
        with m.Switch(mode):
            with m.Case(MODE_RD):
                m.d.comb += [dout_from_rob.eq(1), ret.eq(head_ready & self.dout.ready)]
            with m.Case(MODE_GR):
                m.d.comb += [ru.i.valid.eq(head_ready), ret.eq(head_ready & ru.i.ready), dout_from_ru.eq(1)]
                if U > 1:
                    m.d.comb += [cmb.i.valid.eq(ru.o.valid), ru.o.ready.eq(cmb.i.ready),
                                 cmb.o.ready.eq(self.dout.ready)]
                else:
                    m.d.comb += ru.o.ready.eq(self.dout.ready)
            with m.Case(MODE_SG):
                m.d.comb += [ru.i.valid.eq(head_ready & wbq.w_rdy), ret.eq(head_ready & wbq.w_rdy & ru.i.ready),
                             wbq.w_en.eq(ret), wbq.w_data.eq(head_info.addr),
                             wb_req.eq(ru.o.valid & wbq.r_rdy), wb_addr.eq(wbq.r_data),
                             ru.o.ready.eq(wbq.r_rdy & ctl.req.ready), wbq.r_en.eq(ru.o.valid & wbq.r_rdy & ctl.req.ready)]
        with m.If(ret & (mode == MODE_SG)):
            m.d.sync += gp.eq(gp + 1)
        ru_in_final = ru.i.valid & ru.i.ready & (rup.last | rup.empty | rup.ext)
        ru_out_fire = ru.o.valid & ru.o.ready
        m.d.sync += ru_out_pending.eq(ru_out_pending + ru_in_final - ru_out_fire)
        with m.If(dout_status):
            m.d.comb += [self.dout.valid.eq(1), self.dout.payload.data.eq(status_word),
                         self.dout.payload.status.eq(1)]
        with m.Elif(dout_from_rob):
            m.d.comb += [self.dout.valid.eq(head_ready), self.dout.payload.data.eq(rd_r.data)]
        with m.Elif(dout_from_ru):
            res = cmb.o if U > 1 else ru.o
            m.d.comb += [self.dout.valid.eq(res.valid), self.dout.payload.data.eq(res.payload.data)]

        drained = Signal()
        m.d.comb += drained.eq((count == 0) & (ru_out_pending == 0) & ~wbq.r_rdy)
        if U > 1:
            # combiner input: the units' sums leave `ru` unit-major per bag (u 0, beats 0..R-1, u 1, ...)
            c_b = Signal(rbw)
            c_u = Signal(range(U))
            cp = cmb.i.payload
            m.d.comb += [cp.data.eq(ru.o.payload.data), cp.weight.eq(ONE_F32), cp.slot.eq(c_b),
                         cp.first.eq(c_u == 0), cp.last.eq(c_u == U - 1), cp.end.eq(c_b + 1 == rbeats)]
            with m.If(ru.o.valid & ru.o.ready & (mode == MODE_GR)):
                with m.If(c_b + 1 == rbeats):
                    m.d.sync += [c_b.eq(0), c_u.eq(Mux(c_u == U - 1, 0, c_u + 1))]
                with m.Else():
                    m.d.sync += c_b.eq(c_b + 1)
            cmb_pending = Signal(range(2 * self._latency + 16))
            m.d.sync += cmb_pending.eq(cmb_pending + (cmb.i.valid & cmb.i.ready & cp.last)
                                       - (cmb.o.valid & cmb.o.ready))
            drained_all = Signal()
            m.d.comb += drained_all.eq(drained & (cmb_pending == 0))
        else:
            drained_all = drained

        # ---------------------------------------------------------------- counters of the FSM
        k_ctr = Signal(33)          # WRITE/READ beat counter, SGD row counter
        b_ctr = Signal(rbw)         # beat within a row
        exp_beats = Signal(48)      # expected input beats (WRITE, SGD)
        # gather parser
        wp = Signal(wpw)
        bags_left = Signal(32)
        rem = Signal(32)
        in_bag = Signal()
        first_row = Signal()
        lookup_no = Signal(32)
        cur_valid = Signal()
        cur_base = Signal(48)
        cur_w = Signal(32)
        cur_first = Signal()
        cur_last = Signal()
        cur_empty = Signal()
        if U > 1:
            seen = Signal(U)           # units holding a row of the current bag
            cur_unit = Signal(range(U))
            flushing = Signal()        # issuing the bag's U x R flush / empty entries
            fu = Signal(range(U))      # ... of this unit
            nbase = Signal(48)         # the parsed lookup's first beat and its bank group (unit)
        # SGD check
        ci = Signal(wpw)
        cq = Signal(bbw)
        id_max = Signal(32)      # SCATTER_SGD check: the largest id so far (ids 0 .. ci-1)

        # parser words: wp and wp + 1
        m.d.comb += [rpa.addr.eq(wp[4:]), rpb.addr.eq((wp + 1)[4:])]
        w0 = Signal(32)
        w1 = Signal(32)
        m.d.comb += [w0.eq(rpa.data.word_select(wp[:4], 32)), w1.eq(rpb.data.word_select((wp + 1)[:4], 32))]
        words_in = Signal(wpw)
        m.d.comb += words_in.eq(nin << 4)
        if U > 1:
            m.d.comb += nbase.eq(table + w0 * rbeats)
            bg_lo, bg_n = self._bg_field
            nunit = nbase[bg_lo:bg_lo + bg_n] if bg_n else Const(0, 1)

        # decode-time facts
        ids_beats = Signal(33)
        m.d.comb += ids_beats.eq((sg.count + (_WPB - 1)) >> 4)
        rows_end = Signal(64)
        m.d.comb += rows_end.eq(table + nrows * rbeats)
        bad_rb = Signal()
        m.d.comb += bad_rb.eq((row_bytes == 0) | (row_bytes[:6] != 0) | (row_bytes > self.max_row_bytes))
        mem_end = Signal(34)
        m.d.comb += mem_end.eq(ma.addr + ma.beats)

        # GATHER_REDUCE validation (state GR_VAL): a bag header per cycle; inside a bag one *run*
        # per cycle: every lookup of the bag whose row id lies in the current beat from wp on (up
        # to 16 ids; weighted up to 8 (id, weight) pairs, the last pair's weight possibly in the
        # next beat) is checked against `nrows` by parallel comparators; the first bad one (lowest
        # lane, a priority encoder) is reported exactly as a one-lookup-per-cycle pass would
        # (detail = its id, position = its lookup number), and so is a stream that ends inside a
        # pair (STREAM_ENDED_EARLY, detail = the word index of that pair's id).
        v_lane = Signal(4)                 # lane of wp in its beat
        v_beat_n = Signal(5)               # lookups whose id lies in this beat from wp on
        v_n = Signal(5)                    # ... of the current bag: the run length
        m.d.comb += [v_lane.eq(wp[:4]),
                     v_beat_n.eq(Mux(weighted, (17 - v_lane) >> 1, 16 - v_lane)),
                     v_n.eq(Mux(rem < v_beat_n, rem[:5], v_beat_n))]
        v_last = Signal(wpw)               # the word index of lane 15 of this beat
        m.d.comb += v_last.eq(Cat(Const(_WPB - 1, 4), wp[4:]))
        v_short = Signal()                 # the run's last pair straddles into a beat not received
        m.d.comb += v_short.eq(weighted & v_lane[0] & (v_n == v_beat_n) & (v_last + 2 > words_in))
        v_bads = []
        for k in range(_WPB):
            off = Signal(4, name=f"v_off{k}")    # lane k - lane of wp (valid for k >= lane)
            m.d.comb += off.eq(k - v_lane)
            at_or_after = (v_lane <= k) if k < _WPB - 1 else Const(1)   # (lane 15: always; no constant compare)
            in_run = at_or_after & (~weighted | ~off[0]) & (Mux(weighted, off >> 1, off) < v_n)
            bad = in_run & (rpa.data[32 * k:32 * (k + 1)] >= nrows)
            if k == _WPB - 1:
                bad = bad & ~v_short         # its weight is missing: STREAM_ENDED_EARLY, not a range check
            v_bads.append(bad)
        v_bad = Signal()
        v_sel = Signal(4)                  # priority encoder: the first bad lane
        m.d.comb += v_bad.eq(Cat(*v_bads).any())
        sel = Const(0, 4)
        for k in reversed(range(_WPB)):
            sel = Mux(v_bads[k], k, sel)
        m.d.comb += v_sel.eq(sel)
        v_sel_off = Signal(4)
        m.d.comb += v_sel_off.eq(v_sel - v_lane)

        m.d.comb += self.busy.eq(1)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.busy.eq(0), self.insn.ready.eq(1)]
                with m.If(self.insn.valid):
                    m.d.sync += [ir.eq(self.insn.payload), failed.eq(0), nin.eq(0), over.eq(0), k_ctr.eq(0),
                                 b_ctr.eq(0), mode.eq(0), cur_valid.eq(0), cur_empty.eq(0)]
                    m.next = "DECODE"

            with m.State("DECODE"):
                with m.Switch(opc):
                    with m.Case(isa.Opcode.NOP.value):
                        m.next = "DONE"
                    with m.Case(isa.Opcode.STATUS.value):
                        m.next = "STATUS"
                    with m.Case(isa.Opcode.WRITE.value):
                        m.d.sync += exp_beats.eq(ma.beats)
                        with m.If(mem_end > CAP):
                            m.d.comb += fail(isa.Status.ADDR_OUT_OF_RANGE, mem_end)
                            m.d.sync += failed.eq(1)
                        with m.Elif(ma.beats > NB):
                            m.d.comb += fail(isa.Status.COUNT_TOO_LARGE, ma.beats)
                            m.d.sync += failed.eq(1)
                        m.next = "LOAD"
                        with m.If(ma.beats == 0):
                            m.next = "DONE"
                    with m.Case(isa.Opcode.READ.value):
                        with m.If(mem_end > CAP):
                            m.d.comb += fail(isa.Status.ADDR_OUT_OF_RANGE, mem_end)
                            m.next = "DONE"
                        with m.Elif(ma.beats == 0):
                            m.next = "DONE"
                        with m.Else():
                            m.d.sync += mode.eq(MODE_RD)
                            m.next = "RD_EXEC"
                    with m.Case(isa.Opcode.GATHER_REDUCE.value, isa.Opcode.SCATTER_SGD.value):
                        n_items = Mux(is_gr, gr.bags, sg.count)
                        m.d.sync += exp_beats.eq(ids_beats + sg.count * rbeats)
                        with m.If(bad_rb):
                            m.d.comb += fail(isa.Status.BAD_ROW_BYTES, row_bytes)
                            m.d.sync += failed.eq(1)
                        with m.Elif(rows_end > CAP):
                            m.d.comb += fail(isa.Status.ADDR_OUT_OF_RANGE, rows_end)
                            m.d.sync += failed.eq(1)
                        with m.Elif(is_sg & ((sg.count > self.sgd_rows) |
                                             (ids_beats + sg.count * rbeats > NB))):
                            m.d.comb += fail(isa.Status.COUNT_TOO_LARGE, sg.count)
                            m.d.sync += failed.eq(1)
                        with m.If(n_items == 0):
                            m.next = "DONE"
                        with m.Else():
                            m.next = "LOAD"
                    with m.Default():
                        m.d.comb += fail(isa.Status.UNKNOWN_OPCODE, opc)
                        m.next = "DONE"

            with m.State("LOAD"):
                # receive the whole stream (or drop it after a failure) up to `last`
                m.d.comb += [self.din.ready.eq(1), bw.addr.eq(nin), bw.data.eq(din_p.data),
                             bw.en.eq(self.din.valid & ~failed & (nin < NB))]
                with m.If(self.din.valid):
                    with m.If(nin < NB + 1):
                        m.d.sync += nin.eq(nin + 1)
                    with m.If(din_p.last):
                        m.next = "CHECK"

            with m.State("CHECK"):
                with m.If(failed):
                    m.next = "DONE"
                with m.Elif(nin > NB):
                    m.d.comb += fail(isa.Status.COUNT_TOO_LARGE, nin)
                    m.next = "DONE"
                with m.Elif(~is_gr & (nin < exp_beats)):
                    m.d.comb += fail(isa.Status.STREAM_ENDED_EARLY, exp_beats, nin)
                    m.next = "DONE"
                with m.Elif(~is_gr & (nin > exp_beats)):
                    m.d.comb += fail(isa.Status.STREAM_TOO_LONG, exp_beats, nin)
                    m.next = "DONE"
                with m.Elif(is_wr):
                    m.next = "WR_EXEC"
                with m.Elif(is_gr):
                    m.d.sync += [wp.eq(0), bags_left.eq(gr.bags), in_bag.eq(0), lookup_no.eq(0)]
                    m.next = "GR_VAL"
                with m.Else():
                    m.d.sync += [ci.eq(0), cq.eq(0)]
                    m.next = "SG_CHK"

            with m.State("WR_EXEC"):
                m.d.comb += [rpa.addr.eq(k_ctr), wr_req.eq(1), wr_addr.eq(ma.addr + k_ctr), wr_data.eq(rpa.data)]
                with m.If(ctl.req.ready):
                    m.d.sync += k_ctr.eq(k_ctr + 1)
                    with m.If(k_ctr + 1 == ma.beats):
                        m.next = "DONE"

            with m.State("RD_EXEC"):
                m.d.comb += [rd_req.eq(rob_free), rd_addr.eq(ma.addr + k_ctr), iss.eq(rd_go)]
                with m.If(rd_go):
                    m.d.sync += k_ctr.eq(k_ctr + 1)
                    with m.If(k_ctr + 1 == ma.beats):
                        m.next = "FINISH"

            # ---- GATHER_REDUCE: validation pass (runs of lookups, see above), then execution
            with m.State("GR_VAL"):
                with m.If(~in_bag):
                    with m.If(bags_left == 0):
                        with m.If(((wp + (_WPB - 1)) >> 4) != nin):
                            m.d.comb += fail(isa.Status.STREAM_TOO_LONG, (wp + (_WPB - 1)) >> 4, nin)
                            m.next = "DONE"
                        with m.Else():
                            m.d.sync += [wp.eq(0), bags_left.eq(gr.bags), in_bag.eq(0),
                                         lookup_no.eq(0), cur_valid.eq(0), mode.eq(MODE_GR)]
                            m.next = "GR_EXEC"
                    with m.Elif(wp >= words_in):
                        m.d.comb += fail(isa.Status.STREAM_ENDED_EARLY, wp, nin)
                        m.next = "DONE"
                    with m.Else():
                        m.d.sync += [wp.eq(wp + 1), bags_left.eq(bags_left - 1)]
                        with m.If(w0 != 0):
                            m.d.sync += [in_bag.eq(1), rem.eq(w0)]
                with m.Elif(wp >= words_in):
                    m.d.comb += fail(isa.Status.STREAM_ENDED_EARLY, wp, nin)
                    m.next = "DONE"
                with m.Elif(v_bad):
                    m.d.comb += fail(isa.Status.ROW_OUT_OF_RANGE, rpa.data.word_select(v_sel, 32),
                                     lookup_no + Mux(weighted, v_sel_off >> 1, v_sel_off))
                    m.next = "DONE"
                with m.Elif(v_short):
                    m.d.comb += fail(isa.Status.STREAM_ENDED_EARLY, v_last, nin)
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += [wp.eq(wp + Mux(weighted, v_n << 1, v_n)), rem.eq(rem - v_n),
                                 lookup_no.eq(lookup_no + v_n)]
                    with m.If(rem == v_n):
                        m.d.sync += in_bag.eq(0)

            # Execution: one index word per entry (bag header or lookup), then the entry's R reads.
            with m.State("GR_EXEC"):
                with m.If(~cur_valid & ~flushing if U > 1 else ~cur_valid):
                    with m.If(~in_bag):
                        with m.If(bags_left == 0):
                            m.next = "FINISH"
                        with m.Elif(wp < words_in):      # always (validated)
                            m.d.sync += [wp.eq(wp + 1), bags_left.eq(bags_left - 1)]
                            if U > 1:
                                m.d.sync += seen.eq(0)
                            with m.If(w0 == 0):
                                if U > 1:     # an empty bag: every unit sends +0.0
                                    m.d.sync += [flushing.eq(1), fu.eq(0)]
                                else:
                                    m.d.sync += [cur_valid.eq(1), cur_empty.eq(1), cur_first.eq(1),
                                                 cur_last.eq(1), cur_w.eq(0), cur_base.eq(0)]
                            with m.Else():
                                m.d.sync += [in_bag.eq(1), rem.eq(w0), first_row.eq(1)]
                    with m.Else():
                        need = Mux(weighted, 2, 1)
                        with m.If(wp + need <= words_in):   # always (validated)
                            m.d.sync += [wp.eq(wp + need), rem.eq(rem - 1), first_row.eq(0),
                                         lookup_no.eq(lookup_no + 1)]
                            with m.If(rem == 1):
                                m.d.sync += in_bag.eq(0)
                            m.d.sync += [cur_valid.eq(1), cur_empty.eq(0), cur_first.eq(first_row),
                                         cur_last.eq(rem == 1), cur_w.eq(Mux(weighted, w1, ONE_F32))]
                            if U > 1:   # the row's unit: the bank group of its first beat
                                m.d.sync += [cur_base.eq(nbase), cur_unit.eq(nunit),
                                             cur_first.eq(~seen.bit_select(nunit, 1)),
                                             seen.eq(seen | (Const(1, U) << nunit))]
                            else:
                                m.d.sync += cur_base.eq(table + w0 * rbeats)
                # issue the R beats of the current entry
                m.d.comb += [rd_req.eq(cur_valid & ~cur_empty & rob_free), rd_addr.eq(cur_base + b_ctr)]
                if U > 1:
                    m.d.comb += [iss.eq(Mux(cur_empty | flushing, (cur_valid | flushing) & rob_free, rd_go)),
                                 iss_empty.eq(cur_empty | flushing)]
                else:
                    m.d.comb += [iss.eq(Mux(cur_empty, cur_valid & rob_free, rd_go)), iss_empty.eq(cur_empty)]
                with m.If(iss):
                    with m.If(b_ctr + 1 == rbeats):
                        m.d.sync += [b_ctr.eq(0), cur_valid.eq(0)]
                        if U > 1:
                            with m.If(flushing):
                                m.d.sync += fu.eq(fu + 1)
                                with m.If(fu == U - 1):
                                    m.d.sync += flushing.eq(0)
                            with m.Elif(cur_last):    # the bag's last row: its units' sums leave next
                                m.d.sync += [flushing.eq(1), fu.eq(0)]
                    with m.Else():
                        m.d.sync += b_ctr.eq(b_ctr + 1)

            # ---- SCATTER_SGD: range + duplicate check, then read-modify-write
            # An id larger than every earlier one (the first id, every id of an ascending list
            # such as tensor casting's unique rows) cannot repeat one: one cycle.  Any other id is
            # compared with the earlier ids, 16 per cycle (beats 0 .. ci // 16).
            with m.State("SG_CHK"):
                m.d.comb += [rpa.addr.eq(ci[4:]), rpb.addr.eq(cq)]
                idv = Signal(32)
                m.d.comb += idv.eq(rpa.data.word_select(ci[:4], 32))
                dup = Signal()
                hits = []
                for k in range(_WPB):
                    hits.append((rpb.data[32 * k:32 * (k + 1)] == idv) & ((cq << 4) + k < ci))
                m.d.comb += dup.eq(Cat(*hits).any())
                above = Signal()
                m.d.comb += above.eq((ci == 0) | (idv > id_max))
                with m.If(ci == sg.count):
                    m.d.sync += [k_ctr.eq(0), b_ctr.eq(0), gp.eq(ids_beats), mode.eq(MODE_SG)]
                    m.next = "SG_EXEC"
                with m.Elif((cq == 0) & (idv >= nrows)):
                    m.d.comb += fail(isa.Status.ROW_OUT_OF_RANGE, idv, ci)
                    m.next = "DONE"
                with m.Elif((cq == 0) & above):
                    m.d.sync += [ci.eq(ci + 1), id_max.eq(idv)]
                with m.Elif(dup):
                    m.d.comb += fail(isa.Status.DUPLICATE_ROW, idv, ci)
                    m.next = "DONE"
                with m.Elif(cq == ci[4:]):
                    m.d.sync += [ci.eq(ci + 1), cq.eq(0)]
                with m.Else():
                    m.d.sync += cq.eq(cq + 1)

            with m.State("SG_EXEC"):
                m.d.comb += rpa.addr.eq(k_ctr[4:])
                sid = Signal(32)
                m.d.comb += sid.eq(rpa.data.word_select(k_ctr[:4], 32))
                addr = Signal(32)   # < capacity: SG_CHK checked every id against the table's rows
                m.d.comb += addr.eq(table + sid * rbeats + b_ctr)
                m.d.comb += [rd_req.eq(rob_free), rd_addr.eq(addr), iss.eq(rd_go),
                             ri_w.data.addr.eq(addr)]
                with m.If(rd_go):
                    with m.If(b_ctr + 1 == rbeats):
                        m.d.sync += [b_ctr.eq(0), k_ctr.eq(k_ctr + 1)]
                        with m.If(k_ctr + 1 == sg.count):
                            m.next = "FINISH"
                    with m.Else():
                        m.d.sync += b_ctr.eq(b_ctr + 1)

            with m.State("FINISH"):
                with m.If(drained_all):
                    m.next = "DONE"

            with m.State("STATUS"):
                m.d.comb += dout_status.eq(1)
                with m.If(self.dout.ready):
                    m.d.comb += clear_err.eq(1)
                    m.next = "DONE"

            with m.State("DONE"):
                m.d.sync += [retired.eq(retired + 1), mode.eq(0)]
                m.next = "IDLE"

        # ROB info of an issued entry (gather: from the parser's current entry)
        if U > 1:
            # rows accumulate into their unit's slots and never leave; the bag's flush entries
            # (unit fu, beat b) emit each unit's sum (fma(1, -0.0, acc) == acc) or +0.0 (no row)
            has = seen.bit_select(fu, 1)
            m.d.comb += [ri_w.data.weight.eq(Mux(flushing, ONE_F32, cur_w)),
                         ri_w.data.slot.eq(Mux(flushing, fu, cur_unit) * self.unit_slots + b_ctr),
                         ri_w.data.first.eq(~flushing & cur_first), ri_w.data.last.eq(flushing & has),
                         ri_w.data.empty.eq(flushing & ~has), ri_w.data.flush.eq(flushing & has),
                         ri_w.data.end.eq(b_ctr + 1 == rbeats)]
        else:
            m.d.comb += [ri_w.data.weight.eq(cur_w), ri_w.data.slot.eq(b_ctr), ri_w.data.first.eq(cur_first),
                         ri_w.data.last.eq(cur_last), ri_w.data.empty.eq(cur_empty),
                         ri_w.data.end.eq(b_ctr + 1 == rbeats)]
        return m


def from_config(config=None, **overrides) -> PIMCore:
    """The ``core`` Verilog top for a PIM configuration (``configs/pim/*.yaml``, a name, a path,
    a :class:`pimcast.host.pim_config.PIMConfig` or ``None`` for the default).

    One core = the unit(s) of one rank: its DRAM is one rank of the config's preset and its
    mapping the config's mapping (channel and rank fields are zero-width in a one-rank view).  The
    in-flight window comes from the config: ``queue = cfg.queue`` (controller request queue,
    1..32, which :class:`~pimcast.host.pim_config.PIMConfig` checks) and
    ``tag_bits = log2(cfg.rob_tags)`` (ROB entries = reads in flight) — the same two numbers the
    ``model`` backend's timing uses, so both backends time the same unit.  (The
    :class:`PIMCore` constructor keeps its own small defaults, 16 / 32, for unit tests.)
    ``overrides`` go to :class:`PIMCore` (``rows``, ``tREFI``, ``buf_beats``, and ``queue`` /
    ``tag_bits`` to override the config's window …).

    Every placement / accumulate pair has a core (:attr:`PIMConfig.core_units`,
    :attr:`PIMConfig.core_data_path`):

    * ``rank`` + ``sequential`` (default): the rank-level core;
    * ``rank`` + ``partial``: the same core, one per rank holding whole rows (the host adds the
      ranks' sums);
    * ``bankgroup`` + ``partial`` (``trim-ddr4-3200``): the bank-group core, ``units`` = the
      preset's bank groups, bank-group data path (module docstring "Bank-group units");
    * ``bankgroup`` + ``sequential`` (``bankgroup-ddr4-3200``): the striped bank-group core, one
      accumulator file, bank-group data path (module docstring "Striped bank-group units").
    """
    from pimcast.host.pim_config import PIMConfig, load_pim_config

    cfg = config if isinstance(config, PIMConfig) else load_pim_config(config)
    t = cfg.dram_timing().with_ranks(1)
    kw = dict(lanes=cfg.lanes, queue=cfg.queue, tag_bits=cfg.rob_tags.bit_length() - 1, units=cfg.core_units,
              data_path=cfg.core_data_path)
    kw.update(overrides)
    return PIMCore(t, cfg.address_mapping, **kw)
