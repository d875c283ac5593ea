"""Timing, traffic and energy of device operations (the ``model`` backend's timing layer).

One small interface: :class:`PIMTimer` ``.time_stream(addr, is_write, groups=..., fmas=...,
host_in=..., host_out=...)`` takes the 64 B DRAM requests of one device operation (byte addresses
in the device image, in issue order) and returns a dict of cycles, traffic, DRAM command counts,
busy time per resource and an energy estimate.  The device builds the streams
(:mod:`pimcast.host.device`); this module knows nothing about tables or tensors.

Composition (documented choices)
--------------------------------
1. **Split by unit.**  Each request is decoded with the device mapping
   (:attr:`PIMConfig.address_mapping`) and sent to the unit that owns it: one unit per rank
   (``placement="rank"``) or per bank group (``"bankgroup"``).  Units work in parallel, each with
   its own memory controller over its own rank — the bank-group placement's cores (the RTL
   :class:`pimcast.hdl.core.PIMCore` of :func:`~pimcast.hdl.core.from_config`: TRiM-style
   ``units=4`` with ``accumulate: partial``, the striped core with ``sequential``) drive their
   rank's 4 bank-group units from **one controller per rank** (commands generated per rank) on
   the bank-group data path (:meth:`DRAMTiming.with_data_path`), as the RTL is built, so the rank
   is the timed unit and tFAW / command bus sharing is inside its DRAM model.
2. **DRAM time per unit.**  ``timing="fast"``: the unit's stream, re-encoded as a one-rank
   channel (bank-group placement: with the bank-group data path), runs through
   :class:`pimcast.host.dram_model.FastDRAMModel` (every timing rule, open page, FR-FCFS window of
   ``queue`` requests, refresh) with at most ``rob_tags`` reads in flight, retired in order, and
   reads of one ``groups`` value (one bag's beat: one accumulator slot) retired at least
   ``fma_latency`` cycles apart (the RTL core's reorder buffer and FMA recurrence;
   :func:`pimcast.hdl.core.from_config` builds the core with the same ``queue`` and ``rob_tags``).  At most ``max_timed_requests`` requests per unit are timed; the rest are scaled
   linearly (``sampled`` in the result).  ``timing="analytic"``: a vectorized resource-bound model
   (data bus, tCCD_S/L, per-bank tRC, tRRD_S, tFAW, command bus, read/write turnarounds, refresh
   derating; row hits from the per-bank open row in issue order).
3. **Reduction unit.**  ``lanes`` FMAs per cycle: a 64 B beat (16 fp32) takes ``16 // lanes``
   cycles; it streams behind the DRAM (``unit = max(dram, reduce) + fma_latency``).  The
   accumulation hazard of one bag is hidden by interleaving accumulator slots (>= latency).  The
   bank-group core's one datapath per rank is also held by every bag it receives for its flush
   and the rank buffer's in-order adder chain, ``(units - 1) × max(R, L) + R`` cycles
   (``flush_cycles``); its slots are (bag, unit, beat).
4. **Shared rank resources (bankgroup placement).**  The 4 bank-group units of a rank share the
   rank's tFAW window and its command bus (inside the rank's DRAM model); with
   ``accumulate: partial`` also its data bus, which carries the units' partial sums to the buffer
   device: ``rank >= partial beats * BL/2`` (not modelled by the RTL core, whose rank buffer adder
   takes one beat per cycle).
5. **Host link.**  Instructions, indices, weights and gradients in, results out (``accumulate:
   partial``: one sum per rank holding rows of the bag, added on the host), and *forwarded*
   beats (a bag whose column slice is spread over several ranks: every beat read by a rank that
   is not the bag's home for that column crosses the channel to the home rank, so the sequential
   accumulation order is kept; inside a rank the striped bank-group units share the core's
   accumulators) use the channel's data bus: ``BL/2`` cycles per 64 B.
6. **Total** = ``max(units, rank bounds, host link)`` (everything streams and overlaps).

Energy (DRAMsim3's method, ``src/configuration.cc`` / ``[power]`` sections of its ``.ini`` files)::

    E_act   = VDD * (IDD0 * tRC - (IDD3N * tRAS + IDD2N * tRP)) * devices      per ACT (+PRE)
    E_rd    = VDD * (IDD4R - IDD3N) * BL/2 * devices                          per read burst
    E_wr    = VDD * (IDD4W - IDD3N) * BL/2 * devices                          per write burst
    E_ref   = VDD * (IDD5AB - IDD3N) * tRFC * devices                         per REF (rank)
    P_bg    = VDD * IDD3N * devices                                           per rank-cycle (active standby)

(mA x V x cycles x tCK ns = pJ; ``devices`` = chips per rank = bus width / device width.)
Figures: DRAMsim3 ``DDR4_8Gb_x8_3200.ini``, ``DDR4_8Gb_x8_2400.ini`` and ``HBM2_8Gb_x128.ini``
(the latter's legacy-channel currents, halved for a pseudo-channel).  FMA energy: 4.6 pJ per fp32
FMA (Horowitz, ISSCC 2014, 45 nm: fp32 multiply 3.7 pJ + add 0.9 pJ).  I/O (channel) energy is
not modelled.  A config's ``power`` mapping overrides any of these names.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import numpy as np

from pimcast.hdl.dram.timing import REQUEST_BYTES, AddressMapping

__all__ = ["PIMTimer", "DRAM_POWER", "FMA_PJ", "empty_timing", "gather_setup_cycles", "unit_setup_cycles",
           "partial_plan", "gather_stream_args"]

#: DRAMsim3 [power] figures (mA, V) per preset name (``name`` field of configs/dram/*.yaml).
DRAM_POWER = {
    # DRAMsim3 configs/DDR4_8Gb_x8_3200.ini
    "DDR4-3200AA": dict(VDD=1.2, IDD0=57, IDD2N=37, IDD3N=52, IDD4W=150, IDD4R=168, IDD5AB=250, devices_scale=1.0),
    # DRAMsim3 configs/DDR4_8Gb_x8_2400.ini
    "DDR4-2400R": dict(VDD=1.2, IDD0=48, IDD2N=34, IDD3N=43, IDD4W=123, IDD4R=135, IDD5AB=250, devices_scale=1.0),
    # DRAMsim3 configs/HBM2_8Gb_x128.ini (128-bit legacy channel); x0.5 for a 64-bit pseudo-channel
    "HBM2-2Gbps-PC": dict(VDD=1.2, IDD0=65, IDD2N=40, IDD3N=55, IDD4W=500, IDD4R=390, IDD5AB=250, devices_scale=0.5),
}
#: pJ per binary32 FMA (Horowitz ISSCC 2014, 45 nm: 3.7 pJ fp32 mult + 0.9 pJ fp32 add).
FMA_PJ = 4.6

#: the RTL core's fixed cycles per instruction around its input stream and validation pass
#: (IDLE -> DECODE, CHECK, validation -> execution, FINISH -> DONE) plus the ``STATUS`` read-back
_CORE_INSN_CYCLES = 8


def _bag_lengths(lookups: int, bags: int, lengths=None) -> np.ndarray:
    if lengths is not None:
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if lengths.size != bags or int(lengths.sum()) != lookups:
            raise ValueError(f"lengths: {lengths.size} bags of {int(lengths.sum())} lookups, "
                             f"expected {bags} bags of {lookups}")
        return lengths
    if bags <= 0:
        return np.zeros(0, dtype=np.int64)
    q, r = divmod(int(lookups), int(bags))
    return np.full(bags, q, dtype=np.int64) + (np.arange(bags) < r)


def gather_setup_cycles(lookups: int, bags: int, weighted: bool = False, buf_beats: int = 1024,
                        lengths=None) -> int:
    """Serial cycles the RTL core (:class:`pimcast.hdl.core.PIMCore`) spends on a GATHER_REDUCE
    before and around its DRAM stream: per instruction the index stream in (one 64 B beat per
    cycle, 16 words), the validation pass and :data:`_CORE_INSN_CYCLES`.  The validation pass
    takes one cycle per bag header, one per *run* of a non-empty bag (its lookups whose row id
    lies in one input beat: up to 16, weighted up to 8 (id, weight) pairs) and one to end.  The
    bags are split into instructions as the driver does (index stream within ``buf_beats``
    beats, :meth:`pimcast.sim.core_driver.CoreDriver.gather_reduce`); each instruction drains
    before the next one starts, which is not counted here.

    ``lengths`` (lookups per bag, PyTorch ``offsets`` differences) makes the count exact for the
    RTL; without it the bags are taken as equally long (``lookups // bags``, the first
    ``lookups % bags`` one longer), exact for fixed pooling.

    Passed as ``time_stream(..., setup_cycles=...)`` by the device's ``gather_reduce`` for the rank
    placement (:func:`unit_setup_cycles`): the ``model`` backend then times each rank's unit as the
    core: this serial pass, then the DRAM stream.
    """
    from pimcast.hdl.isa import WORDS_PER_BEAT
    from pimcast.host.isa_codec import gather_bag_words, split_gather_bags

    per = 2 if weighted else 1
    lens = _bag_lengths(int(lookups), int(bags), lengths)
    if lens.size == 0:
        return _CORE_INSN_CYCLES + 1
    need = gather_bag_words(lens, weighted)              # index words per bag
    # instruction of each bag, split as the driver splits
    groups = split_gather_bags(lens, weighted, buf_beats * WORDS_PER_BEAT, strict=False)
    insn_of = np.repeat(np.arange(len(groups), dtype=np.int64), [b1 - b0 for b0, b1 in groups])
    insns = len(groups)
    words_per_insn = np.bincount(insn_of, weights=need, minlength=insns).astype(np.int64)
    # word index of each bag header within its instruction's stream
    ends = np.cumsum(need)
    first_of = np.searchsorted(insn_of, np.arange(insns))       # first bag of each instruction
    start = ends - need - (ends - need)[first_of][insn_of]
    first_id = start + 1
    last_id = first_id + per * (lens - 1)
    runs = np.where(lens > 0, last_id // WORDS_PER_BEAT - first_id // WORDS_PER_BEAT + 1, 0)
    stream_beats = int((-(-words_per_insn // WORDS_PER_BEAT)).sum())
    return insns * (_CORE_INSN_CYCLES + 1) + stream_beats + int(lens.size) + int(runs.sum())


def unit_setup_cycles(cfg, lookups: int, bags: int, weighted: bool = False, lengths=None, plan=None):
    """The serial setup of one GATHER_REDUCE per rank core for ``cfg``: :func:`gather_setup_cycles`
    of the whole index stream with the sequential numerics (every rank's core receives and
    validates it, as the RTL core does).  With ``accumulate: partial`` (:attr:`PIMConfig.per_rank_cores`)
    each rank's core receives only the bags it holds rows of, with the lookups of its rows: given
    ``plan`` (:func:`partial_plan`) and ``lengths``, exactly that, per rank (an array, rank-major);
    otherwise taken as ``1 / ranks`` of each bag's lookups and every bag header."""
    if not cfg.per_rank_cores:
        return gather_setup_cycles(lookups, bags, weighted, lengths=lengths)
    if plan is not None and lengths is not None:
        lengths = np.asarray(lengths, dtype=np.int64)
        group = cfg.unit_group()
        n_ranks = int(group.max()) + 1
        rank = group[plan["unit"]]
        bag = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
        out = np.zeros(n_ranks, np.int64)
        for r in range(n_ranks):
            lr = np.bincount(bag[rank == r], minlength=lengths.size)
            lr = lr[lr > 0]                     # only the bags the rank holds rows of
            out[r] = gather_setup_cycles(int(lr.sum()), int(lr.size), weighted, lengths=lr) if lr.size else 0
        return out
    R = cfg.channels * cfg.dram_timing().ranks
    share = None if lengths is None else -(-np.asarray(lengths, dtype=np.int64) // R)
    return gather_setup_cycles(-(-lookups // R) if share is None else int(share.sum()), bags, weighted,
                               lengths=share)


_TIMING_KEYS = ("cycles", "ns", "dram_cycles", "reduce_cycles", "link_cycles")


def empty_timing() -> dict:
    """The timing/traffic counters of a device, all zero (the shape :meth:`PIMTimer.time_stream` returns)."""
    return {
        "cycles": 0, "ns": 0.0, "reads": 0, "writes": 0, "acts": 0, "row_hits": 0, "refreshes": 0,
        "forwarded_beats": 0, "sampled": False,
        "busy": {"dram_max": 0, "dram_sum": 0, "reduce_max": 0, "reduce_sum": 0, "host_link": 0,
                 "rank_shared": 0},
        "energy_pJ": {"act": 0.0, "read": 0.0, "write": 0.0, "refresh": 0.0, "background": 0.0,
                      "fma": 0.0, "total": 0.0},
    }


class PIMTimer:
    """Timing of device operations for one :class:`~pimcast.host.pim_config.PIMConfig`."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.t = cfg.dram_timing()
        t = self.t
        self.mapping = AddressMapping(cfg.address_mapping, t, channels=cfg.channels)
        # the timed unit is a rank's core: the bank-group placement's cores
        # (pimcast.hdl.core.from_config, both numerics) drive the rank's 4 units from one controller
        # with the bank-group data path (commands generated per rank), as the RTL is built
        self.t_unit = replace(t, ranks=1).with_data_path(cfg.core_data_path)
        self.local_mapping = AddressMapping("rochrababgco", self.t_unit)
        self.units_per_rank = 1 if cfg.placement == "rank" else t.bankgroups
        self.n_ranks = cfg.channels * t.ranks
        self.beat_cycles = 16 // cfg.lanes
        self._fast = None
        p = dict(DRAM_POWER.get(t.name, DRAM_POWER["DDR4-3200AA"]))
        p.update({k: v for k, v in cfg.power.items() if k != "FMA_PJ"})
        self.fma_pj = float(cfg.power.get("FMA_PJ", FMA_PJ))
        devices = t.bus_width / t.device_width * p["devices_scale"]
        ck = t.tCK_ns
        V = p["VDD"]
        self.e_act = V * (p["IDD0"] * t.tRC - (p["IDD3N"] * t.tRAS + p["IDD2N"] * t.tRP)) * devices * ck
        self.e_rd = V * (p["IDD4R"] - p["IDD3N"]) * t.BL2 * devices * ck
        self.e_wr = V * (p["IDD4W"] - p["IDD3N"]) * t.BL2 * devices * ck
        self.e_ref = V * (p["IDD5AB"] - p["IDD3N"]) * t.tRFC * devices * ck
        self.p_bg = V * p["IDD3N"] * devices * ck  # pJ per rank-cycle
        self.power = p

    # ------------------------------------------------------------------ helpers
    def _fast_model(self):
        if self._fast is None:
            from pimcast.host.dram_model import FastDRAMModel
            # the unit's window: controller queue and reorder buffer (reads in flight), the same
            # numbers the RTL core is built with (pimcast.hdl.core.from_config)
            self._fast = FastDRAMModel(self.t_unit, self.local_mapping, queue=self.cfg.queue,
                                       max_reads_in_flight=self.cfg.rob_tags,
                                       recurrence=self.cfg.fma_latency)
        return self._fast

    def unit_of(self, f: dict) -> np.ndarray:
        return self.cfg.unit_of_fields(f, self.t)

    def _analytic(self, bg, ba, ro, w) -> tuple[int, int, int, int]:
        """Resource-bound cycles of one unit's stream; returns (cycles, acts, hits, refreshes)."""
        t = self.t_unit
        n = len(ba)
        if n == 0:
            return 0, 0, 0, 0
        bank = bg * t.banks_per_group + ba
        order = np.argsort(bank, kind="stable")
        sb, sr = bank[order], ro[order]
        hit = np.zeros(n, bool)
        hit[1:] = (sb[1:] == sb[:-1]) & (sr[1:] == sr[:-1])
        hits = int(hit.sum())
        acts = n - hits
        k = t.bursts_per_request
        bursts = n * k
        nb = t.bankgroups * t.banks_per_group
        acts_b = np.bincount(sb[~hit], minlength=nb)
        n_b = np.bincount(sb, minlength=nb)
        n_g = np.bincount(bg, minlength=t.bankgroups)
        # the bank-group data path: reads of different bank groups share no bus (tCCD_L per group binds)
        shared_bus = [] if t.data_path == "bankgroup" else [bursts * t.BL2, bursts * t.tCCD_S]
        bounds = [
            *shared_bus,
            int(n_g.max()) * k * t.tCCD_L,
            int(np.max(np.maximum(acts_b * t.tRC, n_b * k * t.tCCD_L))),
            math.ceil(acts * t.tFAW / 4),
            acts * t.tRRD_S,
            2 * acts + bursts,
        ]
        switches = int(np.count_nonzero(w[1:] != w[:-1])) if n > 1 else 0
        core = max(bounds) + switches * t.rd_to_wr
        derate = t.tREFI / (t.tREFI - t.tRFC)
        cycles = int(math.ceil(core * derate)) + t.tRCD + t.CL + t.BL2
        refs = cycles // t.tREFI
        return cycles, acts, hits, refs

    def _fast_time(self, bg, ba, ro, co, w, slots=None) -> tuple[int, int, int, int, bool]:
        n = len(ba)
        if n == 0:
            return 0, 0, 0, 0, False
        cap = self.cfg.max_timed_requests
        sampled = n > cap
        m = cap if sampled else n
        addr = self.local_mapping.encode(bg=bg[:m], ba=ba[:m], ro=ro[:m], co=co[:m])
        r = self._fast_model().run(addr, w[:m], slots=None if slots is None else slots[:m])
        if not sampled:
            return r.cycles, r.acts, r.row_hits, r.refreshes, False
        s = n / m
        acts = int(round(r.acts * s))
        return int(math.ceil(r.cycles * s)), acts, n - acts, int(round(r.refreshes * s)), True

    # ------------------------------------------------------------------ main entry
    def time_stream(self, addr: np.ndarray, is_write: Optional[np.ndarray] = None, *,
                    groups: Optional[np.ndarray] = None, fmas: int = 0, host_in: int = 0,
                    host_out: int = 0, setup_cycles: int = 0, rank_bus_beats=None, flush_cycles=None) -> dict:
        """Time one device operation.

        Parameters
        ----------
        addr: uint64 byte addresses of the 64 B DRAM requests, in issue order.
        is_write: bool per request (default all reads).
        groups: optional int per request: requests with the same group are accumulated together
            (one bag's column slice); beats not owned by the group's home unit are forwarded.
        fmas: FMA operations performed by the reduction units.
        host_in / host_out: bytes crossing the host channel(s) into / out of the device.
        setup_cycles: serial cycles every unit spends before its DRAM stream (e.g.
            :func:`gather_setup_cycles`: the RTL core's index stream and validation pass), or an
            array of them per timed unit (rank cores of :func:`unit_setup_cycles` with a plan).
        rank_bus_beats: optional 64 B beats per rank (channel-major) that cross the rank's data bus
            inside the DIMM (``accumulate: partial``: the bank-group units' partial sums to the
            buffer device); ``BL/2`` cycles each, a shared rank resource.
        flush_cycles: optional cycles per rank core its datapath spends besides the reads (the
            bank-group core's flush and adder chain, :func:`gather_stream_args`).
        """
        cfg, t = self.cfg, self.t
        out = empty_timing()
        addr = np.asarray(addr, dtype=np.uint64)
        n = len(addr)
        w = np.zeros(n, bool) if is_write is None else np.asarray(is_write, bool)
        nw = int(w.sum())
        out["reads"], out["writes"] = n - nw, nw
        f = self.mapping.decode(addr) if n else {k: np.zeros(0, np.int64) for k in ("ch", "ra", "bg", "ba", "ro", "co")}
        # the rank core of each request (a rank's bank-group units share its core's accumulators)
        unit = self.unit_of(f) // self.units_per_rank
        # forwarding: beats read by a unit other than the group's home unit (first request's unit)
        fwd_per_ch = np.zeros(cfg.channels, np.int64)
        if groups is not None and n:
            g = np.asarray(groups, np.int64)
            _, first, inv = np.unique(g, return_index=True, return_inverse=True)
            home = unit[first][inv]
            fw = unit != home
            out["forwarded_beats"] = int(fw.sum())
            fwd_per_ch = np.bincount(f["ch"][fw], minlength=cfg.channels)
        # per rank core: DRAM + reduction
        n_units = self.n_ranks
        order = np.argsort(unit, kind="stable")
        counts = np.bincount(unit, minlength=n_units)
        starts = np.concatenate([[0], np.cumsum(counts)])
        unit_cycles = np.zeros(n_units, np.int64)
        dram_cycles = np.zeros(n_units, np.int64)
        red_cycles = np.zeros(n_units, np.int64)
        acts_u = np.zeros(n_units, np.int64)
        hits = refs = 0
        sampled = False
        reads_u = np.bincount(unit[~w], minlength=n_units) if n else np.zeros(n_units, np.int64)
        if flush_cycles is not None and fmas:
            # the bank-group core's datapath is also held by each bag's flush and adder chain
            reads_u = reads_u + np.asarray(flush_cycles, np.int64)
        local_bg_all = f["bg"]
        for u in np.flatnonzero(counts):
            sel = order[starts[u]:starts[u + 1]]
            bg, ba, ro, co, wu = local_bg_all[sel], f["ba"][sel], f["ro"][sel], f["co"][sel], w[sel]
            if cfg.timing == "fast":
                # reads of one group fold into one accumulator slot: the FMA recurrence paces them
                slots = None if groups is None else np.asarray(groups, np.int64)[sel]
                c, a, h, r, s = self._fast_time(bg, ba, ro, co, wu, slots)
                sampled |= s
            else:
                c, a, h, r = self._analytic(bg, ba, ro, wu)
            dram_cycles[u] = c
            acts_u[u] = a
            hits += h
            refs += r
            red_cycles[u] = int(reads_u[u]) * self.beat_cycles if fmas else 0
            setup_u = int(setup_cycles[u]) if np.ndim(setup_cycles) else int(setup_cycles)
            unit_cycles[u] = setup_u + max(c, red_cycles[u]) + (cfg.fma_latency if fmas else 0)
        acts = int(acts_u.sum())
        # shared rank resources: the bank-group units' partial sums on the rank's data bus
        rank_shared = 0
        if rank_bus_beats is not None and n:
            rank_shared = max(rank_shared, int(np.max(np.asarray(rank_bus_beats, np.int64))) * t.BL2)
        # host link per channel
        host_beats = -(-(host_in + host_out) // REQUEST_BYTES)
        link = (host_beats / cfg.channels + fwd_per_ch) * t.BL2
        link_max = int(math.ceil(float(link.max()))) if len(link) else 0
        cycles = int(max(int(unit_cycles.max()) if n else 0, rank_shared, link_max))
        out.update(cycles=cycles, ns=cycles * t.tCK_ns, acts=acts, row_hits=int(hits), refreshes=int(refs),
                   sampled=bool(sampled))
        out["busy"] = {"dram_max": int(dram_cycles.max()), "dram_sum": int(dram_cycles.sum()),
                       "reduce_max": int(red_cycles.max()), "reduce_sum": int(red_cycles.sum()),
                       "host_link": link_max, "rank_shared": rank_shared}
        k = t.bursts_per_request
        e = out["energy_pJ"]
        e["act"] = acts * self.e_act
        e["read"] = (n - nw) * k * self.e_rd
        e["write"] = nw * k * self.e_wr
        e["refresh"] = refs * self.e_ref
        e["background"] = cycles * self.n_ranks * self.p_bg if n else 0.0
        e["fma"] = fmas * self.fma_pj
        e["total"] = sum(v for kk, v in e.items() if kk != "total")
        return out

    def time_sequential(self, base: int, nbytes: int, write: bool, *, host_in: int = 0, host_out: int = 0) -> dict:
        """Bulk sequential transfer (device WRITE/READ of a table): analytic, whatever ``timing`` says.

        Streams ``nbytes`` from ``base``; each unit streams its share at
        ``max(BL/2, pattern)`` per burst (the analytic model on a small prefix, scaled).
        """
        n = -(-nbytes // REQUEST_BYTES)
        if n == 0:
            return self.time_stream(np.zeros(0, np.uint64), host_in=host_in, host_out=host_out)
        m = min(n, 4096)
        addr = (np.uint64(base) + np.arange(m, dtype=np.uint64) * np.uint64(REQUEST_BYTES))
        saved = self.cfg
        try:
            self.cfg = replace(saved, timing="analytic")
            r = self.time_stream(addr, np.full(m, write), host_in=0, host_out=0)
        finally:
            self.cfg = saved
        s = n / m
        host_beats = -(-(host_in + host_out) // REQUEST_BYTES)
        link = int(math.ceil(host_beats / saved.channels * self.t.BL2))
        dram = int(math.ceil(r["cycles"] * s))
        r["cycles"] = max(dram, link)
        r["ns"] = r["cycles"] * self.t.tCK_ns
        for key in ("reads", "writes", "acts", "row_hits", "refreshes"):
            r[key] = int(round(r[key] * s))
        r["row_hits"] = n - r["acts"]
        r["busy"]["host_link"] = link
        for key in ("dram_max", "dram_sum"):
            r["busy"][key] = int(math.ceil(r["busy"][key] * s))
        e = r["energy_pJ"]
        for key in ("act", "read", "write", "refresh"):
            e[key] *= s
        e["background"] = r["cycles"] * self.n_ranks * self.p_bg
        e["total"] = sum(v for kk, v in e.items() if kk != "total")
        r["sampled"] = n > m
        return r


def partial_plan(cfg, mapping: AddressMapping, base: int, row_bytes: int, idx: np.ndarray,
                 lengths: np.ndarray) -> dict:
    """``accumulate: partial``: where one GATHER_REDUCE's partial sums are made.

    ``idx``: row id per lookup of the table at byte ``base``; ``lengths``: lookups per bag
    (contiguous from lookup 0).  Returns ``unit`` (the unit holding each lookup's row),
    ``partials`` ((bag, unit) pairs: partial sums made), ``rank_sums`` ((bag, rank) pairs: sums
    sent to the host), ``partials_per_rank``, ``rank_bags`` (per rank: the bags it holds rows of,
    i.e. the bags its core receives).  Raises ``ValueError`` if a looked-up row spans
    two units (:meth:`Device.alloc` rejects such tables first).
    """
    idx = np.asarray(idx, dtype=np.int64)
    first = np.uint64(base) + idx.astype(np.uint64) * np.uint64(row_bytes)
    bad = cfg.straddling(first, row_bytes, mapping)
    if bad is not None:
        raise ValueError(f"row {int(idx[bad])} ({row_bytes} B at {hex(int(first[bad]))}) spans two units under "
                         f"mapping {cfg.address_mapping!r}: accumulate 'partial' needs whole rows per unit")
    group = cfg.unit_group(mapping.t)
    unit = cfg.unit_of_fields(mapping.decode(first), mapping.t) if idx.size else np.zeros(0, np.int64)
    bag = np.repeat(np.arange(len(lengths), dtype=np.int64), np.asarray(lengths, dtype=np.int64))
    seg = np.unique(bag * group.size + unit)
    n_ranks = int(group.max()) + 1
    rseg = np.unique(bag * n_ranks + group[unit])
    return {"unit": unit, "partials": int(seg.size), "rank_sums": int(rseg.size),
            "partials_per_rank": np.bincount(group[seg % group.size], minlength=n_ranks),
            "rank_bags": np.bincount(rseg % n_ranks, minlength=n_ranks)}


def gather_stream_args(cfg, row_bytes: int, padded_dim: int, lengths: np.ndarray, plan: Optional[dict] = None,
                       with_groups: bool = True) -> dict:
    """The :meth:`PIMTimer.time_stream` arguments of one GATHER_REDUCE that depend on how bags are
    summed (the device and ``pimcast bench`` both use this): ``groups`` (sequential: one bag's
    column slice per group, for forwarding), ``fmas``, ``host_out``, ``rank_bus_beats`` and
    ``flush_cycles`` (``plan`` from :func:`partial_plan` for ``accumulate: partial``: ranks' sums to
    the host, bank-group units' partial sums over their rank's data bus, the buffer device's adds,
    and per rank core the cycles its datapath spends on the flush and the in-order adder chain of
    the bags it receives: ``(units - 1) × max(R, L) + R`` each, :mod:`pimcast.hdl.core`).
    ``with_groups=False`` skips building ``groups`` (untimed calls)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    nnz, nb, beats = int(lengths.sum()), len(lengths), row_bytes // REQUEST_BYTES
    if plan is None:
        groups = None
        if with_groups:
            bag = np.repeat(np.arange(nb, dtype=np.int64), lengths)
            groups = (bag[:, None] * beats + np.arange(beats)[None, :]).ravel()
        return {"groups": groups, "fmas": nnz * padded_dim, "host_out": nb * row_bytes,
                "rank_bus_beats": None, "flush_cycles": None}
    groups = None
    if with_groups:       # one accumulator slot per (bag, unit, beat): the FMA recurrence of the unit's rows
        bag = np.repeat(np.arange(nb, dtype=np.int64), lengths)
        slot = bag * (int(np.max(plan["unit"])) + 1 if nnz else 1) + plan["unit"]
        groups = (slot[:, None] * beats + np.arange(beats)[None, :]).ravel()
    return {"groups": groups, "fmas": (nnz + plan["partials"] - plan["rank_sums"]) * padded_dim,
            "host_out": plan["rank_sums"] * row_bytes,
            "rank_bus_beats": plan["partials_per_rank"] * beats if cfg.placement == "bankgroup" else None,
            "flush_cycles": plan["rank_bags"] * _flush_cycles(cfg, beats) if cfg.core_units > 1 else None}


def _flush_cycles(cfg, beats: int) -> int:
    """Datapath cycles of one bag's flush on the bank-group core: the rank buffer's adder chain,
    ``units`` dependent adds per beat taken in order (the wait for the bag's last row result
    mostly overlaps the previous bag's chain: against the RTL at D = 16, pooling 1, the count
    with it was 1.16-1.18x the RTL's cycles, without it 0.9x)."""
    L, U = cfg.fma_latency, cfg.core_units
    return (U - 1) * max(beats, L) + beats

