"""DRAM timing, defined once: presets, the timing-rule table, a reference checker, address mapping.

This module is the single description of DRAM timing in pimcast. The RTL bank controller
(one counter per :class:`Rule`), the fast timing model (:mod:`pimcast.host.dram_model`) and the
cocotb protocol checker (which wraps :func:`check_sequence`) all derive their numbers from
:func:`timing_rules` applied to a :class:`DRAMTiming` loaded by :func:`load_preset`.

Conventions
-----------
* One cycle = one tCK. All timing values are integers in tCK.
* ``BL2 = burst_length // 2`` is the number of data-bus cycles of one burst (DDR).
* A *request* (transaction) is 64 B. Its column bursts are ``64 // burst_bytes`` consecutive
  column commands (1 for a 64-bit DDR4 channel with BL8, 2 for an HBM2 pseudo-channel with BL4).
* Commands are tuples ``(cycle, cmd, rank, bankgroup, bank, row, col)``; ``cmd`` is a :class:`Cmd`
  or its name. ``row``/``col`` are ignored where meaningless (``-1`` by convention).

Derived gaps (documented choices)
---------------------------------
* write -> precharge (same bank): ``CWL + BL2 + tWR``.
* write -> read (same rank): ``CWL + BL2 + tWTR_S`` (other bank group) / ``tWTR_L`` (same group).
* read -> write (any rank, data-bus turnaround): ``CL + BL2 + 2 - CWL``.
* rank-to-rank switch: read->read and write->write ``BL2 + tRTRS``; write->read
  ``max(1, CWL + BL2 + tRTRS - CL)``; read->write as above (the ``+2`` already covers tRTRS = 2).
  tRTRS = 2 in the shipped presets (Ramulator 2's value).
* auto-precharge: RDA behaves as RD followed by an internal precharge at ``RDA + tRTP``, so
  RDA -> ACT (same bank) is ``tRTP + tRP``; WRA -> ACT is ``CWL + BL2 + tWR + tRP``; the same gaps
  apply before a REF of that rank.
* refresh: REF -> any command of the rank ``tRFC``; PRE/PREA -> REF ``tRP``.
  REF additionally needs every bank of its rank precharged (a *state* rule, checked by
  :func:`check_sequence`, not a gap).
* command bus: one command per cycle per channel (CHANNEL-scope rule ``ANY -> ANY`` gap 1).
* tFAW is a :class:`WindowRule`: at most 4 ACTs of one rank in any ``tFAW`` window, i.e.
  ``ACT[n] - ACT[n-4] >= tFAW``.

Data path (``DRAMTiming.data_path``)
------------------------------------
``"channel"`` (every preset's default): read and write data cross the rank's DQ pins and the
channel's data bus, so column commands of different bank groups are ``tCCD_S`` (= BL/2) apart and
reads of different ranks need the rank switch.  ``"bankgroup"`` (bank-group-level PIM, TRiM
style: :meth:`DRAMTiming.with_data_path`): read data stays in the bank group, consumed by that
bank group's unit, so reads share no data bus: the read -> read ``tCCD_S`` (other bank group)
and ``rank_switch_rd`` (other rank) gaps are dropped and only the command bus (1 cycle) and
``tCCD_L`` (the bank group's own column cycle) space reads.  Every row and activation rule
(tRCD, tRAS, tRC, tRP, tRRD_S/L, tFAW: power delivery), refresh, and every write rule and
read/write turnaround stay as on the shared bus (conservative for PIM write-backs, which TRiM
also routes through the bank group).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pimcast.config import ConfigError, load_yaml, resolve

__all__ = [
    "ConfigError", "DRAMTiming", "load_preset", "Cmd", "Scope", "Rule", "WindowRule",
    "timing_rules", "window_rules", "rule_gap_table", "Violation", "check_sequence",
    "AddressMapping", "REQUEST_BYTES", "DATA_PATHS",
]

REQUEST_BYTES = 64
#: values of :attr:`DRAMTiming.data_path`
DATA_PATHS = ("channel", "bankgroup")

# ---------------------------------------------------------------------------------------------
# presets

_ORG_FIELDS = ("ranks", "max_ranks", "bankgroups", "banks_per_group", "rows", "columns",
               "device_width", "bus_width", "burst_length")
_TIMING_FIELDS = ("tCK_ns", "CL", "CWL", "tRCD", "tRCDWR", "tRP", "tRAS", "tRC", "tCCD_S", "tCCD_L",
                  "tRRD_S", "tRRD_L", "tFAW", "tWR", "tRTP", "tWTR_S", "tWTR_L", "tRFC", "tREFI",
                  "tRTRS")
_TOP_FIELDS = ("name", "standard", "organisation", "timing", "description")


@dataclass(frozen=True)
class DRAMTiming:
    """One DRAM channel: organisation and timing in clock cycles (tCK). Immutable.

    Build it with :func:`load_preset`; the constructor does not validate.
    """
    name: str
    standard: str
    ranks: int
    max_ranks: int
    bankgroups: int
    banks_per_group: int
    rows: int
    columns: int
    device_width: int
    bus_width: int
    burst_length: int
    tCK_ns: float
    CL: int
    CWL: int
    tRCD: int
    tRCDWR: int
    tRP: int
    tRAS: int
    tRC: int
    tCCD_S: int
    tCCD_L: int
    tRRD_S: int
    tRRD_L: int
    tFAW: int
    tWR: int
    tRTP: int
    tWTR_S: int
    tWTR_L: int
    tRFC: int
    tREFI: int
    tRTRS: int
    #: where read data goes: ``"channel"`` (the DQ bus, default) or ``"bankgroup"`` (bank-group-local
    #: PIM units; see the module docstring "Data path")
    data_path: str = "channel"

    # --- derived quantities -------------------------------------------------------------
    @property
    def BL2(self) -> int:
        """Data-bus cycles of one burst."""
        return self.burst_length // 2

    @property
    def banks_per_rank(self) -> int:
        return self.bankgroups * self.banks_per_group

    @property
    def n_banks(self) -> int:
        """Banks in the channel (all ranks)."""
        return self.ranks * self.banks_per_rank

    @property
    def row_bytes(self) -> int:
        """Bytes of one row across the rank (page size seen by the channel)."""
        return self.columns * self.bus_width // 8

    @property
    def burst_bytes(self) -> int:
        return self.bus_width // 8 * self.burst_length

    @property
    def bursts_per_request(self) -> int:
        return REQUEST_BYTES // self.burst_bytes

    @property
    def requests_per_row(self) -> int:
        return self.row_bytes // REQUEST_BYTES

    @property
    def capacity_bytes(self) -> int:
        return self.ranks * self.banks_per_rank * self.rows * self.row_bytes

    @property
    def peak_GBps(self) -> float:
        return self.bus_width / 8 * 2 / self.tCK_ns

    @property
    def rd_to_wr(self) -> int:
        return self.CL + self.BL2 + 2 - self.CWL

    @property
    def wr_to_pre(self) -> int:
        return self.CWL + self.BL2 + self.tWR

    def wr_to_rd(self, same_bankgroup: bool) -> int:
        return self.CWL + self.BL2 + (self.tWTR_L if same_bankgroup else self.tWTR_S)

    @property
    def wr_to_rd_rank(self) -> int:
        return max(1, self.CWL + self.BL2 + self.tRTRS - self.CL)

    def with_ranks(self, ranks: int) -> "DRAMTiming":
        _check_ranks(ranks, self.max_ranks, "ranks")
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["ranks"] = ranks
        return DRAMTiming(**d)

    def with_data_path(self, data_path: str) -> "DRAMTiming":
        """This preset with read data going to ``data_path`` (``"channel"`` or ``"bankgroup"``,
        see the module docstring "Data path"); raises :class:`ConfigError` naming a bad value."""
        if data_path not in DATA_PATHS:
            raise ConfigError(f"data_path must be one of {', '.join(DATA_PATHS)}, not {data_path!r}")
        return replace(self, data_path=data_path)


def _check_ranks(ranks, max_ranks, where):
    if isinstance(ranks, bool) or not isinstance(ranks, int) or not 1 <= ranks <= max_ranks:
        raise ConfigError(f"{where}: ranks must be an integer in 1..{max_ranks}, not {ranks!r}")


def load_preset(name_or_path: str | Path, ranks: int | None = None) -> DRAMTiming:
    """Load a DRAM preset (``configs/dram/<name>.yaml`` or a path) and validate it strictly.

    Raises :class:`ConfigError` (a ``ValueError``) naming the field for unknown or missing fields,
    non-integer or non-positive values, and impossible combinations (tRC < tRAS + tRP,
    tCCD_L < tCCD_S, tRRD_L < tRRD_S, tWTR_L < tWTR_S, tFAW < 4*tRRD_S, tREFI <= tRFC, odd or zero
    burst length, non-power-of-two geometry, a burst that does not divide 64 B, ranks outside
    1..max_ranks).
    """
    path = resolve("dram", name_or_path)
    data = load_yaml(path)
    where = str(path)
    for k in data:
        if k not in _TOP_FIELDS:
            raise ConfigError(f"{where}: unknown field {k!r} (allowed: {', '.join(_TOP_FIELDS)})")
    for k in ("name", "standard", "organisation", "timing"):
        if k not in data:
            raise ConfigError(f"{where}: missing field {k!r}")
    vals: dict = {"name": str(data["name"]), "standard": str(data["standard"])}
    for sec, names in (("organisation", _ORG_FIELDS), ("timing", _TIMING_FIELDS)):
        body = data[sec]
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: {sec!r} must be a mapping")
        for k in body:
            if k not in names:
                raise ConfigError(f"{where}: unknown field {sec}.{k!r}")
        for k in names:
            if k not in body:
                raise ConfigError(f"{where}: missing field {sec}.{k}")
            v = body[k]
            if k == "tCK_ns":
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                    raise ConfigError(f"{where}: field {sec}.{k} must be a positive number, not {v!r}")
                v = float(v)
            else:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ConfigError(f"{where}: field {sec}.{k} must be an integer, not {v!r}")
                if v <= 0:
                    raise ConfigError(f"{where}: field {sec}.{k} must be positive, not {v}")
            vals[k] = v
    t = DRAMTiming(**vals)
    _validate(t, where)
    if ranks is not None:
        _check_ranks(ranks, t.max_ranks, where)
        t = t.with_ranks(ranks)
    return t


def _validate(t: DRAMTiming, where: str) -> None:
    def bad(field, msg):
        raise ConfigError(f"{where}: field {field}: {msg}")

    if t.burst_length % 2:
        bad("burst_length", f"must be even (DDR), not {t.burst_length}")
    for f in ("bankgroups", "banks_per_group", "rows", "columns"):
        v = getattr(t, f)
        if v & (v - 1):
            bad(f, f"must be a power of two, not {v}")
    if t.bus_width % t.device_width:
        bad("bus_width", f"{t.bus_width} is not a multiple of device_width {t.device_width}")
    if REQUEST_BYTES % t.burst_bytes:
        bad("burst_length", f"a burst of {t.burst_bytes} B does not divide a {REQUEST_BYTES} B request")
    if t.row_bytes < REQUEST_BYTES:
        bad("columns", f"row of {t.row_bytes} B is smaller than a {REQUEST_BYTES} B request")
    _check_ranks(t.ranks, t.max_ranks, f"{where}: field organisation.ranks")
    if t.tRC < t.tRAS + t.tRP:
        bad("tRC", f"tRC={t.tRC} < tRAS + tRP = {t.tRAS + t.tRP}")
    if t.tRAS < t.tRCD:
        bad("tRAS", f"tRAS={t.tRAS} < tRCD={t.tRCD}")
    for a, b in (("tCCD_L", "tCCD_S"), ("tRRD_L", "tRRD_S"), ("tWTR_L", "tWTR_S")):
        if getattr(t, a) < getattr(t, b):
            bad(a, f"{a}={getattr(t, a)} < {b}={getattr(t, b)}")
    if t.tCCD_S < t.BL2:
        bad("tCCD_S", f"tCCD_S={t.tCCD_S} < burst cycles BL/2={t.BL2}")
    if t.tFAW < 4 * t.tRRD_S:
        bad("tFAW", f"tFAW={t.tFAW} < 4*tRRD_S = {4 * t.tRRD_S}")
    if t.tREFI <= t.tRFC:
        bad("tREFI", f"tREFI={t.tREFI} <= tRFC={t.tRFC}")
    if t.rd_to_wr < 1:
        bad("CWL", f"read->write turnaround CL + BL/2 + 2 - CWL = {t.rd_to_wr} < 1")


# ---------------------------------------------------------------------------------------------
# commands, scopes, rules

class Cmd(enum.Enum):
    ACT = "ACT"
    RD = "RD"
    RDA = "RDA"
    WR = "WR"
    WRA = "WRA"
    PRE = "PRE"
    PREA = "PREA"
    REF = "REF"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


READS = (Cmd.RD, Cmd.RDA)
WRITES = (Cmd.WR, Cmd.WRA)
CAS = READS + WRITES
ALL_CMDS = tuple(Cmd)


class Scope(enum.Enum):
    """Where the previous command must be, relative to the next one, for a rule to apply."""
    SAME_BANK = "same_bank"              # same rank, bank group and bank
    SAME_BANKGROUP = "same_bankgroup"    # same rank and bank group (any bank, incl. the same)
    DIFF_BANKGROUP = "diff_bankgroup"    # same rank, another bank group
    SAME_RANK = "same_rank"              # same rank (any bank)
    DIFF_RANK = "diff_rank"              # another rank of the channel
    CHANNEL = "channel"                  # anywhere in the channel


@dataclass(frozen=True)
class Rule:
    """``next`` may issue no earlier than ``gap`` cycles after the latest ``prev`` in ``scope``."""
    prev: Cmd
    next: Cmd
    scope: Scope
    gap: int
    name: str


@dataclass(frozen=True)
class WindowRule:
    """At most ``count`` commands ``cmd`` in any window of ``window`` cycles, per ``scope``."""
    cmd: Cmd
    count: int
    window: int
    scope: Scope
    name: str


def timing_rules(t: DRAMTiming) -> tuple[Rule, ...]:
    """The minimum-gap rules of one channel (see the module docstring for the derived gaps)."""
    R: list[Rule] = []

    def add(prevs, nexts, scope, gap, name):
        for p in (prevs if isinstance(prevs, tuple) else (prevs,)):
            for n in (nexts if isinstance(nexts, tuple) else (nexts,)):
                R.append(Rule(p, n, scope, int(gap), name))

    B, SG, DG, SR, DR, CH = (Scope.SAME_BANK, Scope.SAME_BANKGROUP, Scope.DIFF_BANKGROUP,
                             Scope.SAME_RANK, Scope.DIFF_RANK, Scope.CHANNEL)
    BL2 = t.BL2
    # command bus
    add(ALL_CMDS, ALL_CMDS, CH, 1, "cmd_bus")
    # row commands, same bank
    add(Cmd.ACT, READS, B, t.tRCD, "tRCD")
    add(Cmd.ACT, WRITES, B, t.tRCDWR, "tRCDWR")
    add(Cmd.ACT, Cmd.PRE, B, t.tRAS, "tRAS")
    add(Cmd.ACT, Cmd.PREA, SR, t.tRAS, "tRAS")
    add(Cmd.ACT, Cmd.ACT, B, t.tRC, "tRC")
    add(Cmd.PRE, Cmd.ACT, B, t.tRP, "tRP")
    add(Cmd.PREA, Cmd.ACT, SR, t.tRP, "tRP")
    add(Cmd.RD, (Cmd.PRE,), B, t.tRTP, "tRTP")
    add(Cmd.RD, (Cmd.PREA,), SR, t.tRTP, "tRTP")
    add(Cmd.WR, (Cmd.PRE,), B, t.wr_to_pre, "tWR")
    add(Cmd.WR, (Cmd.PREA,), SR, t.wr_to_pre, "tWR")
    # auto-precharge: implied PRE at RDA + tRTP / WRA + CWL + BL2 + tWR
    add(Cmd.RDA, Cmd.ACT, B, t.tRTP + t.tRP, "RDA_tRTP_tRP")
    add(Cmd.WRA, Cmd.ACT, B, t.wr_to_pre + t.tRP, "WRA_tWR_tRP")
    add(Cmd.RDA, Cmd.REF, SR, t.tRTP + t.tRP, "RDA_tRTP_tRP")
    add(Cmd.WRA, Cmd.REF, SR, t.wr_to_pre + t.tRP, "WRA_tWR_tRP")
    # activations in a rank
    add(Cmd.ACT, Cmd.ACT, SG, t.tRRD_L, "tRRD_L")
    add(Cmd.ACT, Cmd.ACT, DG, t.tRRD_S, "tRRD_S")
    # column commands
    # (a bank-group data path keeps read data off the shared bus: no tCCD_S / rank switch for reads)
    shared_rd_bus = t.data_path != "bankgroup"
    add(READS, READS, SG, t.tCCD_L, "tCCD_L")
    if shared_rd_bus:
        add(READS, READS, DG, t.tCCD_S, "tCCD_S")
    add(WRITES, WRITES, SG, t.tCCD_L, "tCCD_L")
    add(WRITES, WRITES, DG, t.tCCD_S, "tCCD_S")
    add(WRITES, READS, SG, t.wr_to_rd(True), "tWTR_L")
    add(WRITES, READS, DG, t.wr_to_rd(False), "tWTR_S")
    add(READS, WRITES, CH, t.rd_to_wr, "rd_to_wr")
    if shared_rd_bus:
        add(READS, READS, DR, BL2 + t.tRTRS, "rank_switch_rd")
    add(WRITES, WRITES, DR, BL2 + t.tRTRS, "rank_switch_wr")
    add(WRITES, READS, DR, t.wr_to_rd_rank, "rank_switch_wr_rd")
    # refresh
    add(Cmd.REF, ALL_CMDS, SR, t.tRFC, "tRFC")
    add((Cmd.PRE, Cmd.PREA), Cmd.REF, SR, t.tRP, "tRP_REF")
    return tuple(R)


def window_rules(t: DRAMTiming) -> tuple[WindowRule, ...]:
    return (WindowRule(Cmd.ACT, 4, t.tFAW, Scope.SAME_RANK, "tFAW"),)


def rule_gap_table(t: DRAMTiming) -> dict[tuple[Cmd, Cmd, Scope], tuple[int, str]]:
    """``(prev, next, scope) -> (largest gap, rule name)``: the compact form an RTL counter bank uses."""
    out: dict = {}
    for r in timing_rules(t):
        k = (r.prev, r.next, r.scope)
        if k not in out or r.gap > out[k][0]:
            out[k] = (r.gap, r.name)
    return out


# ---------------------------------------------------------------------------------------------
# reference checker

@dataclass(frozen=True)
class Violation:
    index: int          # position of the offending command in the sequence
    cycle: int
    rule: str           # rule name (timing) or state rule name
    command: tuple
    detail: str

    def __str__(self) -> str:
        return f"cycle {self.cycle} (#{self.index}) {self.command}: {self.rule}: {self.detail}"


def _as_cmd(c) -> Cmd:
    return c if isinstance(c, Cmd) else Cmd(str(c).upper())


def check_sequence(commands: Iterable[Sequence], t: DRAMTiming, *, max_violations: int | None = None
                   ) -> list[Violation]:
    """Check a command list against every rule of :func:`timing_rules`/:func:`window_rules` and
    the bank state machine. Pure Python reference, O(commands x rules-per-command).

    ``commands``: ``(cycle, cmd, rank, bankgroup, bank, row, col)`` in issue order (cycles must
    not decrease). State rules: ``ACT_to_open_bank``, ``CAS_to_closed_bank``, ``CAS_wrong_row``,
    ``REF_with_open_bank``, ``cycle_order``, ``address_range``. PRE to a closed bank is a legal NOP.
    """
    nR, nG, nB = t.ranks, t.bankgroups, t.banks_per_group
    rules_by_next: dict[Cmd, list[Rule]] = {c: [] for c in Cmd}
    for r in timing_rules(t):
        rules_by_next[r.next].append(r)
    wrules = window_rules(t)
    NEG = -(1 << 62)
    # last[cmd][rank][bg][bank] = cycle of latest such command
    last = {c: [[[NEG] * nB for _ in range(nG)] for _ in range(nR)] for c in Cmd}
    open_row = [[[None] * nB for _ in range(nG)] for _ in range(nR)]
    windows: dict = {(w.name, r): [] for w in wrules for r in range(nR)}
    out: list[Violation] = []
    prev_cycle = NEG

    def report(i, cyc, rule, tup, detail):
        out.append(Violation(i, cyc, rule, tup, detail))

    for i, c in enumerate(commands):
        cyc, cmd, rk, bg, bk = int(c[0]), _as_cmd(c[1]), int(c[2]), int(c[3]), int(c[4])
        row = int(c[5]) if len(c) > 5 else -1
        tup = (cyc, cmd.value, rk, bg, bk, row, int(c[6]) if len(c) > 6 else -1)
        if max_violations is not None and len(out) >= max_violations:
            break
        if cyc < prev_cycle:
            report(i, cyc, "cycle_order", tup, f"cycle {cyc} before previous command's cycle {prev_cycle}")
        prev_cycle = max(prev_cycle, cyc)
        if not (0 <= rk < nR and 0 <= bg < nG and 0 <= bk < nB):
            report(i, cyc, "address_range", tup, f"rank/bankgroup/bank ({rk},{bg},{bk}) out of range")
            continue
        # timing rules
        for r in rules_by_next[cmd]:
            L = last[r.prev]
            s = r.scope
            if s is Scope.SAME_BANK:
                p = L[rk][bg][bk]
            elif s is Scope.SAME_BANKGROUP:
                p = max(L[rk][bg])
            elif s is Scope.DIFF_BANKGROUP:
                p = max((max(L[rk][g]) for g in range(nG) if g != bg), default=NEG)
            elif s is Scope.SAME_RANK:
                p = max(max(x) for x in L[rk])
            elif s is Scope.DIFF_RANK:
                p = max((max(max(x) for x in L[q]) for q in range(nR) if q != rk), default=NEG)
            else:
                p = max(max(max(x) for x in L[q]) for q in range(nR))
            if p != NEG and cyc - p < r.gap:
                report(i, cyc, r.name, tup,
                       f"{r.prev.value}@{p} -> {cmd.value}@{cyc}: gap {cyc - p} < {r.gap} ({r.scope.value})")
        for w in wrules:
            if w.cmd is cmd:
                hist = windows[(w.name, rk)]
                if len(hist) >= w.count and cyc - hist[-w.count] < w.window:
                    report(i, cyc, w.name, tup,
                           f"{w.count + 1} {cmd.value}s in {cyc - hist[-w.count] + 1} cycles "
                           f"(first @{hist[-w.count]}), window {w.window}")
                hist.append(cyc)
                if len(hist) > w.count:
                    del hist[0]
        # state
        if cmd is Cmd.ACT:
            if open_row[rk][bg][bk] is not None:
                report(i, cyc, "ACT_to_open_bank", tup, f"bank open with row {open_row[rk][bg][bk]}")
            open_row[rk][bg][bk] = row
        elif cmd in CAS:
            o = open_row[rk][bg][bk]
            if o is None:
                report(i, cyc, "CAS_to_closed_bank", tup, "bank is precharged")
            elif o != row:
                report(i, cyc, "CAS_wrong_row", tup, f"open row is {o}, not {row}")
            if cmd in (Cmd.RDA, Cmd.WRA):
                open_row[rk][bg][bk] = None
        elif cmd is Cmd.PRE:
            open_row[rk][bg][bk] = None
        elif cmd is Cmd.PREA:
            for g in range(nG):
                for b in range(nB):
                    open_row[rk][g][b] = None
        elif cmd is Cmd.REF:
            opened = [(g, b) for g in range(nG) for b in range(nB) if open_row[rk][g][b] is not None]
            if opened:
                report(i, cyc, "REF_with_open_bank", tup, f"open banks (bankgroup, bank): {opened}")
        last[cmd][rk][bg][bk] = cyc
    return out


# ---------------------------------------------------------------------------------------------
# address mapping

_MAP_FIELDS = ("ch", "ra", "bg", "ba", "ro", "co")


class AddressMapping:
    """DRAMsim3-style address mapping, e.g. ``"rochrababgco"`` (most significant field first).

    Fields: ``ch`` channel, ``ra`` rank, ``bg`` bank group, ``ba`` bank, ``ro`` row, ``co`` column.
    Addresses are byte addresses of 64 B requests: the low 6 bits are the offset inside a request
    and must be zero; ``co`` counts 64 B requests within a row (``row_bytes / 64`` values).
    ``channels`` (default 1) sizes the ``ch`` field. ``decode`` / ``encode`` are vectorized.
    """

    def __init__(self, scheme: str, t: DRAMTiming, channels: int = 1):
        if not isinstance(scheme, str) or len(scheme) != 12:
            raise ConfigError(f"address mapping {scheme!r}: expected 6 two-letter fields "
                              f"({', '.join(_MAP_FIELDS)}), e.g. 'rochrababgco'")
        parts = [scheme[i:i + 2].lower() for i in range(0, 12, 2)]
        for p in parts:
            if p not in _MAP_FIELDS:
                raise ConfigError(f"address mapping {scheme!r}: unknown field {p!r}")
        for p in parts:
            if parts.count(p) > 1:
                raise ConfigError(f"address mapping {scheme!r}: duplicate field {p!r}")
        if channels < 1 or channels & (channels - 1):
            raise ConfigError(f"channels must be a power of two, not {channels}")
        self.scheme = scheme.lower()
        self.t = t
        self.channels = channels
        sizes = {"ch": channels, "ra": t.ranks, "bg": t.bankgroups, "ba": t.banks_per_group,
                 "ro": t.rows, "co": t.requests_per_row}
        self.bits = {k: int(math.ceil(math.log2(v))) if v > 1 else 0 for k, v in sizes.items()}
        self.sizes = sizes
        self.offset_bits = int(math.log2(REQUEST_BYTES))
        # shift of each field (least significant field last in the string)
        shift = self.offset_bits
        self.shifts: dict[str, int] = {}
        for p in reversed(parts):
            self.shifts[p] = shift
            shift += self.bits[p]
        self.total_bits = shift
        self.capacity = channels * t.capacity_bytes

    def __repr__(self) -> str:
        return f"AddressMapping({self.scheme!r}, {self.t.name}, ranks={self.t.ranks})"

    def check(self, addr) -> np.ndarray:
        """Return ``addr`` as uint64; raise ``ValueError`` naming the first bad value."""
        a = np.asarray(addr)
        if a.dtype.kind not in "iu":
            raise ValueError(f"addresses must be integers, got dtype {a.dtype}")
        if a.dtype.kind == "i" and a.size and a.min() < 0:
            i = int(np.argmin(a))
            raise ValueError(f"negative address {int(a.flat[i])} at index {i}")
        a = a.astype(np.uint64, copy=False)
        bad = (a & np.uint64(REQUEST_BYTES - 1)) != 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"address {hex(int(a.flat[i]))} at index {i} is not aligned to {REQUEST_BYTES} B")
        over = a >= np.uint64(self.capacity)
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise ValueError(f"address {hex(int(a.flat[i]))} at index {i} is beyond the capacity "
                             f"{hex(self.capacity)} ({self.capacity >> 30} GiB)")
        R = self.t.ranks
        if R & (R - 1):  # a non-power-of-two rank count leaves unused rank codes inside the range
            ra = (a >> np.uint64(self.shifts["ra"])) & np.uint64((1 << self.bits["ra"]) - 1)
            bad = ra >= np.uint64(R)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"address {hex(int(a.flat[i]))} at index {i} decodes to rank {int(ra.flat[i])} "
                                 f"under mapping {self.scheme!r}, but the channel has {R} ranks")
        return a

    def decode(self, addr) -> dict[str, np.ndarray]:
        """Vectorized: ``{"ch","ra","bg","ba","ro","co"}`` arrays (int64; ``co`` counts 64 B requests)."""
        a = self.check(addr)
        out = {}
        for f in _MAP_FIELDS:
            mask = np.uint64((1 << self.bits[f]) - 1)
            out[f] = ((a >> np.uint64(self.shifts[f])) & mask).astype(np.int64)
        return out

    def encode(self, ch=0, ra=0, bg=0, ba=0, ro=0, co=0) -> np.ndarray:
        """Inverse of :meth:`decode` (vectorized, broadcasting); raises on out-of-range fields."""
        vals = dict(ch=ch, ra=ra, bg=bg, ba=ba, ro=ro, co=co)
        acc = None
        for f, v in vals.items():
            v = np.asarray(v, dtype=np.int64)
            if v.size and (v.min() < 0 or v.max() >= self.sizes[f]):
                raise ValueError(f"field {f} value out of range 0..{self.sizes[f] - 1}")
            term = v.astype(np.uint64) << np.uint64(self.shifts[f])
            acc = term if acc is None else acc | term
        return np.asarray(acc, dtype=np.uint64)
