"""pimcast's fp32 numerics — the one definition used everywhere.

Every arithmetic operation of the pimcast hardware is an IEEE-754 binary32 *fused*
multiply-add ``a*b + c`` with a single rounding, round to nearest, ties to even:

* subnormal inputs and results are handled exactly (no flush-to-zero);
* overflow rounds to ±inf (values below the rounding threshold ``2**128 - 2**103`` round to
  ±FLT_MAX as IEEE requires);
* the sign of an exact zero result follows IEEE round-to-nearest: ``x + (-x) = +0``,
  ``(-0) + (-0) = -0``, ``(+0) + (-0) = +0``; a nonzero exact result that rounds to zero keeps
  its sign;
* NaN: the hardware produces the canonical quiet NaN ``0x7FC00000`` for every NaN result (any
  NaN input, ``inf*0``, ``inf - inf``).  :func:`fma_f32` returns whatever NaN the double
  arithmetic produced; the ``*_bits`` functions and :func:`canonicalize_nan` give the hardware
  bit pattern.

Derived operations (what the hardware lanes compute):

* sum:           ``add(a, c) = fma(a, 1.0, c)`` (identical to a plain fp32 addition);
* multiplication: ``mul(a, b) = fma(a, b, -0.0)`` (the ``-0.0`` addend keeps ``a*b = -0``
  negative; ``+0 + -0 = +0`` keeps ``+0`` positive);
* weighted sum:  ``acc = fma(w, row, acc)``; SGD: ``w = fma(-lr, g, w)``.

Method of :func:`fma_f32` (exact, vectorized; computed with numpy on the CPU, which is
single-threaded and so stays fast when torch's intra-op threads compete for the cores): in
float64 the product ``p = a*b`` of two binary32 values is exact (48-bit significand, exponent
range far inside double's).  ``s = p + c`` is rounded to nearest in double; TwoSum gives the
exact error ``e = (p + c) - s``.  Where ``e != 0`` and the last significand bit of ``s`` is 0,
``s`` is moved one double ulp toward ``e`` (an integer step of its bit pattern): this makes
``s`` the *round-to-odd* value of ``p + c`` at 53 bits.  Rounding a round-to-odd value with
``53 >= 24 + 2`` bits to binary32 (the ordinary RNE conversion) gives the correctly rounded
result, including binary32 subnormal results and overflow.  Where ``p`` or ``s`` is not finite,
the plain double result is used.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

__all__ = [
    "canonical_nan_bits",
    "fma_f32",
    "fma_f32_bits",
    "add_f32_bits",
    "mul_f32_bits",
    "f32_to_bits",
    "bits_to_f32",
    "canonicalize_nan",
]

#: The quiet NaN the hardware produces for every NaN result.
canonical_nan_bits: int = 0x7FC00000

_ONE_BITS = 0x3F800000
_NEG_ZERO_BITS = 0x80000000

TensorLike = Union[torch.Tensor, float, int]
BitsLike = Union[np.ndarray, int, np.integer]


def _as_f32(x: TensorLike, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if x.dtype != torch.float32:
            raise TypeError(f"fma_f32: {name} must be a float32 tensor, got dtype {x.dtype}")
        return x
    if isinstance(x, (bool, np.ndarray)) or not isinstance(x, (int, float, np.floating, np.integer)):
        raise TypeError(f"fma_f32: {name} must be a float32 tensor or a Python number, got {type(x).__name__}")
    # Python numbers are rounded to binary32 first (as the hardware would receive them).
    return torch.tensor(float(x), dtype=torch.float32)


def fma_f32(a: TensorLike, b: TensorLike, c: TensorLike) -> torch.Tensor:
    """Element-wise binary32 fused multiply-add ``a*b + c`` with one rounding (RNE).

    Parameters
    ----------
    a, b, c:
        float32 tensors (broadcast together) or Python numbers (converted to float32 first).

    Returns
    -------
    torch.Tensor
        float32 tensor of the broadcast shape (no autograd), on the device of the arguments.
        NaN results carry whatever NaN payload the
        double arithmetic gives; use :func:`canonicalize_nan` for hardware bits.

    Raises
    ------
    TypeError
        if a tensor argument is not float32.
    """
    ta, tb, tc = _as_f32(a, "a"), _as_f32(b, "b"), _as_f32(c, "c")
    if len({ta.device, tb.device, tc.device}) > 1:
        raise ValueError(f"fma_f32: arguments are on different devices: {ta.device}, {tb.device}, {tc.device}")
    device = ta.device
    ta, tb, tc = torch.broadcast_tensors(ta.detach(), tb.detach(), tc.detach())
    na, nb, nc = (t.cpu().numpy() for t in (ta, tb, tc))
    out = torch.from_numpy(_fma_f32_np(na, nb, nc))
    return out if device.type == "cpu" else out.to(device)


def _fma_f32_np(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The exact method on float32 numpy arrays of one shape (numpy: single-threaded, cheap)."""
    with np.errstate(all="ignore"):
        dc = c.astype(np.float64)
        p = a.astype(np.float64) * b.astype(np.float64)  # exact
        s = p + dc  # rounded to nearest (double)
        # TwoSum: the exact error, s + err == p + c.  err is NaN exactly where s is not finite
        # (inf or NaN operands), and such s are used as they are.
        bv = s - p
        err = (p - (s - bv)) + (dc - bv)
        sb = s.view(np.int64)
        fix = ((sb & 1) == 0) & ((err > 0) | (err < 0))
        if fix.any():
            # step one ulp toward err: away from zero (+1 on the magnitude bits) when err and s
            # have the same sign, else toward zero (s != 0 here, and never a double subnormal)
            away = (err > 0) == (s > 0)
            sb = sb + np.where(fix, np.where(away, 1, -1), 0)
            s = sb.view(np.float64)
        return np.ascontiguousarray(s.astype(np.float32)).reshape(a.shape)


def f32_to_bits(t: Union[torch.Tensor, np.ndarray, float]) -> np.ndarray:
    """Raw binary32 bit patterns of ``t`` as a ``np.uint32`` array (NaN payloads kept)."""
    if isinstance(t, torch.Tensor):
        if t.dtype != torch.float32:
            raise TypeError(f"f32_to_bits: expected a float32 tensor, got dtype {t.dtype}")
        return t.detach().cpu().contiguous().view(torch.int32).numpy().view(np.uint32).reshape(tuple(t.shape)).copy()
    arr = np.asarray(t)
    if arr.dtype.kind != "f":
        raise TypeError(f"f32_to_bits: expected floating-point values, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)  # wider floats are rounded to binary32 (RNE)
    return np.array(arr, dtype=np.float32, order="C").view(np.uint32).reshape(arr.shape)


def bits_to_f32(u: BitsLike) -> torch.Tensor:
    """float32 tensor whose raw bits are ``u`` (ints or an integer array, taken modulo 2**32)."""
    arr = np.asarray(u)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"bits_to_f32: expected integer bit patterns, got dtype {arr.dtype}")
    arr = np.array(np.asarray(arr, dtype=np.int64) & 0xFFFFFFFF, dtype=np.uint32, order="C")
    return torch.from_numpy(np.array(arr.view(np.float32).reshape(arr.shape), order="C"))


def canonicalize_nan(t: Union[torch.Tensor, np.ndarray]) -> Union[torch.Tensor, np.ndarray]:
    """Replace every NaN by the canonical quiet NaN ``0x7FC00000``.

    A float tensor gives a float tensor (a copy); a ``np.uint32`` bit-pattern array gives a
    ``np.uint32`` array.
    """
    if isinstance(t, torch.Tensor):
        if not t.is_floating_point():
            raise TypeError(f"canonicalize_nan: expected a floating-point tensor, got dtype {t.dtype}")
        if t.dtype == torch.float32:
            nan = bits_to_f32(canonical_nan_bits).to(device=t.device)
        else:
            nan = torch.tensor(float("nan"), dtype=t.dtype, device=t.device)
        return torch.where(torch.isnan(t), nan, t)
    arr = np.asarray(t)
    if arr.dtype != np.uint32:
        raise TypeError(f"canonicalize_nan: expected a tensor or np.uint32 bits, got dtype {arr.dtype}")
    is_nan = ((arr & 0x7F800000) == 0x7F800000) & ((arr & 0x007FFFFF) != 0)
    return np.array(np.where(is_nan, np.uint32(canonical_nan_bits), arr), dtype=np.uint32)


def _bits_arg(x: BitsLike, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer bit patterns, got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 0xFFFFFFFF):
        bad = arr[(arr < 0) | (arr > 0xFFFFFFFF)].flat[0]
        raise ValueError(f"{name}: bit pattern {int(bad)} is outside 0..0xFFFFFFFF")
    return arr.astype(np.uint32)


def fma_f32_bits(a_bits: BitsLike, b_bits: BitsLike, c_bits: BitsLike) -> np.ndarray:
    """The hardware FMA on raw bits: ``fma(a, b, c)`` with NaN results canonical (0x7FC00000).

    Arguments are ``uint32`` bit patterns (ints or integer arrays, broadcast together).
    Returns a ``np.uint32`` array of the broadcast shape (0-d for scalar inputs).
    """
    a, b, c = np.broadcast_arrays(_bits_arg(a_bits, "a_bits"), _bits_arg(b_bits, "b_bits"),
                                  _bits_arg(c_bits, "c_bits"))
    r = fma_f32(bits_to_f32(a), bits_to_f32(b), bits_to_f32(c))
    return canonicalize_nan(f32_to_bits(r))


def add_f32_bits(a_bits: BitsLike, c_bits: BitsLike) -> np.ndarray:
    """Hardware addition ``a + c`` = ``fma(a, 1.0, c)`` on raw bits (canonical NaN)."""
    return fma_f32_bits(a_bits, _ONE_BITS, c_bits)


def mul_f32_bits(a_bits: BitsLike, b_bits: BitsLike) -> np.ndarray:
    """Hardware multiplication ``a * b`` = ``fma(a, b, -0.0)`` on raw bits (canonical NaN)."""
    return fma_f32_bits(a_bits, b_bits, _NEG_ZERO_BITS)
