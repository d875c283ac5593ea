"""Golden model of tensor-cast embedding training (forward, backward, exact optimizers).

Pure functions on CPU tensors (no autograd); no input is ever modified.  Everything is
vectorized over bags: the only Python loops run over the position inside a bag (up to the
longest bag; for the backward, the most frequent row), over columns in
:func:`rowwise_adagrad`, never over lookups.

Numerics (the one definition of ``shared/design/ARCHITECTURE.md`` "Numerics"; ``fma`` is the
binary32 fused multiply-add with one rounding, round to nearest even, of
:func:`pimcast.models.numerics.fma_f32`)
-----------------------------------------------------------------------------------------
* **Gather-reduce** (:func:`gather_reduce`): per bag ``acc = +0.0``; then for the rows of the
  bag in index order ``acc = fma(w_j, row_j, acc)``.  Plain sum uses ``w_j = 1.0``, which is
  exactly a binary32 addition ``acc + row_j`` (computed as such).  An empty bag gives ``+0.0``;
  a bag of ``-0.0`` rows also gives ``+0.0`` (``+0 + -0 = +0``; PyTorch 2.13 CPU gives the same,
  measured).  ``F.embedding_bag`` (mode ``"sum"``, with or without ``per_sample_weights``) on
  the CPU is bit-identical to this definition (measured on torch 2.13).
* **Mean pooling** = weighted sum with ``w_j = 1.0f / len(bag)`` (a correctly rounded binary32
  division).  PyTorch's own mean mode rounds differently (it divides the sum); compare with a
  tolerance.
* **NaN**: results are whatever the binary32 arithmetic gives (NaN payloads as torch produces
  them).  The hardware emits the canonical quiet NaN ``0x7FC00000``; when comparing with
  hardware bits pass the golden result through :func:`pimcast.models.numerics.canonicalize_nan`
  first (golden vs PyTorch comparisons treat NaN == NaN).
* **Partial-sum gather-reduce** (:func:`gather_reduce_partial`, the ``accumulate: partial``
  PIM configs: TRiM-style units that each hold whole rows).  The lookups of a bag are split by
  the *unit* holding their row; each unit reduces its share in index order (``acc = +0.0;
  acc = fma(w_j, row_j, acc)``: a partial sum); a unit's *combiner* (``unit_group``: the rank's
  buffer device for bank-group units) adds the partial sums of its units in ascending unit
  order (``c = +0.0; c = c + p``); the host adds the combiners' results in ascending combiner
  order (``y = +0.0; y = y + c``).  Units and combiners without a lookup of the bag contribute
  nothing; an empty bag gives ``+0.0``.  A bag whose lookups all sit in one unit gives exactly
  :func:`gather_reduce`'s bits (``+0.0 + p == p``: a partial sum is never ``-0.0``); otherwise
  the sum is reassociated, so it is *not* PyTorch's.
* **Casting** (:func:`cast`): ``dst[j]`` = bag of lookup ``j``; a *stable* sort of the row ids
  gives ``perm``; ``casted_index = dst[perm]``, ``casted_offsets`` = start of each run of equal
  row id, ``unique`` = the run keys.  Because the sort is stable, the bags of each run stay in
  ascending bag order (and duplicates inside a bag stay in index order).
* **Tensor-cast backward** (:func:`tc_backward`): ``G = gather_reduce(dY, casted_index,
  casted_offsets)`` — each coalesced row is the sequential FMA-sum of ``dY[b]`` over its bags in
  ascending ``b`` (weights ``per_sample_weights[perm]``, or ``1/len(bag)`` for mean pooling).
  The expand-coalesce baseline (:func:`expand_coalesce_backward`) sums in the same order and is
  bit-identical.  PyTorch's CPU embedding backward sums duplicates in another order, so compare
  with PyTorch within a bound relative to ``Σ|terms|``.
* **Exact optimizers** (one update per unique row, as FBGEMM's EXACT_* optimizers):

  - :func:`sgd`: ``w = fma(-lr, g, w)`` — bit-identical to ``torch.optim.SGD`` (measured);
  - :func:`adagrad`: ``s = fma(g, g, s)``; ``std = sqrt(s) + eps``; ``w = w + ((-lr)·g)/std``
    each step one binary32 rounding — the operations of ``torch.optim.Adagrad`` on the CPU
    (``addcmul_`` is fused there; measured bit-identical on torch 2.13, x86-64);
  - :func:`rowwise_adagrad`: ``m = (Σ_k g_k²)/D`` with the sum a sequential FMA chain over
    columns from ``+0.0``; ``h = h + m``; ``r = lr / (sqrt(h) + eps)``; ``w = fma(-r, g, w)``.

Multi-table input
-----------------
Several tables are cast together by giving a table id per lookup (``cast(...,
table_ids=...)``) or per-table indices/offsets (:func:`cast_multi`).  The sort key is the pair
``(table, row)`` in lexicographic order (a stable sort by row, then a stable sort by table), so
``unique_table``/``unique`` are ordered by table, then row.  :func:`cast_multi` numbers bags
table-major (the bags of table 0, then of table 1, ...; FBGEMM's KJT layout), so its
``grad_output`` is the per-table output gradients stacked along the bag dimension.

Input validation happens before anything is computed; errors name the offending value.
Dtype problems raise :class:`DTypeError` (a subclass of both ``TypeError`` and ``ValueError``),
out-of-range or negative indices raise ``IndexError``, everything else ``ValueError``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from pimcast.models.numerics import _fma_f32_np, fma_f32

__all__ = [
    "DTypeError",
    "Casted",
    "gather_reduce",
    "gather_reduce_partial",
    "reduce_partial",
    "cast",
    "cast_multi",
    "tc_backward",
    "expand_coalesce_backward",
    "sgd",
    "adagrad",
    "rowwise_adagrad",
]

_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


class DTypeError(TypeError, ValueError):
    """An argument has the wrong dtype (or is not a tensor)."""


# ----------------------------------------------------------------------------- validation


def _tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type != "cpu":
        raise ValueError(f"{name} must be on the CPU (the golden model is a CPU reference), got device {x.device}")
    return x


def _check_table(table, name: str = "table") -> torch.Tensor:
    _tensor(table, name)
    if table.dim() != 2:
        raise ValueError(f"{name} must be 2-D (rows, dim), got shape {tuple(table.shape)}")
    if table.dtype != torch.float32:
        raise DTypeError(f"{name} must be float32, got dtype {table.dtype}")
    return table


def _check_int_1d(t, name: str) -> torch.Tensor:
    _tensor(t, name)
    if t.dtype not in _INT_DTYPES:
        raise DTypeError(f"{name} must have an integer dtype, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    return t.to(torch.int64)


def _check_indices(indices: torch.Tensor, num_rows: Optional[int], name: str = "indices") -> None:
    """``indices`` is int64 1-D.  Negative values and values >= num_rows raise IndexError."""
    if indices.numel() == 0:
        return
    neg = indices < 0
    if bool(neg.any()):
        pos = int(torch.nonzero(neg)[0, 0])
        size = f" (table has {num_rows} rows)" if num_rows is not None else ""
        raise IndexError(f"{name}[{pos}] = {int(indices[pos])} is negative{size}")
    if num_rows is not None:
        big = indices >= num_rows
        if bool(big.any()):
            pos = int(torch.nonzero(big)[0, 0])
            raise IndexError(
                f"{name}[{pos}] = {int(indices[pos])} is out of range for a table of {num_rows} rows"
            )


def _check_offsets(offsets: torch.Tensor, nnz: int, include_last_offset: bool,
                   name: str = "offsets") -> torch.Tensor:
    """Validate PyTorch-style offsets; return the start offsets (length = number of bags)."""
    n = offsets.numel()
    if n:
        neg = offsets < 0
        if bool(neg.any()):
            pos = int(torch.nonzero(neg)[0, 0])
            raise ValueError(f"{name}[{pos}] = {int(offsets[pos])} is negative")
        if int(offsets[0]) != 0:
            raise ValueError(f"{name}[0] must be 0, got {int(offsets[0])}")
        dec = offsets[1:] < offsets[:-1]
        if bool(dec.any()):
            pos = int(torch.nonzero(dec)[0, 0]) + 1
            raise ValueError(
                f"{name} must be non-decreasing: {name}[{pos}] = {int(offsets[pos])} "
                f"< {name}[{pos - 1}] = {int(offsets[pos - 1])}"
            )
        past = offsets > nnz
        if bool(past.any()):
            pos = int(torch.nonzero(past)[0, 0])
            raise ValueError(
                f"{name}[{pos}] = {int(offsets[pos])} is past the end of indices ({nnz} lookups)"
            )
    if include_last_offset:
        if n == 0:
            raise ValueError(f"{name} must have at least one entry with include_last_offset=True")
        if int(offsets[-1]) != nnz:
            raise ValueError(
                f"with include_last_offset=True {name}[-1] must equal the number of lookups {nnz}, "
                f"got {int(offsets[-1])}"
            )
        return offsets[:-1]
    if n == 0 and nnz:
        raise ValueError(f"{name} is empty (no bags) but indices has {nnz} lookups")
    return offsets


def _check_weights(w, nnz: int, name: str = "per_sample_weights") -> torch.Tensor:
    _tensor(w, name)
    if w.dtype != torch.float32:
        raise DTypeError(f"{name} must be float32, got dtype {w.dtype}")
    if w.dim() != 1 or w.numel() != nnz:
        raise ValueError(f"{name} must have shape ({nnz},) (one weight per lookup), got shape {tuple(w.shape)}")
    return w


def _check_mode(mode: str, per_sample_weights) -> None:
    if mode not in ("sum", "mean"):
        raise ValueError(f"mode must be 'sum' or 'mean', got {mode!r}")
    if mode == "mean" and per_sample_weights is not None:
        raise ValueError("per_sample_weights is only supported with mode='sum', got mode='mean'")


def _lengths(starts: torch.Tensor, nnz: int) -> torch.Tensor:
    ends = torch.cat([starts[1:], torch.tensor([nnz], dtype=torch.int64)]) if starts.numel() else starts
    return ends - starts


def _mean_weights(lengths: torch.Tensor) -> torch.Tensor:
    """Per-lookup weights ``1.0f / len(bag)`` (correctly rounded binary32 division)."""
    lf = lengths.clamp(min=1).to(torch.float32)
    per_bag = torch.ones_like(lf) / lf
    return torch.repeat_interleave(per_bag, lengths)


# ----------------------------------------------------------------------------- fast exact FMA

#: a double whose low 28 fraction bits are all zero may be a binary32 rounding breakpoint
_LOW28 = np.int64(0x0FFFFFFF)


try:   # numba is a project dependency; the numpy path below is the fallback (same bits)
    import numba as _numba
except ImportError:  # pragma: no cover
    _numba = None

if _numba is not None:
    @_numba.njit(cache=True, nogil=True, inline="always")
    def _fma_one(a, b, c):  # pragma: no cover (compiled)
        """The definition (:func:`pimcast.models.numerics._fma_f32_np`) on one element: exact
        double product, one double rounding, TwoSum error, round to odd, then to binary32
        (branch-free, so the loops vectorize)."""
        dc = np.float64(c)
        p = np.float64(a) * np.float64(b)
        s = p + dc
        bv = s - p
        err = (p - (s - bv)) + (dc - bv)
        sb = np.float64(s).view(np.int64)
        fix = ((sb & 1) == 0) & ((err > 0) | (err < 0))
        step = np.int64(1) if (err > 0) == (s > 0) else np.int64(-1)
        sb = sb + (step if fix else np.int64(0))
        return np.float32(np.int64(sb).view(np.float64))

    @_numba.njit(cache=True, nogil=True)
    def _fma_kernel_scalar(a, b, c, out):  # pragma: no cover (compiled)
        for i in range(out.size):
            out[i] = _fma_one(a, b[i], c[i])

    @_numba.njit(cache=True, nogil=True)
    def _fma_kernel(a, b, c, out):  # pragma: no cover (compiled)
        for i in range(out.size):
            out[i] = _fma_one(a[i], b[i], c[i])


def _fma_f32_fast(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Bit-for-bit :func:`pimcast.models.numerics._fma_f32_np` (the definition), faster: one
    compiled pass (numba) over the operands, else :func:`_fma_f32_fast_np`.

    ``a``, ``b``, ``c``: float32 arrays or ``np.float32`` scalars (broadcast together).
    """
    if _numba is None:
        return _fma_f32_fast_np(a, b, c)
    shape = np.broadcast_shapes(np.shape(a), np.shape(b), np.shape(c))
    out = np.empty(shape, dtype=np.float32)
    if out.size == 0:
        return out
    flat = lambda x: np.ascontiguousarray(np.broadcast_to(x, shape), dtype=np.float32).reshape(-1)
    if np.ndim(a) == 0:
        _fma_kernel_scalar(np.float32(a), flat(b), flat(c), out.reshape(-1))
    else:
        _fma_kernel(flat(a), flat(b), flat(c), out.reshape(-1))
    return out


def _fma_f32_fast_np(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Bit-for-bit :func:`pimcast.models.numerics._fma_f32_np` (the definition), in fewer numpy passes.

    ``a``, ``b``, ``c``: float32 arrays or ``np.float32`` scalars (broadcast together).  Both
    compute the exact product ``p = a*b`` and ``s = RN53(p + c)`` in double.  The definition then
    runs TwoSum to get the error of ``s`` and, if ``s`` is even and inexact, moves it one double ulp
    towards the exact sum (round to odd) before rounding to binary32.  That step can only matter
    where ``s`` is a breakpoint of the binary32 rounding (a midpoint of two binary32 values, incl.
    the subnormal ones and the overflow threshold): rounding to nearest is monotone, so ``s`` and
    ``s' = s ± 1 ulp`` (or the exact sum, which lies between them) round differently only if a
    breakpoint lies in ``[s, s']``; ``s'`` is odd and breakpoints are even (they need at most 25
    significant bits, so their low 28 fraction bits are zero), hence only ``s`` itself can be one.
    So: round ``s`` directly, and run the definition itself on the elements whose low 28 fraction
    bits are zero (a superset of the breakpoints; it also catches every ``±0``, inf, NaN, power of
    two — where the ulp is not uniform — and binary32-exact result).  Equality with the definition
    is tested on random, adversarial (double-rounding) and special operands in
    ``tests/test_tensor_cast.py``.
    """
    with np.errstate(all="ignore"):
        s = np.multiply(a, b, dtype=np.float64)     # exact: 24 + 24 significant bits
        s += c                                      # one rounding to double, as the definition
        out = s.astype(np.float32)
        cand = (s.view(np.int64) & _LOW28) == 0
        if cand.any():
            shape = s.shape
            out[cand] = _fma_f32_np(np.broadcast_to(a, shape)[cand], np.broadcast_to(b, shape)[cand],
                                    np.broadcast_to(c, shape)[cand])
    return out


def _f32_operand(x) -> np.ndarray:
    """A float32 tensor (as numpy) or a Python number rounded to binary32 (as :func:`fma_f32`)."""
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return np.float32(float(x))


def _fma(a, b, c) -> torch.Tensor:
    """``fma_f32(a, b, c)`` (same bits) via :func:`_fma_f32_fast`; CPU float32 tensors / numbers."""
    na, nb, nc = _f32_operand(a), _f32_operand(b), _f32_operand(c)
    out = _fma_f32_fast(na, nb, nc)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32).reshape(np.broadcast_shapes(
        np.shape(na), np.shape(nb), np.shape(nc))))


# ----------------------------------------------------------------------------- the reduction core


def _reduce_bags(table: torch.Tensor, indices: torch.Tensor, starts: torch.Tensor,
                 lengths: torch.Tensor, weights: Optional[torch.Tensor]) -> torch.Tensor:
    """Sequential per-bag reduction; vectorized over bags, loop over the position in the bag.

    Bag ``i`` covers lookups ``starts[i] .. starts[i] + lengths[i] - 1``;
    ``acc = +0.0; acc = fma(w, table[indices[j]], acc)`` for those j in order (a plain binary32
    add when ``weights is None``).  ``weights`` is aligned with ``indices``.
    """
    num_bags, dim = starts.numel(), table.shape[1]
    out = np.zeros((num_bags, dim), dtype=np.float32)
    if num_bags and int(lengths.max()) > 0:
        # numpy (single-threaded) keeps the many small steps cheap even when torch's intra-op
        # threads compete for the cores; binary32 adds and the FMA are IEEE either way.
        lens = lengths.numpy()
        max_len = int(lens.max())
        # Bags sorted by length (descending): the bags still active at position k form a prefix.
        order = np.argsort(-lens, kind="stable")
        st = starts.numpy()[order]
        counts = np.bincount(lens, minlength=max_len + 1)
        active = (num_bags - np.cumsum(counts)).tolist()  # active[k] = #bags with len > k
        tab, ind = table.detach().numpy(), indices.numpy()
        w = None if weights is None else weights.detach().numpy()
        acc = np.zeros((num_bags, dim), dtype=np.float32)
        with np.errstate(all="ignore"):
            for k in range(max_len):
                n = active[k]
                pos = st[:n] + k
                rows = tab[ind[pos]]
                if w is None:
                    acc[:n] = acc[:n] + rows
                else:
                    acc[:n] = _fma_f32_fast(w[pos][:, None], rows, acc[:n])
        out[order] = acc
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------- forward


def gather_reduce(table: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor,
                  per_sample_weights: Optional[torch.Tensor] = None, mode: str = "sum", *,
                  include_last_offset: bool = False) -> torch.Tensor:
    """Embedding-bag forward (SparseLengthsSum) with pimcast's numerics.

    Parameters
    ----------
    table:
        ``(rows, dim)`` float32.
    indices:
        1-D integer tensor of row ids, ``0 <= index < rows``.
    offsets:
        1-D integer tensor: PyTorch-style start offsets, one per bag (bag ``i`` is
        ``indices[offsets[i]:offsets[i+1]]``, the last bag runs to the end); with
        ``include_last_offset=True`` one more entry equal to ``len(indices)``.
    per_sample_weights:
        optional float32 ``(len(indices),)``; only with ``mode="sum"``.
    mode:
        ``"sum"`` or ``"mean"`` (mean = weights ``1.0f/len(bag)``).

    Returns
    -------
    torch.Tensor
        ``(bags, dim)`` float32; empty bags are ``+0.0``.

    Raises
    ------
    IndexError
        negative or out-of-range index (message: value, position, table size).
    ValueError, DTypeError
        malformed offsets, weights, mode or table.
    """
    idx, starts, lengths, weights = _bag_args(table, indices, offsets, per_sample_weights, mode, include_last_offset)
    return _reduce_bags(table, idx, starts, lengths, weights)


def _bag_args(table, indices, offsets, per_sample_weights, mode, include_last_offset):
    """Validated ``(indices, starts, lengths, weights)`` of an embedding-bag call (weights
    ``1/len`` for mean pooling)."""
    _check_mode(mode, per_sample_weights)
    _check_table(table)
    idx = _check_int_1d(indices, "indices")
    offs = _check_int_1d(offsets, "offsets")
    nnz = idx.numel()
    if per_sample_weights is not None:
        _check_weights(per_sample_weights, nnz)
    starts = _check_offsets(offs, nnz, include_last_offset)
    _check_indices(idx, table.shape[0])
    lengths = _lengths(starts, nnz)
    return idx, starts, lengths, (_mean_weights(lengths) if mode == "mean" else per_sample_weights)


def reduce_partial(reduce, table: torch.Tensor, indices: torch.Tensor, starts: torch.Tensor,
                   lengths: torch.Tensor, weights: Optional[torch.Tensor], lookup_unit,
                   unit_group) -> torch.Tensor:
    """The partial-sum reduction (module doc) on top of a sequential per-bag reduction.

    ``reduce(table, indices, starts, lengths, weights)`` is the sequential reduction (e.g.
    :func:`_reduce_bags`, or a device backend's); it runs three times: per (bag, unit) over the
    table, per (bag, combiner) over the partial sums, per bag over the combiners' sums.
    ``starts``/``lengths`` must describe contiguous bags from lookup 0 (``sum(lengths) ==
    len(indices)``); ``lookup_unit``: int per lookup (the unit holding its row);
    ``unit_group``: int per unit, non-decreasing (the combiner of each unit).
    """
    nb, nnz, dim = starts.numel(), indices.numel(), table.shape[1]
    if nnz == 0 or nb == 0:
        return torch.zeros(nb, dim, dtype=torch.float32)
    lens = lengths.numpy().astype(np.int64)
    unit = np.asarray(lookup_unit, dtype=np.int64)
    group = np.asarray(unit_group, dtype=np.int64)
    if unit.shape != (nnz,):
        raise ValueError(f"lookup_unit must have one unit per lookup ({nnz}), got shape {unit.shape}")
    if int(lens.sum()) != nnz or int(starts[0]) != 0:
        raise ValueError("starts/lengths must cover the lookups contiguously from lookup 0")
    if group.ndim != 1 or (group.size > 1 and np.any(group[1:] < group[:-1])):
        raise ValueError("unit_group must be a non-decreasing 1-D array (one combiner per unit)")
    if unit.min() < 0 or unit.max() >= group.size:
        bad = int(unit[(unit < 0) | (unit >= group.size)][0])
        raise ValueError(f"lookup unit {bad} is out of range (unit_group has {group.size} units)")
    U, NG = group.size, int(group.max()) + 1
    bag = np.repeat(np.arange(nb, dtype=np.int64), lens)
    key = bag * U + unit
    perm = np.argsort(key, kind="stable")            # by (bag, unit); index order kept inside
    ks = key[perm]
    seg = np.flatnonzero(np.concatenate([[True], ks[1:] != ks[:-1]]))
    seg_len = np.diff(np.concatenate([seg, [nnz]]))
    w = None if weights is None else weights[torch.from_numpy(perm)]
    partial = reduce(table, indices[torch.from_numpy(perm)], torch.from_numpy(seg),
                     torch.from_numpy(seg_len), w)
    seg_bag, seg_unit = ks[seg] // U, ks[seg] % U
    k1 = seg_bag * NG + group[seg_unit]              # non-decreasing: group is monotone in unit
    l1 = np.flatnonzero(np.concatenate([[True], k1[1:] != k1[:-1]]))
    l1_len = np.diff(np.concatenate([l1, [k1.size]]))
    combined = reduce(partial, torch.arange(k1.size), torch.from_numpy(l1), torch.from_numpy(l1_len), None)
    per_bag = np.bincount(k1[l1] // NG, minlength=nb)
    st2 = np.cumsum(per_bag) - per_bag
    return reduce(combined, torch.arange(l1.size), torch.from_numpy(st2), torch.from_numpy(per_bag), None)


def gather_reduce_partial(table: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor,
                          per_sample_weights: Optional[torch.Tensor] = None, mode: str = "sum", *,
                          row_unit, unit_group=None, include_last_offset: bool = False) -> torch.Tensor:
    """Embedding-bag forward with the partial-sum numerics of the module doc.

    ``row_unit``: int per table row, the unit holding it; ``unit_group``: the combiner of each
    unit (non-decreasing; default: every unit its own combiner).  Other arguments, results and
    errors as :func:`gather_reduce`.
    """
    idx, starts, lengths, weights = _bag_args(table, indices, offsets, per_sample_weights, mode, include_last_offset)
    ru = np.asarray(row_unit, dtype=np.int64)
    if ru.shape != (table.shape[0],):
        raise ValueError(f"row_unit must have one unit per table row ({table.shape[0]}), got shape {ru.shape}")
    group = np.arange(int(ru.max()) + 1 if ru.size else 1) if unit_group is None else unit_group
    return reduce_partial(_reduce_bags, table, idx, starts, lengths, weights, ru[idx.numpy()], group)


# ----------------------------------------------------------------------------- casting


@dataclass(frozen=True, eq=False)
class Casted:
    """The CSC (rows → bags) form of a batch of lookups, computed from the indices alone.

    Attributes
    ----------
    casted_index:
        int64 ``(nnz,)``: the bag id of each lookup in sorted order (``dst[perm]``).
    casted_offsets:
        int64 ``(len(unique),)``: the start of each run of equal (table, row) key in sorted
        order (PyTorch-style start offsets; the end is :attr:`casted_offsets_with_end`).
    unique:
        int64 ``(len(unique),)``: the row id of each run (ascending within a table).
    perm:
        int64 ``(nnz,)``: the stable-sort permutation (sorted position → original lookup).
    num_bags:
        number of bags of the forward (rows of ``grad_output``).
    bag_lengths:
        int64 ``(num_bags,)``: lookups per bag (mean pooling weights ``1/len``).
    unique_table:
        int64 ``(len(unique),)`` table id of each run for multi-table input, else ``None``.
    """

    casted_index: torch.Tensor
    casted_offsets: torch.Tensor
    unique: torch.Tensor
    perm: torch.Tensor
    num_bags: int
    bag_lengths: torch.Tensor
    unique_table: Optional[torch.Tensor] = None

    @property
    def nnz(self) -> int:
        """Number of lookups."""
        return int(self.casted_index.numel())

    @property
    def num_unique(self) -> int:
        return int(self.unique.numel())

    @property
    def casted_offsets_with_end(self) -> torch.Tensor:
        """``casted_offsets`` followed by ``nnz`` (the end of the last run)."""
        return torch.cat([self.casted_offsets, torch.tensor([self.nnz], dtype=torch.int64)])

    @property
    def run_lengths(self) -> torch.Tensor:
        """Lookups per unique row (the number of terms of each coalesced gradient row)."""
        return self.casted_offsets_with_end.diff()


def cast(indices: torch.Tensor, offsets: torch.Tensor, *, table_ids: Optional[torch.Tensor] = None,
         num_rows: Union[int, Sequence[int], None] = None, include_last_offset: bool = False) -> Casted:
    """Tensor casting: transpose the forward's bags → rows into rows → bags by a stable sort.

    Parameters
    ----------
    indices, offsets, include_last_offset:
        as for :func:`gather_reduce`.
    table_ids:
        optional int ``(len(indices),)``: the table of each lookup; keys are ``(table, row)``.
    num_rows:
        optional table size (int), or one size per table (sequence) with ``table_ids``;
        when given, indices (and table ids) are range-checked.
    """
    idx = _check_int_1d(indices, "indices")
    offs = _check_int_1d(offsets, "offsets")
    nnz = idx.numel()
    starts = _check_offsets(offs, nnz, include_last_offset)
    tid = None
    if table_ids is not None:
        tid = _check_int_1d(table_ids, "table_ids")
        if tid.numel() != nnz:
            raise ValueError(f"table_ids must have shape ({nnz},), got shape {tuple(tid.shape)}")
        if nnz:
            neg = tid < 0
            if bool(neg.any()):
                pos = int(torch.nonzero(neg)[0, 0])
                raise ValueError(f"table_ids[{pos}] = {int(tid[pos])} is negative")
    if num_rows is not None and hasattr(num_rows, "__len__"):
        sizes = [int(r) for r in num_rows]
        if tid is None:
            raise ValueError("num_rows is a sequence (per table) but table_ids is None")
        if nnz:
            big = tid >= len(sizes)
            if bool(big.any()):
                pos = int(torch.nonzero(big)[0, 0])
                raise ValueError(f"table_ids[{pos}] = {int(tid[pos])} but only {len(sizes)} tables have num_rows")
            _check_indices(idx, None)
            limit = torch.tensor(sizes, dtype=torch.int64)[tid]
            big = idx >= limit
            if bool(big.any()):
                pos = int(torch.nonzero(big)[0, 0])
                raise IndexError(
                    f"indices[{pos}] = {int(idx[pos])} is out of range for table {int(tid[pos])} "
                    f"of {int(limit[pos])} rows"
                )
    else:
        _check_indices(idx, None if num_rows is None else int(num_rows))

    lengths = _lengths(starts, nnz)
    num_bags = starts.numel()
    if tid is None and nnz:
        return _cast_single(idx, starts, lengths, num_bags)
    dst = torch.repeat_interleave(torch.arange(num_bags, dtype=torch.int64), lengths)
    perm = torch.sort(idx, stable=True).indices
    if tid is not None:
        perm = perm[torch.sort(tid[perm], stable=True).indices]
    rows = idx[perm]
    change = rows[1:] != rows[:-1]
    if tid is not None:
        tabs = tid[perm]
        change = change | (tabs[1:] != tabs[:-1])
    if nnz:
        run_starts = torch.cat([torch.zeros(1, dtype=torch.int64),
                                torch.nonzero(change).flatten() + 1])
    else:
        run_starts = torch.zeros(0, dtype=torch.int64)
    return Casted(
        casted_index=dst[perm],
        casted_offsets=run_starts,
        unique=rows[run_starts],
        perm=perm,
        num_bags=num_bags,
        bag_lengths=lengths,
        unique_table=None if tid is None else tabs[run_starts] if nnz else torch.zeros(0, dtype=torch.int64),
    )


def _cast_single(idx: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor, num_bags: int) -> Casted:
    """:func:`cast` of one table (validated, ``nnz > 0``), the same tensors with less work: int32
    sort keys where the ids fit (fewer radix passes; a stable sort's permutation depends only on
    the key order), the sorted keys used as the sorted rows (no ``idx[perm]`` gather), and for
    bags of one length ``L`` the bag of sorted entry ``j`` computed as ``perm[j] // L`` instead of
    materializing ``dst`` and gathering it."""
    nnz = idx.numel()
    key = idx.to(torch.int32) if int(idx.max()) < 2 ** 31 else idx
    rows, perm = torch.sort(key, stable=True)
    run_starts = torch.cat([torch.zeros(1, dtype=torch.int64), torch.nonzero(rows[1:] != rows[:-1]).flatten() + 1])
    L = nnz // num_bags if num_bags else 0
    if L and L * num_bags == nnz and bool((lengths == L).all()):
        casted_index = torch.div(perm, L, rounding_mode="floor")
    else:
        casted_index = torch.repeat_interleave(torch.arange(num_bags, dtype=torch.int64), lengths)[perm]
    return Casted(
        casted_index=casted_index,
        casted_offsets=run_starts,
        unique=rows[run_starts].to(torch.int64),
        perm=perm,
        num_bags=num_bags,
        bag_lengths=lengths,
        unique_table=None,
    )


def cast_multi(indices_per_table: Sequence[torch.Tensor], offsets_per_table: Sequence[torch.Tensor], *,
               num_rows: Optional[Sequence[int]] = None, include_last_offset: bool = False) -> Casted:
    """Cast several tables at once.

    Table ``t``'s bags get the global ids ``Σ_{t'<t} bags(t') + b`` (table-major), so the
    matching ``grad_output`` is ``torch.cat([dY_0, dY_1, ...])``.  Keys sort by ``(table,
    row)``; ``Casted.unique_table`` tells the table of each unique row.
    """
    if len(indices_per_table) != len(offsets_per_table):
        raise ValueError(
            f"got {len(indices_per_table)} index tensors but {len(offsets_per_table)} offset tensors"
        )
    if num_rows is not None and len(num_rows) != len(indices_per_table):
        raise ValueError(f"num_rows has {len(num_rows)} entries for {len(indices_per_table)} tables")
    all_idx, all_offs, all_tid = [], [], []
    base = 0
    for t, (ind, off) in enumerate(zip(indices_per_table, offsets_per_table)):
        idx = _check_int_1d(ind, f"indices_per_table[{t}]")
        offs = _check_int_1d(off, f"offsets_per_table[{t}]")
        starts = _check_offsets(offs, idx.numel(), include_last_offset, name=f"offsets_per_table[{t}]")
        _check_indices(idx, None if num_rows is None else int(num_rows[t]), name=f"indices_per_table[{t}]")
        all_idx.append(idx)
        all_offs.append(starts + base)
        all_tid.append(torch.full((idx.numel(),), t, dtype=torch.int64))
        base += idx.numel()
    empty = torch.zeros(0, dtype=torch.int64)
    return cast(torch.cat(all_idx) if all_idx else empty, torch.cat(all_offs) if all_offs else empty,
                table_ids=torch.cat(all_tid) if all_tid else empty,
                num_rows=None if num_rows is None else list(num_rows))


# ----------------------------------------------------------------------------- backward


def _check_grad_output(grad_output, num_bags: int) -> torch.Tensor:
    _check_table(grad_output, "grad_output")
    if grad_output.shape[0] != num_bags:
        raise ValueError(
            f"grad_output has {grad_output.shape[0]} rows but the forward had {num_bags} bags"
        )
    return grad_output


def tc_backward(grad_output: torch.Tensor, casted: Casted,
                per_sample_weights: Optional[torch.Tensor] = None, *, mode: str = "sum") -> torch.Tensor:
    """Tensor-cast backward: the coalesced gradient ``(len(unique), dim)``.

    ``G = gather_reduce(grad_output, casted.casted_index, casted.casted_offsets, w)`` with
    ``w = per_sample_weights[casted.perm]`` (weights in the forward's lookup order), or
    ``w = 1/len(bag)`` per casted entry for ``mode="mean"``.
    """
    if not isinstance(casted, Casted):
        raise DTypeError(f"casted must be a Casted, got {type(casted).__name__}")
    _check_mode(mode, per_sample_weights)
    _check_grad_output(grad_output, casted.num_bags)
    w = None
    if per_sample_weights is not None:
        w = _check_weights(per_sample_weights, casted.nnz)[casted.perm]
    elif mode == "mean":
        per_bag = torch.ones(casted.num_bags, dtype=torch.float32) / casted.bag_lengths.clamp(min=1).to(torch.float32)
        w = per_bag[casted.casted_index]
    return gather_reduce(grad_output, casted.casted_index, casted.casted_offsets, w)


def expand_coalesce_backward(grad_output: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor,
                             per_sample_weights: Optional[torch.Tensor] = None, *, mode: str = "sum",
                             include_last_offset: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """The baseline backward: expand → stable sort → coalesce.  Returns ``(unique, G)``.

    Expand copies ``grad_output[bag(j)]`` once per lookup (``nnz × dim``, each with its weight);
    a stable sort by row id orders them; duplicates are summed sequentially in sorted order
    (``acc = fma(w, e, acc)``, the multiply fused into the coalescing add), which is the same
    order as :func:`tc_backward`, hence bit-identical to it.
    """
    _check_mode(mode, per_sample_weights)
    idx = _check_int_1d(indices, "indices")
    offs = _check_int_1d(offsets, "offsets")
    nnz = idx.numel()
    if per_sample_weights is not None:
        _check_weights(per_sample_weights, nnz)
    starts = _check_offsets(offs, nnz, include_last_offset)
    _check_indices(idx, None)
    _check_grad_output(grad_output, starts.numel())
    lengths = _lengths(starts, nnz)
    dst = torch.repeat_interleave(torch.arange(starts.numel(), dtype=torch.int64), lengths)
    expanded = grad_output[dst]  # nnz × dim
    if per_sample_weights is not None:
        w = per_sample_weights
    elif mode == "mean":
        w = _mean_weights(lengths)
    else:
        w = None
    perm = torch.sort(idx, stable=True).indices
    rows = idx[perm]
    expanded = expanded[perm]
    w = None if w is None else w[perm]
    if nnz:
        run_starts = torch.cat([torch.zeros(1, dtype=torch.int64),
                                torch.nonzero(rows[1:] != rows[:-1]).flatten() + 1])
    else:
        run_starts = torch.zeros(0, dtype=torch.int64)
    grad = _reduce_bags(expanded, torch.arange(nnz, dtype=torch.int64), run_starts,
                        _lengths(run_starts, nnz), w)
    return rows[run_starts], grad


# ----------------------------------------------------------------------------- optimizers


def _check_rows_update(weight, unique, grad, lr) -> torch.Tensor:
    _check_table(weight, "weight")
    u = _check_int_1d(unique, "unique")
    _check_indices(u, weight.shape[0], name="unique")
    if u.numel() > 1:
        s, order = torch.sort(u, stable=True)
        dup = s[1:] == s[:-1]
        if bool(dup.any()):
            k = int(torch.nonzero(dup)[0, 0])
            raise ValueError(
                f"duplicate row {int(s[k])} in unique (positions {int(order[k])} and {int(order[k + 1])}); "
                "exact optimizers need coalesced gradients"
            )
    _check_table(grad, "grad")
    if tuple(grad.shape) != (u.numel(), weight.shape[1]):
        raise ValueError(
            f"grad must have shape ({u.numel()}, {weight.shape[1]}) (unique rows × dim), got shape {tuple(grad.shape)}"
        )
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise DTypeError(f"lr must be a Python number, got {type(lr).__name__}")
    return u


def sgd(weight: torch.Tensor, unique: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
    """Exact SGD on the unique rows: ``w[u] = fma(-lr, g, w[u])``; returns a new weight tensor.

    ``-lr`` is rounded to binary32 first, as ``torch.optim.SGD`` does (bit-identical, measured).
    """
    u = _check_rows_update(weight, unique, grad, lr)
    out = weight.clone()
    out[u] = _fma(-float(lr), grad, weight[u])
    return out


def adagrad(weight: torch.Tensor, state_sum: torch.Tensor, unique: torch.Tensor, grad: torch.Tensor,
            lr: float, eps: float = 1e-10) -> Tuple[torch.Tensor, torch.Tensor]:
    """Exact Adagrad (``torch.optim.Adagrad`` semantics, no lr decay / weight decay).

    ``s = fma(g, g, s)``; ``w = w + ((-lr)·g) / (sqrt(s) + eps)`` on the unique rows.
    ``state_sum`` has the shape of ``weight``.  Returns ``(new_weight, new_state_sum)``.
    """
    u = _check_rows_update(weight, unique, grad, lr)
    _check_table(state_sum, "state_sum")
    if state_sum.shape != weight.shape:
        raise ValueError(f"state_sum must have shape {tuple(weight.shape)}, got shape {tuple(state_sum.shape)}")
    s = _fma(grad, grad, state_sum[u])
    std = s.sqrt().add_(eps)
    neg_lr = torch.tensor(-float(lr), dtype=torch.float32)
    w = weight[u] + (neg_lr * grad) / std
    new_w, new_s = weight.clone(), state_sum.clone()
    new_w[u] = w
    new_s[u] = s
    return new_w, new_s


def rowwise_adagrad(weight: torch.Tensor, state_rows: torch.Tensor, unique: torch.Tensor, grad: torch.Tensor,
                    lr: float, eps: float = 1e-8) -> Tuple[torch.Tensor, torch.Tensor]:
    """Exact row-wise Adagrad (FBGEMM EXACT_ROWWISE_ADAGRAD; default eps is FBGEMM's 1e-8).

    ``h[u] += mean(G[u]²)``; ``w[u] -= lr·G[u] / (sqrt(h[u]) + eps)``, concretely in binary32:
    ``q = +0; q = fma(g_k, g_k, q)`` over the columns k in order; ``m = q / D``;
    ``h = h + m``; ``r = lr / (sqrt(h) + eps)``; ``w = fma(-r, g, w)``.
    ``state_rows`` is float32 ``(rows,)``.  Returns ``(new_weight, new_state_rows)``.
    """
    u = _check_rows_update(weight, unique, grad, lr)
    _tensor(state_rows, "state_rows")
    if state_rows.dtype != torch.float32:
        raise DTypeError(f"state_rows must be float32, got dtype {state_rows.dtype}")
    if tuple(state_rows.shape) != (weight.shape[0],):
        raise ValueError(f"state_rows must have shape ({weight.shape[0]},), got shape {tuple(state_rows.shape)}")
    dim = weight.shape[1]
    q = torch.zeros(u.numel(), dtype=torch.float32)
    for k in range(dim):
        gk = grad[:, k]
        q = _fma(gk, gk, q)
    h = state_rows[u] + q / torch.tensor(float(dim), dtype=torch.float32)
    r = torch.tensor(float(lr), dtype=torch.float32) / h.sqrt().add_(eps)
    new_w, new_h = weight.clone(), state_rows.clone()
    new_w[u] = _fma(-r.unsqueeze(1), grad, weight[u])
    new_h[u] = h
    return new_w, new_h
