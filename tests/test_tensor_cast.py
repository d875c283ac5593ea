"""The golden tensor-casting model vs FACTS.md §1, PyTorch, and itself."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pimcast.models.tensor_cast import (
    Casted,
    DTypeError,
    adagrad,
    cast,
    cast_multi,
    expand_coalesce_backward,
    gather_reduce,
    rowwise_adagrad,
    sgd,
    tc_backward,
)

FAST = settings(max_examples=60, deadline=None)


# ----------------------------------------------------------------------------- helpers


def assert_same_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    """Raw binary32 bits equal, except that any NaN equals any NaN."""
    assert a.shape == b.shape, (a.shape, b.shape)
    assert a.dtype == b.dtype == torch.float32
    same = (a.view(torch.int32) == b.view(torch.int32)) | (torch.isnan(a) & torch.isnan(b))
    if not bool(same.all()):
        bad = torch.nonzero(~same)[0].tolist()
        raise AssertionError(f"bits differ at {bad}: {a[tuple(bad)].item()!r} vs {b[tuple(bad)].item()!r}")


def assert_close_to_terms(got: torch.Tensor, ref: torch.Tensor, sum_abs: torch.Tensor, rel: float) -> None:
    """|got - ref| <= rel * Σ|terms| per element (equal values, incl. ±inf, and NaN == NaN pass)."""
    ok = (got == ref) | (torch.isnan(got) & torch.isnan(ref)) | ((got - ref).abs() <= rel * sum_abs)
    if not bool(ok.all()):
        bad = torch.nonzero(~ok)[0].tolist()
        raise AssertionError(f"at {bad}: {got[tuple(bad)].item()!r} vs {ref[tuple(bad)].item()!r}, "
                             f"Σ|terms| = {sum_abs[tuple(bad)].item()!r}")


EXTREME = np.array([1e38, -1e38, 3.4e38, -3.4e38, 1e-45, -1e-45, 1e-40, -3e-39, 2.0**-126,
                    0.0, -0.0, 1.0, -1.0, 0.5, 3.0], dtype=np.float32)
SPECIAL = np.concatenate([EXTREME, np.array([np.inf, -np.inf, np.nan], dtype=np.float32)])


def _values(rng: np.random.Generator, shape, regime: str) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    normal = rng.standard_normal(n).astype(np.float32)
    if regime == "normal":
        v = normal
    elif regime == "scaled":  # wide dynamic range: cancellation and absorption
        v = (normal * 10.0 ** rng.uniform(-20, 20, n)).astype(np.float32)
    elif regime == "extreme":
        v = np.where(rng.random(n) < 0.6, rng.choice(EXTREME, n), normal).astype(np.float32)
    elif regime == "special":
        v = np.where(rng.random(n) < 0.6, rng.choice(SPECIAL, n), normal).astype(np.float32)
    else:  # pragma: no cover
        raise AssertionError(regime)
    return v.reshape(shape)


@st.composite
def bag_inputs(draw, regimes=("normal", "scaled", "extreme", "special")):
    """table, indices, offsets (start form), weights, lengths — shapes, empties, duplicates, hot rows."""
    num_rows = draw(st.integers(1, 12))
    dim = draw(st.integers(1, 5))
    lengths = draw(st.lists(st.integers(0, 7), min_size=0, max_size=10))
    regime = draw(st.sampled_from(regimes))
    hot = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    nnz = sum(lengths)
    idx = rng.integers(0, num_rows, nnz)
    if hot:  # one hot row takes most lookups (duplicates within and across bags)
        idx = np.where(rng.random(nnz) < 0.7, rng.integers(0, num_rows), idx)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if lengths else np.zeros(0, np.int64)
    return dict(
        table=torch.from_numpy(_values(rng, (num_rows, dim), regime)),
        indices=torch.from_numpy(idx.astype(np.int64)),
        offsets=torch.from_numpy(starts),
        weights=torch.from_numpy(_values(rng, (nnz,), regime)),
        lengths=lengths,
        dY=torch.from_numpy(_values(rng, (len(lengths), dim), regime)),
        regime=regime,
    )


# ----------------------------------------------------------------------------- FACTS.md §1


IDX = torch.tensor([1, 3, 6, 3, 5, 1, 3, 7])
OFF = torch.tensor([0, 3, 5])
DY = torch.tensor([[1.0, 10.0], [100.0, 1000.0], [10000.0, 100000.0]])


def test_worked_example_casting():
    c = cast(IDX, OFF)
    assert isinstance(c, Casted)
    assert c.casted_index.tolist() == [0, 2, 0, 1, 2, 1, 0, 2]
    assert c.casted_offsets.tolist() == [0, 2, 5, 6, 7]
    assert c.casted_offsets_with_end.tolist() == [0, 2, 5, 6, 7, 8]
    assert c.unique.tolist() == [1, 3, 5, 6, 7]
    assert c.run_lengths.tolist() == [2, 3, 1, 1, 1]
    assert c.perm.tolist() == [0, 5, 1, 3, 6, 4, 2, 7]
    assert c.num_bags == 3 and c.nnz == 8 and c.num_unique == 5
    assert c.bag_lengths.tolist() == [3, 2, 3]
    assert c.unique_table is None
    for t in (c.casted_index, c.casted_offsets, c.unique, c.perm):
        assert t.dtype == torch.int64


def test_worked_example_gradient_and_sgd():
    c = cast(IDX, OFF)
    G = tc_backward(DY, c)
    want = torch.tensor([[10001, 100010], [10101, 101010], [100, 1000], [1, 10], [10000, 100000]],
                        dtype=torch.float32)
    assert torch.equal(G, want)
    u, G2 = expand_coalesce_backward(DY, IDX, OFF)
    assert u.tolist() == [1, 3, 5, 6, 7] and torch.equal(G2, want)
    W = torch.arange(16, dtype=torch.float32).reshape(8, 2)
    W_new = sgd(W, c.unique, G, 0.1)
    # FACTS gives the decimal values; the exact binary32 results are fma(-0.1f, g, w) correctly
    # rounded: -998.1 -> -998.1000366... (fp32(-998.1) is one ulp away), the rest are exact.
    lr32 = Fraction(float(np.float32(0.1)))
    for r, facts in ((1, [-998.1, -9998.0]), (3, [-1004.1, -10094.0])):
        for k in range(2):
            got = Fraction(float(W_new[r, k]))
            exact = Fraction(float(W[r, k])) - lr32 * Fraction(float(G[list(c.unique).index(r), k]))
            half_ulp = Fraction(float(np.spacing(np.float32(abs(got))))) / 2
            assert abs(got - exact) < half_ulp
            assert abs(float(W_new[r, k]) - facts[k]) <= abs(float(np.spacing(np.float32(facts[k]))))
    assert W_new[1].tolist() == [-16352871 / 16384, -9998.0]
    assert W_new[3].tolist() == [-16451175 / 16384, -10094.0]
    p = torch.nn.Parameter(W.clone())
    p.grad = _dense(G, c.unique, W.shape)
    torch.optim.SGD([p], lr=0.1).step()
    assert_same_bits(W_new, p.data)
    untouched = [0, 2, 4]
    assert torch.equal(W_new[untouched], W[untouched])


def test_worked_example_mean_weights_per_casted_entry():
    c = cast(IDX, OFF)
    G = tc_backward(DY, c, mode="mean")
    third, half = torch.tensor(1.0) / 3, torch.tensor(1.0) / 2
    w = torch.stack([third, half, third])[c.casted_index]  # 1/len(bag) per casted entry
    assert_same_bits(G, tc_backward(DY, c, per_sample_weights=w[torch.argsort(c.perm)]))
    # row 5 is only in bag 1 (length 2): G = dY[1] / 2 exactly
    assert torch.equal(G[2], DY[1] / 2)


# ----------------------------------------------------------------------------- forward vs PyTorch


@FAST
@given(bag_inputs())
def test_forward_sum_bitwise_vs_pytorch(d):
    got = gather_reduce(d["table"], d["indices"], d["offsets"])
    want = F.embedding_bag(d["indices"], d["table"], d["offsets"], mode="sum")
    assert_same_bits(got, want)
    empty = torch.tensor(d["lengths"], dtype=torch.int64) == 0
    assert bool((got[empty].view(torch.int32) == 0).all())  # empty bags are +0.0


@FAST
@given(bag_inputs())
def test_forward_weighted_bitwise_vs_pytorch(d):
    got = gather_reduce(d["table"], d["indices"], d["offsets"], d["weights"])
    want = F.embedding_bag(d["indices"], d["table"], d["offsets"], mode="sum",
                           per_sample_weights=d["weights"])
    assert_same_bits(got, want)
    empty = torch.tensor(d["lengths"], dtype=torch.int64) == 0
    assert bool((got[empty].view(torch.int32) == 0).all())
    mean = gather_reduce(d["table"], d["indices"], d["offsets"], mode="mean")
    assert bool((mean[empty].view(torch.int32) == 0).all())


@FAST
@given(bag_inputs(regimes=("normal", "scaled")))
def test_forward_mean_close_to_pytorch(d):
    got = gather_reduce(d["table"], d["indices"], d["offsets"], mode="mean")
    want = F.embedding_bag(d["indices"], d["table"], d["offsets"], mode="mean")
    # PyTorch divides the sum; pimcast multiplies by 1/len in every FMA: a few roundings apart.
    sum_abs = gather_reduce(d["table"].abs(), d["indices"], d["offsets"], mode="mean")
    assert_close_to_terms(got, want, sum_abs, 1e-6)


def test_forward_random_large_bitwise():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(300, 33, generator=g)
    idx = torch.randint(0, 300, (5000,), generator=g)
    offsets = torch.sort(torch.randint(0, 5000, (400,), generator=g)).values
    offsets[0] = 0
    w = torch.randn(5000, generator=g)
    assert_same_bits(gather_reduce(table, idx, offsets), F.embedding_bag(idx, table, offsets, mode="sum"))
    assert_same_bits(gather_reduce(table, idx, offsets, w),
                     F.embedding_bag(idx, table, offsets, mode="sum", per_sample_weights=w))
    last = torch.cat([offsets, torch.tensor([5000])])
    assert_same_bits(gather_reduce(table, idx, last, include_last_offset=True),
                     F.embedding_bag(idx, table, last, mode="sum", include_last_offset=True))
    assert_same_bits(gather_reduce(table, idx.int(), offsets.int()), gather_reduce(table, idx, offsets))


def test_empty_bags_and_negative_zero():
    table = torch.tensor([[-0.0, -0.0], [1.0, -1.0]])
    idx = torch.tensor([0, 0, 1, 0])
    offsets = torch.tensor([0, 0, 2, 2, 4, 4])  # empty, [-0,-0], empty, [1,-0], trailing empty
    got = gather_reduce(table, idx, offsets)
    want = F.embedding_bag(idx, table, offsets, mode="sum")
    assert_same_bits(got, want)
    # empty bag -> +0.0; a bag of -0.0 rows -> +0.0 (acc starts at +0; PyTorch agrees)
    assert (got[[0, 1, 2, 5]].view(torch.int32) == 0).all()
    w = torch.tensor([1.0, -2.0, 1.0, 1.0])
    assert (gather_reduce(table, idx, offsets, w)[[0, 1, 2, 5]].view(torch.int32) == 0).all()
    assert (gather_reduce(table, idx, offsets, mode="mean")[[0, 1, 2, 5]].view(torch.int32) == 0).all()
    # all bags empty
    none = torch.zeros(0, dtype=torch.int64)
    out = gather_reduce(table, none, torch.zeros(3, dtype=torch.int64))
    assert out.shape == (3, 2) and (out.view(torch.int32) == 0).all()
    # no bags at all
    assert gather_reduce(table, none, none).shape == (0, 2)


def test_nan_and_inf_propagate_like_pytorch():
    table = torch.tensor([[float("inf"), float("nan")], [float("-inf"), 1.0], [3e38, 3e38]])
    idx = torch.tensor([0, 1, 2, 2, 1])
    offsets = torch.tensor([0, 2, 4])
    got = gather_reduce(table, idx, offsets)
    assert_same_bits(got, F.embedding_bag(idx, table, offsets, mode="sum"))
    assert torch.isnan(got[0]).all()  # inf + -inf, nan + 1
    assert got[1].tolist() == [float("inf")] * 2  # 3e38 + 3e38 overflows
    assert got[2].tolist() == [float("-inf"), 1.0]


# ----------------------------------------------------------------------------- backward


@FAST
@given(bag_inputs(), st.sampled_from(["sum", "weighted", "mean"]))
def test_tc_backward_bitwise_equals_expand_coalesce(d, kind):
    w = d["weights"] if kind == "weighted" else None
    mode = "mean" if kind == "mean" else "sum"
    c = cast(d["indices"], d["offsets"], num_rows=d["table"].shape[0])
    G = tc_backward(d["dY"], c, w, mode=mode)
    u, G2 = expand_coalesce_backward(d["dY"], d["indices"], d["offsets"], w, mode=mode)
    assert torch.equal(u, c.unique)
    assert torch.equal(c.unique, torch.unique(d["indices"]))
    assert_same_bits(G, G2)
    assert G.shape == (c.num_unique, d["dY"].shape[1])


def _pytorch_grad(table, idx, offsets, dY, w=None, mode="sum"):
    weight = torch.nn.Parameter(table.clone())
    bag = torch.nn.EmbeddingBag.from_pretrained(weight, freeze=False, mode=mode, sparse=False)
    bag.weight = weight
    out = bag(idx, offsets, per_sample_weights=w)
    out.backward(dY)
    return weight.grad


@FAST
@given(bag_inputs(regimes=("normal", "scaled")), st.sampled_from(["sum", "weighted", "mean"]))
def test_tc_backward_close_to_pytorch_embeddingbag(d, kind):
    w = d["weights"] if kind == "weighted" else None
    mode = "mean" if kind == "mean" else "sum"
    c = cast(d["indices"], d["offsets"])
    G = tc_backward(d["dY"], c, w, mode=mode)
    grad = _pytorch_grad(d["table"], d["indices"], d["offsets"], d["dY"], w, mode)
    # Σ|terms| through the same coalescing
    sum_abs = tc_backward(d["dY"].abs(), c, None if w is None else w.abs(), mode=mode)
    assert_close_to_terms(G, grad[c.unique], sum_abs, 1e-5)
    others = torch.ones(d["table"].shape[0], dtype=torch.bool)
    others[c.unique] = False
    assert bool((grad[others] == 0).all())


def test_tc_backward_large_vs_pytorch():
    g = torch.Generator().manual_seed(5)
    table = torch.randn(1000, 16, generator=g)
    idx = (torch.rand(20000, generator=g) ** 3 * 1000).long()  # skewed: hot rows
    offsets = torch.arange(0, 20000, 25)
    dY = torch.randn(800, 16, generator=g)
    c = cast(idx, offsets, num_rows=1000)
    G = tc_backward(dY, c)
    u, G2 = expand_coalesce_backward(dY, idx, offsets)
    assert_same_bits(G, G2)
    grad = _pytorch_grad(table, idx, offsets, dY)
    sum_abs = tc_backward(dY.abs(), c)
    assert_close_to_terms(G, grad[c.unique], sum_abs, 1e-5)


def test_tc_backward_empty_cases():
    none = torch.zeros(0, dtype=torch.int64)
    c = cast(none, torch.zeros(4, dtype=torch.int64))
    assert c.num_unique == 0 and c.num_bags == 4 and c.casted_offsets_with_end.tolist() == [0]
    G = tc_backward(torch.randn(4, 3), c)
    assert G.shape == (0, 3)
    u, G2 = expand_coalesce_backward(torch.randn(4, 3), none, torch.zeros(4, dtype=torch.int64))
    assert u.numel() == 0 and G2.shape == (0, 3)
    c0 = cast(none, none)
    assert tc_backward(torch.zeros(0, 3), c0).shape == (0, 3)


def test_include_last_offset_cast():
    last = torch.tensor([0, 3, 5, 8])
    a, b = cast(IDX, OFF), cast(IDX, last, include_last_offset=True)
    for f in ("casted_index", "casted_offsets", "unique", "perm", "bag_lengths"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    u, G = expand_coalesce_backward(DY, IDX, last, include_last_offset=True)
    assert_same_bits(G, tc_backward(DY, b))


# ----------------------------------------------------------------------------- multi-table


def test_cast_multi_matches_per_table():
    g = torch.Generator().manual_seed(9)
    tables = [(torch.randint(0, 7, (30,), generator=g), torch.tensor([0, 4, 4, 11, 20])),
              (torch.randint(0, 5, (12,), generator=g), torch.tensor([0, 0, 6])),
              (torch.zeros(0, dtype=torch.int64), torch.tensor([0, 0]))]
    dYs = [torch.randn(len(o), 3, generator=g) for _, o in tables]
    cm = cast_multi([i for i, _ in tables], [o for _, o in tables], num_rows=[7, 5, 3])
    assert cm.num_bags == 5 + 3 + 2
    Gm = tc_backward(torch.cat(dYs), cm)
    # keys sort by (table, row)
    keys = cm.unique_table * 100 + cm.unique
    assert bool((keys[1:] > keys[:-1]).all())
    for t, ((idx, off), dY) in enumerate(zip(tables, dYs)):
        ct = cast(idx, off)
        sel = cm.unique_table == t
        assert torch.equal(cm.unique[sel], ct.unique)
        assert_same_bits(Gm[sel], tc_backward(dY, ct))
    # the same with a table id per lookup
    idx = torch.cat([i for i, _ in tables])
    tid = torch.cat([torch.full((len(i),), t) for t, (i, _) in enumerate(tables)])
    off = torch.cat([tables[0][1], tables[1][1] + 30, tables[2][1] + 42])
    ct = cast(idx, off, table_ids=tid, num_rows=[7, 5, 3])
    for f in ("casted_index", "casted_offsets", "unique", "perm", "unique_table"):
        assert torch.equal(getattr(ct, f), getattr(cm, f))


# ----------------------------------------------------------------------------- optimizers


def _coalesced_case(seed, rows=40, dim=6, nnz=300, bags=50):
    g = torch.Generator().manual_seed(seed)
    idx = (torch.rand(nnz, generator=g) ** 2 * rows).long()
    offsets = torch.sort(torch.randint(0, nnz, (bags,), generator=g)).values
    offsets[0] = 0
    dY = torch.randn(bags, dim, generator=g)
    c = cast(idx, offsets, num_rows=rows)
    return torch.randn(rows, dim, generator=g), c.unique, tc_backward(dY, c)


def _dense(grad_rows, unique, shape):
    dense = torch.zeros(shape)
    dense[unique] = grad_rows
    return dense


@pytest.mark.parametrize("lr", [0.1, 0.01, 1.7, 3e-4])
def test_sgd_bitwise_vs_torch_optim(lr):
    W, u, G = _coalesced_case(1)
    W[0, 0], W[1, 1] = -0.0, 1e-40  # signed zero and subnormal weights
    W0, G0 = W.clone(), G.clone()
    got = sgd(W, u, G, lr)
    p = torch.nn.Parameter(W.clone())
    opt = torch.optim.SGD([p], lr=lr)
    p.grad = _dense(G, u, W.shape)
    opt.step()
    assert_same_bits(got, p.data)
    assert_same_bits(W, W0)  # inputs untouched
    assert_same_bits(G, G0)


def test_adagrad_vs_torch_optim():
    """Equal to torch.optim.Adagrad within 2 ulp (measured bit-identical on torch 2.13 x86-64 CPU,
    where addcmul_ is fused; the tolerance allows a non-fused build)."""
    W, _, _ = _coalesced_case(2)
    p = torch.nn.Parameter(W.clone())
    opt = torch.optim.Adagrad([p], lr=0.05, eps=1e-10, initial_accumulator_value=0.1)
    w, s = W.clone(), torch.full_like(W, 0.1)
    for step in range(3):
        _, u, G = _coalesced_case(10 + step)
        w_in, s_in = w.clone(), s.clone()
        w, s = adagrad(w, s, u, G, lr=0.05, eps=1e-10)
        p.grad = _dense(G, u, W.shape)
        opt.step()
        ulp = torch.finfo(torch.float32).eps * p.data.abs()
        assert bool(((w - p.data).abs() <= 2 * ulp + 1e-38).all())
        st_ = opt.state[p]["sum"]
        assert bool(((s - st_).abs() <= 2 * torch.finfo(torch.float32).eps * st_.abs()).all())
        others = torch.ones(W.shape[0], dtype=torch.bool)
        others[u] = False
        assert_same_bits(w[others], w_in[others])


def test_rowwise_adagrad_vs_float64():
    W, u, G = _coalesced_case(3)
    h = torch.rand(W.shape[0])
    W0, h0, G0 = W.clone(), h.clone(), G.clone()
    lr, eps = 0.02, 1e-8
    w_new, h_new = rowwise_adagrad(W, h, u, G, lr, eps)
    assert_same_bits(W, W0)
    assert torch.equal(h, h0) and torch.equal(G, G0)
    h64 = h.double()[u] + (G.double() ** 2).mean(1)
    w64 = W.double()[u] - lr * G.double() / (h64.sqrt() + eps)[:, None]
    assert torch.allclose(h_new[u].double(), h64, rtol=1e-6, atol=0)
    assert torch.allclose(w_new[u].double(), w64, rtol=1e-5, atol=1e-7)
    others = torch.ones(W.shape[0], dtype=torch.bool)
    others[u] = False
    assert_same_bits(w_new[others], W[others])
    assert torch.equal(h_new[others], h[others])
    # one row, all-zero gradient: no change
    w2, h2 = rowwise_adagrad(W, h, torch.tensor([3]), torch.zeros(1, W.shape[1]), lr, eps)
    assert_same_bits(w2, W)
    assert torch.equal(h2, h)


# ----------------------------------------------------------------------------- bad inputs

T8 = torch.randn(8, 2)
I3 = torch.tensor([0, 1, 2])
O2 = torch.tensor([0, 2])
W3 = torch.ones(3)
C = cast(IDX, OFF)
U2 = torch.tensor([1, 3])
G2 = torch.ones(2, 2)
S8 = torch.zeros(8, 2)
H8 = torch.zeros(8)


BAD = [
    ("index out of range", lambda: gather_reduce(T8, torch.tensor([0, 9, 1]), O2),
     IndexError, r"indices\[1\] = 9 is out of range for a table of 8 rows"),
    ("negative index", lambda: gather_reduce(T8, torch.tensor([0, 1, -2]), O2), IndexError,
     r"indices\[2\] = -2 is negative"),
    ("negative offset", lambda: gather_reduce(T8, I3, torch.tensor([0, -1])), ValueError,
     r"offsets\[1\] = -1 is negative"),
    ("decreasing offsets", lambda: gather_reduce(T8, I3, torch.tensor([0, 3, 2])), ValueError,
     r"offsets\[2\] = 2 < offsets\[1\] = 3"),
    ("offsets[0] != 0", lambda: gather_reduce(T8, I3, torch.tensor([1, 2])), ValueError,
     r"offsets\[0\] must be 0, got 1"),
    ("offsets past end", lambda: gather_reduce(T8, I3, torch.tensor([0, 5])), ValueError,
     r"offsets\[1\] = 5 is past the end of indices \(3 lookups\)"),
    ("last offset", lambda: gather_reduce(T8, I3, torch.tensor([0, 2]), include_last_offset=True),
     ValueError, r"must equal the number of lookups 3, got 2"),
    ("no bags", lambda: gather_reduce(T8, I3, torch.zeros(0, dtype=torch.int64)), ValueError,
     r"indices has 3 lookups"),
    ("float indices", lambda: gather_reduce(T8, I3.float(), O2), DTypeError, r"indices .*torch\.float32"),
    ("float offsets", lambda: gather_reduce(T8, I3, O2.double()), DTypeError, r"offsets .*torch\.float64"),
    ("bool indices", lambda: gather_reduce(T8, I3.bool(), O2), DTypeError, r"torch\.bool"),
    ("2-D indices", lambda: gather_reduce(T8, I3[None], O2), ValueError, r"indices must be 1-D, got shape \(1, 3\)"),
    ("table 1-D", lambda: gather_reduce(torch.ones(8), I3, O2), ValueError, r"table must be 2-D.*\(8,\)"),
    ("table float64", lambda: gather_reduce(T8.double(), I3, O2), DTypeError, r"table .*torch\.float64"),
    ("table not tensor", lambda: gather_reduce([[1.0]], I3, O2), DTypeError, r"list"),
    ("weights length", lambda: gather_reduce(T8, I3, O2, torch.ones(2)), ValueError, r"shape \(2,\)"),
    ("weights dtype", lambda: gather_reduce(T8, I3, O2, W3.double()), DTypeError, r"torch\.float64"),
    ("weights with mean", lambda: gather_reduce(T8, I3, O2, W3, mode="mean"), ValueError, r"mode='mean'"),
    ("bad mode", lambda: gather_reduce(T8, I3, O2, mode="max"), ValueError, r"'max'"),
    ("tc grad rows", lambda: tc_backward(torch.ones(4, 2), C), ValueError, r"4 rows but the forward had 3 bags"),
    ("tc grad dtype", lambda: tc_backward(DY.double(), C), DTypeError, r"grad_output .*torch\.float64"),
    ("tc weights", lambda: tc_backward(DY, C, torch.ones(5)), ValueError, r"shape \(5,\)"),
    ("tc casted", lambda: tc_backward(DY, "x"), DTypeError, r"str"),
    ("ec grad rows", lambda: expand_coalesce_backward(torch.ones(2, 2), IDX, OFF), ValueError,
     r"2 rows but the forward had 3 bags"),
    ("ec negative", lambda: expand_coalesce_backward(DY, torch.tensor([0, -7, 1]), torch.tensor([0, 1, 2])),
     IndexError, r"-7"),
    ("cast out of range", lambda: cast(IDX, OFF, num_rows=7), IndexError, r"indices\[7\] = 7 .* 7 rows"),
    ("cast negative table", lambda: cast(I3, O2, table_ids=torch.tensor([0, -4, 0])), ValueError,
     r"table_ids\[1\] = -4"),
    ("cast table_ids length", lambda: cast(I3, O2, table_ids=torch.tensor([0, 0])), ValueError, r"shape \(2,\)"),
    ("cast per-table size", lambda: cast(I3, O2, table_ids=torch.tensor([0, 1, 1]), num_rows=[8, 2]),
     IndexError, r"indices\[2\] = 2 is out of range for table 1 of 2 rows"),
    ("cast_multi counts", lambda: cast_multi([I3, I3], [O2]), ValueError, r"2 index tensors but 1"),
    ("cast_multi range", lambda: cast_multi([I3, I3], [O2, O2], num_rows=[8, 2]), IndexError,
     r"indices_per_table\[1\]\[2\] = 2 .* 2 rows"),
    ("sgd duplicate", lambda: sgd(T8, torch.tensor([3, 1, 3]), torch.ones(3, 2), 0.1), ValueError,
     r"duplicate row 3 in unique \(positions 0 and 2\)"),
    ("sgd out of range", lambda: sgd(T8, torch.tensor([1, 8]), G2, 0.1), IndexError, r"unique\[1\] = 8"),
    ("sgd negative row", lambda: sgd(T8, torch.tensor([-1, 2]), G2, 0.1), IndexError, r"unique\[0\] = -1"),
    ("sgd grad shape", lambda: sgd(T8, U2, torch.ones(3, 2), 0.1), ValueError, r"got shape \(3, 2\)"),
    ("sgd grad dtype", lambda: sgd(T8, U2, G2.double(), 0.1), DTypeError, r"grad .*torch\.float64"),
    ("sgd lr", lambda: sgd(T8, U2, G2, torch.tensor(0.1)), DTypeError, r"lr must be a Python number"),
    ("adagrad duplicate", lambda: adagrad(T8, S8, torch.tensor([5, 5]), G2, 0.1), ValueError, r"duplicate row 5"),
    ("adagrad state", lambda: adagrad(T8, torch.zeros(8, 3), U2, G2, 0.1), ValueError, r"\(8, 3\)"),
    ("rowwise duplicate", lambda: rowwise_adagrad(T8, H8, torch.tensor([2, 2]), G2, 0.1), ValueError,
     r"duplicate row 2"),
    ("rowwise state", lambda: rowwise_adagrad(T8, torch.zeros(7), U2, G2, 0.1), ValueError, r"\(7,\)"),
    ("rowwise state dtype", lambda: rowwise_adagrad(T8, H8.double(), U2, G2, 0.1), DTypeError, r"float64"),
]


@pytest.mark.parametrize("fn,exc,match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_inputs_raise_and_do_not_modify(fn, exc, match):
    shared = [T8, I3, O2, W3, IDX, OFF, DY, U2, G2, S8, H8, C.casted_index, C.perm]
    before = [t.clone() for t in shared]
    with pytest.raises(exc, match=match):
        fn()
    for a, b in zip(shared, before):
        assert torch.equal(a.view(torch.int32) if a.dtype == torch.float32 else a,
                           b.view(torch.int32) if b.dtype == torch.float32 else b)


def test_validation_happens_before_computation():
    """A bad index late in the batch is caught before any output exists (nothing is mutated)."""
    table = torch.randn(4, 3)
    t0 = table.clone()
    idx = torch.tensor([0, 1, 2, 3, 0, 4])
    with pytest.raises(IndexError, match=r"indices\[5\] = 4 .* 4 rows"):
        gather_reduce(table, idx, torch.tensor([0, 3]))
    assert torch.equal(table, t0)


def test_functions_do_not_modify_inputs():
    W, u, G = _coalesced_case(4)
    copies = [W.clone(), u.clone(), G.clone()]
    s, h = torch.rand_like(W), torch.rand(W.shape[0])
    sc, hc = s.clone(), h.clone()
    sgd(W, u, G, 0.3)
    adagrad(W, s, u, G, 0.3)
    rowwise_adagrad(W, h, u, G, 0.3)
    for a, b in zip([W, u, G, s, h], copies + [sc, hc]):
        assert torch.equal(a, b)
    idx, off, w = IDX.clone(), OFF.clone(), torch.randn(8)
    wc = w.clone()
    gather_reduce(T8, idx, off, w)
    c = cast(idx, off)
    tc_backward(DY, c, w)
    expand_coalesce_backward(DY, idx, off, w)
    assert torch.equal(idx, IDX) and torch.equal(off, OFF) and torch.equal(w, wc)


# ----------------------------------------------------------------------------- fast exact FMA path

def _fma_operand_sets():
    """Random, adversarial (double-rounding) and special float32 operands."""
    from pimcast.models.numerics import bits_to_f32
    rng = np.random.default_rng(7)
    n = 200_000
    sets = []
    # random bits (every class: subnormals, inf, NaN, both zeros)
    sets.append(tuple(rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32) for _ in range(3)))
    # wide but finite exponents, product and addend of comparable size (cancellation, carries)
    e = lambda lo, hi: np.exp2(rng.integers(lo, hi, n)).astype(np.float32)
    a = (rng.standard_normal(n) * e(-70, 70)).astype(np.float32)
    b = (rng.standard_normal(n) * e(-70, 70)).astype(np.float32)
    with np.errstate(over="ignore"):     # products beyond binary32 become inf on purpose
        c = (-(a.astype(np.float64) * b) * (1 + rng.standard_normal(n) * 2.0 ** -rng.integers(1, 30, n))).astype(np.float32)
    sets.append((a, b, c))
    # near the binary32 overflow threshold and in the subnormal range
    big = np.float32(3.4028235e38)
    sets.append((rng.uniform(0.9, 1.1, n).astype(np.float32), np.full(n, big, np.float32),
                 (rng.uniform(-1, 1, n) * 2.0 ** 104).astype(np.float32)))
    sets.append(((rng.standard_normal(n) * 2.0 ** -75).astype(np.float32),
                 (rng.standard_normal(n) * 2.0 ** -75).astype(np.float32),
                 (rng.integers(-2**20, 2**20, n) * 2.0 ** -149).astype(np.float32)))
    # double rounding traps: a*b = 2^-24 (1 - i^2 2^-46) = just under half an ulp of c in [1, 2), so
    # RN53(a*b + c) is a binary32 midpoint and rounding it again goes the wrong way for half the c
    i = rng.integers(1, 362, n).astype(np.float64)
    sign = lambda: np.where(rng.random(n) < .5, 1, -1)
    x = ((1 + i * 2.0 ** -23) * 2.0 ** -12).astype(np.float32)
    y = ((1 - i * 2.0 ** -23) * 2.0 ** -12 * sign()).astype(np.float32)
    cb = np.uint32(0x3F800000) + rng.integers(0, 2**23, n, dtype=np.uint64).astype(np.uint32)
    c = cb.view(np.float32) * sign().astype(np.float32)
    sets.append((x, y, c))
    sets.append((y, x, c * np.float32(2.0 ** 40)))         # same at another exponent (no trap: control)
    # ... and in the subnormal range: a*b = 2^-150 (1 - i^2 2^-46), c = k 2^-149
    xs = ((1 + i * 2.0 ** -23) * 2.0 ** -75).astype(np.float32)
    ys = ((1 - i * 2.0 ** -23) * 2.0 ** -75 * sign()).astype(np.float32)
    cs = (rng.integers(-2**23, 2**23, n) * 2.0 ** -149).astype(np.float32)
    sets.append((xs, ys, cs))
    # specials
    sp = bits_to_f32([0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x00800000, 0x3F800000, 0x7F7FFFFF, 0xFF7FFFFF,
                      0x7F800000, 0xFF800000, 0x7FC00000, 0x7FA00001, 0xFFC00123, 0x33800000, 0x34000000]).numpy()
    g = np.stack(np.meshgrid(sp, sp, sp, indexing="ij")).reshape(3, -1)
    sets.append((g[0], g[1], g[2]))
    return sets


@pytest.mark.parametrize("impl", ["_fma_f32_fast", "_fma_f32_fast_np"])
def test_fast_fma_bitwise_equals_the_definition(impl):
    """The fast exact FMA paths (numba kernel; numpy with the breakpoint shortcut) give the bits of
    numerics._fma_f32_np, the definition, on random, adversarial and special operands."""
    from pimcast.models import tensor_cast
    from pimcast.models.numerics import _fma_f32_np
    _fma_f32_fast = getattr(tensor_cast, impl)
    hits = 0
    for a, b, c in _fma_operand_sets():
        ref = _fma_f32_np(a, b, c).view(np.uint32)
        got = _fma_f32_fast(a, b, c).view(np.uint32)
        assert np.array_equal(ref, got)
        got2 = _fma_f32_fast(a.reshape(-1, 8), b.reshape(-1, 8), c.reshape(-1, 8)).view(np.uint32)
        assert np.array_equal(ref, got2.ravel())
        with np.errstate(over="ignore", invalid="ignore"):   # inf/NaN operands are part of the sets
            naive = (a.astype(np.float64) * b + c).astype(np.float32).view(np.uint32)
        hits += int((naive != ref).sum())
    assert hits > 1000          # the adversarial sets do exercise the double-rounding correction
    # scalar first operand (SGD: fma(-lr, g, w)) and broadcasting (row-wise Adagrad)
    rng = np.random.default_rng(3)
    g = rng.standard_normal((3000, 50)).astype(np.float32)
    w = rng.standard_normal((3000, 50)).astype(np.float32)
    for lr in (0.1, 0.05, 1e-3, 3.0, 2.0 ** -7):
        a = np.float32(-lr)
        assert np.array_equal(_fma_f32_np(np.full_like(g, a), g, w).view(np.uint32),
                              _fma_f32_fast(a, g, w).view(np.uint32))
    r = rng.standard_normal((3000, 1)).astype(np.float32)
    assert np.array_equal(_fma_f32_np(np.broadcast_to(r, g.shape), g, w).view(np.uint32),
                          _fma_f32_fast(r, g, w).view(np.uint32))
    gs, ws = g[::2, 3:40], w[1::2, 5:42]                     # strided operands
    assert np.array_equal(_fma_f32_np(gs, gs, ws).view(np.uint32), _fma_f32_fast(gs, gs, ws).view(np.uint32))
    assert _fma_f32_fast(np.float32(1), g[:0], w[:0]).shape == (0, 50)


@pytest.mark.parametrize("lr", [0.1, 0.05, 0.01, 2.0 ** -4])
def test_optimizers_bitwise_vs_fma_f32_definition(lr):
    """sgd / adagrad / rowwise_adagrad (fast FMA path) = the same formulas with numerics.fma_f32."""
    from pimcast.models.numerics import fma_f32
    g_ = torch.Generator().manual_seed(int(lr * 1000))
    W = torch.randn(500, 37, generator=g_) * torch.exp2(torch.randint(-20, 20, (500, 37), generator=g_)).float()
    u = torch.randperm(500, generator=g_)[:300]
    G = torch.randn(300, 37, generator=g_) * torch.exp2(torch.randint(-20, 20, (300, 37), generator=g_)).float()
    ref = W.clone()
    ref[u] = fma_f32(-float(lr), G, W[u])
    assert torch.equal(sgd(W, u, G, lr).view(torch.int32), ref.view(torch.int32))
    S = torch.rand(500, 37, generator=g_)
    nw, ns = adagrad(W, S, u, G, lr)
    s = fma_f32(G, G, S[u])
    assert torch.equal(ns[u].view(torch.int32), s.view(torch.int32))
    H = torch.rand(500, generator=g_)
    nw, nh = rowwise_adagrad(W, H, u, G, lr)
    q = torch.zeros(300)
    for k in range(37):
        q = fma_f32(G[:, k], G[:, k], q)
    h = H[u] + q / torch.tensor(37.0)
    r = torch.tensor(float(lr)) / h.sqrt().add_(1e-8)
    assert torch.equal(nh[u].view(torch.int32), h.view(torch.int32))
    assert torch.equal(nw[u].view(torch.int32), fma_f32(-r.unsqueeze(1), G, W[u]).view(torch.int32))


@pytest.mark.parametrize("case", ["fixed", "var", "empty_bags", "big_ids", "one_bag"])
def test_cast_fast_path_equals_the_definition(case):
    """cast() (int32 keys, sorted keys as rows, perm // L for equal bags) = the definition:
    dst[j] = bag of lookup j, perm = stable argsort of the ids, casted_index = dst[perm]."""
    g = torch.Generator().manual_seed(5)
    if case == "fixed":
        idx, offs = torch.randint(0, 300, (64 * 7,), generator=g), torch.arange(0, 64 * 7, 7)
    elif case == "var" or case == "empty_bags":
        lens = torch.randint(0 if case == "empty_bags" else 1, 9, (50,), generator=g)
        lens[:3] = 0 if case == "empty_bags" else lens[:3]
        offs = torch.cat([torch.zeros(1, dtype=torch.int64), lens.cumsum(0)[:-1]])
        idx = torch.randint(0, 40, (int(lens.sum()),), generator=g)
    elif case == "big_ids":
        idx = torch.randint(0, 4, (40,), generator=g) + 2 ** 31 - 2
        offs = torch.arange(0, 40, 5)
    else:
        idx, offs = torch.randint(0, 10, (30,), generator=g), torch.tensor([0])
    c = cast(idx, offs)
    n = idx.numel()
    ends = torch.cat([offs[1:], torch.tensor([n])])
    dst = torch.repeat_interleave(torch.arange(offs.numel()), ends - offs)
    perm = torch.from_numpy(np.argsort(idx.numpy(), kind="stable"))
    rows = idx[perm]
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), torch.nonzero(rows[1:] != rows[:-1]).flatten() + 1])
    for got, want in ((c.perm, perm), (c.casted_index, dst[perm]), (c.casted_offsets, starts),
                      (c.unique, rows[starts]), (c.bag_lengths, ends - offs)):
        assert got.dtype == torch.int64 and torch.equal(got, want)
