"""The simulator side of the ``rtl`` device backend (:mod:`pimcast.host.backends.rtl`).

Run as ``python -m pimcast.sim.core_server --simulator verilator`` by the backend (never by hand):
it builds the PIM core for the configuration in ``PIMCAST_RTL_CONFIG`` (JSON of a
:class:`~pimcast.host.pim_config.PIMConfig`; one rank's core) and runs the cocotb test :func:`serve`, which
connects back to the backend at ``PIMCAST_RTL_ADDRESS`` and executes one request per device
operation on the RTL through :class:`~pimcast.sim.core_driver.CoreDriver` (DRAM device model and
protocol checker attached, as in the testbench), until ``close``.  ``PIMCAST_RTL_RUN_DIR`` (if
set) is the run's own folder, so that several servers (one per rank) can share one build.

Requests are ``(op, args)`` tuples; replies ``("ok", result, counters)`` with the RTL's cycle count
of the operation and the DRAM command counters, ``("status", code, name, message)`` when the core
reports an error status, or ``("error", exception name, traceback)``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import numpy as np

__all__ = ["serve", "main"]


def _config():
    from pimcast.host.pim_config import PIMConfig
    d = json.loads(os.environ["PIMCAST_RTL_CONFIG"])
    return PIMConfig(**d).validate("PIMCAST_RTL_CONFIG")


def _snapshot(drv) -> dict:
    """The driver's cycle count and the DRAM model's command counts so far."""
    from pimcast.hdl.dram.timing import Cmd

    n = drv.dev.checker.counts
    return {"cycles": drv.cycles, "acts": n[Cmd.ACT], "reads": n[Cmd.RD] + n[Cmd.RDA],
            "writes": n[Cmd.WR] + n[Cmd.WRA], "refreshes": n[Cmd.REF]}


def _delta(before: dict, after: dict) -> dict:
    d = {k: after[k] - before[k] for k in after}
    d["row_hits"] = max(0, d["reads"] + d["writes"] - d["acts"])
    return d


try:
    import cocotb
except ImportError:  # pragma: no cover - cocotb is a dependency; only the CLI entry needs it absent-safe
    cocotb = None

if cocotb is not None:
    @cocotb.test()
    async def serve(dut):
        """Serve device operations from the rtl backend until it says ``close``."""
        from multiprocessing.connection import Client

        import torch

        from pimcast.sim.core_driver import CoreDriver, PIMStatusError

        params = json.loads(os.environ["PIMCAST_CORE_PARAMS"])
        drv = CoreDriver(dut, params)
        await drv.start()
        conn = Client(os.environ["PIMCAST_RTL_ADDRESS"], family="AF_UNIX",
                      authkey=bytes.fromhex(os.environ["PIMCAST_RTL_AUTHKEY"]))
        zero_chunk = bytes(drv.buf_beats * 64)

        async def write(addr, data):
            await drv.write(addr, data)

        async def write_rows(base, row_bytes, rows, values):
            v = np.ascontiguousarray(values, dtype=np.float32)
            for i, r in enumerate(rows.tolist()):
                await drv.write(base + r * row_bytes, v[i].tobytes())

        async def read_rows(base, row_bytes, rows):
            return b"".join([await drv.read(base + r * row_bytes, row_bytes) for r in rows.tolist()])

        async def fill_zero(base, nbytes):
            for a in range(0, nbytes, len(zero_chunk)):
                await drv.write(base + a, zero_chunk[:min(len(zero_chunk), nbytes - a)])

        async def gather_reduce(base, row_bytes, table_rows, indices, offsets, weights):
            w = None if weights is None else torch.from_numpy(weights)
            out = await drv.gather_reduce(base, row_bytes, torch.from_numpy(indices), torch.from_numpy(offsets),
                                          w, rows=table_rows)
            return out.numpy()

        async def scatter_sgd(base, row_bytes, table_rows, rows, grads, lr):
            await drv.scatter_sgd(base, row_bytes, torch.from_numpy(rows), torch.from_numpy(grads), lr,
                                  table_rows=table_rows)

        ops = {"write": write, "write_rows": write_rows, "read_rows": read_rows, "fill_zero": fill_zero,
               "gather_reduce": gather_reduce, "scatter_sgd": scatter_sgd}
        while True:
            try:
                op, args = conn.recv()
            except EOFError:
                break
            if op == "close":
                conn.send(("ok", None, {}))
                break
            before = _snapshot(drv)
            try:
                result = await ops[op](*args)
                conn.send(("ok", result, _delta(before, _snapshot(drv))))
            except PIMStatusError as exc:
                conn.send(("status", int(exc.code), str(exc.name), str(exc)))
            except Exception as exc:  # report, keep serving
                conn.send(("error", type(exc).__name__, traceback.format_exc()))
        conn.close()
        assert not drv.dev.errors, drv.dev.errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pimcast.sim.core_server")
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    args = ap.parse_args(argv)
    from pimcast.hdl.core import from_config
    from pimcast.sim.runner import run_cocotb

    cfg = _config()
    core = from_config(cfg)
    core._MustUse__silence = True
    res = run_cocotb("core", "pimcast.sim.core_server", simulator=args.simulator, testcase="serve",
                     config=cfg, env={"PIMCAST_CORE_PARAMS": json.dumps(core.params())},
                     run_dir=os.environ.get("PIMCAST_RTL_RUN_DIR") or None)
    if not res.ok:
        print(f"core_server: simulation ended with failures={res.failures} error={res.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
