"""The Device API: one interface for every backend (``golden``, ``model``; ``rtl`` plugs in later).

>>> from pimcast.host import open_device
>>> dev = open_device("model", "rank-ddr4-3200")
>>> dev.alloc("emb", rows=1000, dim=50)           # rows padded to 64 floats (4 beats) in device memory
>>> dev.write("emb", torch.randn(1000, 50))
>>> y = dev.gather_reduce("emb", indices, offsets)  # (bags, 50)
>>> dev.scatter_sgd("emb", unique_rows, grads, lr=0.1)
>>> dev.stats()["cycles"], dev.stats()["bytes"]

Memory model
------------
The device image is one flat byte address space ``0 .. capacity`` (decoded by the configured
DRAM address mapping).  Each allocation gets a 4 KiB-aligned region (first fit); a table row is
padded to whole 64 B beats (``dim=50`` -> 64 floats = 256 B) — invisible to callers, counted in
``stats()["bytes"]["padding"]``, in the addresses, the reserved capacity and the timing.  Host
backing is per allocation and holds the payload only: a contiguous ``(rows, dim)`` fp32 tensor
(the padding lanes are zero by construction and no operation can read or write them, so they
are not stored; this also keeps the ``weight`` Parameter that aliases the backing contiguous,
which stock optimizers need — see :mod:`pimcast.host.embedding`).  Backing is ``calloc``'d, so
untouched pages cost nothing and a 512 GiB device does not reserve host memory; tables exist
once in host memory.  A request beyond the free space raises :class:`OutOfDeviceMemory` naming the request and
the free space — there is no host fallback.

Numerics
--------
Exactly ARCHITECTURE.md "Numerics": gather-reduce is a sequential binary32 FMA per bag in index
order from +0.0 (empty bag = +0.0, mean = weights ``1.0f/len``), SGD ``w = fma(-lr, g, w)``, the
exact Adagrad / row-wise Adagrad of :mod:`pimcast.models.tensor_cast`.  Every NaN a device
operation produces is the canonical quiet NaN ``0x7FC00000`` (as the hardware FMA), so all
backends agree bit for bit.  ``write``/``read``/``gather_rows``/``scatter_rows`` move bits unchanged.

Errors
------
Every argument is validated before any state or statistic changes: unknown table
(:class:`UnknownTableError`, a ``KeyError``), wrong dtype (``TypeError``), ids out of range
(``IndexError``), malformed offsets, shape mismatches, duplicate rows in scatter updates, bad
learning rates (``ValueError``); each message names the bad value and its position.
"""
from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from pimcast.hdl.dram.timing import REQUEST_BYTES, AddressMapping
from pimcast.host.backends import get_backend
from pimcast.host.pim_config import PIMConfig, load_pim_config
from pimcast.host.timing import empty_timing, gather_stream_args, partial_plan, unit_setup_cycles
from pimcast.models import tensor_cast as tc
from pimcast.models.numerics import canonical_nan_bits

__all__ = ["Device", "open_device", "PIMError", "UnknownTableError", "OutOfDeviceMemory", "TableInfo",
           "BEAT_FLOATS"]

BEAT_FLOATS = REQUEST_BYTES // 4   # 16 fp32 per 64 B beat
_ALIGN = 4096
_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
_INSTR_BYTES = 64                  # one instruction = one 64 B beat on the host link
_NAN = None


def _canonical_nan() -> torch.Tensor:
    global _NAN
    if _NAN is None:
        _NAN = torch.tensor([canonical_nan_bits], dtype=torch.int64).to(torch.int32).view(torch.float32)[0]
    return _NAN


def _canon(t: torch.Tensor) -> torch.Tensor:
    """Every NaN -> 0x7FC00000 (the check runs in numpy: much cheaper than torch.isnan for small tensors;
    a binary32 sum is NaN if any element is, and its false positives (inf - inf) are rechecked)."""
    a = t.detach().numpy()
    if a.size and np.isnan(a.sum()) and np.isnan(a).any():
        t = torch.where(torch.isnan(t), _canonical_nan(), t)
    return t


class PIMError(RuntimeError):
    """Base class of device errors that are not plain argument errors."""


class UnknownTableError(PIMError, KeyError):
    """No allocation of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class OutOfDeviceMemory(PIMError, MemoryError):
    """An allocation does not fit in the free device memory."""


@dataclass(frozen=True)
class TableInfo:
    """One allocation: ``rows x dim`` fp32 at device byte address ``base``, rows padded to ``padded_dim``."""
    name: str
    rows: int
    dim: int
    padded_dim: int
    base: int
    nbytes: int            # reserved bytes (aligned)

    @property
    def row_bytes(self) -> int:
        return self.padded_dim * 4

    @property
    def row_beats(self) -> int:
        return self.padded_dim // BEAT_FLOATS


def padded_dim(dim: int) -> int:
    return -(-dim // BEAT_FLOATS) * BEAT_FLOATS


# ----------------------------------------------------------------------------- validation helpers

def _int_tensor(x, name: str, dim: int = 1) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integers, got {type(x).__name__}")
    if x.dtype not in _INT_DTYPES:
        raise TypeError(f"{name} must have an integer dtype (int32/int64), got dtype {x.dtype}")
    if x.dim() != dim:
        raise ValueError(f"{name} must be {dim}-D, got shape {tuple(x.shape)}")
    if x.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor, got device {x.device}")
    return x.to(torch.int64)


def _f32_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a float32 torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.float32:
        raise TypeError(f"{name} must be float32, got dtype {x.dtype}")
    if x.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor, got device {x.device}")
    return x.detach()


def _check_ids(ids: torch.Tensor, rows: int, name: str, table: str) -> None:
    if ids.numel() == 0:
        return
    bad = (ids < 0) | (ids >= rows)
    if bool(bad.any()):
        pos = int(torch.nonzero(bad)[0, 0])
        raise IndexError(f"{name}[{pos}] = {int(ids[pos])} is out of range for table {table!r} of {rows} rows")


def _check_unique(rows: torch.Tensor, name: str) -> None:
    if rows.numel() < 2:
        return
    if bool((rows[1:] > rows[:-1]).all()):   # strictly increasing (a coalesced gradient): no sort needed
        return
    s, order = torch.sort(rows, stable=True)
    dup = s[1:] == s[:-1]
    if bool(dup.any()):
        k = int(torch.nonzero(dup)[0, 0])
        raise ValueError(f"duplicate row {int(s[k])} in {name} (positions {int(order[k])} and "
                         f"{int(order[k + 1])}); scatter updates need unique (coalesced) rows")


def _check_lr(lr, name: str = "lr") -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise TypeError(f"{name} must be a Python number, got {type(lr).__name__}")
    lr = float(lr)
    if not np.isfinite(lr) or lr < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {lr}")
    return lr


def _starts_from_offsets(offs: torch.Tensor, nnz: int, include_last_offset: bool) -> torch.Tensor:
    n = offs.numel()
    if n:
        if int(offs[0]) != 0:
            raise ValueError(f"offsets[0] must be 0, got {int(offs[0])}")
        dec = offs[1:] < offs[:-1]
        if bool(dec.any()):
            p = int(torch.nonzero(dec)[0, 0]) + 1
            raise ValueError(f"offsets must be non-decreasing: offsets[{p}] = {int(offs[p])} < "
                             f"offsets[{p - 1}] = {int(offs[p - 1])}")
        if int(offs[-1]) > nnz:
            p = int(torch.nonzero(offs > nnz)[0, 0])
            raise ValueError(f"offsets[{p}] = {int(offs[p])} is past the end of indices ({nnz} lookups)")
    if include_last_offset:
        if n == 0:
            raise ValueError("offsets must have at least one entry with include_last_offset=True")
        if int(offs[-1]) != nnz:
            raise ValueError(f"with include_last_offset=True offsets[-1] must equal the number of lookups "
                             f"{nnz}, got {int(offs[-1])}")
        return offs[:-1]
    if n == 0 and nnz:
        raise ValueError(f"offsets is empty (no bags) but indices has {nnz} lookups")
    return offs


# ----------------------------------------------------------------------------- the device

class Device:
    """A PIM device: allocations in a flat fp32 image, operations run by a backend, statistics.

    Use :func:`open_device`.  Methods: :meth:`alloc`, :meth:`free`, :meth:`write`, :meth:`read`,
    :meth:`gather_reduce`, :meth:`gather_rows`, :meth:`scatter_rows`, :meth:`scatter_sgd`,
    :meth:`scatter_adagrad`, :meth:`scatter_rowwise_adagrad`, :meth:`stats`, :meth:`reset_stats`,
    :meth:`tables`, :meth:`info`, :meth:`host_view`, :meth:`free_bytes`.
    """

    def __init__(self, backend: str, cfg: PIMConfig):
        self.cfg = cfg
        self.backend_name = backend
        self.backend = get_backend(backend)(cfg)
        self.capacity = cfg.capacity_bytes
        self._tables: dict[str, TableInfo] = {}
        self._storage: dict[str, torch.Tensor] = {}
        self._free: list[tuple[int, int]] = [(0, self.capacity)]   # sorted (start, size)
        self._mapping = None                                          # AddressMapping (accumulate: partial)
        self.reset_stats()

    def __repr__(self) -> str:
        return (f"Device(backend={self.backend_name!r}, config={self.cfg.name!r}, tables={len(self._tables)}, "
                f"used={self.used_bytes()} B of {self.capacity} B)")

    # ------------------------------------------------------------------ allocation
    def free_bytes(self) -> int:
        return sum(s for _, s in self._free)

    def largest_free_block(self) -> int:
        return max((s for _, s in self._free), default=0)

    def used_bytes(self) -> int:
        return self.capacity - self.free_bytes()

    def tables(self) -> list[str]:
        return list(self._tables)

    def info(self, name: str) -> TableInfo:
        return self._table(name)

    def _table(self, name) -> TableInfo:
        if not isinstance(name, str):
            raise TypeError(f"table name must be a str, got {type(name).__name__}")
        t = self._tables.get(name)
        if t is None:
            known = ", ".join(repr(k) for k in self._tables) or "none"
            raise UnknownTableError(f"unknown table {name!r} (allocated: {known})")
        return t

    def alloc(self, name: str, rows: int, dim: int) -> TableInfo:
        """Allocate a ``rows x dim`` fp32 table (zeros); rows are padded to whole 64 B beats."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"table name must be a non-empty str, got {name!r}")
        if name in self._tables:
            raise ValueError(f"table {name!r} is already allocated (free it first)")
        for v, n in ((rows, "rows"), (dim, "dim")):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{n} must be an int, got {type(v).__name__}")
        rows, dim = int(rows), int(dim)
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        pd = padded_dim(dim)
        need = rows * pd * 4
        reserve = -(-need // _ALIGN) * _ALIGN
        for i, (start, size) in enumerate(self._free):
            if size >= reserve:
                break
        else:
            raise OutOfDeviceMemory(
                f"cannot allocate table {name!r} ({rows} rows x {dim} fp32, padded to {pd} = {reserve} B) on "
                f"device {self.cfg.name!r}: {self.free_bytes()} B free of {self.capacity} B "
                f"(largest free block {self.largest_free_block()} B)")
        if self.cfg.accumulate == "partial":
            bad = self.cfg.straddling_row(start, rows, pd * 4)
            if bad is not None:
                raise ValueError(
                    f"cannot allocate table {name!r} on device {self.cfg.name!r}: row {bad} ({pd * 4} B at device "
                    f"address {hex(start + bad * pd * 4)}) spans two units under mapping "
                    f"{self.cfg.address_mapping!r}; accumulate 'partial' needs every row inside one unit "
                    f"(a mapping with the column field directly above the 64 B offset, e.g. 'robachrabgco')")
        storage = self.backend.new_storage(rows * dim)  # payload only; may raise MemoryError before any state change
        info = TableInfo(name, rows, dim, pd, start, reserve)
        if self.backend.mirrored:
            self.backend.on_alloc(info)       # zero the region in the hardware's memory
        if reserve == size:
            del self._free[i]
        else:
            self._free[i] = (start + reserve, size - reserve)
        self._tables[name] = info
        self._storage[name] = storage
        self._count("alloc")
        return info

    def free(self, name: str) -> None:
        """Release a table's device memory (adjacent free blocks merge)."""
        t = self._table(name)
        del self._tables[name]
        del self._storage[name]
        starts = [s for s, _ in self._free]
        i = bisect.bisect_left(starts, t.base)
        self._free.insert(i, (t.base, t.nbytes))
        merged: list[tuple[int, int]] = []
        for s, n in self._free:
            if merged and merged[-1][0] + merged[-1][1] == s:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((s, n))
        self._free = merged
        self._count("free")

    def _rows(self, name: str) -> torch.Tensor:
        """The host backing of a table: a contiguous ``(rows, dim)`` tensor (the padding lanes of the
        device rows are zero by construction and never stored on the host)."""
        t = self._tables[name]
        return self._storage[name].view(t.rows, t.dim)

    def host_view(self, name: str) -> torch.Tensor:
        """The table's ``(rows, dim)`` view of device memory (contiguous, no copy; in-process backends only).

        Writing through it bypasses the statistics; :class:`~pimcast.host.embedding.PIMEmbeddingBag`
        uses it as its ``weight`` Parameter so that the table is held once.
        """
        t = self._table(name)
        if not self.backend.in_process:
            raise PIMError(f"backend {self.backend_name!r} keeps device memory out of process; no host view")
        return self._rows(name)

    # ------------------------------------------------------------------ statistics
    def reset_stats(self) -> None:
        self._stats = {
            "ops": {}, "lookups": 0, "bags": 0, "rows_updated": 0, "fmas": 0,
            "requests": {"read": 0, "write": 0},
            "bytes": {"dram_read": 0, "dram_write": 0, "padding": 0, "host_in": 0, "host_out": 0},
        }
        self._timing = empty_timing() if self.backend.has_timing and self.cfg.timing != "off" else None

    def _count(self, op: str) -> None:
        self._stats["ops"][op] = self._stats["ops"].get(op, 0) + 1

    def stats(self) -> dict:
        """Counters since the last :meth:`reset_stats`.

        Always: ``ops`` (calls per operation), ``lookups``, ``bags``, ``rows_updated``, ``fmas`` (lane
        operations incl. padding lanes), ``requests`` (64 B DRAM reads/writes), ``bytes`` (``dram_read``,
        ``dram_write``, ``padding`` = the padding share of the DRAM bytes, ``host_in``/``host_out`` over the
        host link), ``bytes_moved`` (DRAM + host link).  With timing (``model`` backend): ``cycles``, ``ns``
        (operations run back to back), ``GBps`` (DRAM bytes / time), ``dram`` (``acts``, ``row_hits``,
        ``refreshes``, ``reads``, ``writes``, ``precharges``), ``forwarded_beats``, ``busy`` (cycles per
        resource: ``dram_max``/``dram_sum`` over units, ``reduce_max``/``reduce_sum``, ``host_link``,
        ``rank_shared``), ``utilization`` (busy / cycles), ``energy_pJ`` (act, read, write, refresh,
        background, fma, total) and ``timing_sampled``.  ``golden`` reports ``timing: None``.
        """
        s = copy.deepcopy(self._stats)
        b = s["bytes"]
        s["bytes_moved"] = b["dram_read"] + b["dram_write"] + b["host_in"] + b["host_out"]
        s["backend"] = self.backend_name
        s["config"] = self.cfg.name
        T = self._timing
        if T is None:
            s["timing"] = None
            return s
        s["timing"] = self.cfg.timing
        s["cycles"] = T["cycles"]
        s["ns"] = T["ns"]
        dram_bytes = b["dram_read"] + b["dram_write"]
        s["GBps"] = dram_bytes / T["ns"] if T["ns"] else 0.0
        s["dram"] = {"acts": T["acts"], "precharges": T["acts"], "row_hits": T["row_hits"],
                     "refreshes": T["refreshes"], "reads": T["reads"], "writes": T["writes"]}
        s["forwarded_beats"] = T["forwarded_beats"]
        s["busy"] = dict(T["busy"])
        n_units = self.cfg.num_units()
        s["utilization"] = {k: (v / (T["cycles"] * (n_units if k.endswith("_sum") else 1)) if T["cycles"] else 0.0)
                            for k, v in T["busy"].items()}
        s["energy_pJ"] = dict(T["energy_pJ"])
        s["timing_sampled"] = T["sampled"]
        return s

    def _account(self, op: str, *, reads: int = 0, writes: int = 0, padding: int = 0, host_in: int = 0,
                 host_out: int = 0, fmas: int = 0, lookups: int = 0, bags: int = 0, rows_updated: int = 0,
                 timing: Optional[dict] = None) -> None:
        s = self._stats
        self._count(op)
        s["lookups"] += lookups
        s["bags"] += bags
        s["rows_updated"] += rows_updated
        s["fmas"] += fmas
        s["requests"]["read"] += reads
        s["requests"]["write"] += writes
        b = s["bytes"]
        b["dram_read"] += reads * REQUEST_BYTES
        b["dram_write"] += writes * REQUEST_BYTES
        b["padding"] += padding
        b["host_in"] += host_in
        b["host_out"] += host_out
        if self._timing is not None and timing is not None:
            T = self._timing
            for k in ("cycles", "acts", "row_hits", "refreshes", "forwarded_beats", "reads", "writes"):
                T[k] += timing[k]
            T["ns"] += timing["ns"]
            T["sampled"] |= timing["sampled"]
            for k, v in timing["busy"].items():
                T["busy"][k] += v
            for k, v in timing["energy_pJ"].items():
                T["energy_pJ"][k] += v

    def _row_addresses(self, t: TableInfo, rows: torch.Tensor) -> np.ndarray:
        """Byte addresses of every beat of ``rows`` (row-major: a row's beats consecutively)."""
        r = rows.numpy().astype(np.uint64)
        k = np.arange(t.row_beats, dtype=np.uint64) * np.uint64(REQUEST_BYTES)
        return (np.uint64(t.base) + r[:, None] * np.uint64(t.row_bytes) + k[None, :]).ravel()

    def _timed(self) -> bool:
        return self._timing is not None

    # ------------------------------------------------------------------ bulk transfers
    def write(self, name: str, tensor: torch.Tensor, row_offset: int = 0) -> None:
        """Copy ``tensor`` (``(n, dim)`` float32) into rows ``row_offset .. row_offset+n-1`` (bits unchanged)."""
        t = self._table(name)
        x = _f32_tensor(tensor, "tensor")
        if x.dim() != 2 or x.shape[1] != t.dim:
            raise ValueError(f"tensor must have shape (n, {t.dim}) for table {name!r}, got shape {tuple(x.shape)}")
        if isinstance(row_offset, bool) or not isinstance(row_offset, (int, np.integer)):
            raise TypeError(f"row_offset must be an int, got {type(row_offset).__name__}")
        row_offset = int(row_offset)
        n = x.shape[0]
        if row_offset < 0 or row_offset + n > t.rows:
            raise IndexError(f"rows {row_offset}..{row_offset + n - 1} (row_offset={row_offset}, {n} rows) are "
                             f"outside table {name!r} of {t.rows} rows")
        timing = None
        if self.backend.mirrored and n:
            self.backend.store(t, row_offset, x)
        if self._timed() and n:
            timing = self.backend.time_sequential(t.base + row_offset * t.row_bytes, n * t.row_bytes, True,
                                                  host_in=n * t.row_bytes + _INSTR_BYTES)
        self._rows(name)[row_offset:row_offset + n] = x
        self._account("write", writes=n * t.row_beats, padding=n * (t.padded_dim - t.dim) * 4,
                      host_in=n * t.row_bytes + _INSTR_BYTES, timing=timing)

    def read(self, name: str) -> torch.Tensor:
        """A copy of the whole table ``(rows, dim)`` (bits unchanged)."""
        t = self._table(name)
        timing = None
        if self.backend.mirrored:
            out = self._load_checked(t, torch.arange(t.rows))
        if self._timed():
            timing = self.backend.time_sequential(t.base, t.rows * t.row_bytes, False,
                                                  host_out=t.rows * t.row_bytes, host_in=_INSTR_BYTES)
        if not self.backend.mirrored:
            out = self._rows(name).clone()
        self._account("read", reads=t.rows * t.row_beats, padding=t.rows * (t.padded_dim - t.dim) * 4,
                      host_out=t.rows * t.row_bytes, host_in=_INSTR_BYTES, timing=timing)
        return out

    def _load_checked(self, t: TableInfo, rows: torch.Tensor) -> torch.Tensor:
        """Rows read from a mirrored backend's hardware memory, checked bit for bit against the host
        mirror (a mismatch means the hardware lost or corrupted data: :class:`PIMError`)."""
        out = self.backend.load_rows(t, rows)
        ref = self._rows(t.name).index_select(0, rows)
        diff = out.view(torch.int32) != ref.view(torch.int32)
        if bool(diff.any()):
            i, j = (int(v) for v in diff.nonzero()[0])
            raise PIMError(f"{self.backend_name} device memory of table {t.name!r} differs from the host mirror "
                           f"at row {int(rows[i])}, element {j}: 0x{int(out.view(torch.int32)[i, j]) & 0xFFFFFFFF:08x}"
                           f" != 0x{int(ref.view(torch.int32)[i, j]) & 0xFFFFFFFF:08x}")
        return out

    # ------------------------------------------------------------------ row access
    def gather_rows(self, name: str, rows: torch.Tensor) -> torch.Tensor:
        """``table[rows]`` (``(n, dim)``, bits unchanged; duplicates allowed)."""
        t = self._table(name)
        r = _int_tensor(rows, "rows")
        _check_ids(r, t.rows, "rows", name)
        n = r.numel()
        host_in = _INSTR_BYTES + 4 * n
        timing = None
        if self.backend.mirrored:
            out = self._load_checked(t, r)
        if self._timed() and n:
            timing = self.backend.time(self._row_addresses(t, r), host_in=host_in, host_out=n * t.row_bytes)
        if not self.backend.mirrored:
            out = self._rows(name).index_select(0, r)
        self._account("gather_rows", reads=n * t.row_beats, padding=n * (t.padded_dim - t.dim) * 4,
                      host_in=host_in, host_out=n * t.row_bytes, lookups=n, timing=timing)
        return out

    def scatter_rows(self, name: str, rows: torch.Tensor, values: torch.Tensor) -> None:
        """``table[rows] = values`` for unique ``rows`` (row write-back of a host optimizer)."""
        t = self._table(name)
        r = _int_tensor(rows, "rows")
        v = _f32_tensor(values, "values")
        _check_ids(r, t.rows, "rows", name)
        _check_unique(r, "rows")
        n = r.numel()
        if tuple(v.shape) != (n, t.dim):
            raise ValueError(f"values must have shape ({n}, {t.dim}) (rows x dim), got shape {tuple(v.shape)}")
        host_in = _INSTR_BYTES + 4 * n + n * t.row_bytes
        timing = None
        if self.backend.mirrored and n:
            self.backend.store_rows(t, r, v.contiguous())
        if self._timed() and n:
            timing = self.backend.time(self._row_addresses(t, r), np.ones(n * t.row_beats, bool), host_in=host_in)
        self._rows(name).index_copy_(0, r, v.contiguous())
        self._account("scatter_rows", writes=n * t.row_beats, padding=n * (t.padded_dim - t.dim) * 4,
                      host_in=host_in, rows_updated=n, timing=timing)

    def account_host_update(self, name: str, rows: torch.Tensor) -> None:
        """Count a host optimizer's update of ``rows`` made through :meth:`host_view`: each row is read
        to the host and written back (traffic and timing only; the data was changed in place)."""
        t = self._table(name)
        r = _int_tensor(rows, "rows")
        _check_ids(r, t.rows, "rows", name)
        n = r.numel()
        nbytes = n * t.row_bytes
        timing = None
        if self.backend.mirrored and n:
            self.backend.store_rows(t, r, self._rows(name).index_select(0, r))
        if self._timed() and n:
            a = self._row_addresses(t, r).reshape(n, -1)
            m = a.shape[1]
            timing = self.backend.time(np.concatenate([a, a], axis=1).ravel(),
                                       np.tile(np.r_[np.zeros(m, bool), np.ones(m, bool)], n),
                                       host_in=nbytes, host_out=nbytes)
        self._account("host_update", reads=n * t.row_beats, writes=n * t.row_beats,
                      padding=2 * n * (t.padded_dim - t.dim) * 4, host_in=nbytes, host_out=nbytes,
                      rows_updated=n, timing=timing)

    # ------------------------------------------------------------------ gather-reduce
    def gather_reduce(self, name: str, indices: torch.Tensor, offsets: torch.Tensor,
                      per_sample_weights: Optional[torch.Tensor] = None, *, mode: str = "sum",
                      include_last_offset: bool = False) -> torch.Tensor:
        """GATHER_REDUCE: ``(bags, dim)``; bag ``i`` = ``indices[offsets[i]:offsets[i+1]]``.

        ``offsets`` are PyTorch-style start offsets (``offsets[0] == 0``, non-decreasing, last bag to
        the end; ``include_last_offset=True``: one more entry equal to ``len(indices)``).
        ``per_sample_weights``: float32 per lookup (``mode="sum"`` only); ``mode="mean"`` uses weights
        ``1.0f/len(bag)``.  Empty bags give +0.0; NaN results are ``0x7FC00000``.
        """
        t = self._table(name)
        if mode not in ("sum", "mean"):
            raise ValueError(f"mode must be 'sum' or 'mean', got {mode!r}")
        idx = _int_tensor(indices, "indices")
        offs = _int_tensor(offsets, "offsets")
        nnz = idx.numel()
        w = None
        if per_sample_weights is not None:
            if mode != "sum":
                raise ValueError(f"per_sample_weights is only supported with mode='sum', got mode={mode!r}")
            w = _f32_tensor(per_sample_weights, "per_sample_weights")
            if tuple(w.shape) != (nnz,):
                raise ValueError(f"per_sample_weights must have shape ({nnz},) (one weight per lookup), "
                                 f"got shape {tuple(w.shape)}")
            w = w.contiguous()
        starts = _starts_from_offsets(offs, nnz, include_last_offset)
        _check_ids(idx, t.rows, "indices", name)
        nb = starts.numel()
        ends = torch.cat([starts[1:], torch.tensor([nnz], dtype=torch.int64)]) if nb else starts
        lengths = ends - starts
        if mode == "mean":
            per_bag = torch.ones(nb, dtype=torch.float32) / lengths.clamp(min=1).to(torch.float32)
            w = torch.repeat_interleave(per_bag, lengths)
        # lookups past the last bag's start are inside it; lookups before offsets[0] cannot exist
        partial = None
        if self.cfg.accumulate == "partial":
            if self._mapping is None:
                self._mapping = AddressMapping(self.cfg.address_mapping, self.cfg.dram_timing(), channels=self.cfg.channels)
            partial = partial_plan(self.cfg, self._mapping, t.base, t.row_bytes, idx.numpy(), lengths.numpy())
            if self.backend.mirrored:       # the hardware makes the partial sums (rtl: one core per rank)
                out = _canon(self.backend.gather_reduce_table(t, idx, starts, lengths, w))
            else:
                reduce = lambda tab, i, st, ln, ww: self.backend.gather_reduce(tab, tab.shape[1], i, st, ln, ww)  # noqa: E731
                out = _canon(tc.reduce_partial(reduce, self._rows(name), idx, starts, lengths, w, partial["unit"],
                                               self.cfg.unit_group(self._mapping.t)))
        elif self.backend.mirrored:
            out = _canon(self.backend.gather_reduce_table(t, idx, starts, lengths, w))
        else:
            out = _canon(self.backend.gather_reduce(self._rows(name), t.dim, idx, starts, lengths, w))
        host_in = _INSTR_BYTES + 4 * nnz + 4 * nb + (4 * nnz if w is not None and mode == "sum" else 0)
        kw = gather_stream_args(self.cfg, t.row_bytes, t.padded_dim, lengths.numpy(), partial,
                                with_groups=self._timed() and nnz > 0)
        host_out, fmas = kw.pop("host_out"), kw["fmas"]
        timing = None
        if self._timed() and nnz:
            # a rank's core buffers and validates the index stream before its DRAM stream starts
            setup = unit_setup_cycles(self.cfg, nnz, nb, weighted=w is not None, lengths=lengths.numpy(), plan=partial)
            timing = self.backend.time(self._row_addresses(t, idx), host_in=host_in, host_out=host_out,
                                       setup_cycles=setup, **kw)
        elif self._timed():
            timing = self.backend.time(np.zeros(0, np.uint64), host_in=host_in, host_out=host_out)
        self._account("gather_reduce", reads=nnz * t.row_beats, padding=nnz * (t.padded_dim - t.dim) * 4,
                      host_in=host_in, host_out=host_out, fmas=fmas, lookups=nnz, bags=nb, timing=timing)
        return out

    # ------------------------------------------------------------------ in-memory optimizers
    def _check_update(self, name, rows, grads):
        t = self._table(name)
        r = _int_tensor(rows, "rows")
        g = _f32_tensor(grads, "grads")
        _check_ids(r, t.rows, "rows", name)
        _check_unique(r, "rows")
        n = r.numel()
        if tuple(g.shape) != (n, t.dim):
            raise ValueError(f"grads must have shape ({n}, {t.dim}) (rows x dim), got shape {tuple(g.shape)}")
        return t, r, g.contiguous()

    def _rmw_timing(self, tabs_rows: list, host_in: int, fmas: int):
        """Read-modify-write stream: per row, read all beats of every operand table, then write them."""
        if not self._timed():
            return None
        parts, flags = [], []
        for t, r in tabs_rows:
            a = self._row_addresses(t, r).reshape(r.numel(), -1)
            parts.append(a)
        if not parts or parts[0].shape[0] == 0:
            return self.backend.time(np.zeros(0, np.uint64), host_in=host_in)
        a = np.concatenate(parts, axis=1)
        addr = np.concatenate([a, a], axis=1).ravel()
        m = a.shape[1]
        flags = np.tile(np.r_[np.zeros(m, bool), np.ones(m, bool)], a.shape[0])
        return self.backend.time(addr, flags, fmas=fmas, host_in=host_in)

    def scatter_sgd(self, name: str, rows: torch.Tensor, grads: torch.Tensor, lr: float) -> None:
        """SCATTER_SGD: ``w[rows] = fma(-lr, grads, w[rows])`` for unique ``rows`` (bit-exact torch.optim.SGD)."""
        t, r, g = self._check_update(name, rows, grads)
        lr = _check_lr(lr)
        n = r.numel()
        P = self._rows(name)
        fused = self.backend.fused_sgd
        if self.backend.mirrored:
            new = _canon(self.backend.scatter_sgd_table(t, r, g, lr)) if n else None   # rows read back
            fused = False
        else:
            new = _canon(self.backend.sgd(P.index_select(0, r), g, lr)) if n and not fused else None
        host_in = _INSTR_BYTES + 4 * n + n * t.row_bytes
        timing = self._rmw_timing([(t, r)], host_in, n * t.padded_dim)
        if n and fused:
            self.backend.sgd_rows(P, r.contiguous(), g, lr)     # in place, canonical NaNs
        elif n:
            P.index_copy_(0, r, new)
        self._account("scatter_sgd", reads=n * t.row_beats, writes=n * t.row_beats,
                      padding=2 * n * (t.padded_dim - t.dim) * 4, host_in=host_in, fmas=n * t.padded_dim,
                      rows_updated=n, timing=timing)

    def _require_unmirrored(self, op: str) -> None:
        if self.backend.mirrored:
            raise PIMError(f"{op} is not an instruction of the {self.backend_name!r} backend's hardware (the PIM "
                           f"core runs GATHER_REDUCE and SCATTER_SGD); use scatter_sgd, or a host optimizer "
                           f"with gather_rows/scatter_rows")

    def adagrad_state_name(self, name: str) -> str:
        return f"{name}.adagrad_sum"

    def rowwise_state_name(self, name: str) -> str:
        return f"{name}.rowwise_adagrad_h"

    def scatter_adagrad(self, name: str, rows: torch.Tensor, grads: torch.Tensor, lr: float,
                        eps: float = 1e-10) -> None:
        """Exact Adagrad on unique rows; the state sum lives in device memory (``<name>.adagrad_sum``,
        allocated on first use).  Bit-identical to :func:`pimcast.models.tensor_cast.adagrad`."""
        t, r, g = self._check_update(name, rows, grads)
        self._require_unmirrored("scatter_adagrad")
        lr = _check_lr(lr)
        eps = _check_lr(eps, "eps")
        sname = self.adagrad_state_name(name)
        if sname not in self._tables:
            self.alloc(sname, t.rows, t.dim)   # OutOfDeviceMemory (with the details) if it does not fit
        st = self._tables[sname]
        n = r.numel()
        P, S = self._rows(name), self._rows(sname)
        if n:
            nw, ns = self.backend.adagrad(P.index_select(0, r), S.index_select(0, r), g, lr, eps)
            nw, ns = _canon(nw), _canon(ns)
        host_in = _INSTR_BYTES + 4 * n + n * t.row_bytes
        timing = self._rmw_timing([(t, r), (st, r)], host_in, 4 * n * t.padded_dim)
        if n:
            P.index_copy_(0, r, nw.contiguous())
            S.index_copy_(0, r, ns.contiguous())
        self._account("scatter_adagrad", reads=2 * n * t.row_beats, writes=2 * n * t.row_beats,
                      padding=4 * n * (t.padded_dim - t.dim) * 4, host_in=host_in, fmas=4 * n * t.padded_dim,
                      rows_updated=n, timing=timing)

    def scatter_rowwise_adagrad(self, name: str, rows: torch.Tensor, grads: torch.Tensor, lr: float,
                                eps: float = 1e-8) -> None:
        """Exact row-wise Adagrad on unique rows; one fp32 state per row, packed 16 per beat in device
        memory (``<name>.rowwise_adagrad_h``).  Bit-identical to :func:`tensor_cast.rowwise_adagrad`."""
        t, r, g = self._check_update(name, rows, grads)
        self._require_unmirrored("scatter_rowwise_adagrad")
        lr = _check_lr(lr)
        eps = _check_lr(eps, "eps")
        sname = self.rowwise_state_name(name)
        if sname not in self._tables:
            self.alloc(sname, -(-t.rows // BEAT_FLOATS), BEAT_FLOATS)
        st = self._tables[sname]
        n = r.numel()
        P = self._rows(name)
        H = self._storage[sname]
        if n:
            nw, nh = self.backend.rowwise_adagrad(P.index_select(0, r), H[r], g, lr, eps)
            nw, nh = _canon(nw), _canon(nh)
        host_in = _INSTR_BYTES + 4 * n + n * t.row_bytes
        timing = None
        if self._timed():
            wa = self._row_addresses(t, r).reshape(n, -1)
            ha = (np.uint64(st.base) + (r.numpy().astype(np.uint64) // np.uint64(BEAT_FLOATS))
                  * np.uint64(REQUEST_BYTES))[:, None]
            a = np.concatenate([wa, ha], axis=1)
            m = a.shape[1]
            addr = np.concatenate([a, a], axis=1).ravel()
            flags = np.tile(np.r_[np.zeros(m, bool), np.ones(m, bool)], n)
            timing = self.backend.time(addr, flags, fmas=2 * n * t.padded_dim, host_in=host_in)
        if n:
            P.index_copy_(0, r, nw.contiguous())
            H[r] = nh
        self._account("scatter_rowwise_adagrad", reads=n * (t.row_beats + 1), writes=n * (t.row_beats + 1),
                      padding=2 * n * (t.padded_dim - t.dim) * 4, host_in=host_in, fmas=2 * n * t.padded_dim,
                      rows_updated=n, timing=timing)

    def state(self, name: str, kind: str) -> torch.Tensor:
        """A copy of an optimizer state: ``kind="adagrad"`` -> ``(rows, dim)``, ``"rowwise_adagrad"`` -> ``(rows,)``."""
        t = self._table(name)
        if kind == "adagrad":
            s = self.adagrad_state_name(name)
            return self._rows(s).clone() if s in self._tables else torch.zeros(t.rows, t.dim)
        if kind == "rowwise_adagrad":
            s = self.rowwise_state_name(name)
            return self._storage[s][:t.rows].clone() if s in self._tables else torch.zeros(t.rows)
        raise ValueError(f"kind must be 'adagrad' or 'rowwise_adagrad', got {kind!r}")


def open_device(backend: str = "model", config: Union[str, Path, PIMConfig, None] = None, **overrides) -> Device:
    """Open a device: ``backend`` is ``"model"`` (default) or ``"golden"`` (``rtl`` when registered);
    ``config`` is a PIM preset name (``configs/pim``), a YAML path or a :class:`PIMConfig`;
    ``overrides`` replace config fields (e.g. ``ranks=1``, ``capacity="64MiB"``, ``timing="analytic"``)."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, got {type(backend).__name__}")
    get_backend(backend)  # unknown backend -> ValueError before loading anything
    return Device(backend, load_pim_config(config, **overrides))
