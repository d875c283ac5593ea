"""PyTorch drop-ins whose table lives in PIM device memory: :class:`PIMEmbeddingBag`, :class:`PIMEmbedding`.

Forward = device GATHER_REDUCE (``PIMEmbedding``: a plain row gather).  The tensor-casting sort
(:func:`pimcast.models.tensor_cast.cast`) runs *during the forward* and is stashed for the
backward, so the backward's critical path is only: write ``grad_output`` to a device scratch
region + one device GATHER_REDUCE over it with the casted index (mean mode: weights ``1/len`` per
casted entry; weighted: the permuted ``per_sample_weights``).  The result is the coalesced
gradient ``G`` of the unique rows.

Storage and the ``weight`` Parameter (design choice)
----------------------------------------------------
The table is held **once** in host memory: in the device image.  For in-process backends
(``golden``, ``model``) ``weight`` is an ``nn.Parameter`` whose data *is* the device image's
host backing, a contiguous ``(rows, dim)`` tensor — no copy, no stand-in.  (Device rows are
padded to 64 B beats in the modeled device memory, but the always-zero padding lanes are not
stored on the host; see :mod:`pimcast.host.device`.)  Hence ``weight.grad`` (a coalesced sparse
COO tensor with ``sparse=True``, the default here; dense with ``sparse=False`` as in PyTorch)
works with stock ``torch.optim.SGD``, ``Adagrad`` and ``SparseAdam``: they update the device
image in place.

The Parameter must be contiguous.  It used to be a strided ``[:, :dim]`` view over padded rows;
PyTorch's CPU ``dense.add_(sparse)`` (what every stock sparse optimizer step calls) then takes
its generic path — a loop of ``dense.select(0, row).add_(values[k])`` inside ``at::parallel_for``
— and once the number of touched rows exceeds the grain size, the loop runs on OpenMP worker
threads, which do not inherit the caller's ``no_grad`` mode: autograd then rejects the in-place
add on a view of a leaf that requires grad ("a view of a leaf Variable that requires grad is
being used in an in-place operation").  With one thread, few rows, or a contiguous table
(``dim % 16 == 0``) the bug did not show.  Those host updates are
counted in the device statistics as a read + write-back of the touched rows by a global optimizer
step hook (:func:`_host_step_hook`).  The in-memory optimizers of :mod:`pimcast.host.optim` update
the rows inside the device instead (SCATTER_SGD).  On the ``rtl`` backend the device memory lives in
the simulated DRAM; ``weight`` aliases the Device's host mirror of it, every host-side update is
written through to the RTL (the step hook above) and every read-back is checked against the mirror.

Numerics: forward bit-identical to ``torch.nn.EmbeddingBag`` in sum mode (with or without
``per_sample_weights``); mean mode uses weights ``1.0f/len`` (within rounding of PyTorch's).
Gradients: sequential per row in ascending bag order (pimcast's definition); PyTorch sums
duplicates in another order, so they agree within ``1e-5 * sum|terms|``, and exactly when the
sums are exact.

Bad input raises what ``torch.nn.EmbeddingBag`` raises (``RuntimeError`` for ids/offsets,
``ValueError`` for shapes, ``NotImplementedError`` for weights with mode="mean"), always before
the device is touched.
"""
from __future__ import annotations

import itertools
from typing import Optional

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook as _register_step_post_hook

from pimcast.host.device import Device, open_device
from pimcast.models.tensor_cast import cast

__all__ = ["PIMEmbeddingBag", "PIMEmbedding"]

_ids = itertools.count()
_INT = (torch.int32, torch.int64)


def _dtype_name(dt) -> str:
    return {torch.float32: "FloatTensor", torch.float64: "DoubleTensor", torch.int16: "ShortTensor",
            torch.int8: "CharTensor", torch.uint8: "ByteTensor", torch.bool: "BoolTensor",
            torch.float16: "HalfTensor"}.get(dt, str(dt))


class _DeviceTable(nn.Module):
    """Common part: a device, a table on it, a ``weight`` Parameter aliasing the device image."""

    def _setup_table(self, num_embeddings, embedding_dim, padding_idx, _weight, pim_device, backend, config,
                     name, sparse, dtype, device):
        if dtype not in (None, torch.float32):
            raise TypeError(f"PIM tables are float32, got dtype={dtype}")
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"PIM modules run on the host CPU, got device={device}")
        for v, n in ((num_embeddings, "num_embeddings"), (embedding_dim, "embedding_dim")):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{n} must be a positive int, got {v!r}")
        if padding_idx is not None:
            if padding_idx > 0:
                assert padding_idx < num_embeddings, "padding_idx must be within num_embeddings"
            elif padding_idx < 0:
                assert padding_idx >= -num_embeddings, "padding_idx must be within num_embeddings"
                padding_idx = num_embeddings + padding_idx
        if _weight is not None:
            if not isinstance(_weight, torch.Tensor):
                raise TypeError(f"_weight must be a tensor, got {type(_weight).__name__}")
            assert list(_weight.shape) == [num_embeddings, embedding_dim], \
                "Shape of weight does not match num_embeddings and embedding_dim"
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.sparse = bool(sparse)
        self.device_ = pim_device if pim_device is not None else open_device(backend, config)
        if not isinstance(self.device_, Device):
            raise TypeError(f"pim_device must be a pimcast Device, got {type(self.device_).__name__}")
        self.table = name or f"{type(self).__name__.lower()}{next(_ids)}"
        self.device_.alloc(self.table, num_embeddings, embedding_dim)
        view = self.device_.host_view(self.table)
        self.weight = nn.Parameter(view, requires_grad=True)
        self.weight._pim_device = self.device_
        self.weight._pim_table = self.table
        _register(self.weight)
        self.weight.register_post_accumulate_grad_hook(_coalesce_grad)
        if _weight is not None:
            self.device_.write(self.table, _weight.detach().to(torch.float32).contiguous())
        else:
            with torch.no_grad():
                self.weight.normal_()
                if padding_idx is not None:
                    self.weight[padding_idx].fill_(0)
            if self.device_.backend.mirrored:      # initialised through the mirror: write it to the hardware
                self.device_.write(self.table, view.clone())

    @property
    def pim_device(self) -> Device:
        return self.device_

    def read_weight(self) -> torch.Tensor:
        """The current table (a copy read from the device)."""
        return self.device_.read(self.table)

    def _coalesced_grad(self, grad_flat: torch.Tensor, casted_index, casted_offsets, weights):
        """Device GATHER_REDUCE of ``grad_flat`` (written to a scratch region) with the casted index."""
        dev = self.device_
        n_unique = casted_offsets.numel()
        if n_unique == 0:
            return torch.zeros(0, self.embedding_dim)
        scratch = f"{self.table}.grad_output"
        dev.alloc(scratch, grad_flat.shape[0], self.embedding_dim)
        try:
            dev.write(scratch, grad_flat)
            return dev.gather_reduce(scratch, casted_index, casted_offsets, weights)
        finally:
            dev.free(scratch)

    def _make_grad(self, unique, G):
        if self.sparse:
            g = torch.sparse_coo_tensor(unique.unsqueeze(0), G, (self.num_embeddings, self.embedding_dim),
                                        is_coalesced=True, check_invariants=False)
            # remembered so that _coalesce_grad can recognize it after autograd's accumulation
            self.weight._pim_grad_id = (g._indices().data_ptr(), g._values().data_ptr(), g._nnz())
            return g
        g = torch.zeros(self.num_embeddings, self.embedding_dim)
        g[unique] = G
        return g

    def __del__(self):
        try:
            self.device_.free(self.table)
        except Exception:
            pass


# ----------------------------------------------------------------------------- EmbeddingBag

class _BagFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, indices, starts, psw, mod):
        out = mod.device_.gather_reduce(mod.table, indices, starts, psw, mode=mod.mode)
        ctx.mod = mod
        ctx.casted = cast(indices, starts) if weight.requires_grad else None   # the sort, off the backward path
        ctx.psw_needs_grad = psw is not None and psw.requires_grad
        ctx.save_for_backward(indices, starts, psw)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        mod, c = ctx.mod, ctx.casted
        indices, starts, psw = ctx.saved_tensors
        dY = grad_output.detach().to(torch.float32).contiguous()
        grad_w = grad_psw = None
        if c is not None and ctx.needs_input_grad[0]:
            w = None
            if psw is not None:
                w = psw.detach()[c.perm].contiguous()
            elif mod.mode == "mean":
                per_bag = torch.ones(c.num_bags, dtype=torch.float32) / c.bag_lengths.clamp(min=1).to(torch.float32)
                w = per_bag[c.casted_index]
            G = mod._coalesced_grad(dY, c.casted_index, c.casted_offsets, w)
            grad_w = mod._make_grad(c.unique, G)
        if ctx.psw_needs_grad:
            lengths = torch.diff(torch.cat([starts, torch.tensor([indices.numel()])]))
            dst = torch.repeat_interleave(torch.arange(starts.numel()), lengths)
            rows = mod.device_.gather_rows(mod.table, indices)
            grad_psw = (dY[dst] * rows).sum(1)
        return grad_w, None, None, grad_psw, None


class PIMEmbeddingBag(_DeviceTable):
    """Drop-in for ``torch.nn.EmbeddingBag`` (modes ``"sum"`` and ``"mean"``) with the table in PIM memory.

    Parameters
    ----------
    num_embeddings, embedding_dim, mode, padding_idx, include_last_offset, _weight:
        as ``torch.nn.EmbeddingBag`` (``padding_idx`` entries are excluded from the reduction and
        get no gradient; ``max_norm``/``scale_grad_by_freq`` are not supported).
    sparse:
        ``True`` (default here): ``weight.grad`` is a coalesced sparse COO tensor; ``False``: dense.
    pim_device:
        an existing :class:`~pimcast.host.device.Device` to allocate on (several tables can share one);
        otherwise ``open_device(backend, config)`` is opened for this module.
    backend, config:
        device backend (``"model"``/``"golden"``) and PIM config (preset name, path, PIMConfig).
    name:
        table name on the device (default: unique).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, max_norm=None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, mode: str = "mean", sparse: bool = True,
                 _weight: Optional[torch.Tensor] = None, include_last_offset: bool = False,
                 padding_idx: Optional[int] = None, device=None, dtype=None, *,
                 pim_device: Optional[Device] = None, backend: str = "model", config=None,
                 name: Optional[str] = None):
        super().__init__()
        if max_norm is not None:
            raise NotImplementedError("PIMEmbeddingBag does not support max_norm")
        if scale_grad_by_freq:
            raise NotImplementedError("PIMEmbeddingBag does not support scale_grad_by_freq")
        if mode not in ("sum", "mean"):
            raise ValueError(f"PIMEmbeddingBag supports mode 'sum' and 'mean', got {mode!r}")
        self.mode = mode
        self.include_last_offset = bool(include_last_offset)
        self._setup_table(num_embeddings, embedding_dim, padding_idx, _weight, pim_device, backend, config,
                          name, sparse, dtype, device)

    @classmethod
    def from_pretrained(cls, embeddings: torch.Tensor, freeze: bool = True, max_norm=None, norm_type: float = 2.0,
                        scale_grad_by_freq: bool = False, mode: str = "mean", sparse: bool = True,
                        include_last_offset: bool = False, padding_idx: Optional[int] = None, **kw):
        assert embeddings.dim() == 2, "Embeddings parameter is expected to be 2-dimensional"
        rows, dim = embeddings.shape
        m = cls(rows, dim, max_norm=max_norm, norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq,
                mode=mode, sparse=sparse, _weight=embeddings, include_last_offset=include_last_offset,
                padding_idx=padding_idx, **kw)
        m.weight.requires_grad = not freeze
        return m

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}, sparse={self.sparse}, "
                f"padding_idx={self.padding_idx}, device={self.device_.backend_name}:{self.device_.cfg.name}")

    def _prepare(self, input, offsets, per_sample_weights):
        """torch.nn.EmbeddingBag's checks (same exception types); returns (indices, starts, psw) int64/f32."""
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
        if input.dtype not in _INT:
            raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following scalar "
                               f"types: Long, Int; but got torch.{_dtype_name(input.dtype)} instead")
        in_shape = input.shape
        if input.dim() == 2:
            if offsets is not None:
                raise ValueError("if input is 2D, then offsets has to be None, as input is treated is a mini-batch "
                                 f"of fixed length sequences. However, found offsets of type {type(offsets)}")
            B, L = input.shape
            offsets = torch.arange(0, B * L, L, dtype=torch.int64) if L or not B else torch.zeros(B, dtype=torch.int64)
            input = input.reshape(-1)
            ilo = False
        elif input.dim() == 1:
            if offsets is None:
                raise ValueError("offsets has to be a 1D Tensor but got None")
            if not isinstance(offsets, torch.Tensor) or offsets.dim() != 1:
                raise ValueError("offsets has to be a 1D Tensor")
            if offsets.dtype not in _INT:
                raise RuntimeError("Expected tensor for argument #2 'offsets' to have one of the following scalar "
                                   f"types: Long, Int; but got torch.{_dtype_name(offsets.dtype)} instead")
            ilo = self.include_last_offset
        else:
            raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension {input.dim()}")
        idx = input.to(torch.int64)
        offs = offsets.to(torch.int64)
        nnz = idx.numel()
        if per_sample_weights is not None:
            if self.mode != "sum":
                raise NotImplementedError(
                    "embedding_bag: per_sample_weights was not None. per_sample_weights is only supported for "
                    f"mode='sum' (got mode='{self.mode}'). Please open a feature request on GitHub.")
            if per_sample_weights.shape != in_shape:
                raise ValueError(f"embedding_bag: If per_sample_weights ({per_sample_weights.shape}) is not None, "
                                 f"then it must have the same shape as the input ({in_shape})")
            if per_sample_weights.dtype != torch.float32:
                raise RuntimeError("Expected tensor for argument #1 'weight' to have the same type as tensor for "
                                   "argument #1 'per_sample_weights'; but type torch.FloatTensor does not equal "
                                   f"torch.{_dtype_name(per_sample_weights.dtype)}")
            per_sample_weights = per_sample_weights.reshape(-1)
        if offs.numel():
            if int(offs[0]) != 0:
                raise RuntimeError("offsets[0] has to be 0, i.e., the first sequence in the mini-batch has to start "
                                   f"from position 0. However, got {int(offs[0])}")
            if int(offs[-1]) > nnz:
                raise RuntimeError(f"offsets[-1] can not be greater than input's length {nnz} but got offsets[-1] "
                                   f"of {int(offs[-1])}")
            dec = offs[1:] < offs[:-1]
            if bool(dec.any()):
                p = int(torch.nonzero(dec)[0, 0]) + 1
                raise RuntimeError(f"offsets must be non-decreasing, but offsets[{p}] = {int(offs[p])} < "
                                   f"offsets[{p - 1}] = {int(offs[p - 1])}")
        if nnz:
            bad = (idx < 0) | (idx >= self.num_embeddings)
            if bool(bad.any()):
                p = int(torch.nonzero(bad)[0, 0])
                raise RuntimeError(f"Index {p} of input takes value {int(idx[p])} which is not in the valid range "
                                   f"[0, {self.num_embeddings})")
        if ilo:
            starts = offs[:-1] if offs.numel() else offs
            if offs.numel() and int(offs[-1]) < nnz:
                idx = idx[:int(offs[-1])]          # PyTorch ignores lookups past the last offset
                if per_sample_weights is not None:
                    per_sample_weights = per_sample_weights[:int(offs[-1])]
                nnz = idx.numel()
        else:
            starts = offs
        if starts.numel() == 0 and nnz:
            idx = idx[:0]
            per_sample_weights = None if per_sample_weights is None else per_sample_weights[:0]
            nnz = 0
        if self.padding_idx is not None and nnz:
            keep = idx != self.padding_idx
            if not bool(keep.all()):
                ends = torch.cat([starts[1:], torch.tensor([nnz])])
                kept = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(keep.to(torch.int64), 0)])
                starts = kept[starts]
                idx = idx[keep]
                if per_sample_weights is not None:
                    per_sample_weights = per_sample_weights[keep]
                del ends
        return idx.contiguous(), starts.contiguous(), per_sample_weights

    def forward(self, input: torch.Tensor, offsets: Optional[torch.Tensor] = None,
                per_sample_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        idx, starts, psw = self._prepare(input, offsets, per_sample_weights)
        return _BagFunction.apply(self.weight, idx, starts, psw, self)


# ----------------------------------------------------------------------------- Embedding

class _EmbFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, flat, mod):
        out = mod.device_.gather_rows(mod.table, flat)
        ctx.mod = mod
        ctx.cast = None
        if weight.requires_grad:
            pos = torch.arange(flat.numel())
            if mod.padding_idx is not None:
                pos = torch.nonzero(flat != mod.padding_idx).flatten()
            c = cast(flat[pos], torch.arange(pos.numel()))
            ctx.cast = (pos[c.casted_index], c.casted_offsets, c.unique)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        mod = ctx.mod
        if ctx.cast is None or not ctx.needs_input_grad[0]:
            return None, None, None
        ci, co, unique = ctx.cast
        dY = grad_output.detach().to(torch.float32).contiguous()
        G = mod._coalesced_grad(dY, ci, co, None)
        return mod._make_grad(unique, G), None, None


class PIMEmbedding(_DeviceTable):
    """Drop-in for ``torch.nn.Embedding`` (pooling factor 1) with the table in PIM memory.

    Forward is a device row gather (bits unchanged); ``padding_idx`` rows get no gradient and are
    not updated.  Other arguments as :class:`PIMEmbeddingBag`.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: Optional[int] = None,
                 max_norm=None, norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = True,
                 _weight: Optional[torch.Tensor] = None, _freeze: bool = False, device=None, dtype=None, *,
                 pim_device: Optional[Device] = None, backend: str = "model", config=None,
                 name: Optional[str] = None):
        super().__init__()
        if max_norm is not None:
            raise NotImplementedError("PIMEmbedding does not support max_norm")
        if scale_grad_by_freq:
            raise NotImplementedError("PIMEmbedding does not support scale_grad_by_freq")
        self._setup_table(num_embeddings, embedding_dim, padding_idx, _weight, pim_device, backend, config,
                          name, sparse, dtype, device)
        self.weight.requires_grad = not _freeze

    @classmethod
    def from_pretrained(cls, embeddings: torch.Tensor, freeze: bool = True, padding_idx: Optional[int] = None,
                        max_norm=None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = True, **kw):
        assert embeddings.dim() == 2, "Embeddings parameter is expected to be 2-dimensional"
        rows, dim = embeddings.shape
        return cls(rows, dim, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                   scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=embeddings, _freeze=freeze, **kw)

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}, sparse={self.sparse}, "
                f"device={self.device_.backend_name}:{self.device_.cfg.name}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
        if input.dtype not in _INT:
            raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following scalar "
                               f"types: Long, Int; but got torch.{_dtype_name(input.dtype)} instead")
        flat = input.reshape(-1).to(torch.int64).contiguous()
        if flat.numel():
            bad = (flat < 0) | (flat >= self.num_embeddings)
            if bool(bad.any()):
                raise IndexError("index out of range in self")
        out = _EmbFunction.apply(self.weight, flat, self)
        return out.reshape(*input.shape, self.embedding_dim)


# ----------------------------------------------------------------------------- hooks

def _coalesce_grad(p: nn.Parameter) -> None:
    """Autograd's gradient accumulation drops the ``is_coalesced`` flag of the (already unique and
    sorted) tensor-cast gradient; restore it.  When ``p.grad`` still holds the very indices and
    values this module's backward made (autograd stores a shallow copy), only the flag is set (no
    sort); otherwise (accumulated gradients of several backwards, a copy) ``coalesce()`` sums them —
    on unique indices it does no arithmetic, so the values keep their bits."""
    g = p.grad
    mark = getattr(p, "_pim_grad_id", None)
    p._pim_grad_id = None
    if g is not None and g.is_sparse and not g.is_coalesced():
        if mark is not None and mark == (g._indices().data_ptr(), g._values().data_ptr(), g._nnz()):
            g._coalesced_(True)
        else:
            p.grad = g.coalesce()


_HOOK = None


def _register(p: nn.Parameter) -> None:
    global _HOOK
    if _HOOK is None:
        _HOOK = _register_step_post_hook(_host_step_hook)


def _host_step_hook(optimizer, args, kwargs) -> None:
    """After a stock (host) optimizer step on a PIM table: count the read + write-back of the touched rows."""
    from pimcast.host.optim import PIMOptimizer
    if isinstance(optimizer, PIMOptimizer):
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            if getattr(p, "_pim_device", None) is not None and p.grad is not None:
                g = p.grad
                if g.is_sparse:
                    rows = g.coalesce().indices()[0]
                else:
                    rows = torch.arange(g.shape[0])   # a dense step touches every row
                p._pim_device.account_host_update(p._pim_table, rows)
