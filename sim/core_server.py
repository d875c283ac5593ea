"""The simulator side of the ``rtl`` device backend (:mod:`pimcast.host.backends.rtl`).

Run as ``python -m pimcast.sim.core_server --simulator verilator`` by the backend (never by hand):
it builds the PIM core for the configuration in ``PIMCAST_RTL_CONFIG`` (JSON of a
:class:`~pimcast.host.pim_config.PIMConfig`) and runs the cocotb test :func:`serve`, which
connects back to the backend at ``PIMCAST_RTL_ADDRESS`` and executes one request per device
operation on the RTL through :class:`~pimcast.sim.core_driver.CoreDriver` (DRAM device model and
protocol checker attached, as in the testbench), until ``close``.

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


def _counters(drv, before: dict) -> dict:
    now = drv.counters()
    return {k: now[k] - before.get(k, 0) for k in now}


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

        cfg = _config()
        drv = CoreDriver(dut, cfg, backpressure=False)
        await drv.start()
        conn = Client(os.environ["PIMCAST_RTL_ADDRESS"], family="AF_UNIX",
                      authkey=bytes.fromhex(os.environ["PIMCAST_RTL_AUTHKEY"]))

        async def write_rows(base, row_bytes, rows, values):
            v = np.ascontiguousarray(values, dtype=np.float32)
            for i, r in enumerate(rows.tolist()):
                await drv.write(base + r * row_bytes, v[i].tobytes())

        async def read_rows(base, row_bytes, rows):
            parts = [await drv.read(base + r * row_bytes, row_bytes) for r in rows.tolist()]
            return b"".join(parts)

        async def gather_reduce(base, row_bytes, indices, offsets, weights):
            w = None if weights is None else torch.from_numpy(weights)
            out = await drv.gather_reduce(base, row_bytes, torch.from_numpy(indices), torch.from_numpy(offsets), w)
            return out.numpy()

        async def scatter_sgd(base, row_bytes, rows, grads, lr):
            await drv.scatter_sgd(base, row_bytes, torch.from_numpy(rows), torch.from_numpy(grads), lr)

        async def write(addr, data):
            await drv.write(addr, data)

        async def fill_zero(base, nbytes):
            await drv.fill(base, nbytes, 0)

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
            before = drv.counters()
            try:
                result = await ops[op](*args)
                conn.send(("ok", result, _counters(drv, before)))
            except PIMStatusError as exc:
                conn.send(("status", int(exc.code), str(exc.name), str(exc)))
            except Exception as exc:  # report, keep serving
                conn.send(("error", type(exc).__name__, traceback.format_exc()))
        conn.close()
        drv.check_done()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pimcast.sim.core_server")
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    args = ap.parse_args(argv)
    from pimcast.sim.runner import run_cocotb
    cfg = _config()
    res = run_cocotb("core", "pimcast.sim.core_server", simulator=args.simulator, testcase="serve",
                     config=cfg)
    if not res.ok:
        print(f"core_server: simulation ended with failures={res.failures} error={res.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
