"""Periodic all-bank refresh for the bank controller: one small state machine per rank.

Rank ``r`` falls due ``tREFI + r * tREFI // ranks`` cycles after reset (cycle 0 is the first
cycle after reset) and every ``tREFI`` cycles after that (staggered ranks, as in
:mod:`pimcast.host.dram_model`). Once due, the rank is *blocked* (``block[r]``): the scheduler issues no new ACT/RD/WR/PRE to it. The refresher then
issues ``PREA`` as soon as the rank's ``PREA`` timing counters allow (``prea_ok[r]``: tRAS,
tRTP, tWR from the last commands) and ``REF`` when ``ref_ok[r]`` (tRP after the PREA) holds.
Refresh commands take priority over every scheduler command, so refresh is never starved.

Postponement bound (documented, checked by the testbench): a refresh that falls due at cycle
``D`` issues its REF no later than
``D + max(tRAS, CWL + BL/2 + tWR, tRTP) + tRP + 2 * (ranks - 1) + 2`` (the first term is the
longest gap a PREA may have to wait after an ACT/RD/WR; ``2 * (ranks - 1)`` covers command-bus
conflicts with other ranks' refresh commands). The tRFC after the REF is enforced by the
timing counters of :class:`~pimcast.hdl.dram.bankctl.BankController`.
"""
from __future__ import annotations

from amaranth.hdl import Signal

from .cmdport import CmdKind
from .timing import DRAMTiming

__all__ = ["Refresher", "refresh_postpone_bound", "check_refresh_interval"]


def refresh_postpone_bound(t: DRAMTiming) -> int:
    """Upper bound, in cycles, from a refresh falling due to its REF command (see module doc)."""
    return max(t.tRAS, t.wr_to_pre, t.tRTP) + t.tRP + 2 * (t.ranks - 1) + 2


def check_refresh_interval(t: DRAMTiming) -> None:
    """Raise ``ValueError`` when ``tREFI`` cannot hold one postponed refresh plus ``tRFC``."""
    bound = refresh_postpone_bound(t)
    if bound + t.tRFC >= t.tREFI:
        raise ValueError(f"tREFI={t.tREFI} is too short: a refresh may need up to {bound} cycles "
                         f"to issue plus tRFC={t.tRFC}")


class Refresher:
    """Per-rank refresh timers and PREA/REF sequencing.

    A logic generator, not a separate module: :meth:`build` adds its logic to the controller's
    module, so the exported Verilog stays one flat module (what ``pimcast lint`` checks).

    Parameters
    ----------
    t : DRAMTiming
        Supplies ``ranks``, ``tREFI`` (and the postponement bound, which must leave room for
        ``tRFC`` inside one ``tREFI``).

    Members
    -------
    prea_ok : Signal(ranks), input
        Timing counters allow a PREA to rank ``r`` this cycle.
    ref_ok : Signal(ranks), input
        Timing counters allow a REF to rank ``r`` this cycle.
    block : Signal(ranks), output
        Rank ``r`` is due or being refreshed: the scheduler must not use it.
    valid : Signal(1), output
        The refresher issues ``kind`` to ``rank`` this cycle (it always wins arbitration).
    kind : Signal(CmdKind), output
        ``PREA`` or ``REF``.
    rank : Signal(range(ranks)), output

    Raises
    ------
    ValueError
        When ``tREFI`` is too short for one refresh (``bound + tRFC >= tREFI``).
    """

    def __init__(self, t: DRAMTiming):
        check_refresh_interval(t)
        self._t = t
        R = t.ranks
        self.prea_ok = Signal(R, name="ref_prea_ok")
        self.ref_ok = Signal(R, name="ref_ref_ok")
        self.block = Signal(R, name="ref_block")
        self.valid = Signal(name="ref_valid")
        self.kind = Signal(CmdKind, name="ref_kind")
        self.rank = Signal(range(max(2, R)), name="ref_rank")

    def build(self, m) -> None:
        """Add the refresher's logic to module ``m``."""
        t = self._t
        R = t.ranks
        # state per rank: 0 idle, 1 due (wants PREA), 2 precharged (wants REF)
        states = [Signal(range(3), name=f"ref_state{r}") for r in range(R)]
        for r in range(R):
            first = t.tREFI + r * t.tREFI // R
            tm = Signal(range(first + 1), init=first, name=f"refi_timer{r}")
            due = Signal(name=f"ref_due{r}")
            m.d.comb += due.eq(tm == 0)
            with m.If(due):
                m.d.sync += tm.eq(t.tREFI - 1)
            with m.Else():
                m.d.sync += tm.eq(tm - 1)
            m.d.comb += self.block[r].eq(states[r] != 0)
            with m.If(due):
                m.d.sync += states[r].eq(1)

        # one command per cycle: the lowest rank with a ready step wins
        go_prea = [Signal(name=f"ref_go_prea{r}") for r in range(R)]
        go_ref = [Signal(name=f"ref_go_ref{r}") for r in range(R)]
        for r in range(R):
            m.d.comb += [go_prea[r].eq((states[r] == 1) & self.prea_ok[r]),
                         go_ref[r].eq((states[r] == 2) & self.ref_ok[r])]
        m.d.comb += self.kind.eq(CmdKind.PREA)
        for r in range(R):
            ctx = m.If(go_prea[r] | go_ref[r]) if r == 0 else m.Elif(go_prea[r] | go_ref[r])
            with ctx:
                m.d.comb += [self.valid.eq(1), self.rank.eq(r)]
                with m.If(go_prea[r]):
                    m.d.sync += states[r].eq(2)
                with m.Else():
                    m.d.comb += self.kind.eq(CmdKind.REF)
                    m.d.sync += states[r].eq(0)
