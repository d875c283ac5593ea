"""DRAM device model and protocol checker for the bank-controller testbenches.

Two layers:

* :class:`ProtocolChecker` — pure Python, no cocotb: checks each command *as it is issued*
  against every rule of :func:`~pimcast.hdl.dram.timing.timing_rules` /
  :func:`~pimcast.hdl.dram.timing.window_rules` and the bank state rules
  (``ACT_to_open_bank``, ``CAS_to_closed_bank``, ``CAS_wrong_row``, ``REF_with_open_bank``,
  ``cycle_order``, ``address_range``) — the same semantics as the reference
  :func:`~pimcast.hdl.dram.timing.check_sequence`, incrementally (the property test in
  ``tests/test_dram_checker.py`` holds the two to the same answers). Each
  :class:`ProtocolViolation` names the cycle, the rule and the addresses of both commands.
* :class:`DRAMDevice` — the cocotb side: samples the controller's command port every cycle,
  feeds the checker, keeps per-bank row state and a sparse data store of one burst per column
  address (64 B on DDR4 x64 BL8, 32 B on an HBM2 pseudo-channel with BL4, where a 64 B request
  is two RD/WR at consecutive column addresses ``(co * 2 + b) * BL``), captures write data
  ``CWL`` cycles after each WR and returns read data ``CL + BL/2`` cycles after each RD (one
  ``dq`` beat per burst; BL4 occupies the bus 2 tCK).
  It is driven from the testbench's single clocked loop (``drive`` just after the rising edge,
  ``sample`` in the read-only phase) so that the per-cycle Python work stays small.

Data never written reads as :func:`initial_data` of its address (the low ``burst_bytes`` of it),
so a scoreboard can predict every read (:func:`initial_request_data` assembles a 64 B request).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from pimcast.hdl.dram.timing import (CAS, Cmd, DRAMTiming, Rule, Scope, Violation, timing_rules,
                                     window_rules)

__all__ = ["ProtocolViolation", "ProtocolChecker", "ProtocolError", "DRAMDevice", "initial_data",
           "initial_request_data", "check_incremental"]

_NEG = -(1 << 62)
MASK512 = (1 << 512) - 1


def initial_data(rank: int, bg: int, bank: int, row: int, col: int) -> int:
    """Contents of a never-written 64 B burst: a fixed hash of its address (512 bits)."""
    seed = ((rank * 16 + bg) * 16 + bank) * (1 << 40) + row * (1 << 16) + col + 1
    out = 0
    x = seed
    for _ in range(8):
        x = (x * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & ((1 << 64) - 1)
        out = (out << 64) | (x ^ (x >> 29))
    return out & MASK512


def initial_request_data(t: DRAMTiming, rank: int, bg: int, bank: int, row: int, co: int) -> int:
    """Never-written contents of the 64 B request in column ``co`` (64 B units): its
    ``k = t.bursts_per_request`` bursts at device columns ``(co * k + b) * BL``, burst ``b`` in
    bits ``[b * burst_bits, (b + 1) * burst_bits)`` (byte 0 in bits 7:0). For DDR4 (``k = 1``)
    this is ``initial_data(rank, bg, bank, row, co * BL)``."""
    k, bits = t.bursts_per_request, t.burst_bytes * 8
    mask = (1 << bits) - 1
    out = 0
    for b in range(k):
        out |= (initial_data(rank, bg, bank, row, (co * k + b) * t.burst_length) & mask) << (b * bits)
    return out


def _fmt(tup) -> str:
    cyc, cmd, rk, bg, bk, row, col = tup
    s = f"{cmd}@{cyc} (rank {rk}, bg {bg}, bank {bk}"
    if row is not None and row >= 0:
        s += f", row {row}"
    if col is not None and col >= 0:
        s += f", col {col}"
    return s + ")"


@dataclass(frozen=True)
class ProtocolViolation(Violation):
    """A :class:`~pimcast.hdl.dram.timing.Violation` that also names the earlier command."""
    prev: tuple | None = None

    def __str__(self) -> str:
        s = f"cycle {self.cycle}: rule {self.rule}: {_fmt(self.command)}"
        if self.prev is not None:
            s += f" after {_fmt(self.prev)}"
        return s + f": {self.detail}"


class ProtocolError(AssertionError):
    """Raised by :class:`DRAMDevice` (fail-fast mode) on the first violation."""


class ProtocolChecker:
    """Incremental protocol checker: call :meth:`issue` for each command in issue order.

    Parameters
    ----------
    t : DRAMTiming
        Preset; the rules come from :func:`timing_rules` / :func:`window_rules`.

    Per command the cost is one scope lookup per applicable rule (latest earlier command of
    each kind is kept per bank, bank group, rank and channel).
    """

    def __init__(self, t: DRAMTiming):
        self.t = t
        self.rules_by_next: dict[Cmd, list[Rule]] = {c: [] for c in Cmd}
        for r in timing_rules(t):
            self.rules_by_next[r.next].append(r)
        self.wrules = window_rules(t)
        R, G, B = t.ranks, t.bankgroups, t.banks_per_group
        self.R, self.G, self.B = R, G, B
        none = (_NEG, None)
        self.last_bank = {c: [[[none] * B for _ in range(G)] for _ in range(R)] for c in Cmd}
        self.last_bg = {c: [[none] * G for _ in range(R)] for c in Cmd}
        self.last_rank = {c: [none] * R for c in Cmd}
        self.last_ch = {c: none for c in Cmd}
        self.open_row: list[list[list[int | None]]] = [[[None] * B for _ in range(G)] for _ in range(R)]
        self.windows = {(w.name, r): [] for w in self.wrules for r in range(R)}
        self.index = 0
        self.prev_cycle = _NEG
        self.violations: list[ProtocolViolation] = []
        self.counts = {c: 0 for c in Cmd}

    # -----------------------------------------------------------------------------------------
    def _latest(self, prev: Cmd, scope: Scope, rk: int, bg: int, bk: int):
        if scope is Scope.SAME_BANK:
            return self.last_bank[prev][rk][bg][bk]
        if scope is Scope.SAME_BANKGROUP:
            return self.last_bg[prev][rk][bg]
        if scope is Scope.DIFF_BANKGROUP:
            row = self.last_bg[prev][rk]
            return max((row[g] for g in range(self.G) if g != bg), key=lambda x: x[0], default=(_NEG, None))
        if scope is Scope.SAME_RANK:
            return self.last_rank[prev][rk]
        if scope is Scope.DIFF_RANK:
            lr = self.last_rank[prev]
            return max((lr[q] for q in range(self.R) if q != rk), key=lambda x: x[0], default=(_NEG, None))
        return self.last_ch[prev]

    def issue(self, cycle: int, cmd, rank: int, bg: int, bank: int, row: int = -1, col: int = -1
              ) -> list[ProtocolViolation]:
        """Check one command and update the state; return its violations (also appended to
        :attr:`violations`)."""
        cmd = cmd if isinstance(cmd, Cmd) else Cmd(str(cmd).upper())
        cyc, rk, bg, bk = int(cycle), int(rank), int(bg), int(bank)
        row, col = int(row), int(col)
        tup = (cyc, cmd.value, rk, bg, bk, row, col)
        i = self.index
        self.index += 1
        out: list[ProtocolViolation] = []

        def report(rule, detail, prev=None):
            out.append(ProtocolViolation(i, cyc, rule, tup, detail, prev))

        if cyc < self.prev_cycle:
            report("cycle_order", f"cycle {cyc} before previous command's cycle {self.prev_cycle}")
        self.prev_cycle = max(self.prev_cycle, cyc)
        if not (0 <= rk < self.R and 0 <= bg < self.G and 0 <= bk < self.B):
            report("address_range", f"rank/bankgroup/bank ({rk},{bg},{bk}) out of range")
            self.violations += out
            return out
        for r in self.rules_by_next[cmd]:
            p, ptup = self._latest(r.prev, r.scope, rk, bg, bk)
            if p != _NEG and cyc - p < r.gap:
                report(r.name, f"{r.prev.value}@{p} -> {cmd.value}@{cyc}: gap {cyc - p} < {r.gap} "
                               f"({r.scope.value})", ptup)
        for w in self.wrules:
            if w.cmd is cmd:
                hist = self.windows[(w.name, rk)]
                if len(hist) >= w.count and cyc - hist[-w.count][0] < w.window:
                    first = hist[-w.count]
                    report(w.name, f"{w.count + 1} {cmd.value}s in {cyc - first[0] + 1} cycles "
                                   f"(first @{first[0]}), window {w.window}", first[1])
                hist.append((cyc, tup))
                if len(hist) > w.count:
                    del hist[0]
        orow = self.open_row[rk]
        if cmd is Cmd.ACT:
            if orow[bg][bk] is not None:
                report("ACT_to_open_bank", f"bank open with row {orow[bg][bk]}")
            orow[bg][bk] = row
        elif cmd in CAS:
            o = orow[bg][bk]
            if o is None:
                report("CAS_to_closed_bank", "bank is precharged")
            elif o != row:
                report("CAS_wrong_row", f"open row is {o}, not {row}")
            if cmd in (Cmd.RDA, Cmd.WRA):
                orow[bg][bk] = None
        elif cmd is Cmd.PRE:
            orow[bg][bk] = None
        elif cmd is Cmd.PREA:
            for g in range(self.G):
                for b in range(self.B):
                    orow[g][b] = None
        elif cmd is Cmd.REF:
            opened = [(g, b) for g in range(self.G) for b in range(self.B) if orow[g][b] is not None]
            if opened:
                report("REF_with_open_bank", f"open banks (bankgroup, bank): {opened}")
        ent = (cyc, tup)
        lb = self.last_bank[cmd][rk][bg]
        if cyc >= lb[bk][0]:
            lb[bk] = ent
        if cyc >= self.last_bg[cmd][rk][bg][0]:
            self.last_bg[cmd][rk][bg] = ent
        if cyc >= self.last_rank[cmd][rk][0]:
            self.last_rank[cmd][rk] = ent
        if cyc >= self.last_ch[cmd][0]:
            self.last_ch[cmd] = ent
        self.counts[cmd] += 1
        self.violations += out
        return out

    def is_open(self, rank: int, bg: int, bank: int) -> int | None:
        """The open row of a bank, or ``None``."""
        return self.open_row[rank][bg][bank]


def check_incremental(commands: Iterable[Sequence], t: DRAMTiming) -> list[ProtocolViolation]:
    """Run a whole command list through a fresh :class:`ProtocolChecker` (same input format as
    :func:`~pimcast.hdl.dram.timing.check_sequence`)."""
    chk = ProtocolChecker(t)
    for c in commands:
        chk.issue(c[0], c[1], c[2], c[3], c[4], c[5] if len(c) > 5 else -1, c[6] if len(c) > 6 else -1)
    return chk.violations


# ---------------------------------------------------------------------------------------------
# cocotb device model


class DRAMDevice:
    """Behavioural DRAM on the controller's DRAM-side ports (``cmd``, ``dq_w``, ``dq_r``).

    Parameters
    ----------
    dut : cocotb handle of the ``BankController`` top.
    t : DRAMTiming
    fail_fast : bool, default True
        Raise :class:`ProtocolError` at the first violation (else collect them).

    Call :meth:`drive` once per cycle just after the rising edge and :meth:`sample` in that
    cycle's read-only phase, with the same cycle number. ``commands`` records every command as
    ``(cycle, cmd, rank, bg, bank, row, col)``; ``store`` maps ``(rank, bg, bank, row, col)``
    to one burst of data (``burst_bytes * 8`` bits).
    """

    def __init__(self, dut, t: DRAMTiming, fail_fast: bool = True, record: bool = True):
        from pimcast.hdl.dram.cmdport import KIND_TO_CMD

        self.dut = dut
        self.t = t
        self.kind_to_cmd = KIND_TO_CMD
        self.checker = ProtocolChecker(t)
        self.fail_fast = fail_fast
        self.record = record
        self.commands: list[tuple] = []
        self.store: dict[tuple, int] = {}
        self.read_returns: dict[int, int] = {}     # cycle -> data to drive on dq_r
        self.write_due: dict[int, tuple] = {}      # cycle -> address key of the WR
        self.errors: list[str] = []
        self._rvalid = False
        self.h_cv, self.h_kind = dut.cmd__valid, dut.cmd__kind
        self.h_rank, self.h_bg, self.h_bank = dut.cmd__rank, dut.cmd__bg, dut.cmd__bank
        self.h_row, self.h_col = dut.cmd__row, dut.cmd__col
        self.h_wv, self.h_wd = dut.dq_w__valid, dut.dq_w__data
        self.h_rv, self.h_rd = dut.dq_r__valid, dut.dq_r__data
        self.rd_latency = t.CL + t.BL2
        self.wr_latency = t.CWL
        self.burst_mask = (1 << (t.burst_bytes * 8)) - 1

    def reset(self) -> None:
        self.h_rv.value = 0
        self.h_rd.value = 0

    def _fail(self, msg: str) -> None:
        self.errors.append(msg)
        if self.fail_fast:
            raise ProtocolError(msg)

    def drive(self, cycle: int) -> None:
        data = self.read_returns.pop(cycle, None)
        if data is not None:
            self.h_rd.value = data
            self.h_rv.value = 1
            self._rvalid = True
        elif self._rvalid:
            self.h_rv.value = 0
            self._rvalid = False

    def sample(self, cycle: int):
        """Sample the command port and write data; return the command tuple or ``None``."""
        wkey = self.write_due.pop(cycle, None)
        if self.h_wv.value == 1:
            if wkey is None:
                self._fail(f"cycle {cycle}: write data on dq_w with no WR {self.wr_latency} cycles earlier")
            else:
                self.store[wkey] = self.h_wd.value.to_unsigned()
        elif wkey is not None:
            self._fail(f"cycle {cycle}: no write data on dq_w for the WR at cycle {cycle - self.wr_latency} "
                       f"(rank/bg/bank/row/col {wkey})")
        if self.h_cv.value != 1:
            return None
        cmd = self.kind_to_cmd[int(self.h_kind.value)]
        rk, bg, bk = int(self.h_rank.value), int(self.h_bg.value), int(self.h_bank.value)
        if cmd in (Cmd.PREA, Cmd.REF):
            bg = bk = 0
            row = col = -1
        elif cmd is Cmd.PRE:
            row = col = -1
        elif cmd is Cmd.ACT:
            row, col = int(self.h_row.value), -1
        else:
            row, col = int(self.h_row.value), int(self.h_col.value)
        tup = (cycle, cmd.value, rk, bg, bk, row, col)
        if self.record:
            self.commands.append(tup)
        bad = self.checker.issue(cycle, cmd, rk, bg, bk, row, col)
        if bad:
            self._fail("protocol violation: " + "; ".join(str(v) for v in bad))
        if cmd in (Cmd.RD, Cmd.RDA):
            key = (rk, bg, bk, row, col)
            data = self.store.get(key)
            if data is None:
                data = initial_data(*key) & self.burst_mask
            self.read_returns[cycle + self.rd_latency] = data
        elif cmd in (Cmd.WR, Cmd.WRA):
            self.write_due[cycle + self.wr_latency] = (rk, bg, bk, row, col)
        return tup
