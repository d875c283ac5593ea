"""The DRAM-side interface of the bank controller: command kinds and port signatures.

These definitions are shared by :class:`pimcast.hdl.dram.bankctl.BankController`, its
:class:`~pimcast.hdl.dram.refresher.Refresher` and the cocotb DRAM device model
(:mod:`pimcast.sim.dram_device`), which decodes ``cmd__kind`` with :data:`KIND_TO_CMD`.

Conventions
-----------
* The command port is registered: a command decided in cycle ``T`` is on the port in cycle
  ``T + 1``; that cycle is the command's *issue cycle* ``C`` as the DRAM sees it.
* The data ports are one burst wide (``burst_bytes * 8`` bits: 512 for DDR4 x64 BL8, 256 for
  an HBM2 pseudo-channel with BL4); a 64 B request is ``64 // burst_bytes`` bursts, each with
  its own RD/WR.
* Write data for a ``WR`` issued in cycle ``C`` is on ``dq_w`` in cycle ``C + CWL`` (one cycle
  carrying the whole burst; a real PHY would serialise it over BL/2 cycles).
* Read data for a ``RD`` issued in cycle ``C`` is expected on ``dq_r`` in cycle
  ``C + CL + BL/2`` (when the burst has completed), in issue order.
* ``col`` is the device column address of the burst (``(request column x bursts per request +
  burst) x BL``), as in DRAMsim3 dumps.
"""
from __future__ import annotations

from amaranth.lib import enum, wiring
from amaranth.lib.wiring import Out

from .timing import Cmd

__all__ = ["CmdKind", "KIND_TO_CMD", "CMD_TO_KIND", "command_signature", "dq_signature"]


class CmdKind(enum.Enum, shape=3):
    """DRAM command kinds on ``cmd.kind`` (3 bits)."""
    ACT = 0
    RD = 1
    RDA = 2
    WR = 3
    WRA = 4
    PRE = 5
    PREA = 6
    REF = 7


#: ``cmd__kind`` integer -> :class:`pimcast.hdl.dram.timing.Cmd` (for testbenches and checkers).
KIND_TO_CMD: dict[int, Cmd] = {k.value: Cmd[k.name] for k in CmdKind}
CMD_TO_KIND: dict[Cmd, CmdKind] = {Cmd[k.name]: k for k in CmdKind}


def command_signature(rank_bits: int, bg_bits: int, bank_bits: int, row_bits: int,
                      col_bits: int) -> wiring.Signature:
    """Command port (controller -> DRAM, all members ``Out``): ``valid``, ``kind``, ``rank``,
    ``bg``, ``bank``, ``row``, ``col``. Zero-width fields are widened to one bit (tied to 0)."""
    w = lambda n: max(1, n)  # noqa: E731
    return wiring.Signature({
        "valid": Out(1), "kind": Out(CmdKind), "rank": Out(w(rank_bits)), "bg": Out(w(bg_bits)),
        "bank": Out(w(bank_bits)), "row": Out(w(row_bits)), "col": Out(w(col_bits)),
    })


def dq_signature(width: int) -> wiring.Signature:
    """One data-bus beat per burst: ``valid`` and ``data`` (``Out`` from the driving side)."""
    return wiring.Signature({"valid": Out(1), "data": Out(width)})
