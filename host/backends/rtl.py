"""``rtl`` backend: every device operation runs on the generated PIM-core Verilog.

The core (:class:`pimcast.hdl.core.PIMCore`) is simulated under Verilator (or Icarus) by cocotb, in
a child process (:mod:`pimcast.sim.core_server`) that this backend starts on first use.  The child
drives the RTL through :class:`pimcast.sim.core_driver.CoreDriver` — the same driver the cocotb
testbench uses — with the DRAM device model and its protocol checker attached, and answers one
request per device operation over a local socket (:mod:`multiprocessing.connection`, pickled
tuples).  While the child waits for the next request the simulation is paused, so the host and
the simulator alternate like a host CPU issuing instructions to the device.

Memory model: the device image lives in the DRAM model of the simulation (the hardware's memory).
The :class:`~pimcast.host.device.Device` keeps a host mirror of every table (so
:class:`~pimcast.host.embedding.PIMEmbeddingBag` can expose it as its ``weight``) and checks every
read-back from the RTL against that mirror bit for bit.  ``gather_reduce`` results and the rows
updated by ``scatter_sgd`` come from the RTL, never from the mirror.

Timing: ``stats()["cycles"]`` is the sum of the RTL's own cycle counts per operation (one cycle
= one DRAM tCK, from issuing the instruction to the last result beat); ``ns`` = cycles x tCK.
DRAM command counts come from the simulated DRAM model.  The read-back of rows after a
SCATTER_SGD (to refresh the host mirror) is not counted.

Speed: a few thousand simulated cycles per second under Verilator (16 lanes), i.e. training on
the ``rtl`` backend is for small tables and a few steps (``small-test`` config); the first use
builds the simulator (about 1–3 minutes, cached under ``build/sim/``).

Environment: ``PIMCAST_RTL_SIMULATOR`` (``verilator`` default, or ``icarus``),
``PIMCAST_RTL_TIMEOUT`` (seconds to wait for the simulator to start, default 900).
"""
from __future__ import annotations

import atexit
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from multiprocessing.connection import Listener
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from pimcast.host.backends.base import Backend
from pimcast.host.timing import empty_timing

__all__ = ["RTLBackend", "RTLBackendError", "RTLStatusError"]

REPO = Path(__file__).resolve().parents[2]


class RTLBackendError(RuntimeError):
    """The RTL simulation could not be started or stopped answering."""


class RTLStatusError(RuntimeError):
    """The PIM core reported an error status for an instruction (its code and name are attributes)."""

    def __init__(self, code: int, name: str, message: str):
        super().__init__(message)
        self.code = code
        self.status = name


def _pad(values: torch.Tensor, pdim: int) -> np.ndarray:
    """``(n, dim)`` fp32 -> ``(n, pdim)`` with zero padding lanes (bits unchanged)."""
    v = values.detach().contiguous().view(torch.int32).numpy()
    out = np.zeros((v.shape[0], pdim), dtype=np.int32)
    out[:, :v.shape[1]] = v
    return out.view(np.float32)


class _Server:
    """The simulator child process and its connection."""

    def __init__(self, cfg, simulator: str, timeout: float):
        self.authkey = secrets.token_bytes(16)
        self.tmp = tempfile.TemporaryDirectory(prefix="pimcast-rtl-")
        address = os.path.join(self.tmp.name, "sock")
        self.listener = Listener(address, family="AF_UNIX", authkey=self.authkey)
        self.log_path = Path(self.tmp.name) / "server.log"
        env = dict(os.environ)
        env.update({"PIMCAST_RTL_ADDRESS": address, "PIMCAST_RTL_AUTHKEY": self.authkey.hex(),
                    "PIMCAST_RTL_CONFIG": _config_json(cfg)})
        env.pop("PYTEST_CURRENT_TEST", None)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "pimcast.sim.core_server", "--simulator", simulator],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=str(REPO))
        self.conn = None
        box: dict = {}

        def accept():
            try:
                box["conn"] = self.listener.accept()
            except Exception as exc:  # closed listener or bad peer
                box["error"] = exc

        th = threading.Thread(target=accept, daemon=True)
        th.start()
        deadline = time.monotonic() + timeout
        while th.is_alive() and self.proc.poll() is None and time.monotonic() < deadline:
            th.join(0.2)
        th.join(0.5)     # a process that connected and then exited at once
        if "conn" not in box:
            code = self.proc.poll()
            self.close(kill=True)      # removes the log: its tail was read above
            raise RTLBackendError(f"the RTL simulation did not start ({simulator}, exit status {code}, "
                                  f"{timeout:.0f} s timeout); log:\n{self._tail}")
        self.conn = box["conn"]

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def call(self, op: str, *args):
        try:
            self.conn.send((op, args))
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            code = self.proc.poll()
            raise RTLBackendError(f"the RTL simulation stopped answering during {op!r} (exit status {code}); "
                                  f"log:\n{self.tail()}") from exc

    def close(self, kill: bool = False) -> None:
        self._tail = self.tail()
        if self.conn is not None and not kill:
            try:
                self.conn.send(("close", ()))
                self.conn.recv()
            except (EOFError, OSError):
                pass
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        try:
            self.proc.wait(timeout=60 if not kill else 1)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.listener.close()
        self.log.close()
        self.tmp.cleanup()


def _config_json(cfg) -> str:
    import json
    return json.dumps(cfg.as_dict())


class RTLBackend(Backend):
    """Runs every operation on the PIM-core RTL (see the module docstring)."""

    name = "rtl"
    in_process = True          # host mirror (checked against the RTL's memory on every read-back)
    mirrored = True
    has_timing = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.simulator = os.environ.get("PIMCAST_RTL_SIMULATOR", "verilator")
        if self.simulator not in ("verilator", "icarus"):
            raise ValueError(f"PIMCAST_RTL_SIMULATOR must be 'verilator' or 'icarus', got {self.simulator!r}")
        self.timeout = float(os.environ.get("PIMCAST_RTL_TIMEOUT", "900"))
        if cfg.placement != "rank":
            raise ValueError(f"PIM config {cfg.name!r}: placement {cfg.placement!r} is not driven by the rtl backend "
                             "(it simulates rank-level cores; the bank-group core of accumulate 'partial' is "
                             "verified by its cocotb bench, sim/tb_core.py test_gather_partial; use the model "
                             "backend for bank-group timing)")
        self.tck_ns = cfg.dram_timing().tCK_ns
        self._server: Optional[_Server] = None
        self._last: Optional[dict] = None
        self.rtl_cycles = 0
        self._finalizer = None

    # ------------------------------------------------------------------ connection
    def _srv(self) -> _Server:
        if self._server is None:
            self._server = _Server(self.cfg, self.simulator, self.timeout)
            self._finalizer = weakref.finalize(self, _Server.close, self._server)
            atexit.register(self._finalizer)
        return self._server

    def close(self) -> None:
        """Stop the simulation (also done at exit)."""
        if self._finalizer is not None:
            self._finalizer()
            self._server = None

    def _run(self, op: str, *args, timed: bool = True):
        reply = self._srv().call(op, *args)
        kind = reply[0]
        if kind == "ok":
            _, result, counters = reply
            if timed:
                self._last = counters
                self.rtl_cycles += counters.get("cycles", 0)
            return result
        if kind == "status":
            _, code, name, msg = reply
            raise RTLStatusError(code, name, f"PIM core rejected {op}: status {name} ({code}): {msg}")
        _, ename, msg = reply
        raise RTLBackendError(f"RTL simulation failed in {op}: {ename}: {msg}")

    # ------------------------------------------------------------------ memory
    def on_alloc(self, info) -> None:
        self._run("fill_zero", info.base, info.rows * info.row_bytes, timed=False)

    def store(self, info, row_offset, values) -> None:
        data = _pad(values, info.padded_dim).tobytes()
        self._run("write", info.base + row_offset * info.row_bytes, data)

    def store_rows(self, info, rows, values) -> None:
        self._run("write_rows", info.base, info.row_bytes, rows.numpy().astype(np.int64),
                  _pad(values, info.padded_dim))

    def load_rows(self, info, rows) -> torch.Tensor:
        raw = self._run("read_rows", info.base, info.row_bytes, rows.numpy().astype(np.int64))
        arr = np.frombuffer(raw, dtype=np.float32).reshape(len(rows), info.padded_dim)[:, :info.dim]
        return torch.from_numpy(arr.copy())

    # ------------------------------------------------------------------ operations
    def gather_reduce_table(self, info, indices, starts, lengths, weights) -> torch.Tensor:
        offsets = starts.numpy().astype(np.int64)
        w = None if weights is None else weights.contiguous().numpy().astype(np.float32)
        out = self._run("gather_reduce", info.base, info.row_bytes, info.rows, indices.numpy().astype(np.int64),
                        offsets, w)
        out = np.asarray(out, dtype=np.float32).reshape(len(offsets), info.padded_dim)[:, :info.dim]
        return torch.from_numpy(out.copy())

    def scatter_sgd_table(self, info, rows, grads, lr) -> torch.Tensor:
        r = rows.numpy().astype(np.int64)
        self._run("scatter_sgd", info.base, info.row_bytes, info.rows, r, _pad(grads, info.padded_dim), float(lr))
        last = self._last
        new = self.load_rows(info, rows)    # refresh the mirror from the RTL's memory (not timed)
        self._last = last
        return new

    def gather_reduce(self, table, dim, indices, starts, lengths, weights):  # pragma: no cover - Device uses *_table
        raise RuntimeError("the rtl backend computes on hardware memory: use Device.gather_reduce")

    def adagrad(self, *a, **k):  # pragma: no cover - Device refuses before calling
        raise RuntimeError("the PIM core has no Adagrad instruction")

    rowwise_adagrad = adagrad

    # ------------------------------------------------------------------ timing
    def _timing(self, host_in=0, host_out=0) -> Optional[dict]:
        c = self._last or {}
        self._last = None
        t = empty_timing()
        cyc = int(c.get("cycles", 0))
        t["cycles"] = cyc
        t["ns"] = cyc * self.tck_ns
        for k in ("acts", "row_hits", "refreshes", "reads", "writes"):
            t[k] = int(c.get(k, 0))
        t["busy"]["dram_max"] = int(c.get("dram_busy", 0))
        t["busy"]["dram_sum"] = int(c.get("dram_busy", 0))
        return t

    def time(self, addr, is_write=None, *, groups=None, fmas=0, host_in=0, host_out=0, setup_cycles=0,
             rank_bus_beats=None):
        return self._timing(host_in, host_out)

    def time_sequential(self, base, nbytes, write, *, host_in=0, host_out=0):
        return self._timing(host_in, host_out)
