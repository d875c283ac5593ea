"""``model`` backend (the default): bit-exact functional emulation + the fast timing model.

Functional path: ``torch.nn.functional.embedding_bag(mode="sum")`` on the padded table, with the
per-lookup weights as ``per_sample_weights`` (mean = weights ``1/len``).  PyTorch's CPU kernel is a
sequential per-bag accumulation from +0.0 in index order (a fused multiply-add with weights) —
exactly pimcast's numerics (measured on torch 2.13).  Because that is a property of the PyTorch
build and CPU, the backend *checks* it once per process on a probe designed to expose any other
order, fusing or flush-to-zero (:func:`embedding_bag_is_exact`); where it fails, the backend
falls back to the golden reducer (same results, slower).  The optimizer arithmetic is the golden
model's (one definition).  Timing: :class:`pimcast.host.timing.PIMTimer`.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from pimcast.host.backends.base import Backend
from pimcast.host.timing import PIMTimer
from pimcast.models import tensor_cast as tc
from pimcast.models.numerics import canonicalize_nan, f32_to_bits

__all__ = ["ModelBackend", "embedding_bag_is_exact"]

if tc._numba is not None:
    _fma_one = tc._fma_one

    @tc._numba.njit(cache=True, nogil=True)
    def _sgd_rows_kernel(table, rows, g, a):  # pragma: no cover (compiled)
        """``table[rows[i]] = canon(fma(a, g[i], table[rows[i]]))`` in place (rows unique): the
        definition's FMA (:func:`tensor_cast._fma_one`) fused with the row gather and write-back."""
        nan = np.int32(0x7FC00000).view(np.float32)
        n, d = g.shape
        for i in range(n):
            r = rows[i]
            for j in range(d):
                v = _fma_one(a, g[i, j], table[r, j])
                table[r, j] = nan if v != v else v
else:  # pragma: no cover
    _sgd_rows_kernel = None


def _fast_reduce(table, indices, starts, weights):
    return F.embedding_bag(indices, table, starts, mode="sum", per_sample_weights=weights)


@functools.lru_cache(maxsize=None)
def embedding_bag_is_exact() -> bool:
    """Does ``F.embedding_bag`` follow pimcast's numerics on this machine?  (probe, cached)"""
    g = torch.Generator().manual_seed(1234)
    rows, dim = 64, 37
    e = torch.randint(-30, 30, (rows, dim), generator=g).float()
    table = (torch.randn(rows, dim, generator=g) * torch.exp2(e)).float()
    table[0, :4] = torch.tensor([1e-45, -1e-45, 1e38, -0.0])        # subnormal, overflow, -0
    table[1, :4] = torch.tensor([1e-45, 1e-45, 1e38, -0.0])
    table[2, :4] = torch.tensor([1.0, 2.0 ** -24, 3.4e38, -0.0])
    idx = torch.randint(0, rows, (600,), generator=g)
    idx[:6] = torch.tensor([0, 1, 2, 2, 1, 0])
    starts = torch.tensor([0, 6, 6, 50, 51, 300], dtype=torch.int64)
    w = (torch.randn(600, generator=g) * 3).float()
    w[:6] = torch.tensor([1.0, 0.5, 2.0 ** -20, 1.0 + 2.0 ** -23, -1.0, 3.0])
    for weights in (None, w):
        ref = tc.gather_reduce(table, idx, starts, weights)
        got = _fast_reduce(table, idx, starts, weights)
        a = canonicalize_nan(f32_to_bits(ref))
        b = canonicalize_nan(f32_to_bits(got))
        if not (a == b).all():
            return False
    return True


class ModelBackend(Backend):
    name = "model"
    has_timing = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.timer = PIMTimer(cfg)
        self.exact_fast_path = embedding_bag_is_exact()
        self.fused_sgd = _sgd_rows_kernel is not None

    def sgd(self, w, g, lr):
        # tensor_cast.sgd's arithmetic on all the given rows (without its copy of the whole table)
        return tc._fma(-float(lr), g, w)

    def sgd_rows(self, table, rows, g, lr):
        _sgd_rows_kernel(table.numpy(), rows.numpy(), g.numpy(), np.float32(-float(lr)))

    def gather_reduce(self, table, dim, indices, starts, lengths, weights):
        nb = starts.numel()
        if nb == 0 or indices.numel() == 0:
            return torch.zeros(nb, dim, dtype=torch.float32)
        if not self.exact_fast_path:
            return tc.gather_reduce(table, indices, starts, weights)
        return _fast_reduce(table, indices, starts, weights)

    def time(self, addr, is_write=None, *, groups=None, fmas=0, host_in=0, host_out=0, setup_cycles=0,
             rank_bus_beats=None, flush_cycles=None):
        if self.cfg.timing == "off":
            return None
        return self.timer.time_stream(addr, is_write, groups=groups, fmas=fmas, host_in=host_in, host_out=host_out,
                                      setup_cycles=setup_cycles, rank_bus_beats=rank_bus_beats,
                                      flush_cycles=flush_cycles)

    def time_sequential(self, base, nbytes, write, *, host_in=0, host_out=0):
        if self.cfg.timing == "off":
            return None
        return self.timer.time_sequential(base, nbytes, write, host_in=host_in, host_out=host_out)
