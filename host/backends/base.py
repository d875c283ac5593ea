"""The backend interface: what a device backend computes; the :class:`~pimcast.host.device.Device`
does everything else (validation, allocation, address streams, statistics).

A backend receives *validated* arguments only (int64 index tensors, float32 value tensors, the
contiguous ``(rows, dim)`` host backing of a table — the device rows' padding lanes are not
stored, see :mod:`pimcast.host.device`) and returns plain tensors.  It must follow
pimcast's one numerics definition (ARCHITECTURE.md "Numerics"); the Device canonicalizes NaN
results to ``0x7FC00000`` afterwards, as the hardware does.

Adding a backend (e.g. ``rtl``): subclass :class:`Backend`, implement the functional methods by
running the hardware (encode the ISA, stream the operands, read the results back) and
:meth:`Backend.time` from the hardware's cycle counters, then ``register_backend("rtl", cls)``.
A backend whose memory is not in the host process sets ``in_process = False``; the Device then
keeps no host view of the tables (``Device.host_view`` raises) and calls :meth:`Backend.load` /
:meth:`Backend.store` for bulk transfers.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from pimcast.models import tensor_cast as tc

__all__ = ["Backend"]


class Backend:
    """Base class (and the shared exact optimizer arithmetic of the in-process backends)."""

    name = "base"
    #: the device image lives in this process's memory (tables can be viewed without a copy)
    in_process = True
    #: the backend reports timing (cycles, DRAM commands, energy)
    has_timing = False
    #: the device memory lives in hardware (``rtl``); the host backing is a mirror that the Device keeps in
    #: step: it calls :meth:`on_alloc`, :meth:`store`, :meth:`store_rows`, :meth:`load_rows`,
    #: :meth:`gather_reduce_table` and :meth:`scatter_sgd_table` instead of computing on the backing, and
    #: checks every read-back against the mirror bit for bit
    mirrored = False

    def __init__(self, cfg):
        self.cfg = cfg

    # ------------------------------------------------------------------ storage
    def new_storage(self, nfloats: int) -> torch.Tensor:
        """Zeroed fp32 storage for one allocation (``calloc``: pages are touched only when written)."""
        return torch.from_numpy(np.zeros(nfloats, dtype=np.float32))

    # ------------------------------------------------------------------ functional ops
    def gather_reduce(self, table: torch.Tensor, dim: int, indices: torch.Tensor, starts: torch.Tensor,
                      lengths: torch.Tensor, weights: Optional[torch.Tensor]) -> torch.Tensor:
        """``(bags, dim)``: per bag ``acc = +0; acc = fma(w_j, table[i_j], acc)`` in index order.

        ``table`` is the contiguous ``(rows, dim)`` backing; ``starts``/``lengths`` describe the
        bags (``sum(lengths) == len(indices)``); ``weights`` is ``None`` (plain sum) or float32 per lookup.
        """
        raise NotImplementedError

    #: :meth:`sgd_rows` updates the table in place (with canonical NaNs); else the Device calls :meth:`sgd`
    fused_sgd = False

    def sgd(self, w: torch.Tensor, g: torch.Tensor, lr: float) -> torch.Tensor:
        """New rows ``fma(-lr, g, w)`` (``-lr`` rounded to binary32), by :func:`tensor_cast.sgd`."""
        n = w.shape[0]
        return tc.sgd(w, torch.arange(n), g, lr)

    def sgd_rows(self, table: torch.Tensor, rows: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        """In place (``fused_sgd`` backends): ``table[rows] = canon(fma(-lr, g, table[rows]))`` for unique
        ``rows`` — the bits of :meth:`sgd` with NaNs made ``0x7FC00000``."""
        raise NotImplementedError

    def adagrad(self, w, s, g, lr: float, eps: float):
        n = w.shape[0]
        nw, ns = tc.adagrad(w, s, torch.arange(n), g, lr, eps)
        return nw, ns

    def rowwise_adagrad(self, w, h, g, lr: float, eps: float):
        n = w.shape[0]
        nw, nh = tc.rowwise_adagrad(w, h, torch.arange(n), g, lr, eps)
        return nw, nh

    # ------------------------------------------------------------------ mirrored backends (hardware memory)
    def on_alloc(self, info) -> None:
        """A table was allocated at ``info.base`` (``info.nbytes``): zero it in hardware memory."""
        raise NotImplementedError

    def store(self, info, row_offset: int, values: torch.Tensor) -> None:
        """Write ``values`` (``(n, info.dim)`` fp32) to rows ``row_offset..`` in hardware memory."""
        raise NotImplementedError

    def store_rows(self, info, rows: torch.Tensor, values: torch.Tensor) -> None:
        """Write ``values[i]`` to row ``rows[i]`` (unique) in hardware memory."""
        raise NotImplementedError

    def load_rows(self, info, rows: torch.Tensor) -> torch.Tensor:
        """``(len(rows), info.dim)``: the rows read from hardware memory."""
        raise NotImplementedError

    def gather_reduce_table(self, info, indices, starts, lengths, weights) -> torch.Tensor:
        """GATHER_REDUCE run by the hardware on table ``info`` (arguments as :meth:`gather_reduce`)."""
        raise NotImplementedError

    def scatter_sgd_table(self, info, rows, grads, lr: float) -> torch.Tensor:
        """SCATTER_SGD run by the hardware; returns the updated rows as read back from hardware memory."""
        raise NotImplementedError

    # ------------------------------------------------------------------ timing
    def time(self, addr, is_write=None, *, groups=None, fmas=0, host_in=0, host_out=0,
             setup_cycles=0, rank_bus_beats=None, flush_cycles=None) -> Optional[dict]:
        """Timing dict of one operation's request stream (see :mod:`pimcast.host.timing`), or ``None``.
        ``setup_cycles``: serial cycles each unit spends before its DRAM stream (the core's index
        stream and validation pass, :func:`pimcast.host.timing.gather_setup_cycles`);
        ``rank_bus_beats``: 64 B beats per rank crossing its data bus to the buffer device
        (partial sums of bank-group units); ``flush_cycles``: the bank-group core's flush and adder cycles
        per rank (:func:`pimcast.host.timing.gather_stream_args`)."""
        return None

    def time_sequential(self, base: int, nbytes: int, write: bool, *, host_in=0, host_out=0) -> Optional[dict]:
        return None
