"""Trace replay through the generated bank-controller RTL (the ``rtl`` model of ``pimcast dram replay``).

:func:`replay_rtl` generates a :class:`~pimcast.hdl.dram.bankctl.BankController` for the preset,
builds it with Verilator (or Icarus) through :func:`pimcast.sim.runner.run_cocotb`, and runs the
cocotb test ``test_trace_replay`` of :mod:`pimcast.sim.tb_bankctl`: requests enter the controller
in trace order, each no earlier than its cycle stamp, against the cocotb DRAM device model, which
checks every command against the rule table and the data of every read (writes carry a
deterministic pattern). The simulator process writes the JSON statistics that are returned here.

The statistics have the keys of the fast model (:class:`pimcast.host.dram_model.ModelResult`):
``cycles`` (first accepted request to the completion of the last one), ``reads``, ``writes``,
``bytes``, ``GBps``, ``acts``, ``row_hits`` (requests minus ACTs, at least 0), ``refreshes``,
``requests_per_second`` (simulation wall time), plus ``cycles_per_s`` of the RTL simulation.

DDR4 presets serve a 64 B request with one burst; HBM2 pseudo-channels (BL4, 32 B bursts) with two
column commands at consecutive column addresses, as the fast model does (identical command lists on
the 20-trace suite). The read-return buffer (``read_buffer``, default 16; an entry lives from a
request's last RD to its response) is not modelled by the fast model and never bound on the
suite's traces (DDR4 or HBM2, 8 entries). The default queue depth is 16: the FR-FCFS age logic grows with the
square of the depth, and a 32-deep controller (2.7 MB of Verilog) takes many minutes to compile
with Verilator on a shared 2-core machine. Pass ``queue=32`` to match the fast model's default.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pimcast.hdl.dram.timing import AddressMapping, DRAMTiming

__all__ = ["replay_rtl", "RTLReplayError"]


class RTLReplayError(RuntimeError):
    """The RTL replay could not be built or failed (protocol violation, wrong data, stall)."""


def replay_rtl(t: DRAMTiming, addr, is_write=None, cycle=None, *, mapping: str = "rochrababgco",
               queue: int = 16, read_buffer: int | None = None, simulator: str = "verilator",
               dump_commands: str | Path | None = None, seed: int = 1) -> dict[str, Any]:
    """Replay a trace through the RTL; return the statistics dict (see the module docstring).

    ``addr``: 64 B-aligned byte addresses; ``is_write``: booleans (default all reads);
    ``cycle``: eligibility cycle per request (default 0; must not decrease).
    ``dump_commands``: write ``cycle,cmd,rank,bankgroup,bank,row,col`` per issued command.
    ``read_buffer``: the controller's read-return entries (default: 16, or
    :func:`~pimcast.hdl.dram.bankctl.min_read_buffer` if larger — a bank-group data path issues a
    read per cycle — so the credit, which the fast model does not model, never binds).
    Raises :class:`RTLReplayError` on a failed run and ``ValueError`` on bad addresses.
    """
    from pimcast.sim.runner import BUILD_ROOT, run_cocotb
    from pimcast.sim.tb_bankctl import register_top

    amap = AddressMapping(mapping, t)
    a = amap.check(np.asarray(addr))
    n = len(a)
    w = np.zeros(n, bool) if is_write is None else np.broadcast_to(np.asarray(is_write, bool), (n,))
    c = np.zeros(n, np.int64) if cycle is None else np.broadcast_to(np.asarray(cycle, np.int64), (n,))
    if n and np.any(np.diff(c) < 0):
        order = np.argsort(c, kind="stable")
        a, w, c = a[order], w[order], c[order]
    if read_buffer is None:
        from pimcast.hdl.dram.bankctl import min_read_buffer

        read_buffer = max(16, min_read_buffer(t))
    top, env = register_top(t, mapping=mapping, queue=queue, read_buffer=read_buffer)
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILD_ROOT, prefix="replay-") as tmp:
        trace = Path(tmp) / "trace.npz"
        out = Path(tmp) / "stats.json"
        np.savez(trace, addr=a.astype(np.uint64), is_write=w.astype(np.uint8), cycle=c.astype(np.int64))
        env.update({"PIMCAST_BANKCTL_TRACE": str(trace), "PIMCAST_BANKCTL_TRACE_OUT": str(out),
                    "PIMCAST_SEED": str(seed)})
        if dump_commands is not None:
            env["PIMCAST_BANKCTL_COMMANDS"] = str(Path(dump_commands).resolve())
        t0 = time.perf_counter()
        res = run_cocotb(top, "pimcast.sim.tb_bankctl", simulator=simulator, env=env,
                         testcase="test_trace_replay")
        wall = time.perf_counter() - t0
        if res.error or res.failures or res.tests != 1 or not out.is_file():
            raise RTLReplayError(f"RTL replay failed ({res.tests} tests, {res.failures} failures, "
                                 f"{res.error or 'no error message'}); see {res.build_dir}/results.xml")
        stats = json.loads(out.read_text())
    stats["wall_s"] = wall
    return stats
