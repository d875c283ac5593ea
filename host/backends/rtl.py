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

Cores per config: every placement / accumulate pair has a core
(:func:`pimcast.hdl.core.from_config`): the rank-level core, the striped bank-group core
(``bankgroup-ddr4-3200``) and the bank-group core (``trim-ddr4-3200``).

Partial sums (``accumulate: partial``, e.g. ``trim-ddr4-3200``; :attr:`PIMConfig.per_rank_cores`):
one core per rank, as in the hardware — the backend starts one simulation per rank that holds
rows (``channels x ranks`` children at most, one build), each holding its rank's memory.  A table's rows are
split by the rank that holds them (the device mapping keeps every row whole in one unit); rank
``r``'s rows occupy one contiguous range of its rank-local address space (the device address
with the channel and rank fields removed), so each rank core sees them as a table of its own
(:class:`RankLayout`).
GATHER_REDUCE runs on every rank core at once with that rank's lookups (only the bags it
holds rows of), each core adds its bank-group units' partial sums (the rank buffer's adder;
a rank-level core with partial sums gives its one sum) and the host adds the ranks' sums of
each bag in rank order from +0.0 — the third stage of
:func:`pimcast.models.tensor_cast.reduce_partial`, so results equal the golden and model
backends bit for bit.  Cycles of an operation = the slowest rank core's (the ranks run in
parallel; the host's final adds and the channel transfer are not counted).

Timing: ``stats()["cycles"]`` is the sum of the RTL's own cycle counts per operation (one cycle
= one DRAM tCK, from issuing the instruction to the last result beat); ``ns`` = cycles x tCK.
DRAM command counts come from the simulated DRAM model.  The read-back of rows after a
SCATTER_SGD (to refresh the host mirror) is not counted.

Speed: a few thousand simulated cycles per second under Verilator (16 lanes), i.e. training on
the ``rtl`` backend is for small tables and a few steps (``small-test`` config); the first use
builds the simulator (about 1–3 minutes, cached under ``build/sim/``).

Sequential numerics on several ranks (``rank-ddr4-3200``, ``small-test``, ``bankgroup-ddr4-3200``):
the default mappings stripe a row's 64 B beats over the ranks, so every rank's core reduces its
*column slice* of every bag in index order (TensorDIMM's vector striping) — one core per rank
again, each holding its rank's slices.  When every row's beats fall on the ranks alike (row bytes
a multiple of ``64 x ranks`` on the 4 KiB-aligned tables: D 32, 64, 128, 256 on two ranks), rank
``r``'s slices of the table form one table of narrower rows in its rank-local address space
(:class:`ColumnLayout`); every operation runs on all rank cores at once with the same indices,
weights and learning rate (gradients split by column), each result beat comes from the rank that
holds it, and nothing is re-associated: the bits are the golden bits.  Cycles = the slowest rank
core's.  A table whose rows' beats fall on the ranks differently (D 16 on two ranks: whole rows
alternate ranks, so a bag's column slice lies in both and the hardware forwards the other rank's
beats over the channel to the slice's home unit) runs on one more core that holds such tables
whole: the home unit, reading every beat itself — an approximation of the forwarding (one rank's
reads instead of two ranks' plus the channel transfer).  :meth:`RTLBackend.layout_kind` says
which a table got.  Rank cores start when a table first needs them (one build for all).

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

__all__ = ["RTLBackend", "RTLBackendError", "RTLStatusError", "RankLayout", "ColumnLayout", "WholeLayout"]

REPO = Path(__file__).resolve().parents[2]
#: the key of the core that holds tables whole (no per-rank split)
WHOLE = -1


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
                    "PIMCAST_RTL_CONFIG": _config_json(cfg),
                    # this simulation's own results / working folder (rank cores share one build)
                    "PIMCAST_RTL_RUN_DIR": os.path.join(self.tmp.name, "run")})
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

    def send(self, op: str, *args) -> None:
        try:
            self.conn.send((op, args))
        except (EOFError, OSError) as exc:
            self._lost(op, exc)

    def recv(self, op: str):
        try:
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            self._lost(op, exc)

    def call(self, op: str, *args):
        self.send(op, *args)
        return self.recv(op)

    def _lost(self, op: str, exc: BaseException):
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


def _rank_local(cfg, addr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Device byte addresses -> (rank core ``ch * ranks + ra``, byte address inside that rank core's
    DRAM): the same mapping on a one-rank, one-channel view, i.e. the address with the channel and
    rank fields removed."""
    from pimcast.hdl.dram.timing import AddressMapping

    t = cfg.dram_timing()
    if addr.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    f = AddressMapping(cfg.address_mapping, t, channels=cfg.channels).decode(addr)
    loc = AddressMapping(cfg.address_mapping, t.with_ranks(1)).encode(bg=f["bg"], ba=f["ba"], ro=f["ro"], co=f["co"])
    return (f["ch"] * t.ranks + f["ra"]).astype(np.int64), loc.astype(np.int64)


class RankLayout:
    """Where a table's rows live in the rank cores' memories (``accumulate: partial``).

    Row ``i`` of the table at device byte ``base`` (``row_bytes`` each) decodes, under the device
    mapping, to rank ``rank[i]`` (channel-major: ``ch * ranks + ra``) and rank-local byte address
    ``encode(bg, ba, ro, co)`` under the same mapping on a one-rank, one-channel view (the
    address of that byte inside its rank core's DRAM).  Removing the rank and channel fields is
    monotone within one rank and rows never straddle units, so rank ``r``'s rows fill one
    contiguous local range from ``bases[r]``: the rank core sees them as a table of
    ``counts[r]`` rows, row ``local[i]`` = device row ``i``.
    """

    kind = "rows"

    def __init__(self, cfg, base: int, rows: int, row_bytes: int):
        n_ranks = cfg.channels * cfg.dram_timing().ranks
        a = np.uint64(base) + np.arange(rows, dtype=np.uint64) * np.uint64(row_bytes)
        self.rank, loc = _rank_local(cfg, a)
        self.counts = np.bincount(self.rank, minlength=n_ranks)
        self.bases = np.zeros(n_ranks, np.int64)
        self.local = np.zeros(rows, np.int64)
        self.row_bytes = row_bytes
        for r in range(n_ranks):
            sel = self.rank == r
            if not sel.any():
                continue
            self.bases[r] = loc[sel][0]
            lid = loc[sel] - self.bases[r]
            want = np.arange(int(sel.sum()), dtype=np.int64) * row_bytes
            if not np.array_equal(lid, want):       # a mapping with rank bits below a row (rejected at alloc)
                raise ValueError(f"mapping {cfg.address_mapping!r}: the rows of rank {r} are not contiguous in its "
                                 f"local address space (table at {hex(base)}, {row_bytes} B rows)")
            self.local[sel] = lid // row_bytes

    def split(self, rows: np.ndarray) -> dict[int, np.ndarray]:
        """Positions in ``rows`` (device row ids) per rank that holds any of them, ascending ranks."""
        rk = self.rank[rows]
        return {int(r): np.flatnonzero(rk == r) for r in np.unique(rk)}


class ColumnLayout:
    """Where a table's column slices live in the rank cores' memories (sequential numerics).

    Beat ``k`` (64 B) of row ``i`` of the table at device byte ``base`` decodes, under the device
    mapping, to rank ``ch * ranks + ra`` and the rank-local byte address ``encode(bg, ba, ro, co)``
    (as :class:`RankLayout`).  The table is *split by columns* when every row's beats fall on the
    ranks alike (``beats[r]``: the beat positions rank ``r`` holds, the same for every row) and rank
    ``r``'s slices fill one contiguous local range from ``bases[r]`` in row order, ``len(beats[r])``
    beats per row: its core sees a table of ``rows`` rows of ``slice_bytes[r]`` bytes.  Otherwise
    :attr:`ok` is false and :attr:`reason` says why.
    """

    kind = "columns"

    def __init__(self, cfg, base: int, rows: int, row_bytes: int):
        nbeats = row_bytes // 64
        self.row_bytes = row_bytes
        self.beats: dict[int, np.ndarray] = {}
        self.bases: dict[int, int] = {}
        self.slice_bytes: dict[int, int] = {}
        self.ok, self.reason = False, ""
        a = (np.uint64(base) + np.arange(rows, dtype=np.uint64)[:, None] * np.uint64(row_bytes)
             + np.arange(nbeats, dtype=np.uint64)[None, :] * np.uint64(64)).ravel()
        rank, loc = (x.reshape(rows, nbeats) for x in _rank_local(cfg, a))
        if rows == 0:
            self.reason = "empty table"
            return
        odd = np.flatnonzero((rank != rank[0]).any(axis=1))
        if odd.size:
            self.reason = (f"row {int(odd[0])}'s beats lie on ranks {rank[odd[0]].tolist()}, row 0's on "
                           f"{rank[0].tolist()}")
            return
        for r in np.unique(rank[0]).tolist():
            k = np.flatnonzero(rank[0] == r)
            lb = loc[:, k]
            want = lb[0, 0] + (np.arange(rows, dtype=np.int64)[:, None] * len(k)
                               + np.arange(len(k), dtype=np.int64)[None, :]) * 64
            if not np.array_equal(lb, want):
                self.reason = f"rank {r}'s column slices are not contiguous in its local address space"
                return
            self.beats[r] = k
            self.bases[r] = int(lb[0, 0])
            self.slice_bytes[r] = len(k) * 64
        self.ok = True

    def cols(self, r: int) -> np.ndarray:
        """The fp32 columns of a (padded) row that rank ``r`` holds, in its slice's order."""
        return (self.beats[r][:, None] * 16 + np.arange(16)[None, :]).ravel()


class WholeLayout(ColumnLayout):
    """A table held whole by one core (key :data:`WHOLE`) at its device address: the one-slice case
    of :class:`ColumnLayout` (every beat of every row on that core, ``slice_bytes`` = row bytes), so
    the backend moves data for both with one code path."""

    kind = "whole"

    def __init__(self, base: int, row_bytes: int):
        self.row_bytes = row_bytes
        self.beats = {WHOLE: np.arange(row_bytes // 64)}
        self.bases = {WHOLE: int(base)}
        self.slice_bytes = {WHOLE: row_bytes}
        self.ok, self.reason = True, ""


class RTLBackend(Backend):
    """Runs every operation on the PIM-core RTL (see the module docstring)."""

    name = "rtl"
    in_process = True          # host mirror (checked against the RTL's memory on every read-back)
    mirrored = True
    has_timing = True
    #: the key of the core that holds tables whole (no per-rank split)
    WHOLE = WHOLE

    def __init__(self, cfg):
        super().__init__(cfg)
        self.simulator = os.environ.get("PIMCAST_RTL_SIMULATOR", "verilator")
        if self.simulator not in ("verilator", "icarus"):
            raise ValueError(f"PIMCAST_RTL_SIMULATOR must be 'verilator' or 'icarus', got {self.simulator!r}")
        self.timeout = float(os.environ.get("PIMCAST_RTL_TIMEOUT", "900"))
        self.partial = cfg.per_rank_cores
        t = cfg.dram_timing()
        #: rank cores (one per rank of every channel); a table that cannot be split over them runs on
        #: the core holding tables whole (key :attr:`WHOLE`)
        self.n_cores = cfg.channels * t.ranks
        self.tck_ns = t.tCK_ns
        self._servers: dict[int, _Server] = {}
        self._layouts: dict[tuple, object] = {}
        self._last: Optional[dict] = None
        self.rtl_cycles = 0
        self._finalizers: list = []

    # ------------------------------------------------------------------ connection
    def _srvs(self, keys) -> dict[int, _Server]:
        # started one after the other: the first builds the simulator, the others reuse the build
        for k in sorted(keys):
            if k not in self._servers:
                srv = _Server(self.cfg, self.simulator, self.timeout)
                fin = weakref.finalize(self, _Server.close, srv)
                atexit.register(fin)
                self._servers[k] = srv
                self._finalizers.append(fin)
        return self._servers

    def close(self) -> None:
        """Stop the simulation(s) (also done at exit)."""
        for fin in self._finalizers:
            fin()
        self._finalizers, self._servers = [], {}

    def _run_ranks(self, calls: dict, timed: bool = True) -> dict:
        """Run ``{core: (op, args)}`` on those cores at once; ``{core: result}``.  The operation's
        cycles are the slowest core's, DRAM command counts the sum over cores."""
        srvs = self._srvs(calls)
        for r, (op, args) in calls.items():
            srvs[r].send(op, *args)
        replies = {r: srvs[r].recv(op) for r, (op, args) in calls.items()}
        results, counters = {}, []
        for r, reply in replies.items():
            op = calls[r][0]
            kind = reply[0]
            where = f" on rank {r}" if r != self.WHOLE else ""
            if kind == "status":
                _, code, name, msg = reply
                raise RTLStatusError(code, name, f"PIM core{where} rejected {op}: status {name} ({code}): {msg}")
            if kind != "ok":
                _, ename, msg = reply
                raise RTLBackendError(f"RTL simulation{where} failed in {op}: {ename}: {msg}")
            results[r] = reply[1]
            counters.append(reply[2])
        if timed:
            c = {k: sum(int(x.get(k, 0)) for x in counters) for k in ("acts", "row_hits", "refreshes", "reads",
                                                                      "writes", "dram_busy")}
            c["cycles"] = max((int(x.get("cycles", 0)) for x in counters), default=0)
            self._last = c
            self.rtl_cycles += c["cycles"]
        return results

    def layout(self, info):
        """The table's place on the cores: a :class:`RankLayout` (``accumulate: partial``: rows split
        by rank), a :class:`ColumnLayout` (sequential numerics split by columns over the rank cores)
        or a :class:`WholeLayout` (held whole by one core)."""
        key = (info.base, info.rows, info.row_bytes)
        if key not in self._layouts:
            lay = None
            if self.partial:
                lay = RankLayout(self.cfg, info.base, info.rows, info.row_bytes)
            elif self.n_cores > 1:
                col = ColumnLayout(self.cfg, info.base, info.rows, info.row_bytes)
                lay = col if col.ok else None
            self._layouts[key] = lay or WholeLayout(info.base, info.row_bytes)
        return self._layouts[key]

    def layout_kind(self, info) -> str:
        """``"rows"`` (rank cores, rows whole per rank), ``"columns"`` (rank cores, column slices)
        or ``"whole"`` (one core holds the table)."""
        return self.layout(info).kind

    # ------------------------------------------------------------------ memory
    # Two data paths: column slices (ColumnLayout, and WholeLayout as its one-slice case: every core
    # gets every row, its columns) and rows (RankLayout: every core gets its rows, all columns).
    def on_alloc(self, info) -> None:
        lay = self.layout(info)
        if isinstance(lay, RankLayout):
            self._run_ranks({r: ("fill_zero", (int(lay.bases[r]), int(lay.counts[r]) * info.row_bytes))
                             for r in range(self.n_cores) if lay.counts[r]}, timed=False)
        else:
            self._run_ranks({r: ("fill_zero", (lay.bases[r], info.rows * lay.slice_bytes[r])) for r in lay.beats},
                            timed=False)

    def store(self, info, row_offset, values) -> None:
        lay = self.layout(info)
        if isinstance(lay, RankLayout):
            self.store_rows(info, torch.arange(row_offset, row_offset + values.shape[0]), values)
            return
        v = _pad(values, info.padded_dim)
        self._run_ranks({r: ("write", (lay.bases[r] + row_offset * lay.slice_bytes[r],
                                       np.ascontiguousarray(v[:, lay.cols(r)]).tobytes()))
                         for r in lay.beats})

    def store_rows(self, info, rows, values) -> None:
        r = rows.numpy().astype(np.int64)
        v = _pad(values, info.padded_dim)
        lay = self.layout(info)
        if isinstance(lay, RankLayout):
            self._run_ranks({k: ("write_rows", (int(lay.bases[k]), info.row_bytes, lay.local[r[pos]], v[pos]))
                             for k, pos in lay.split(r).items()})
        else:
            self._run_ranks({k: ("write_rows", (lay.bases[k], lay.slice_bytes[k], r,
                                                np.ascontiguousarray(v[:, lay.cols(k)])))
                             for k in lay.beats})

    def load_rows(self, info, rows) -> torch.Tensor:
        r = rows.numpy().astype(np.int64)
        lay = self.layout(info)
        arr = np.zeros((len(r), info.padded_dim), np.float32)
        if isinstance(lay, RankLayout):
            parts = lay.split(r)
            got = self._run_ranks({k: ("read_rows", (int(lay.bases[k]), info.row_bytes, lay.local[r[pos]]))
                                   for k, pos in parts.items()})
            for k, pos in parts.items():
                arr[pos] = np.frombuffer(got[k], dtype=np.float32).reshape(len(pos), info.padded_dim)
        else:
            got = self._run_ranks({k: ("read_rows", (lay.bases[k], lay.slice_bytes[k], r)) for k in lay.beats})
            for k in lay.beats:
                arr[:, lay.cols(k)] = np.frombuffer(got[k], dtype=np.float32).reshape(len(r), -1)
        return torch.from_numpy(arr[:, :info.dim].copy())

    # ------------------------------------------------------------------ operations
    def gather_reduce_table(self, info, indices, starts, lengths, weights) -> torch.Tensor:
        offsets = starts.numpy().astype(np.int64)
        w = None if weights is None else weights.contiguous().numpy().astype(np.float32)
        idx = indices.numpy().astype(np.int64)
        lay = self.layout(info)
        if isinstance(lay, RankLayout):
            return self._gather_reduce_ranks(info, idx, lengths.numpy().astype(np.int64), w)
        # every core reduces its column slice of every bag in index order: the golden bits
        got = self._run_ranks({k: ("gather_reduce", (lay.bases[k], lay.slice_bytes[k], info.rows, idx, offsets, w))
                               for k in lay.beats})
        out = np.zeros((len(offsets), info.padded_dim), np.float32)
        for k in lay.beats:
            out[:, lay.cols(k)] = np.asarray(got[k], dtype=np.float32).reshape(len(offsets), -1)
        return torch.from_numpy(out[:, :info.dim].copy())

    def _gather_reduce_ranks(self, info, idx, lengths, w) -> torch.Tensor:
        """Every rank core reduces its rows of the bags it holds rows of (only those: a bag without
        rows in a rank costs that rank nothing and sends nothing over the channel); the host adds
        the ranks' sums of each bag in rank order from +0.0."""
        from pimcast.models import tensor_cast as tc

        nb = len(lengths)
        if idx.size == 0:
            self._last = None
            return torch.zeros(nb, info.dim, dtype=torch.float32)
        lay = self.layout(info)
        bag = np.repeat(np.arange(nb, dtype=np.int64), lengths)
        parts = lay.split(idx)
        calls, present = {}, {}
        for k, pos in parts.items():
            present[k], ln = np.unique(bag[pos], return_counts=True)      # pos ascending: bag order kept
            offs = (np.cumsum(ln) - ln).astype(np.int64)
            calls[k] = ("gather_reduce", (int(lay.bases[k]), info.row_bytes, int(lay.counts[k]), lay.local[idx[pos]],
                                          offs, None if w is None else w[pos]))
        got = self._run_ranks(calls)
        # the rank sums of the (bag, rank) pairs, ordered by bag then rank
        key = np.concatenate([present[k] * self.n_cores + k for k in parts])
        sums = np.concatenate([np.asarray(got[k], dtype=np.float32).reshape(len(present[k]), info.padded_dim)[:, :info.dim]
                               for k in parts])
        order = np.argsort(key, kind="stable")
        key, sums = key[order], np.ascontiguousarray(sums[order])
        per_bag = np.bincount(key // self.n_cores, minlength=nb)
        offs = (np.cumsum(per_bag) - per_bag).astype(np.int64)
        return tc.gather_reduce(torch.from_numpy(sums), torch.arange(len(key)), torch.from_numpy(offs))

    def scatter_sgd_table(self, info, rows, grads, lr) -> torch.Tensor:
        r = rows.numpy().astype(np.int64)
        g = _pad(grads, info.padded_dim)
        lay = self.layout(info)
        if isinstance(lay, RankLayout) or len(lay.beats) > 1:
            # one update over several rank cores cannot be undone if one of them rejects it: refuse
            # here what the cores would (the Device has checked already; this guards direct calls;
            # one core holding the table rejects bad rows itself)
            if r.size and (r.min() < 0 or r.max() >= info.rows):
                bad = int(r[(r < 0) | (r >= info.rows)][0])
                raise ValueError(f"row {bad} is outside table {info.name!r} of {info.rows} rows")
            if np.unique(r).size != r.size:
                raise ValueError("scatter_sgd rows must be unique")
        if isinstance(lay, RankLayout):
            self._run_ranks({k: ("scatter_sgd", (int(lay.bases[k]), info.row_bytes, int(lay.counts[k]),
                                                 lay.local[r[pos]], g[pos], float(lr)))
                             for k, pos in lay.split(r).items()})
        else:
            self._run_ranks({k: ("scatter_sgd", (lay.bases[k], lay.slice_bytes[k], info.rows, r,
                                                 np.ascontiguousarray(g[:, lay.cols(k)]), float(lr)))
                             for k in lay.beats})
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
             rank_bus_beats=None, flush_cycles=None):
        return self._timing(host_in, host_out)

    def time_sequential(self, base, nbytes, write, *, host_in=0, host_out=0):
        return self._timing(host_in, host_out)
