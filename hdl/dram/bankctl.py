"""DRAM channel controller ("bank controller"): request queue, FR-FCFS scheduler, timing counters.

The controller is generated from a :class:`~pimcast.hdl.dram.timing.DRAMTiming` preset. Its
timing counters are generated from :func:`~pimcast.hdl.dram.timing.timing_rules` and
:func:`~pimcast.hdl.dram.timing.window_rules` (see :class:`RuleCounters`) — no timing number is
typed here. One controller cycle is one tCK.

Blocks (LiteDRAM-style, one concern each):

* :class:`RuleCounters` — one down-counter per timing rule and scope instance, and the tFAW
  window (a 4-deep ACT history per rank); it answers "may command X go to bank b now?".
* :class:`~pimcast.hdl.dram.refresher.Refresher` — per-rank tREFI timers and PREA/REF.
* :class:`BankController` — request queue, per-bank row state, the FR-FCFS command selection,
  the write-data pipeline (CWL) and the read-return buffer.
"""
from __future__ import annotations

import dataclasses
import math

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .cmdport import CmdKind, command_signature, dq_signature
from .refresher import Refresher, check_refresh_interval, refresh_postpone_bound
from .timing import (REQUEST_BYTES, AddressMapping, Cmd, ConfigError, DRAMTiming, Scope,
                     load_preset, timing_rules, window_rules)

__all__ = ["BankController", "RuleCounters", "min_read_buffer", "ISSUED_CMDS", "request_layout", "response_layout"]

#: Commands this controller issues (open-page policy: no RDA/WRA).
ISSUED_CMDS = (Cmd.ACT, Cmd.RD, Cmd.WR, Cmd.PRE, Cmd.PREA, Cmd.REF)
_RANKWIDE = (Cmd.PREA, Cmd.REF)
_LEVEL = {Scope.SAME_BANK: "bank", Scope.SAME_BANKGROUP: "bg", Scope.DIFF_BANKGROUP: "bg",
          Scope.SAME_RANK: "rank", Scope.DIFF_RANK: "rank", Scope.CHANNEL: "chan"}
DATA_BITS = REQUEST_BYTES * 8


def _bits(n: int) -> int:
    """Bits to index ``n`` values (0 for n <= 1)."""
    return int(math.ceil(math.log2(n))) if n > 1 else 0


def request_layout(addr_bits: int, tag_bits: int) -> data.StructLayout:
    """Request payload: ``addr`` (byte address; the low 6 bits are ignored), ``we`` (1 = write),
    ``tag`` (returned with read data), ``data`` (64 B write data, byte 0 in bits 7:0)."""
    return data.StructLayout({"addr": addr_bits, "we": 1, "tag": tag_bits, "data": DATA_BITS})


def response_layout(tag_bits: int) -> data.StructLayout:
    """Read-data payload: ``tag`` of the request and its 64 B ``data``."""
    return data.StructLayout({"tag": tag_bits, "data": DATA_BITS})


def min_read_buffer(t: DRAMTiming) -> int:
    """Read-return entries that never bind without back-pressure: an entry lives ``CL + BL/2 + 3``
    cycles (last RD to response) and reads issue at most one per smallest read -> read gap of
    the rule table (``tCCD_S`` on the channel data path, the 1-cycle command bus on a bank-group
    data path; ``bursts_per_request`` RDs per request)."""
    B, SG, DG, SR, DR, CH = (Scope.SAME_BANK, Scope.SAME_BANKGROUP, Scope.DIFF_BANKGROUP,
                             Scope.SAME_RANK, Scope.DIFF_RANK, Scope.CHANNEL)
    # relation of the next read's bank to the previous one's -> the scopes that apply to it
    rels = [{B, SG, SR, CH}, {SG, SR, CH}]
    if t.bankgroups > 1:
        rels.append({DG, SR, CH})
    if t.ranks > 1:
        rels.append({DR, CH})
    rd = [r for r in timing_rules(t) if r.prev is Cmd.RD and r.next is Cmd.RD]
    gap = min(max([1] + [r.gap for r in rd if r.scope in sc]) for sc in rels) * t.bursts_per_request
    return -(-(t.CL + t.BL2 + 3) // gap)


class RuleCounters:
    """Timing-rule counters generated from the rule table.

    A logic generator, not a separate module: :meth:`build` adds the counters to the
    controller's module, so the exported Verilog is one flat module.

    Every rule ``(prev, next, scope, gap)`` of :func:`timing_rules` whose commands the controller
    issues and whose gap exceeds one cycle (the one-command-per-cycle rule holds by
    construction) gets a down-counter per instance of its scope level (bank, bank group, rank
    or channel). Rules with equal ``(prev, scope, gap)`` share their counters (e.g. tRCD and
    tRCDWR when equal). Issuing ``prev`` loads ``gap - 1`` into the counters of its own
    instance (all instances of its rank for PREA/REF); ``next`` may issue when the relevant
    counters are zero: its own instance for SAME_* scopes, every other bank group / rank of the
    channel for DIFF_* scopes. The tFAW :class:`~pimcast.hdl.dram.timing.WindowRule` is a
    ``count``-deep shift register of down-counters per rank (the last ``count`` ACTs); an ACT
    may issue when the oldest entry is zero.

    Inputs: ``iss_valid``, ``iss_kind`` (:class:`CmdKind`), ``iss_rank``, ``iss_bgf`` (flat bank
    group ``rank * bankgroups + bg``), ``iss_bankf`` (flat bank). Outputs: per flat bank
    ``act_ok``, ``rd_ok``, ``wr_ok``, ``pre_ok``; per rank ``prea_ok``, ``ref_ok``.
    """

    def __init__(self, t: DRAMTiming):
        self.t = t
        R, G, B = t.ranks, t.bankgroups, t.banks_per_group
        self.n = {"bank": R * G * B, "bg": R * G, "rank": R, "chan": 1}
        keys: dict[tuple, list[str]] = {}
        self.rules = []
        for r in timing_rules(t):
            if r.prev not in ISSUED_CMDS or r.next not in ISSUED_CMDS or r.gap <= 1:
                continue
            if (r.scope is Scope.DIFF_RANK and R == 1) or (r.scope is Scope.DIFF_BANKGROUP and G == 1):
                continue  # no other rank / bank group: the rule never applies
            if r.next in _RANKWIDE and _LEVEL[r.scope] in ("bank", "bg"):
                raise ConfigError(f"rule {r.name}: {r.next.value} is rank-wide; scope {r.scope.value} "
                                  "is not supported by the RTL counter bank")
            key = (r.prev, r.scope, r.gap)
            keys.setdefault(key, [])
            if r.name not in keys[key]:
                keys[key].append(r.name)
            self.rules.append(r)
        #: ``(prev, scope, gap) -> [rule names]``: one counter per key and scope instance
        self.keys = keys
        self.windows = window_rules(t)
        for w in self.windows:
            if w.cmd is not Cmd.ACT or w.scope is not Scope.SAME_RANK:
                raise ConfigError(f"window rule {w.name}: only ACT windows per rank are supported")
        self.iss_valid = Signal()
        self.iss_kind = Signal(CmdKind)
        self.iss_rank = Signal(max(1, _bits(R)))
        self.iss_bgf = Signal(max(1, _bits(R * G)))
        self.iss_bankf = Signal(max(1, _bits(R * G * B)))
        nb = R * G * B
        self.act_ok = Signal(nb)
        self.rd_ok = Signal(nb)
        self.wr_ok = Signal(nb)
        self.pre_ok = Signal(nb)
        self.prea_ok = Signal(R)
        self.ref_ok = Signal(R)

    @property
    def counter_count(self) -> int:
        """Number of rule counters (excluding the tFAW history)."""
        return sum(self.n[_LEVEL[s]] for (_, s, _) in self.keys)

    def build(self, m: Module) -> None:
        """Add the counters and the ``*_ok`` logic to module ``m``."""
        t = self.t
        R, G, B = t.ranks, t.bankgroups, t.banks_per_group
        # one-hot decode of the issuing command's rank / bank group / bank
        onehot = {
            "bank": [Signal(name=f"iss_bank{x}") for x in range(R * G * B)],
            "bg": [Signal(name=f"iss_bg{x}") for x in range(R * G)],
            "rank": [Signal(name=f"iss_rank{x}") for x in range(R)],
        }
        for x, s in enumerate(onehot["bank"]):
            m.d.comb += s.eq(self.iss_bankf == x)
        for x, s in enumerate(onehot["bg"]):
            m.d.comb += s.eq(self.iss_bgf == x)
        for x, s in enumerate(onehot["rank"]):
            m.d.comb += s.eq(self.iss_rank == x)
        per_rank = {"bank": G * B, "bg": G, "rank": 1}

        kind_is = {c: Signal(name=f"iss_is_{c.value}") for c in ISSUED_CMDS}
        for c, s in kind_is.items():
            m.d.comb += s.eq(self.iss_valid & (self.iss_kind == CmdKind[c.name]))

        zero: dict[tuple, list] = {}
        for key, names in self.keys.items():
            prev, scope, gap = key
            level = _LEVEL[scope]
            zs = []
            for x in range(self.n[level]):
                nm = f"{'_'.join(names)}_{prev.value}_{scope.value}_{x}"
                cnt = Signal(range(gap), name=f"cnt_{nm}")
                if level == "chan":
                    sel = Const(1)
                elif prev in _RANKWIDE:
                    sel = onehot["rank"][x // per_rank[level]]
                else:
                    sel = onehot[level][x]
                with m.If(kind_is[prev] & sel):
                    m.d.sync += cnt.eq(gap - 1)
                with m.Elif(cnt != 0):
                    m.d.sync += cnt.eq(cnt - 1)
                z = Signal(name=f"z_{nm}")
                m.d.comb += z.eq(cnt == 0)
                zs.append(z)
            zero[key] = zs

        # tFAW-style windows: count-deep history of down-counters per rank
        win_ok = [[] for _ in range(R)]
        for w in self.windows:
            for r in range(R):
                hist = [Signal(range(w.window), name=f"{w.name}_r{r}_{k}") for k in range(w.count)]
                dec = lambda s: Mux(s != 0, s - 1, 0)  # noqa: E731
                with m.If(kind_is[Cmd.ACT] & onehot["rank"][r]):
                    m.d.sync += hist[0].eq(w.window - 1)
                    for k in range(1, w.count):
                        m.d.sync += hist[k].eq(dec(hist[k - 1]))
                with m.Else():
                    for k in range(w.count):
                        m.d.sync += hist[k].eq(dec(hist[k]))
                win_ok[r].append(hist[-1] == 0)

        def ok_at(nxt: Cmd, rank: int, bgf: int, bankf: int) -> list:
            conds = []
            for r in self.rules:
                if r.next is not nxt:
                    continue
                zs = zero[(r.prev, r.scope, r.gap)]
                s = r.scope
                if s is Scope.SAME_BANK:
                    conds.append(zs[bankf])
                elif s is Scope.SAME_BANKGROUP:
                    conds.append(zs[bgf])
                elif s is Scope.DIFF_BANKGROUP:
                    conds += [zs[rank * G + g] for g in range(G) if rank * G + g != bgf]
                elif s is Scope.SAME_RANK:
                    conds.append(zs[rank])
                elif s is Scope.DIFF_RANK:
                    conds += [zs[q] for q in range(R) if q != rank]
                else:
                    conds.append(zs[0])
            return conds

        def all_of(conds):
            uniq = list(dict.fromkeys(id(c) for c in conds))
            by_id = {id(c): c for c in conds}
            return Cat(*(by_id[i] for i in uniq)).all() if uniq else Const(1)

        for bankf in range(R * G * B):
            rank, bgf = bankf // (G * B), bankf // B
            m.d.comb += [
                self.act_ok[bankf].eq(all_of(ok_at(Cmd.ACT, rank, bgf, bankf) + win_ok[rank])),
                self.rd_ok[bankf].eq(all_of(ok_at(Cmd.RD, rank, bgf, bankf))),
                self.wr_ok[bankf].eq(all_of(ok_at(Cmd.WR, rank, bgf, bankf))),
                self.pre_ok[bankf].eq(all_of(ok_at(Cmd.PRE, rank, bgf, bankf))),
            ]
        for rank in range(R):
            m.d.comb += [self.prea_ok[rank].eq(all_of(ok_at(Cmd.PREA, rank, rank * G, rank * G * B))),
                         self.ref_ok[rank].eq(all_of(ok_at(Cmd.REF, rank, rank * G, rank * G * B)))]


class BankController(wiring.Component):
    """One DRAM channel controller generated from a timing preset.

    Parameters
    ----------
    timing : DRAMTiming or str, default ``"ddr4-3200"`` with one rank
        Preset (or preset name). A 64 B request takes ``K = bursts_per_request`` column
        commands: ``K = 1`` for DDR4 x64 with BL8, ``K = 2`` for an HBM2 pseudo-channel
        (64-bit, BL4: 32 B per burst). Any ``K`` dividing 64 B is generated.
    mapping : str, default ``"rochrababgco"``
        DRAMsim3-style address mapping (:class:`~pimcast.hdl.dram.timing.AddressMapping`).
    queue : int, default 8
        Request-queue depth (the FR-FCFS window), 1..32.
    read_buffer : int, default 8
        Read-return buffer entries; a RD (with ``K > 1``: a request's last RD) issues only while
        fewer than ``read_buffer`` reads are in flight or waiting in the buffer, so read data is
        never dropped under back-pressure. An entry is held from the last RD to the response
        (``CL + BL/2 + 3`` cycles with a ready host), so 8 entries bind on neither DDR4 nor HBM2
        without back-pressure (the fast model does not model the credit); a bank-group data path
        (``timing.data_path == "bankgroup"``, reads a cycle apart) needs :func:`min_read_buffer`.
    tag_bits : int, default 8
    rows, columns, tREFI : int, optional
        Overrides for small simulations (fewer address bits; a short refresh interval). ``rows``
        and ``columns`` must be powers of two; ``tREFI`` must leave room for one refresh.

    Members
    -------
    req : In(stream.Signature(request_layout(addr_bits, tag_bits)))
        Requests (64 B, byte address). Accepted (``ready``) whenever a queue slot is free.
    resp : Out(stream.Signature(response_layout(tag_bits)))
        Read data with the request's tag, in the order the (last) RDs were issued (not request
        order). Writes produce no response.
    cmd : Out(command_signature(...))
        DRAM command port (registered; see :mod:`pimcast.hdl.dram.cmdport`).
    dq_w : Out(dq_signature(burst_bits))
        Write data, one burst (``burst_bits = 8 * burst_bytes``: 512 on DDR4, 256 on HBM2),
        ``CWL`` cycles after each WR on ``cmd``; burst ``b`` of a request is bits
        ``[b * burst_bits, (b + 1) * burst_bits)`` of its 64 B write data.
    dq_r : In(dq_signature(burst_bits))
        Read data from the DRAM, one burst, expected ``CL + BL/2`` cycles after each RD on
        ``cmd``, in RD order.

    Queue behaviour
    ---------------
    ``queue`` slots hold pending requests (decoded address, write flag, tag; write data in a
    slot-indexed memory). A read leaves its slot when its (last) RD issues; a write when its
    last burst's data has been read out for the data bus (``CWL`` cycles after its last WR). An
    age matrix orders the slots by arrival.

    Multi-burst requests (``K > 1``, HBM2)
    --------------------------------------
    A slot counts its issued bursts; each of its column commands is an ordinary scheduling
    candidate (same rules, same priority, same timing counters), issued at column
    ``(co * K + burst) * BL`` — the fast model's policy, so bursts of different requests may
    interleave and the bank may even be precharged between them (starvation guard). Read
    bursts are assembled per request: each RD's (slot, burst) goes through a beat FIFO; beats
    before the last wait in a per-slot staging memory; the last beat goes, with them, into the
    read-return FIFO (one 64 B response, in last-RD order) — so a request split by a PRE
    never holds back the responses of others.

    Scheduling policy (open page, FR-FCFS within the queue window)
    --------------------------------------------------------------
    Each cycle at most one command issues, chosen in this priority:

    1. a refresh step (PREA, then REF, of a rank whose tREFI timer expired — see
       :class:`~pimcast.hdl.dram.refresher.Refresher`; refresh is never starved, the REF
       follows the due time within :func:`~pimcast.hdl.dram.refresher.refresh_postpone_bound`
       cycles, and the rank takes no other command meanwhile);
    2. the column command (RD/WR) of the **oldest row-hit** request whose timing counters allow
       it ("first ready");
    3. the ACT of the **oldest** request to a precharged bank whose counters allow it;
    4. the PRE of the **oldest** request whose bank holds another row, only when no pending
       request hits that open row.

    Starvation guard: when the oldest request in the queue misses in an open bank, younger
    hits to that bank are held back, so the bank is precharged for it; every request therefore
    eventually becomes the oldest and is served. Same-address ordering: a request never issues
    before an older request to the same 64 B address (read-after-write returns the new data,
    write-after-read the old data).

    Latency (from the cycle a request is accepted to the cycle its data is valid on ``resp``,
    with an idle controller): a read to a closed bank takes
    ``tRCD + (K - 1) * tCCD_L + CL + BL/2 + 3`` cycles (51 for DDR4-3200, 39 for DDR4-2400,
    43 for HBM2: the second burst goes tCCD_L after the first, same bank), a row hit
    ``(K - 1) * tCCD_L + CL + BL/2 + 3`` (29 / 23 / 29). The three pipeline cycles are the queue
    register, the registered command port and the read-return buffer. See
    :attr:`closed_read_latency` / :attr:`hit_read_latency`.

    Throughput: one command per cycle; the data bus carries one burst per ``BL/2`` cycles, so a
    row-hit stream alternating bank groups peaks at one 64 B request per ``K * max(tCCD_S,
    BL/2)`` cycles (DDR4-3200: 4 cycles, 16 B/cycle; HBM2: 2 bursts x 2 cycles = 4 cycles, 16 B/tCK
    = 16 GB/s per pseudo-channel at 1 GHz); within one bank group ``K * tCCD_L`` per request.

    Raises
    ------
    ValueError
        For unsupported presets (a burst that does not divide 64 B, CWL < 2), bad queue /
        buffer / tag sizes, bad overrides, or a mapping string that is not valid.
    """

    PIPELINE = 3

    def __init__(self, timing: DRAMTiming | str | None = None, mapping: str = "rochrababgco", queue: int = 8,
                 read_buffer: int = 8, tag_bits: int = 8, *, rows: int | None = None,
                 columns: int | None = None, tREFI: int | None = None):
        try:
            t, amap = self._validate(timing, mapping, queue, read_buffer, tag_bits, rows, columns, tREFI)
        except (ValueError, TypeError):
            self._MustUse__silence = True   # a rejected controller is not an unused one
            raise
        self._t = t
        self._map = amap
        self._queue = queue
        self._rbuf = read_buffer
        self._tag_bits = tag_bits
        self._counters = RuleCounters(t)   # facts only; elaborate() builds fresh generators
        m = self._map
        self.addr_bits = m.total_bits
        self.rank_bits, self.bg_bits = m.bits["ra"], m.bits["bg"]
        self.bank_bits, self.row_bits = m.bits["ba"], m.bits["ro"]
        self.col_bits = _bits(t.columns)
        #: column commands (bursts) per 64 B request, and the data-port width (one burst)
        self.bursts_per_request = t.bursts_per_request
        self.burst_bits = t.burst_bytes * 8
        super().__init__({
            "req": In(stream.Signature(request_layout(self.addr_bits, tag_bits))),
            "resp": Out(stream.Signature(response_layout(tag_bits))),
            "cmd": Out(command_signature(self.rank_bits, self.bg_bits, self.bank_bits, self.row_bits,
                                         self.col_bits)),
            "dq_w": Out(dq_signature(self.burst_bits)),
            "dq_r": In(dq_signature(self.burst_bits)),
        })

    @staticmethod
    def _validate(timing, mapping, queue, read_buffer, tag_bits, rows, columns, tREFI):
        if timing is None:
            timing = load_preset("ddr4-3200", ranks=1)
        elif isinstance(timing, str):
            timing = load_preset(timing)
        if not isinstance(timing, DRAMTiming):
            raise TypeError(f"timing must be a DRAMTiming or preset name, not {type(timing).__name__}")
        over = {}
        for name, v in (("rows", rows), ("columns", columns), ("tREFI", tREFI)):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} override must be a positive integer, not {v!r}")
            if name != "tREFI" and v & (v - 1):
                raise ValueError(f"{name} override must be a power of two, not {v}")
            over[name] = v
        t = dataclasses.replace(timing, **over) if over else timing
        if t.burst_bytes > REQUEST_BYTES or REQUEST_BYTES % t.burst_bytes:
            raise ValueError(f"{t.name}: a burst of {t.burst_bytes} B does not divide a {REQUEST_BYTES} B request")
        if t.row_bytes < REQUEST_BYTES:
            raise ValueError(f"columns={t.columns} gives rows of {t.row_bytes} B, less than one request")
        if isinstance(queue, bool) or not isinstance(queue, int) or not 1 <= queue <= 32:
            raise ValueError(f"queue depth must be an integer in 1..32, not {queue!r}")
        if isinstance(read_buffer, bool) or not isinstance(read_buffer, int) or not 1 <= read_buffer <= 64:
            raise ValueError(f"read_buffer must be an integer in 1..64, not {read_buffer!r}")
        if isinstance(tag_bits, bool) or not isinstance(tag_bits, int) or not 1 <= tag_bits <= 32:
            raise ValueError(f"tag_bits must be an integer in 1..32, not {tag_bits!r}")
        if t.CWL < 2:
            raise ValueError(f"CWL={t.CWL} < 2 is not supported by the write-data pipeline")
        check_refresh_interval(t)
        return t, AddressMapping(mapping, t)

    # read-only facts -------------------------------------------------------------------------
    @property
    def timing(self) -> DRAMTiming:
        return self._t

    @property
    def mapping(self) -> AddressMapping:
        return self._map

    @property
    def queue(self) -> int:
        return self._queue

    @property
    def read_buffer(self) -> int:
        return self._rbuf

    @property
    def tag_bits(self) -> int:
        return self._tag_bits

    @property
    def burst_gap(self) -> int:
        """Minimum gap between two RDs to one bank (from the rule table: tCCD_L on DDR4 / HBM2):
        the spacing of the bursts of one request."""
        same = (Scope.SAME_BANK, Scope.SAME_BANKGROUP, Scope.SAME_RANK, Scope.CHANNEL)
        return max(r.gap for r in timing_rules(self._t)
                   if r.prev is Cmd.RD and r.next is Cmd.RD and r.scope in same)

    @property
    def closed_read_latency(self) -> int:
        """Cycles from request accepted to ``resp.valid`` for a read to a precharged bank."""
        t = self._t
        return t.tRCD + (self.bursts_per_request - 1) * self.burst_gap + t.CL + t.BL2 + self.PIPELINE

    @property
    def hit_read_latency(self) -> int:
        """Cycles from request accepted to ``resp.valid`` for a read to the open row."""
        t = self._t
        return (self.bursts_per_request - 1) * self.burst_gap + t.CL + t.BL2 + self.PIPELINE

    @property
    def refresh_bound(self) -> int:
        return refresh_postpone_bound(self._t)

    @property
    def rule_counter_count(self) -> int:
        return self._counters.counter_count

    def params(self) -> dict:
        """Constructor facts for testbenches (passed as JSON in ``PIMCAST_BANKCTL_PARAMS``)."""
        t = self._t
        return {"timing": dataclasses.asdict(t), "mapping": self._map.scheme, "queue": self._queue,
                "read_buffer": self._rbuf, "tag_bits": self._tag_bits, "addr_bits": self.addr_bits,
                "closed_read_latency": self.closed_read_latency, "hit_read_latency": self.hit_read_latency,
                "refresh_bound": self.refresh_bound}

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        t, amap = self._t, self._map
        Q = self._queue
        R, G, B = t.ranks, t.bankgroups, t.banks_per_group
        NB = R * G * B
        ctr = RuleCounters(t)
        ctr.build(m)
        ref = Refresher(t)
        ref.build(m)

        # ---------------------------------------------------------------- queue slots
        rb, gb, bb, rowb = max(1, self.rank_bits), max(1, self.bg_bits), max(1, self.bank_bits), max(1, self.row_bits)
        cob = max(1, amap.bits["co"])
        bfb = max(1, _bits(NB))
        valid = [Signal(name=f"q{i}_valid") for i in range(Q)]
        held = [Signal(name=f"q{i}_held") for i in range(Q)]      # write issued, data not yet out
        we = [Signal(name=f"q{i}_we") for i in range(Q)]
        rank = [Signal(rb, name=f"q{i}_rank") for i in range(Q)]
        bg = [Signal(gb, name=f"q{i}_bg") for i in range(Q)]
        bank = [Signal(bb, name=f"q{i}_bank") for i in range(Q)]
        bankf = [Signal(bfb, name=f"q{i}_bankf") for i in range(Q)]   # flat bank index
        row = [Signal(rowb, name=f"q{i}_row") for i in range(Q)]
        co = [Signal(cob, name=f"q{i}_co") for i in range(Q)]
        tag = [Signal(self._tag_bits, name=f"q{i}_tag") for i in range(Q)]
        dep = [Signal(Q, name=f"q{i}_dep") for i in range(Q)]        # older same-address slots
        K = self.bursts_per_request
        # bursts already issued (K > 1 only)
        bcnt = [Signal(range(K), name=f"q{i}_burst") for i in range(Q)] if K > 1 else []
        # age[j][i] = 1: slot j arrived before slot i
        age = [[Signal(name=f"age_{j}_{i}") if i != j else Const(0) for i in range(Q)] for j in range(Q)]

        m.submodules.wmem = wmem = memory.Memory(shape=DATA_BITS, depth=Q, init=[])
        wmem_w = wmem.write_port()
        wmem_r = wmem.read_port()

        # ---------------------------------------------------------------- bank state
        is_open = Signal(NB)
        open_row = [Signal(rowb, name=f"open_row{b}") for b in range(NB)]
        open_row_arr = Array(open_row)   # read-only lookups

        # ---------------------------------------------------------------- request decode / alloc
        payload = self.req.payload

        def field(name, width):
            if amap.bits[name] == 0:
                return Const(0, width)
            s = amap.shifts[name]
            return payload.addr[s:s + amap.bits[name]]

        n_rank, n_bg, n_bank = field("ra", rb), field("bg", gb), field("ba", bb)
        n_row, n_co = field("ro", rowb), field("co", cob)
        n_bankf = Signal(bfb)
        m.d.comb += n_bankf.eq((n_rank * G + n_bg) * B + n_bank)

        free = Cat(~valid[i] & ~held[i] for i in range(Q))
        alloc = Signal(range(max(2, Q)))
        for i in reversed(range(Q)):
            with m.If(free[i]):
                m.d.comb += alloc.eq(i)
        accept = Signal()
        m.d.comb += [self.req.ready.eq(free.any()), accept.eq(self.req.valid & self.req.ready)]
        m.d.comb += [wmem_w.addr.eq(alloc), wmem_w.data.eq(payload.data), wmem_w.en.eq(accept & payload.we)]

        # ---------------------------------------------------------------- per-slot status
        hit = [Signal(name=f"q{i}_hit") for i in range(Q)]
        opened = [Signal(name=f"q{i}_open") for i in range(Q)]
        blocked = [Signal(name=f"q{i}_refblock") for i in range(Q)]
        for i in range(Q):
            m.d.comb += [
                opened[i].eq(is_open.bit_select(bankf[i], 1)),
                hit[i].eq(opened[i] & (open_row_arr[bankf[i]] == row[i])),
                blocked[i].eq(ref.block.bit_select(rank[i], 1) if R > 1 else ref.block[0]),
            ]

        def oldest(cand: list, name: str) -> list:
            sel = []
            for i in range(Q):
                s = Signal(name=f"{name}_sel{i}")
                older = [cand[j] & age[j][i] for j in range(Q) if j != i]
                m.d.comb += s.eq(cand[i] & ~(Cat(*older).any() if older else Const(0)))
                sel.append(s)
            return sel

        # starvation guard: the oldest request, when it misses in an open bank, holds back younger hits
        oldest_any = oldest(valid, "oldest")
        guard_bank = Signal(NB)
        for i in range(Q):
            with m.If(oldest_any[i] & opened[i] & ~hit[i]):
                m.d.comb += guard_bank.eq(Const(1, NB) << bankf[i])
        guard = [Signal(name=f"q{i}_guard") for i in range(Q)]
        live_hit = [Signal(name=f"q{i}_livehit") for i in range(Q)]
        for i in range(Q):
            m.d.comb += [guard[i].eq(guard_bank.bit_select(bankf[i], 1)),
                         live_hit[i].eq(valid[i] & hit[i] & ~guard[i])]
        hit_pending = Signal(NB)     # a live row hit waits for this bank: do not precharge it
        m.d.comb += hit_pending.eq(0)
        for b in range(NB):
            m.d.comb += hit_pending[b].eq(Cat(*(live_hit[i] & (bankf[i] == b) for i in range(Q))).any())

        rd_inflight = Signal(range(self._rbuf + 1))
        rd_credit = Signal()
        m.d.comb += rd_credit.eq(rd_inflight < self._rbuf)

        cand_cas = [Signal(name=f"q{i}_cand_cas") for i in range(Q)]
        cand_act = [Signal(name=f"q{i}_cand_act") for i in range(Q)]
        cand_pre = [Signal(name=f"q{i}_cand_pre") for i in range(Q)]
        for i in range(Q):
            # a read-return entry is taken by a request's last RD (its earlier bursts need none)
            credit = (rd_credit | (bcnt[i] != K - 1)) if K > 1 else rd_credit
            cas_ok = Mux(we[i], ctr.wr_ok.bit_select(bankf[i], 1),
                         ctr.rd_ok.bit_select(bankf[i], 1) & credit)
            m.d.comb += [
                cand_cas[i].eq(live_hit[i] & (dep[i] == 0) & ~blocked[i] & cas_ok),
                cand_act[i].eq(valid[i] & ~opened[i] & ~blocked[i] & ctr.act_ok.bit_select(bankf[i], 1)),
                cand_pre[i].eq(valid[i] & opened[i] & ~hit[i] & ~blocked[i]
                               & ~hit_pending.bit_select(bankf[i], 1) & ctr.pre_ok.bit_select(bankf[i], 1)),
            ]
        sel_cas = oldest(cand_cas, "cas")
        sel_act = oldest(cand_act, "act")
        sel_pre = oldest(cand_pre, "pre")
        any_cas, any_act, any_pre = Cat(*cand_cas).any(), Cat(*cand_act).any(), Cat(*cand_pre).any()

        # ---------------------------------------------------------------- arbitration (one command)
        iss_valid = Signal()
        iss_kind = Signal(CmdKind)
        iss_rank, iss_bg, iss_bank = Signal(rb), Signal(gb), Signal(bb)
        iss_bankf, iss_row, iss_co = Signal(bfb), Signal(rowb), Signal(cob)
        iss_slot = Signal(range(max(2, Q)))
        iss_sel = Signal(Q)          # one-hot slot for column commands
        iss_b = Signal(range(K))     # burst index of the column command (0 when K == 1)

        def take(sel):
            for i in range(Q):
                with m.If(sel[i]):
                    m.d.comb += [iss_rank.eq(rank[i]), iss_bg.eq(bg[i]), iss_bank.eq(bank[i]),
                                 iss_bankf.eq(bankf[i]), iss_row.eq(row[i]), iss_co.eq(co[i]),
                                 iss_slot.eq(i)]
                    if K > 1:
                        m.d.comb += iss_b.eq(bcnt[i])

        with m.If(ref.valid):
            m.d.comb += [iss_valid.eq(1), iss_kind.eq(ref.kind), iss_rank.eq(ref.rank),
                         iss_bankf.eq(ref.rank * (G * B))]
        with m.Elif(any_cas):
            m.d.comb += [iss_valid.eq(1), iss_sel.eq(Cat(*sel_cas))]
            take(sel_cas)
            m.d.comb += iss_kind.eq(Mux(Cat(*(sel_cas[i] & we[i] for i in range(Q))).any(),
                                        CmdKind.WR, CmdKind.RD))
        with m.Elif(any_act):
            m.d.comb += [iss_valid.eq(1), iss_kind.eq(CmdKind.ACT)]
            take(sel_act)
        with m.Elif(any_pre):
            m.d.comb += [iss_valid.eq(1), iss_kind.eq(CmdKind.PRE)]
            take(sel_pre)

        m.d.comb += [ctr.iss_valid.eq(iss_valid), ctr.iss_kind.eq(iss_kind), ctr.iss_rank.eq(iss_rank),
                     ctr.iss_bgf.eq(iss_bankf >> _bits(B)), ctr.iss_bankf.eq(iss_bankf)]
        m.d.comb += [ref.prea_ok.eq(ctr.prea_ok), ref.ref_ok.eq(ctr.ref_ok)]

        is_rd = Signal()
        is_wr = Signal()
        m.d.comb += [is_rd.eq(iss_valid & (iss_kind == CmdKind.RD)),
                     is_wr.eq(iss_valid & (iss_kind == CmdKind.WR))]
        # leave: one-hot slot whose last burst issues (it leaves the queue / becomes a held write)
        if K > 1:
            iss_last = Signal()
            leave = Signal(Q)
            m.d.comb += [iss_last.eq(iss_b == K - 1), leave.eq(Mux(iss_last, iss_sel, 0))]
        else:
            iss_last = Const(1)
            leave = iss_sel

        # command port (registered)
        col_shift = _bits(t.burst_length)
        m.d.sync += [self.cmd.valid.eq(iss_valid), self.cmd.kind.eq(iss_kind)]
        with m.If(iss_valid):
            m.d.sync += [self.cmd.rank.eq(iss_rank), self.cmd.bg.eq(iss_bg), self.cmd.bank.eq(iss_bank),
                         self.cmd.row.eq(iss_row),
                         self.cmd.col.eq(Mux((iss_kind == CmdKind.RD) | (iss_kind == CmdKind.WR),
                                             ((iss_co * K + iss_b) if K > 1 else iss_co) << col_shift, 0))]
            with m.If((iss_kind == CmdKind.PREA) | (iss_kind == CmdKind.REF)):
                m.d.sync += [self.cmd.bg.eq(0), self.cmd.bank.eq(0), self.cmd.row.eq(0)]
            with m.If(iss_kind == CmdKind.PRE):
                m.d.sync += self.cmd.row.eq(0)

        # bank state
        for b in range(NB):
            here = iss_valid & (iss_bankf == b)
            with m.If(here & (iss_kind == CmdKind.ACT)):
                m.d.sync += [is_open[b].eq(1), open_row[b].eq(iss_row)]
            with m.Elif((here & (iss_kind == CmdKind.PRE))
                        | (iss_valid & (iss_kind == CmdKind.PREA) & (iss_rank == b // (G * B)))):
                m.d.sync += is_open[b].eq(0)

        # ---------------------------------------------------------------- write-data pipeline (CWL)
        # wp[k] is visible k+1 cycles after the WR decision, i.e. k cycles after the WR on `cmd`
        L = t.CWL
        wp_valid = [Signal(name=f"wp{k}_valid") for k in range(L + 1)]
        wp_slot = [Signal(range(max(2, Q)), name=f"wp{k}_slot") for k in range(L)]
        m.d.sync += [wp_valid[0].eq(is_wr), wp_slot[0].eq(iss_slot)]
        for k in range(1, L + 1):
            m.d.sync += wp_valid[k].eq(wp_valid[k - 1])
            if k < L:
                m.d.sync += wp_slot[k].eq(wp_slot[k - 1])
        m.d.comb += [wmem_r.addr.eq(wp_slot[L - 1]), self.dq_w.valid.eq(wp_valid[L])]
        if K > 1:
            # burst index (selects the 32 B lane of the slot's 64 B data) and last-burst flag
            wp_b = [Signal(range(K), name=f"wp{k}_burst") for k in range(L + 1)]
            wp_last = [Signal(name=f"wp{k}_last") for k in range(L)]
            m.d.sync += [wp_b[0].eq(iss_b), wp_last[0].eq(is_wr & iss_last)]
            for k in range(1, L + 1):
                m.d.sync += wp_b[k].eq(wp_b[k - 1])
                if k < L:
                    m.d.sync += wp_last[k].eq(wp_last[k - 1])
            m.d.comb += self.dq_w.data.eq(wmem_r.data.word_select(wp_b[L], self.burst_bits))
        else:
            wp_last = wp_valid
            m.d.comb += self.dq_w.data.eq(wmem_r.data)

        # ---------------------------------------------------------------- read return
        # in-order read return: tags of issued RDs (registers) and returned data (memory); the
        # credit counter rd_inflight keeps both from overflowing
        NR = self._rbuf
        pop = Signal()
        m.d.comb += pop.eq(self.resp.valid & self.resp.ready)
        if K == 1:
            # one burst per read: every RD queues its tag, every data beat completes a response
            rd_last = is_rd
            push = Signal()
            m.d.comb += push.eq(self.dq_r.valid)
            ret_data = self.dq_r.data
        else:
            # K bursts per read. Every RD pushes (slot, burst) onto a beat FIFO, popped by each
            # data beat on dq_r (beats come back in RD order). Beats 0..K-2 are parked in a
            # per-slot staging memory; the last beat is written, with the parked beats and the
            # tag, into the read-return FIFO, exactly as the single beat of a DDR4 read: tags are
            # queued by the last RD (which also takes the credit), so responses leave in
            # last-RD order and no read waits for a request whose bursts were split by a PRE.
            # A slot is reused only after its last RD, so its parked beats (older than the new
            # request's, in RD order) are read before they can be overwritten.
            BW = self.burst_bits
            NBT = t.CL + t.BL2 + 2                # RDs whose data is outstanding (<= 1 per cycle)
            bf_s = [Signal(range(max(2, Q)), name=f"beat{d}_slot") for d in range(NBT)]
            bf_b = [Signal(range(K), name=f"beat{d}_burst") for d in range(NBT)]
            bf_w = Signal(range(NBT))
            bf_r = Signal(range(NBT))
            with m.If(is_rd):
                for d in range(NBT):
                    with m.If(bf_w == d):
                        m.d.sync += [bf_s[d].eq(iss_slot), bf_b[d].eq(iss_b)]
                m.d.sync += bf_w.eq(Mux(bf_w == NBT - 1, 0, bf_w + 1))
            beat_s = Signal(range(max(2, Q)))
            beat_b = Signal(range(K))
            beat_last = Signal()
            m.d.comb += [beat_s.eq(Array(bf_s)[bf_r]), beat_b.eq(Array(bf_b)[bf_r]),
                         beat_last.eq(beat_b == K - 1)]
            with m.If(self.dq_r.valid):
                m.d.sync += bf_r.eq(Mux(bf_r == NBT - 1, 0, bf_r + 1))
            m.submodules.rstage = rstage = memory.Memory(shape=(K - 1) * BW, depth=Q, init=[])
            stage_w = rstage.write_port(granularity=BW)
            stage_r = rstage.read_port(domain="comb")
            m.d.comb += [stage_w.addr.eq(beat_s), stage_w.data.eq(Cat(*([self.dq_r.data] * (K - 1)))),
                         stage_w.en.eq(Mux(self.dq_r.valid & ~beat_last, Const(1, K - 1) << beat_b, 0)),
                         stage_r.addr.eq(beat_s)]
            rd_last = Signal()
            m.d.comb += rd_last.eq(is_rd & iss_last)
            push = Signal()
            m.d.comb += push.eq(self.dq_r.valid & beat_last)
            ret_data = Cat(stage_r.data, self.dq_r.data)
        # tags queued by the (last) RD of a request, data + tag pushed by its last data beat
        tag_q = [Signal(self._tag_bits, name=f"rtag{k}") for k in range(NR)]
        tag_w = Signal(range(max(2, NR)))
        tag_r = Signal(range(max(2, NR)))
        with m.If(rd_last):
            for k in range(NR):
                with m.If(tag_w == k):
                    m.d.sync += tag_q[k].eq(Array(tag)[iss_slot])
            m.d.sync += tag_w.eq(Mux(tag_w == NR - 1, 0, tag_w + 1))
        with m.If(push):
            m.d.sync += tag_r.eq(Mux(tag_r == NR - 1, 0, tag_r + 1))
        m.submodules.rbuf = rbuf = memory.Memory(shape=self._tag_bits + DATA_BITS, depth=NR, init=[])
        rbuf_w = rbuf.write_port()
        rbuf_r = rbuf.read_port(domain="comb")
        buf_w = Signal(range(max(2, NR)))
        buf_r = Signal(range(max(2, NR)))
        buf_n = Signal(range(NR + 1))
        m.d.comb += [rbuf_w.addr.eq(buf_w), rbuf_w.en.eq(push),
                     rbuf_w.data.eq(Cat(Array(tag_q)[tag_r], ret_data)),
                     rbuf_r.addr.eq(buf_r),
                     self.resp.valid.eq(buf_n != 0), self.resp.payload.eq(rbuf_r.data)]
        with m.If(push):
            m.d.sync += buf_w.eq(Mux(buf_w == NR - 1, 0, buf_w + 1))
        with m.If(pop):
            m.d.sync += buf_r.eq(Mux(buf_r == NR - 1, 0, buf_r + 1))
        with m.If(push & ~pop):
            m.d.sync += buf_n.eq(buf_n + 1)
        with m.Elif(~push & pop):
            m.d.sync += buf_n.eq(buf_n - 1)
        with m.If(rd_last & ~pop):
            m.d.sync += rd_inflight.eq(rd_inflight + 1)
        with m.Elif(~rd_last & pop):
            m.d.sync += rd_inflight.eq(rd_inflight - 1)

        # ---------------------------------------------------------------- queue updates
        # (written as one expression per register bit so the Verilog stays linear-ish in size)
        alloc_oh = Signal(Q)
        m.d.comb += alloc_oh.eq(Mux(accept, Const(1, Q) << alloc, 0))
        same = Signal(Q)   # pending slots holding the incoming request's 64 B address
        m.d.comb += same.eq(Cat(*(valid[j] & ~leave[j] & (bankf[j] == n_bankf) & (row[j] == n_row)
                                  & (co[j] == n_co) for j in range(Q))))
        wfree = Signal(Q)  # write slots whose data is read out this cycle
        m.d.comb += wfree.eq(Mux(wp_last[L - 1], Const(1, Q) << wp_slot[L - 1], 0))
        for i in range(Q):
            m.d.sync += [valid[i].eq(alloc_oh[i] | (valid[i] & ~leave[i])),
                         held[i].eq((held[i] & ~wfree[i]) | (leave[i] & we[i])),
                         # a slot that leaves clears its bit in every dependency mask
                         dep[i].eq(Mux(alloc_oh[i], same, dep[i] & ~leave))]
            if K > 1:   # burst counter: 0 on arrival, +1 per column command of the slot
                with m.If(alloc_oh[i]):
                    m.d.sync += bcnt[i].eq(0)
                with m.Elif(iss_sel[i]):
                    m.d.sync += bcnt[i].eq(Mux(bcnt[i] == K - 1, 0, bcnt[i] + 1))
            with m.If(alloc_oh[i]):
                m.d.sync += [we[i].eq(payload.we), rank[i].eq(n_rank), bg[i].eq(n_bg),
                             bank[i].eq(n_bank), bankf[i].eq(n_bankf), row[i].eq(n_row), co[i].eq(n_co),
                             tag[i].eq(payload.tag)]
            for j in range(Q):
                if j != i:
                    # age[j][i]: j arrived before i. A new i is younger than all; a new j younger than i.
                    m.d.sync += age[j][i].eq(alloc_oh[i] | (age[j][i] & ~alloc_oh[j]))
        return m

