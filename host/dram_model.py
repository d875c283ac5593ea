"""Fast timing model of one DRAM channel controller (the ``fast`` backend of ``pimcast dram replay``).

It models *the same controller* as the RTL bank controller
(:class:`pimcast.hdl.dram.bankctl.BankController`, replayed by :mod:`pimcast.host.dram_rtl`),
cycle by cycle, but skips every cycle in which nothing can change, and runs its inner loop as
one numba-compiled function over plain numpy arrays.

Controller policy (mirrors the RTL; see ``BankController``'s docstring)
-----------------------------------------------------------------------
* **Queue.** ``queue`` slots (default 32). Requests are accepted in trace order, at most one per
  cycle, no earlier than their cycle stamp and only while a slot is free; an accepted request is
  a scheduling candidate from the next cycle on. A read frees its slot the cycle after its RD; a
  write holds it until its data has gone out (``CWL`` cycles after the WR, as the RTL's
  write-data pipeline does).
* **Commands.** One command per cycle. Priority each cycle: (1) a refresh step; (2) the column
  command (RD/WR) of the **oldest row-hit** request whose timing allows it (first ready);
  (3) the ACT of the **oldest** request to a precharged bank whose timing allows it; (4) the PRE
  of the **oldest** request whose bank holds another row, only when no pending request hits that
  open row. Open-page policy (no auto-precharge).
* **Starvation guard.** When the oldest request misses in an open bank, younger hits to that bank
  are held back, so the bank is precharged for it.
* **Same-address ordering.** A request's column command never issues before that of an older
  request to the same 64 B address (a read-modify-write trace makes each write wait for its read).
* **Refresh.** Per-rank all-bank refresh, rank ``r`` due at ``tREFI + r * tREFI // ranks`` and
  every ``tREFI`` after that (staggered, as the RTL's refresher). From the cycle after it falls due
  the rank takes no scheduler command; PREA issues as soon as its timing allows, REF after it; the
  REF -> any gap (tRFC) then holds the rank. Refresh commands win arbitration: never starved.
* **Timing.** Every gap comes from :func:`pimcast.hdl.dram.timing.timing_rules` (compiled at setup
  into per-scope gap tables) and the tFAW :func:`~pimcast.hdl.dram.timing.window_rules`. Nothing
  is re-typed here.
* **Duplicate merging** (``merge_duplicates=True``, default off; DRAMsim3 behaviour, Ramulator and
  the RTL do not merge): a read whose address has an older read still pending (in the queue, or
  issued but its data not yet returned) with no write to that address in between takes no queue
  slot and is answered by the same burst.

Cycle conventions (the RTL's): a command decided in cycle ``T`` is on the command port (and in
the command list) at ``T + 1``. ``cycles`` runs from the cycle the first request is accepted to
the end of the last data beat (``RD + CL + BL/2``, ``WR + CWL + BL/2``). The RTL bench's count
differs by 2-3 cycles per trace (read-return buffer; it ends writes at ``WR + CWL + 1``).

In-flight cap (the PIM core's reorder buffer)
---------------------------------------------
``max_reads_in_flight=W`` (default ``None``: off; :mod:`pimcast.host.timing` sets it to the PIM
config's ``rob_tags`` for the ``model`` backend) mirrors :class:`pimcast.hdl.core.PIMCore`: every
read takes a ROB entry when the controller accepts it and frees it when it retires, strictly in
request order, one per cycle.  The model's read ``r`` (in trace order) is accepted no earlier
than one cycle after read ``r - W`` retired, where ``retire[r] = max(completion[r] +
retire_latency, retire[r-1] + 1)`` and ``retire_latency = 2`` (the controller's ``resp.valid``
is one cycle after the model's ``completion``, the ROB entry is valid and retires one cycle
later; the freed count lets the issue stage hand over a request the cycle after).  The
reduction unit's back-pressure on retirement is modelled too when ``run`` gets ``slots`` (the
accumulator each read folds into: one bag's beat ``b``): two reads into the same slot retire at
least ``recurrence`` cycles apart (the FMA latency, 5 on the core), which is what holds a full
ROB back when 1- to 4-beat rows of one bag arrive in a burst.  Not modelled: ROB entries taken
by empty bags, and the response path's own back-pressure.  With the cap off the kernel's
schedule is unchanged (``tests/test_dram_model_equiv.py``).

What is approximated / not modelled
-----------------------------------
* The RTL's read-return credit (``read_buffer`` outstanding reads) is not modelled: with 16
  entries and DDR4 presets it never binds (at most ``(CL + BL/2 + 2) / tCCD_S`` < 8 reads are in
  flight). A bank-group data path (``DRAMTiming.data_path == "bankgroup"``: no read -> read
  tCCD_S) can have a read in flight per cycle; the RTL replay then sizes the buffer with
  :func:`pimcast.hdl.dram.bankctl.min_read_buffer` (29 on DDR4-3200) so it does not bind either. Response back-pressure is not modelled (the host always takes read data).
* HBM2 (two bursts per 64 B request): a request issues its bursts as consecutive column
  commands of the same slot, as the RTL does (identical command lists on the 20-trace suite;
  the RTL's read-return credit, taken by a request's last RD, did not bind there with 8 entries).
* ``requests_per_second`` is the host wall time of :meth:`FastDRAMModel.run` (decode + compiled
  kernel), excluding numba's one-time compilation (cached on disk, ``cache=True``).

Implementation
--------------
One numba-compiled kernel (``_kernel``) over plain numpy arrays; addresses are checked and decoded
in one compiled pass (:class:`~pimcast.hdl.dram.timing.AddressMapping`'s shifts and masks; a
failure is then named by :meth:`~pimcast.hdl.dram.timing.AddressMapping.check`) into one packed
int64 word per request (bank, bank group, rank, row, column: ``_P_*``); the packed words and the
kernel's per-request scratch live in a workspace the model keeps between runs. Queue:
per-bank lists in age order (request index plus contiguous copies of row, column, write flag and
same-address dependency) and a pointer to the oldest queued request (requests are accepted in
trace order; no global age list to shift).

Timing state is one vector ``K[4 b + c]``: the earliest cycle at which command ``c`` (ACT, RD, WR,
PRE) may issue to bank ``b``, every scope (bank, bank group, rank, channel, tFAW) folded in by
``max``. A command to bank ``b`` updates it with one contiguous ``max`` over a precomputed row of
:func:`gap_rows` (the :func:`gap_tables` gap of each target bank's relation to ``b``; int8 where every
bank-command gap fits, else int16, so the
rows of every issuing bank stay in the L1 cache); tFAW folds into the same pass for an ACT. Each
bank's scheduling candidates sit beside it in ``A[4 b + c]`` (the request whose command ``c`` the
bank offers, with its class bits; a bank offers its ACT, its PRE, or its oldest eligible RD and WR
row hits), recomputed only when a command to that bank, an acceptance into it, a PREA/REF of its
rank or a change of the starvation-guard bank marks it dirty. The winner of a step is the minimum
packed key ``max(K, now) + A`` with ``K`` kept pre-shifted (``(cycle - kbase) << 18``), i.e.
``((ready - now) << 18) + (class << 16) + age`` plus a common offset: earliest ready cycle, then
class, then age, exact every step, two vector operations per lane (bank-major layout).  It is found
*incrementally*: the timing-update pass of a bank command (vectorised by LLVM, 512-bit vectors
where the host has AVX-512: :func:`_wide_vectors`) also takes the minimum key at ``now = T + 1``
over every lane but the issuing bank's; a step that changes no timing (an acceptance-only cycle,
a refresh falling due) keeps the previous minimum, which cannot change while ``now`` stays at or
before its ready cycle; each step then folds in only the re-evaluated lanes of its dirty banks. A
full branch-free scan over every lane runs only when the previous winner's own candidate changed
(a row hit arriving at a bank withdraws its PRE), after PREA/REF or a base move, and at the
start: 0.2 % of the steps of a saturated 64 B gather (``ModelResult.steps`` / ``full_scans``). ``K`` and the keys
are int32 (twice the lanes of int64 per vector: the scan and the update are ~1.15x faster end to
end): ``K`` counts cycles from a base ``kbase`` that moves up to the current cycle whenever it lags
by more than ``_KREBASE`` (1,024) cycles (one 128-lane pass every ~1,000 cycles; entries long past
clamp at ``-2**30``), and ``age`` is the request index minus a base that moves up to the oldest
pending request before it would pass ``2**16 - 1``. A key then stays below ``2**30`` (the
no-candidate sentinel) while ``_KREBASE + 2 * dmax < 2**12`` for the largest timing gap ``dmax``
(a command may issue up to ``dmax`` cycles ahead and set an entry ``dmax`` beyond that), which the
constructor checks (1,535 cycles; tRFC of a 16 Gb DDR4-3200 device is 880). The kernel then jumps straight to the earliest of
that command, the next acceptance and the next refresh falling due. The result is the RTL's
cycle-by-cycle schedule, not an approximation of it: ``tests/test_dram_model_equiv.py`` checks that
the command list, every completion cycle and every statistic are identical to those of the
scan-every-busy-bank kernel kept as :mod:`pimcast.host.dram_model_ref` on the 20-trace
RTL-comparison suite under five configurations (DDR4-3200 x1/x2, DDR4-2400 x4, HBM2, queues 3-32,
merging on/off) and on random mixes with duplicates, same-address hazards, idle gaps and refreshes.

Agreement with the RTL: on the ``benchmarks/dram_fast_vs_rtl.py`` suite (20 traces: uniform and
Zipf gathers, streams, 1/3 and all writes, read-modify-write rows, read-after-write hazards,
row-hit / bank-conflict heavy, paced and bursty arrivals) the emitted command list is identical
to the RTL's command port, cycle for cycle, for DDR4-3200 x2 ranks queue 32 and DDR4-2400 x1
queue 8; ``cycles`` differ by the 2-3 cycle end-of-trace convention above (<= 0.08 %).

Speed: see ``benchmarks/dram_speed.py`` (200,000 requests per trace, DDR4-3200 x2, queue 32, CPU
time of :meth:`FastDRAMModel.run` incl. decode) and the README. The kernel is compiled without
numba's negative-index wraparound (:func:`_no_index_wraparound`, +6-15 %) and scans pre-shifted
timing state (``max(K, now) + A``: two vector operations per lane instead of four, +4-9 %); session
16 added the incremental winner and 512-bit vectors (same-run A/B on an Emerald Rapids host,
identical results: +2-16 % per trace type, 64 B gathers +5 %, paced +16 %; the vectors alone +5-10 %).  The
profile below is from before these three.  A random 64 B gather
is the slowest trace type: 3.4 scheduler steps per request (PRE, ACT, RD and 0.4 acceptance-only
steps), ~65 ns each on the 2.8 GHz Ice Lake host.  Instruction profile of that trace (valgrind
callgrind on the compiled kernel, 30,000 requests): ~2,090 instructions per request at ~3.4
instructions per cycle, so the kernel is bound by its instruction count, not by a latency or a
branch: the vector scan 17 % (+2 % the horizontal minimum), the vector timing update 13 %, the
fixed per-step scalar bookkeeping (~150 instructions: starvation guard, dirty-bank candidates,
winner decode, next-event arithmetic, many of them register spills of this large function) 24 %,
per command ~90 more, per request ~300 (acceptance, queue-list insertion and removal).  Tried and
not kept (same-run A/B): one branch-free update pass for every bank command (-8 %), update passes restricted to
the lanes a command can constrain (-3 %), lazily folded PREA/REF earliest cycles (-2..-10 %),
geometry (ranks, bank groups, banks, queue) as compile-time constants (0-4 %, a compilation per
geometry). 512-bit vectors were within noise on the Ice Lake host (session 15) and are +5-10 % on
Emerald Rapids (session 16). Valgrind's branch model (on the AVX2 code it runs) counts ~17 mispredicted
branches per request, most of them the dispatch on the command just issued (ACT / RD / WR / PRE
follow each other in a data-dependent order) and the candidate recomputation that follows it.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import llvmlite.binding as _llvm
import numba
import numba.core.cpu as _nb_cpu
import numba.np.arrayobj as _nb_arrayobj
import numpy as np
from numba.core import types as _nb_types
from numba.core.compiler_lock import global_compiler_lock

from pimcast.hdl.dram.timing import (REQUEST_BYTES, AddressMapping, Cmd, DRAMTiming, Scope,
                                     timing_rules, window_rules)

__all__ = ["FastDRAMModel", "ModelResult", "simulate", "gap_tables", "gap_rows", "CMD_NAMES"]

#: command codes of the kernel (index into this tuple)
CMD_NAMES = ("ACT", "RD", "WR", "PRE", "PREA", "REF")
_CODE = {Cmd.ACT: 0, Cmd.RD: 1, Cmd.WR: 2, Cmd.PRE: 3, Cmd.PREA: 4, Cmd.REF: 5}
_RANKWIDE = (Cmd.PREA, Cmd.REF)


@dataclass
class ModelResult:
    """Statistics of one run. ``row_hits`` = requests (not merged) minus ACTs, at least 0: a lower
    bound of the requests served without an ACT of their own (a refresh that closes a row before a
    queued request's column command makes that row cost a second ACT). The RTL replay reports the
    same quantity."""
    cycles: int
    reads: int
    writes: int
    bytes: int
    GBps: float
    acts: int
    row_hits: int
    refreshes: int
    requests_per_second: float
    wall_s: float
    merged: int = 0
    #: the kernel's scheduler steps (one per command, acceptance-only cycle or refresh falling due)
    #: and, of them, the steps that scanned every bank's candidates (the others fold only the
    #: changed banks into the previous winner); 0 for backends that do not count them
    steps: int = 0
    full_scans: int = 0
    commands: list | None = field(default=None, repr=False)
    completion: np.ndarray | None = field(default=None, repr=False)

    def stats(self) -> dict:
        return {k: getattr(self, k) for k in ("cycles", "reads", "writes", "bytes", "GBps", "acts",
                                               "row_hits", "refreshes", "merged", "requests_per_second")}


def gap_tables(t: DRAMTiming) -> tuple[np.ndarray, np.ndarray]:
    """Compile :func:`timing_rules` into the kernel's gap tables (largest gap per relation).

    ``gB[P, N, rel]``: after command ``P`` (code, see :data:`CMD_NAMES`), bank command ``N``
    (ACT/RD/WR/PRE) may issue ``gap`` cycles later; ``rel`` 0 = same bank, 1 = same bank group
    (other bank), 2 = same rank (other bank group), 3 = other rank. For rank-wide ``P`` (PREA,
    REF) every bank of the rank gets ``rel`` 0, which holds all same-rank scopes (the RTL loads
    every counter instance of the rank). ``gR[P, N, rel]``: rank-wide ``N`` (0 = PREA, 1 = REF),
    ``rel`` 0 = same rank, 1 = other rank.
    """
    B, SG, DG, SR, DR, CH = (Scope.SAME_BANK, Scope.SAME_BANKGROUP, Scope.DIFF_BANKGROUP,
                             Scope.SAME_RANK, Scope.DIFF_RANK, Scope.CHANNEL)
    rel_scopes = ({B, SG, SR, CH}, {SG, SR, CH}, {DG, SR, CH}, {DR, CH})
    rankwide_same = {B, SG, DG, SR, CH}
    gB = np.zeros((6, 4, 4), np.int64)
    gR = np.zeros((6, 2, 2), np.int64)
    for r in timing_rules(t):
        if r.prev not in _CODE or r.next not in _CODE:
            continue  # RDA/WRA: not issued (open-page controller)
        p, nx = _CODE[r.prev], _CODE[r.next]
        if r.next in _RANKWIDE:
            # rank-wide next command: bank / bank-group scopes are taken conservatively as same rank
            for rel, ok in ((0, r.scope is not DR), (1, r.scope in (DR, CH))):
                if ok:
                    gR[p, nx - 4, rel] = max(gR[p, nx - 4, rel], r.gap)
            continue
        if r.prev in _RANKWIDE:
            for rel, scopes in ((0, rankwide_same), (3, rel_scopes[3])):
                if r.scope in scopes:
                    gB[p, nx, rel] = max(gB[p, nx, rel], r.gap)
            continue
        for rel in range(4):
            if r.scope in rel_scopes[rel]:
                gB[p, nx, rel] = max(gB[p, nx, rel], r.gap)
    return gB, gR


def gap_rows(t: DRAMTiming, gB: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's per-issuer gap rows, expanded from :func:`gap_tables` over the flat banks.

    ``GAPB[P, b, N, x]``: after bank command ``P`` (ACT/RD/WR/PRE) to flat bank ``b``, bank command
    ``N`` may issue to bank ``x`` that many cycles later (``gB``'s same-bank / same-bank-group /
    same-rank / other-rank gap by the relation of ``x`` to ``b``).  ``GAPR[P - 4, r, N, x]``: the
    same after rank-wide ``P`` (PREA, REF) to rank ``r``.  Returned bank-major and flattened as the
    kernel's ``K`` (``[P, b, 4 x + N]``, int16): one command then updates every bank's earliest
    cycles with one contiguous ``max`` over a row.
    """
    if gB is None:
        gB, _ = gap_tables(t)
    R, G, BPG = t.ranks, t.bankgroups, t.banks_per_group
    NB = R * G * BPG
    x = np.arange(NB)
    xr, xg = x // (G * BPG), x // BPG
    GAPB = np.empty((4, NB, 4, NB), np.int64)
    for b in range(NB):
        rel = np.where(xr != xr[b], 3, np.where(xg != xg[b], 2, np.where(x != b, 1, 0)))
        GAPB[:, b, :, :] = gB[:4, :, rel]
        # the issuing bank: bank-level and bank-group-level gaps both apply
        GAPB[:, b, :, b] = np.maximum(gB[:4, :, 0], gB[:4, :, 1])
    GAPR = np.empty((2, R, 4, NB), np.int64)
    for r in range(R):
        rel = np.where(xr == r, 0, 3)
        GAPR[:, r, :, :] = gB[4:6, :, rel]
    if max(GAPB.max(), GAPR.max()) >= 1 << 15:
        raise ValueError(f"a timing gap of {max(GAPB.max(), GAPR.max())} cycles exceeds the kernel's int16 gap rows")
    # int16 (the rows of every issuing bank: 32 KB for 32 banks), bank-major (4 * target bank + command)
    return (GAPB.transpose(0, 1, 3, 2).reshape(4, NB, 4 * NB).astype(np.int16),
            GAPR.transpose(0, 1, 3, 2).reshape(2, R, 4 * NB).astype(np.int16))


# ------------------------------------------------------------------------------------------------
# the compiled kernel

#: Age bits of the kernel's int32 scheduling keys (``(ready distance << 18) | class << 16 | age``):
#: a request may stay queued while up to ``2**16 - 1`` younger requests pass it (the kernel
#: returns error 2 beyond that; with an FR-FCFS queue and the starvation guard it does not happen).
_AGE_BITS = 16
#: cycle bits of the keys: K holds (earliest cycle - kbase) << (_AGE_BITS + 2); kbase moves up to the
#: current cycle once it lags by more than _KREBASE cycles
_KBITS = 30 - (_AGE_BITS + 2)
_KREBASE = 1024


@numba.njit(cache=True)
def _key_request(rel, abase, age_bits, wr):
    """``(request, command)`` of a packed key relative to now (``rel``, ``>= 0``): the request is
    ``abase`` + the age field; the class maps to the command without a branch (2: ACT 0, 3: PRE 3,
    1: RD 1 / WR 2, by the request's write flag)."""
    i = abase + (rel & ((1 << age_bits) - 1))
    pc = (rel >> age_bits) & 3
    return i, (pc == 3) * 3 + (pc == 1) * (1 + np.int64(wr[i]))


@numba.njit(cache=True)
def _nondecreasing(x):
    for i in range(1, x.shape[0]):
        if x[i] < x[i - 1]:
            return False
    return True


#: Field positions of the packed request word the fast kernel reads (one int64 per request instead
#: of five arrays: a fifth of the memory to write and fault in): flat bank, flat bank group, rank
#: (8 bits each), row (24 bits), column in 64 B units (15 bits).
_P_BG, _P_RA, _P_RO, _P_CO = 8, 16, 24, 48


def unpack_requests(packed: np.ndarray) -> tuple[np.ndarray, ...]:
    """The fields of :func:`_decode_packed`'s words as int64 arrays: rank, flat bank group, flat
    bank, row, column (the oracle kernel of :mod:`pimcast.host.dram_model_ref` takes them so)."""
    return ((packed >> _P_RA) & 255, (packed >> _P_BG) & 255, packed & 255,
            (packed >> _P_RO) & 0xFFFFFF, packed >> _P_CO)


@numba.njit(cache=True)
def _decode_packed(a, out, cap, R, s_ra, m_ra, s_bg, m_bg, s_ba, m_ba, s_ro, m_ro, s_co, m_co, G, BPG):
    """Rank, flat bank group, flat bank, row and column (64 B units) packed into one int64 per
    request (see ``_P_*``; :func:`unpack_requests` splits them again), and the index of
    the first address that :meth:`AddressMapping.check` rejects (unaligned, at or beyond ``cap``,
    an unused rank code), or -1: the checks and the decode in one pass. ``out``: at least as long
    as ``a`` (a reused workspace)."""
    n = a.shape[0]
    out = out[:n]
    for i in range(n):
        x = a[i]
        r = np.int64((x >> s_ra) & m_ra)
        if (x & np.uint64(REQUEST_BYTES - 1)) != 0 or x >= cap or r >= R:
            return out, i
        g = r * G + np.int64((x >> s_bg) & m_bg)
        b = g * BPG + np.int64((x >> s_ba) & m_ba)
        out[i] = (b | (g << _P_BG) | (r << _P_RA) | (np.int64((x >> s_ro) & m_ro) << _P_RO)
                  | (np.int64((x >> s_co) & m_co) << _P_CO))
    return out, -1


@contextlib.contextmanager
def _no_index_wraparound():
    """Compile without numba's negative-index wraparound (used for :func:`_kernel` only).

    Numba gives every array access with a signed index Python's meaning of a negative index (a
    compare and a conditional add of the length per access, on the kernel's critical path of
    data-dependent loads: request -> bank -> queue list).  The kernel never indexes with a negative
    value (every possibly-negative handle, ``-1`` for none, is tested before use), so inside this
    context an integer index is taken as it is, as numba already does for unsigned indices
    (``numba.np.arrayobj.fix_integer_index``).  Measured: the kernel 6-15 % faster on every trace
    type (interleaved A/B, identical results).  The patch holds numba's global compiler lock (a
    re-entrant lock) while it is in effect, so no other thread compiles under it; if numba no longer
    has the hook, the kernel compiles with wraparound (slower, same results).  Yields whether the
    switch is in effect.
    """
    orig = getattr(_nb_arrayobj, "fix_integer_index", None)
    if orig is None:
        yield False
        return

    def fix_integer_index(context, builder, idxty, idx, size):
        return context.cast(builder, idx, idxty, _nb_types.intp if idxty.signed else _nb_types.uintp)

    with global_compiler_lock:
        _nb_arrayobj.fix_integer_index = fix_integer_index
        try:
            yield True
        finally:
            _nb_arrayobj.fix_integer_index = orig


#: LLVM names of the first AVX-512 generation, whose 512-bit frequency licence can make 512-bit
#: code slower than 256-bit code (Intel's optimization manual); :func:`_wide_vectors` leaves them alone
_NARROW_AVX512_CPUS = frozenset({"skylake-avx512", "cascadelake", "cooperlake", "knl", "knm"})
#: the LLVM function attribute that :func:`_wide_vectors` sets
_WIDE_ATTR = '"prefer-vector-width"="512"'


@contextlib.contextmanager
def _wide_vectors():
    """Compile with 512-bit vectors preferred (used for :func:`_kernel` only).

    LLVM's x86 tuning prefers 256-bit vectors even where AVX-512 is available, so the kernel's
    128-lane int32 scan and timing-update loops run as 16 ymm operations per pass.  Inside this
    context every function numba lowers gets the LLVM function attribute
    ``"prefer-vector-width"="512"`` (what clang's ``-mprefer-vector-width=512`` sets), so the loop
    vectorizer and the code generator use zmm registers: half the vector instructions per pass.
    Measured on an Emerald Rapids host (same-run A/B, identical results): +5-10 % on 64 B traces
    (+2-16 % per trace type together with the incremental winner); on an Ice Lake
    host (session 15, by a process-wide ``NUMBA_CPU_FEATURES``) within noise.  A host without
    AVX-512 ignores the attribute (its widest vectors stay 256 bits); the first AVX-512 generation
    (:data:`_NARROW_AVX512_CPUS`) is left alone.  Numba's lowering hook
    (``numba.core.cpu.CPUContext.post_lowering``) is patched under numba's global compiler lock
    and restored after; if numba no longer has the hook, the kernel compiles with 256-bit vectors
    (slower, same results).  Yields whether the attribute is set.
    """
    ctx = getattr(_nb_cpu, "CPUContext", None)
    orig = getattr(ctx, "post_lowering", None)
    if orig is None or (numba.config.CPU_NAME or _llvm.get_host_cpu_name()) in _NARROW_AVX512_CPUS:
        yield False
        return

    def post_lowering(self, mod, library):
        for fn in mod.functions:
            if not fn.is_declaration:
                try:        # a string attribute: set.add skips llvmlite's enum-attribute name check
                    set.add(fn.attributes, _WIDE_ATTR)
                except TypeError:   # pragma: no cover - an llvmlite whose attributes are no set
                    pass
        return orig(self, mod, library)

    with global_compiler_lock:
        ctx.post_lowering = post_lowering
        try:
            yield True
        finally:
            ctx.post_lowering = orig


#: argument-type signatures of :func:`_kernel` compiled (or loaded from numba's cache) under
#: :func:`_no_index_wraparound` and :func:`_wide_vectors`
_UNWRAPPED_SIGNATURES: set = set()


def _run_kernel(*args):
    """Call :func:`_kernel`, compiling it for these argument types under
    :func:`_no_index_wraparound` and :func:`_wide_vectors` first if needed (a few microseconds to
    type the arguments)."""
    sig = tuple(numba.typeof(a) for a in args)
    if sig not in _kernel.overloads:
        with _no_index_wraparound(), _wide_vectors():
            _kernel.compile(sig)
        _UNWRAPPED_SIGNATURES.add(sig)
    return _kernel(*args)


@numba.njit(cache=True, error_model="numpy")   # no divisions by zero to check for
def _kernel(P, wr, stamp, prev_same,
            Q, R, G, BPG, k_bursts, BL, GAPB, GAPR, RW, FAWM, faw_n, faw_w, tREFI, ref_first,
            rd_lat, wr_lat, write_hold, merge, cmd_buf, win, ret_lat, rd_pos, rd_idx, ret_dep, ret_gap,
            ws16, ws8, ws32):
    n = P.shape[0]
    NB = R * G * BPG
    INF = np.int64(1) << 62
    NEG = -(np.int64(1) << 40)
    # timing state: K[4 b + nn] = earliest cycle at which bank command nn (0 ACT, 1 RD, 2 WR, 3 PRE)
    # may issue to bank b, all scopes (bank, bank group, rank, channel, tFAW) folded in by max
    NK = 4 * NB
    # int32, pre-shifted: (cycle - kbase) << SH (kbase moves up once it lags by _KREBASE cycles;
    # entries in the past clamp at FLOOR)
    FLOOR = np.int32(-(1 << 30))
    kbase = np.int64(0)
    K = np.full(NK, FLOOR, np.int32)              # bank-major: a bank's four commands adjacent
    rwT = np.full(2 * R, NEG, np.int64)           # PREA (rwT[r]), REF (rwT[R + r]) per rank
    faw = np.full((R, faw_n), NEG, np.int64)      # last faw_n ACTs per rank (ring)
    faw_pos = np.zeros(R, np.int64)
    open_row = np.full(NB, -1, np.int64)
    hitcnt = np.zeros(NB, np.int64)               # queued requests hitting the open row
    rstate = np.zeros(R, np.int64)                # refresh: 0 idle, 1 wants PREA, 2 wants REF
    ref_due = ref_first.copy()
    nref = 0                                      # ranks with a refresh in progress
    refnext = INF                                 # next cycle a refresh falls due (idle ranks)
    for r in range(R):
        refnext = min(refnext, ref_due[r] + 1)
    b_rank = np.empty(NB, np.int64)
    for x in range(NB):
        b_rank[x] = x // (G * BPG)
    NBR = G * BPG                                 # banks per rank (contiguous)
    # the queue: per-bank lists in age order; the oldest queued request is found by a pointer
    # over the trace (requests are accepted in trace order)
    bq_i = np.empty((NB, Q), np.int64)            # per-bank lists of queued requests, age order,
    bq_row = np.empty((NB, Q), np.int64)          # with copies of the attributes the scheduler
    bq_w = np.empty((NB, Q), np.uint8)            # scans (contiguous: faster than gathers
    bq_dep = np.empty((NB, Q), np.int64)          # from the per-request arrays)
    bq_col = np.empty((NB, Q), np.int64)
    bn = np.zeros(NB, np.int64)
    nq = 0
    oldest = 0
    use_prev = prev_same.shape[0] == n
    # candidates: A[4 b + nn] = class << _AGE_BITS | (request - abase) of bank b's candidate for
    # command nn, or SENT (none); a bank offers at most its ACT, its PRE, or its oldest eligible RD
    # and WR row hits
    SENT = np.int32(1 << 30)
    TOP = np.int32(0x7FFFFFFF)                    # above every key: the start of a minimum
    AGE = np.int32((1 << _AGE_BITS) - 1)
    SH = _AGE_BITS + 2
    abase = np.int64(0)
    A = np.full(NK, SENT, np.int32)               # bank-major like K (a bank's update is four
                                                  # adjacent stores: one vector of the scan waits)
    PRIO = np.array([2, 1, 1, 3], np.int64)       # at equal cycles: CAS, then ACT, then PRE
    PR0 = np.int32(PRIO[0] << _AGE_BITS)                 # class bits of the packed key
    PR1 = np.int32(PRIO[1] << _AGE_BITS)
    PR2 = np.int32(PRIO[2] << _AGE_BITS)
    PR3 = np.int32(PRIO[3] << _AGE_BITS)
    dirty = np.empty(NB, np.int64)                # banks whose candidate must be recomputed
    isdirty = np.zeros(NB, np.uint8)
    ndirty = 0
    HC = Q + 1
    held = np.empty(HC, np.int64)                 # release cycles of write slots (FIFO)
    hh = 0
    hn = 0
    # per-request scratch in the caller's reused workspace (ws*: at least n long)
    bleft = ws16[:n]
    casdone = ws8[:n]
    leader = ws32[:n]
    for j in range(n):
        bleft[j] = k_bursts
        casdone[j] = 0
        leader[j] = -1
    completion = np.zeros(n, np.int64)
    cap = cmd_buf.shape[0]
    ncmd = 0
    overflow = 0
    acts = 0
    refs = 0
    merged = 0
    remaining = n
    next_req = 0
    last_acc = np.int64(-1)
    first_acc = np.int64(-1)
    end = np.int64(0)
    now = np.int64(0)
    gbank = -1
    # incremental winner: after a bank command, `best` holds the minimum key at now = T + 1 over every
    # lane but the issuing bank's (computed in the update pass); a step without a command leaves K
    # alone, so `best` stays the minimum of the unchanged lanes (its key cannot change while now <= its
    # ready cycle). The next step then folds in the recomputed lanes of its dirty banks, unless the
    # lane of `best` itself changed (a full scan then).
    inc = False
    best = TOP
    nsteps = 0                                    # scheduler steps (loop iterations)
    nfull = 0                                     # of them with a scan over every lane
    # in-flight read cap (win > 0): read number r (in trace order) is accepted only after read
    # r - win has retired; reads retire in order, one per cycle, ret_lat cycles after their data
    nrd = rd_idx.shape[0]
    ret_time = np.zeros(nrd if win > 0 else 0, np.int64)
    nret = 0
    last_ret = NEG
    guard_limit = INF
    if n > 0:
        guard_limit = stamp[n - 1] + 100_000_000 + 1000 * n
    while remaining > 0:
        nsteps += 1
        if now > guard_limit:
            return completion, ncmd, overflow, acts, refs, merged, first_acc, end, 1, nsteps, nfull
        # ---- start of cycle `now`: held write slots released, refreshes falling due
        while hn > 0 and held[hh] <= now:
            hh += 1
            if hh == HC:
                hh = 0
            hn -= 1
        if refnext <= now:
            for r in range(R):
                if rstate[r] == 0 and ref_due[r] + 1 <= now:
                    rstate[r] = 1
                    ref_due[r] += tREFI
                    nref += 1
                    for bb in range(r * NBR, (r + 1) * NBR):   # the rank takes no scheduler command
                        if bn[bb] > 0 and isdirty[bb] == 0:
                            isdirty[bb] = 1
                            dirty[ndirty] = bb
                            ndirty += 1
            refnext = INF
            for r in range(R):
                if rstate[r] == 0 and ref_due[r] + 1 < refnext:
                    refnext = ref_due[r] + 1
        # ---- starvation guard: the bank of the oldest request when it misses an open row
        gb_new = -1
        if nq > 0:
            while casdone[oldest] != 0 or leader[oldest] >= 0:
                oldest += 1
            bo = (P[oldest] & 255)
            if open_row[bo] >= 0 and open_row[bo] != ((P[oldest] >> _P_RO) & 0xFFFFFF):
                gb_new = bo
        if gb_new != gbank:
            if gbank >= 0 and isdirty[gbank] == 0:
                isdirty[gbank] = 1
                dirty[ndirty] = gbank
                ndirty += 1
            gbank = gb_new
            if gbank >= 0 and isdirty[gbank] == 0:
                isdirty[gbank] = 1
                dirty[ndirty] = gbank
                ndirty += 1
        # ---- the winner: earliest (ready cycle, class), oldest among equals. First the banks whose
        # candidate changed get it recomputed from bank-local state; then one branch-free scan over
        # K and A (vectorised by LLVM) finds the minimum packed key
        # max(K, now) + A = ((ready - now) << 18 | class << 16 | request - abase) + now << 18, exact every step.
        if now - kbase > _KREBASE:
            ds = np.int32(min(now - kbase, 1 << _KBITS) << SH)
            for x in range(NK):
                K[x] = np.int32(max(np.int32(K[x] - ds), FLOOR))
            kbase = now
            inc = False
        nowS = np.int32((now - kbase) << SH)
        wl = -1
        aw = SENT
        if inc and best < SENT:
            wi, wn = _key_request(best - nowS, abase, _AGE_BITS, wr)
            wl = 4 * (P[wi] & 255) + wn
            aw = A[wl]
        while ndirty > 0:
            ndirty -= 1
            b = dirty[ndirty]
            isdirty[b] = 0
            a0 = SENT
            a1 = SENT
            a2 = SENT
            a3 = SENT
            orow = open_row[b]
            if bn[b] == 0 or rstate[b_rank[b]] != 0:
                pass
            elif orow < 0:
                a0 = np.int32(PR0 + np.int32(bq_i[b, 0] - abase))
            elif hitcnt[b] > 0 and b != gbank:
                # oldest eligible RD and WR row hits (a WR may win over an RD that is not ready)
                ir = -1
                iw = -1
                for k in range(bn[b]):
                    if bq_row[b, k] == orow and bq_dep[b, k] < 0:
                        if bq_w[b, k]:
                            if iw < 0:
                                iw = bq_i[b, k]
                                if ir >= 0:
                                    break
                        elif ir < 0:
                            ir = bq_i[b, k]
                            if iw >= 0:
                                break
                if ir >= 0:
                    a1 = np.int32(PR1 + np.int32(ir - abase))
                if iw >= 0:
                    a2 = np.int32(PR2 + np.int32(iw - abase))
            else:
                a3 = np.int32(PR3 + np.int32(bq_i[b, 0] - abase))
            o = 4 * b
            A[o] = a0
            A[o + 1] = a1
            A[o + 2] = a2
            A[o + 3] = a3
            if inc:
                best = min(best, np.int32(max(K[o], nowS) + a0), np.int32(max(K[o + 1], nowS) + a1),
                           np.int32(max(K[o + 2], nowS) + a2), np.int32(max(K[o + 3], nowS) + a3))
        if not inc or (wl >= 0 and A[wl] != aw):
            nfull += 1
            best = TOP
            for x in range(NK):
                best = np.int32(min(best, np.int32(max(K[x], nowS) + A[x])))
        best_k = INF
        best_i = -1
        best_nn = -1
        if best < SENT:
            rel = best - nowS
            best_k = now + (rel >> SH)
            best_i, best_nn = _key_request(rel, abase, _AGE_BITS, wr)
        ref_t = INF
        ref_r = -1
        for r in range(R if nref > 0 else 0):
            if rstate[r] == 1:
                x = max(rwT[r], now)
            elif rstate[r] == 2:
                x = max(rwT[R + r], now)
            else:
                continue
            if x < ref_t:
                ref_t = x
                ref_r = r
        # ---- next events
        if win > 0:
            while nret < nrd and casdone[rd_idx[nret]] != 0:
                x = completion[rd_idx[nret]] + ret_lat
                if last_ret + 1 > x:
                    x = last_ret + 1
                if ret_dep.shape[0] > 0 and ret_dep[nret] >= 0:
                    y = ret_time[ret_dep[nret]] + ret_gap
                    if y > x:
                        x = y
                ret_time[nret] = x
                last_ret = x
                nret += 1
        acc_t = INF
        if next_req < n:
            a = max(now, stamp[next_req], last_acc + 1)
            if nq + hn < Q:
                acc_t = a
            elif hn > 0:
                acc_t = max(a, held[hh])
            if win > 0 and acc_t < INF and rd_pos[next_req] >= win:
                k = rd_pos[next_req] - win
                if k < nret:
                    acc_t = max(acc_t, ret_time[k] + 1)
                else:
                    acc_t = INF     # its slot's read has no data yet: wait for commands
        refev = refnext
        tc = min(ref_t, best_k)
        if refev <= tc and refev <= acc_t:
            now = refev
            continue
        accept_now = acc_t == tc
        if acc_t < tc:
            T = acc_t
            now = T + 1
        else:
            # ---- a command issues at cycle tc (and maybe an acceptance in the same cycle)
            T = tc
            if ref_t == T:
                r = ref_r
                code = 4 if rstate[r] == 1 else 5
                g = r * G
                b = g * BPG
                i = -1
            else:
                i = best_i
                code = best_nn
            if i >= 0:
                r = ((P[i] >> _P_RA) & 255)
                g = ((P[i] >> _P_BG) & 255)
                b = (P[i] & 255)
            # every later command's earliest cycle (gap rows precomputed per issuing bank / rank)
            Tr = np.int32((T - kbase) << SH)
            nS1 = np.int32(Tr + (1 << SH))
            inc = code < 4
            if inc:
                o = 4 * b              # the issuing bank's candidates are recomputed next step
                A[o] = SENT
                A[o + 1] = SENT
                A[o + 2] = SENT
                A[o + 3] = SENT
                best = TOP             # the minimum of the update pass below (PREA/REF: a full scan next)
            if code >= 4:
                for x in range(NK):
                    K[x] = np.int32(max(K[x], np.int32(Tr + np.int32(np.int32(GAPR[code - 4, r, x]) << SH))))
            elif code == 0:
                # ACT: the tFAW window folds into the rank's ACT entries (FAWM: 0 there, -2**30
                # elsewhere), in the same vector pass
                faw[r, faw_pos[r]] = T
                faw_pos[r] += 1
                if faw_pos[r] == faw_n:
                    faw_pos[r] = 0
                fv = np.int32(max(faw[r, faw_pos[r]] + faw_w - kbase, -(1 << _KBITS)) << SH)   # tFAW: the next ACT
                for x in range(NK):
                    kx = np.int32(max(np.int32(max(K[x], np.int32(Tr + np.int32(np.int32(GAPB[0, b, x]) << SH)))),
                                      np.int32(fv + FAWM[r, x])))
                    K[x] = kx
                    best = np.int32(min(best, np.int32(max(kx, nS1) + A[x])))
            else:
                for x in range(NK):
                    kx = np.int32(max(K[x], np.int32(Tr + np.int32(np.int32(GAPB[code, b, x]) << SH))))
                    K[x] = kx
                    best = np.int32(min(best, np.int32(max(kx, nS1) + A[x])))
            for x in range(2 * R):
                # branch-free max with an unconditional store: max() became a compare and a masked
                # store (vpmaskmovq), microcoded on AMD Zen and a store-forwarding stall for the
                # next step's reads of rwT (~5 % of the kernel's time on a Zen 1 host)
                y = rwT[x]
                dy = T + RW[code, r, x] - y
                rwT[x] = y + (dy & ~(dy >> 63))
            now = T + 1
            # bank / queue state
            rowv = -1
            colv = -1
            if code == 0:
                rowv = ((P[i] >> _P_RO) & 0xFFFFFF)
                open_row[b] = rowv
                c = 0
                for k in range(bn[b]):
                    if bq_row[b, k] == rowv:
                        c += 1
                hitcnt[b] = c
                acts += 1
            elif code == 3:
                open_row[b] = -1
                hitcnt[b] = 0
            elif code == 4:
                for bb in range(r * NBR, (r + 1) * NBR):
                    open_row[bb] = -1
                    hitcnt[bb] = 0
                rstate[r] = 2
            elif code == 5:
                rstate[r] = 0
                refs += 1
                nref -= 1
                refnext = INF
                for q in range(R):
                    if rstate[q] == 0 and ref_due[q] + 1 < refnext:
                        refnext = ref_due[q] + 1
            else:
                rowv = ((P[i] >> _P_RO) & 0xFFFFFF)
                colv = ((P[i] >> _P_CO) * k_bursts + (k_bursts - bleft[i])) * BL
                bleft[i] -= 1
                if bleft[i] == 0:
                    casdone[i] = 1
                    done = T + 1 + (wr_lat if code == 2 else rd_lat)
                    completion[i] = done
                    if done > end:
                        end = done
                    remaining -= 1
                    hitcnt[b] -= 1
                    nq -= 1
                    # leave the bank list (keep age order) and release same-address dependants
                    m = bn[b]
                    k = 0
                    while bq_i[b, k] != i:
                        k += 1
                    while k < m - 1:
                        bq_i[b, k] = bq_i[b, k + 1]
                        bq_row[b, k] = bq_row[b, k + 1]
                        bq_w[b, k] = bq_w[b, k + 1]
                        bq_dep[b, k] = bq_dep[b, k + 1]
                        bq_col[b, k] = bq_col[b, k + 1]
                        k += 1
                    m -= 1
                    bn[b] = m
                    for k in range(m):
                        if bq_dep[b, k] == i:
                            bq_dep[b, k] = -1
                    if code == 2:
                        tl = hh + hn
                        if tl >= HC:
                            tl -= HC
                        held[tl] = T + write_hold + 1
                        hn += 1
            if code >= 4:
                # PREA closes the rank's banks; after REF the rank takes scheduler commands again
                # (its banks' keys drop back from INF)
                for bb in range(r * NBR, (r + 1) * NBR):
                    if bn[bb] > 0 and isdirty[bb] == 0:
                        isdirty[bb] = 1
                        dirty[ndirty] = bb
                        ndirty += 1
            elif isdirty[b] == 0:
                isdirty[b] = 1
                dirty[ndirty] = b
                ndirty += 1
            if ncmd < cap:
                cmd_buf[ncmd, 0] = T + 1
                cmd_buf[ncmd, 1] = code
                cmd_buf[ncmd, 2] = r
                cmd_buf[ncmd, 3] = g - r * G if code < 4 else 0
                cmd_buf[ncmd, 4] = b - g * BPG if code < 4 else 0
                cmd_buf[ncmd, 5] = rowv
                cmd_buf[ncmd, 6] = colv
                ncmd += 1
            elif cap > 0:
                overflow = 1
        if not (accept_now or acc_t < tc):
            continue
        # ---- acceptance of the next request at cycle T (slot state of the start of the cycle)
        j = next_req
        if j - abase > AGE:
            # the packed keys' age field is about to overflow: rebase it at the oldest pending request
            nb = oldest
            while casdone[nb] != 0 or leader[nb] >= 0:
                nb += 1
            if j - nb > AGE:
                return completion, ncmd, overflow, acts, refs, merged, first_acc, end, 2, nsteps, nfull
            delta = np.int32(nb - abase)
            for x in range(NK):
                if A[x] != SENT:
                    A[x] -= delta
            abase = nb
            inc = False
        next_req += 1
        last_acc = T
        if first_acc < 0:
            first_acc = T
        bj = (P[j] & 255)
        m = bn[bj]
        if use_prev:
            p = prev_same[j]
            if p >= 0 and leader[p] >= 0:
                p = leader[p]
        else:
            # youngest queued request to the same address (it waits for the older ones itself)
            p = -1
            rj_ = ((P[j] >> _P_RO) & 0xFFFFFF)
            cj_ = (P[j] >> _P_CO)
            for k in range(m - 1, -1, -1):
                if bq_row[bj, k] == rj_ and bq_col[bj, k] == cj_:
                    p = bq_i[bj, k]
                    break
        if merge and wr[j] == 0 and p >= 0 and wr[p] == 0:
            if casdone[p] == 0 or completion[p] > T:
                leader[j] = p
                merged += 1
                remaining -= 1
                continue
        nq += 1
        bq_i[bj, m] = j
        bq_col[bj, m] = (P[j] >> _P_CO)
        bq_row[bj, m] = ((P[j] >> _P_RO) & 0xFFFFFF)
        bq_w[bj, m] = wr[j]
        bq_dep[bj, m] = p if (p >= 0 and casdone[p] == 0) else -1
        bn[bj] = m + 1
        if open_row[bj] == ((P[j] >> _P_RO) & 0xFFFFFF):
            hitcnt[bj] += 1
        if isdirty[bj] == 0:
            isdirty[bj] = 1
            dirty[ndirty] = bj
            ndirty += 1
    for j in range(n):
        if leader[j] >= 0:
            completion[j] = completion[leader[j]]
    return completion, ncmd, overflow, acts, refs, merged, first_acc, end, 0, nsteps, nfull

# ------------------------------------------------------------------------------------------------


class FastDRAMModel:
    """Channel-controller timing model. ``run(addr, is_write, cycle)`` returns a :class:`ModelResult`.

    Parameters
    ----------
    t : DRAMTiming
    mapping : str or AddressMapping, default ``"rochrababgco"``
    queue : int, default 32
        Request-queue depth (the FR-FCFS window), as the RTL's ``queue``.
    merge_duplicates : bool, default False
        DRAMsim3-style merging of a read with an older pending read of the same address.
    max_reads_in_flight : int or None, default None
        Cap on reads in flight, as the PIM core's reorder buffer (``2**tag_bits`` entries) imposes
        it (``None``: no cap — the plain controller of ``pimcast dram replay``).  A read holds a
        slot from its acceptance until it *retires*: reads retire in trace order, at most one per
        cycle, ``retire_latency`` cycles after the end of their data burst (the core's ROB:
        ``resp.valid`` one cycle after the burst, the entry valid the next, retired that cycle;
        its slot is free for an acceptance one cycle later).  Writes take no slot.  See
        "In-flight cap" in the module docstring.
    retire_latency : int, default 2
        cycles from a read's last data beat (``completion``) to its earliest retirement.
    recurrence : int, default 0
        with the cap: fewest cycles between the retirements of two reads that fold into the same
        accumulator slot (``run(..., slots=...)``): the reduction unit's FMA recurrence
        (:attr:`pimcast.hdl.reduce.ReductionUnit.recurrence`, 5 on the core).
    """

    def __init__(self, t: DRAMTiming, mapping: str | AddressMapping = "rochrababgco", queue: int = 32,
                 merge_duplicates: bool = False, max_reads_in_flight: int | None = None,
                 retire_latency: int = 2, recurrence: int = 0, **_ignored):
        if isinstance(queue, bool) or int(queue) < 1:
            raise ValueError(f"queue depth must be >= 1, not {queue}")
        if max_reads_in_flight is not None:
            if isinstance(max_reads_in_flight, bool) or not isinstance(max_reads_in_flight, (int, np.integer)) \
                    or max_reads_in_flight < 1:
                raise ValueError(f"max_reads_in_flight must be None or an integer >= 1, not {max_reads_in_flight!r}")
            if merge_duplicates:
                raise ValueError("max_reads_in_flight (the PIM core's ROB) and merge_duplicates=True cannot be "
                                 "combined: the core does not merge reads")
        if isinstance(retire_latency, bool) or not isinstance(retire_latency, (int, np.integer)) or retire_latency < 0:
            raise ValueError(f"retire_latency must be an integer >= 0, not {retire_latency!r}")
        if isinstance(recurrence, bool) or not isinstance(recurrence, (int, np.integer)) or recurrence < 0:
            raise ValueError(f"recurrence must be an integer >= 0, not {recurrence!r}")
        self.recurrence = int(recurrence)
        self.max_reads_in_flight = None if max_reads_in_flight is None else int(max_reads_in_flight)
        self.retire_latency = int(retire_latency)
        self.t = t
        self.mapping = mapping if isinstance(mapping, AddressMapping) else AddressMapping(mapping, t)
        self.queue = int(queue)
        self.merge_duplicates = bool(merge_duplicates)
        self.gB, self.gR = gap_tables(t)
        self.GAPB, self.GAPR = gap_rows(t, self.gB)
        if self.GAPB.max() < 128:            # bank-command gaps (not tRFC) fit in int8 on every preset:
            self.GAPB = self.GAPB.astype(np.int8)   # half the cache lines per update
        nbr = t.bankgroups * t.banks_per_group
        xb = np.arange(4 * t.ranks * nbr)
        # FAWM[r, x]: 0 at rank r's ACT entries of K (x = 4 * bank + 0), far below any cycle elsewhere
        self.FAWM = np.where((xb[None, :] % 4 == 0) & (xb[None, :] // 4 // nbr == np.arange(t.ranks)[:, None]),
                             0, -(1 << 30)).astype(np.int32)
        R = t.ranks
        q = np.arange(R)
        # RW[P, r, nn * R + q]: after command P to rank r, rank-wide nn (PREA, REF) of rank q
        self.RW = np.ascontiguousarray(np.stack([self.gR[:, :, np.where(q == r, 0, 1)].reshape(6, 2 * R)
                                                 for r in range(R)], axis=1))
        (w,) = [w for w in window_rules(t) if w.cmd is Cmd.ACT]
        self.faw_n, self.faw_w = int(w.count), int(w.window)
        # packed scheduling keys (int32): K = (cycle - kbase) << 18 stays below 2**30 while
        # kbase lags by at most _KREBASE and an entry lies at most 2 * dmax beyond (module docstring)
        dmax = int(max(self.GAPB.max(), self.GAPR.max(), self.faw_w))
        lim = ((1 << _KBITS) - 2 - _KREBASE) // 2
        if dmax > lim:
            raise ValueError(f"a timing gap of {dmax} cycles exceeds the fast model's limit of {lim} cycles "
                             f"(its int32 scheduling keys); replay this standard with --model rtl")
        nb = t.ranks * t.bankgroups * t.banks_per_group
        if nb > 255 or t.rows > 1 << 24 or t.requests_per_row > 1 << 15:
            raise ValueError(f"{nb} banks, {t.rows} rows or {t.requests_per_row} requests per row exceed the fast "
                             f"model's packed request fields (255 banks, 2**24 rows, 2**15 columns)")
        mp = self.mapping
        sh = lambda f: np.uint64(mp.shifts[f])  # noqa: E731
        mk = lambda f: np.uint64((1 << mp.bits[f]) - 1)  # noqa: E731
        self._fields = (sh("ra"), mk("ra"), sh("bg"), mk("bg"), sh("ba"), mk("ba"), sh("ro"), mk("ro"),
                        sh("co"), mk("co"), np.int64(t.bankgroups), np.int64(t.banks_per_group))
        R = t.ranks
        self.ref_first = np.array([t.tREFI + r * t.tREFI // R for r in range(R)], np.int64)

    def _workspace(self, n: int) -> tuple:
        """Per-request scratch arrays kept between runs (the packed requests and the kernel's burst,
        done and merge-leader arrays): a run reuses the pages of the previous one instead of
        allocating and faulting in ~7 bytes x 2 per request again."""
        ws = getattr(self, "_ws", None)
        if ws is None or len(ws[0]) < n:
            m = max(n, 1024)
            ws = self._ws = (np.empty(m, np.int64), np.empty(m, np.int16), np.empty(m, np.uint8),
                             np.empty(m, np.int32))
        return ws

    def warmup(self) -> None:
        """Compile (or load from the on-disk cache) the kernel, so that timing excludes it."""
        self.run(np.zeros(2, np.uint64), np.array([False, True]), record_commands=True)

    # -------------------------------------------------------------------------------------------
    def run(self, addr, is_write=None, cycle=None, *, record_commands: bool = False, slots=None) -> ModelResult:
        """Time a request stream: ``addr`` byte addresses, ``is_write`` flags, ``cycle`` earliest
        acceptance cycles (all optional but ``addr``).  ``slots`` (with ``max_reads_in_flight``):
        an accumulator id per request (``< 0``: none); a read retires no earlier than
        ``recurrence`` cycles after the previous read with the same id."""
        t = self.t
        t_start = time.perf_counter()
        addr = np.asarray(addr)
        n = len(addr)

        def per_request(v, dtype):
            v = np.asarray(v, dtype)
            return v if v.shape == (n,) else np.broadcast_to(v, (n,))

        is_write = np.zeros(n, bool) if is_write is None else per_request(is_write, bool)
        cycle = np.zeros(n, np.int64) if cycle is None else per_request(cycle, np.int64)
        # uint64 addresses are checked inside the decode pass; anything else (and any failure)
        # goes through AddressMapping.check, which raises ValueError naming the first bad address
        a = np.ascontiguousarray(addr) if addr.dtype == np.uint64 and addr.ndim == 1 else self.mapping.check(addr)
        ws = self._workspace(n)
        packed, bad = _decode_packed(a, ws[0], np.uint64(self.mapping.capacity), t.ranks, *self._fields)
        if bad >= 0:
            self.mapping.check(addr)
            raise AssertionError(f"address {hex(int(a[bad]))} at index {bad} failed the decode's checks only")
        srt = None
        if n and not _nondecreasing(cycle):  # requests enter in eligibility order (stable)
            srt = np.argsort(cycle, kind="stable")
            a, packed, is_write, cycle = a[srt], packed[srt], is_write[srt], cycle[srt]
        if n and cycle[0] < 0:
            raise ValueError(f"negative cycle stamp {int(cycle[0])}")
        if self.merge_duplicates and n > 1:
            # previous request to the same 64 B address (for merging across issued reads)
            prev_same = np.full(n, -1, np.int64)
            o = np.argsort(a, kind="stable")
            same = a[o][1:] == a[o][:-1]
            prev_same[o[1:][same]] = o[:-1][same]
        else:
            prev_same = np.empty(0, np.int64)   # the kernel finds same-address requests in its queue
        k = t.bursts_per_request
        win = self.max_reads_in_flight or 0
        ret_dep = np.empty(0, np.int64)
        if win:
            rd = ~np.asarray(is_write, bool)
            rd_idx = np.flatnonzero(rd).astype(np.int64)
            rd_pos = np.where(rd, np.cumsum(rd) - 1, -1).astype(np.int64)
            if slots is not None and self.recurrence > 0:
                sl = np.broadcast_to(np.asarray(slots, np.int64), (n,))
                if srt is not None:
                    sl = sl[srt]
                sr = sl[rd_idx]                       # slot of each read, in read order
                ret_dep = np.full(sr.size, -1, np.int64)
                o = np.argsort(sr, kind="stable")
                same = (sr[o][1:] == sr[o][:-1]) & (sr[o][1:] >= 0)
                ret_dep[o[1:][same]] = o[:-1][same]
        else:
            rd_idx = rd_pos = np.empty(0, np.int64)
        cap = n * (k + 2) + 256 if record_commands else 0
        wr8 = np.ascontiguousarray(is_write, np.uint8)
        # writable, contiguous int64 (one compiled signature for every caller; read-only views are copied)
        st = cycle if (cycle.flags.writeable and cycle.flags.c_contiguous) else np.array(cycle, np.int64)
        while True:
            buf = np.zeros((cap, 7), np.int64)
            G, BPG = t.bankgroups, t.banks_per_group
            out = _run_kernel(packed, wr8, st, prev_same,
                              self.queue, t.ranks, G, BPG, k, t.burst_length, self.GAPB, self.GAPR, self.RW, self.FAWM,
                              self.faw_n, self.faw_w, t.tREFI, self.ref_first,
                              t.CL + t.BL2, t.CWL + t.BL2, t.CWL, self.merge_duplicates, buf,
                              win, self.retire_latency, rd_pos, rd_idx, ret_dep, self.recurrence, *ws[1:])
            compl, ncmd, overflow, acts, refs, merged, first, end, err, steps, full = out
            if not overflow:
                break
            cap *= 2
        if err == 2:
            raise RuntimeError(f"fast DRAM model: a request stayed queued while {(1 << _AGE_BITS) - 1} younger "
                               f"requests passed it, beyond the int32 scheduling keys' age field; replay this "
                               f"trace with --model rtl or a smaller queue (now {self.queue})")
        if err:
            raise RuntimeError("fast DRAM model made no progress (controller deadlock) - a model bug")
        if srt is not None:
            tmp = np.empty_like(compl)
            tmp[srt] = compl
            compl = tmp
        cmds = None
        if record_commands:
            b = buf[:ncmd]
            cmds = [(int(c), CMD_NAMES[int(k_)], int(r), int(g), int(bb), int(ro), int(co))
                    for c, k_, r, g, bb, ro, co in b.tolist()]
        wall = time.perf_counter() - t_start
        nw = int(np.count_nonzero(is_write))
        nbytes = n * REQUEST_BYTES
        span = int(max(0, end - first)) if n else 0
        return ModelResult(cycles=span, reads=n - nw, writes=nw, bytes=nbytes,
                           GBps=(nbytes / (span * t.tCK_ns)) if span else 0.0, acts=int(acts),
                           row_hits=max(0, int(n - merged - acts)), refreshes=int(refs),
                           requests_per_second=n / wall if wall > 0 else float("inf"), wall_s=wall,
                           merged=int(merged), steps=int(steps), full_scans=int(full),
                           commands=cmds, completion=compl)


def simulate(addr, is_write=None, cycle=None, *, t: DRAMTiming, mapping="rochrababgco", queue: int = 32,
             merge_duplicates: bool = False, record_commands: bool = False,
             max_reads_in_flight: int | None = None) -> ModelResult:
    """Convenience wrapper: ``FastDRAMModel(t, mapping, queue, merge_duplicates, max_reads_in_flight).run(...)``."""
    return FastDRAMModel(t, mapping, queue, merge_duplicates, max_reads_in_flight).run(
        addr, is_write, cycle, record_commands=record_commands)
