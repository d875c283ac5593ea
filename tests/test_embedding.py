"""PIMEmbeddingBag / PIMEmbedding vs torch.nn.EmbeddingBag / Embedding: forward, grads, training, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pimcast.host import PIMEmbedding, PIMEmbeddingBag, PIMSGD, open_device
from pimcast.models.numerics import f32_to_bits


def same_bits(a, b):
    assert a.shape == b.shape
    assert np.array_equal(f32_to_bits(a.detach().contiguous()), f32_to_bits(b.detach().contiguous()))


def batch(rows, B, L, seed):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(0, L + 1, (B,), generator=g)
    idx = torch.randint(0, rows, (int(lens.sum()),), generator=g)
    offs = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lens, 0)[:-1]])
    return idx, offs


def int_coeffs(B, D, seed):
    """Small-integer upstream gradients: every gradient sum is exact, so grads agree bit for bit."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-4, 5, (B, D), generator=g).float()


@pytest.mark.parametrize("backend", ["model", "golden"])
@pytest.mark.parametrize("sparse", [True, False])
def test_sum_training_bitwise_vs_torch_sgd(backend, sparse):
    rows, D = 50, 32
    W0 = torch.randn(rows, D)
    ref = nn.EmbeddingBag.from_pretrained(W0.clone(), freeze=False, mode="sum", sparse=sparse)
    pim = PIMEmbeddingBag.from_pretrained(W0, freeze=False, mode="sum", sparse=sparse, backend=backend,
                                          config="rank-ddr4-3200")
    # torch.optim.SGD with a *sparse* grad computes w + round(-lr*g) per (uncoalesced) entry -- two
    # roundings, not pimcast's fma(-lr, g, w).  Compared bitwise where both are exact: the reference
    # grad coalesced (integer sums, exact) and lr a power of two (-lr*g exact).  Dense: any lr.
    lr = 0.0625 if sparse else 0.05
    opt_r = torch.optim.SGD(ref.parameters(), lr=lr)
    opt_p = PIMSGD(pim.parameters(), lr=lr)
    for step in range(4):
        idx, offs = batch(rows, 16, 6, step)
        C = int_coeffs(16, D, 100 + step)
        yr, yp = ref(idx, offs), pim(idx, offs)
        same_bits(yr, yp)
        (yr * C).sum().backward()
        (yp * C).sum().backward()
        gp = pim.weight.grad
        if sparse:
            assert gp.is_sparse and gp.is_coalesced()
            same_bits(ref.weight.grad.to_dense(), gp.to_dense())
            ref.weight.grad = ref.weight.grad.coalesce()
        else:
            same_bits(ref.weight.grad, gp)
        opt_r.step(); opt_p.step(); opt_r.zero_grad(); opt_p.zero_grad()
        same_bits(ref.weight, pim.read_weight())


def test_stock_torch_sgd_on_the_aliased_parameter():
    rows, D = 40, 16
    W0 = torch.randn(rows, D)
    ref = nn.EmbeddingBag.from_pretrained(W0.clone(), freeze=False, mode="sum", sparse=True)
    pim = PIMEmbeddingBag.from_pretrained(W0, freeze=False, mode="sum", sparse=True)
    o1, o2 = torch.optim.SGD(ref.parameters(), lr=0.1), torch.optim.SGD(pim.parameters(), lr=0.1)
    for step in range(3):
        idx, offs = batch(rows, 8, 5, step)
        C = int_coeffs(8, D, step)
        (ref(idx, offs) * C).sum().backward()
        (pim(idx, offs) * C).sum().backward()
        ref.weight.grad = ref.weight.grad.coalesce()   # same (exact) coalesced grad -> same torch update
        o1.step(); o2.step(); o1.zero_grad(); o2.zero_grad()
    same_bits(ref.weight, pim.read_weight())
    assert pim.pim_device.stats()["ops"].get("host_update") == 3


def test_gradients_within_bound_and_mean_mode():
    rows, D = 30, 50
    W0 = torch.randn(rows, D)
    for mode in ("sum", "mean"):
        ref = nn.EmbeddingBag.from_pretrained(W0.clone(), freeze=False, mode=mode, sparse=True)
        pim = PIMEmbeddingBag.from_pretrained(W0, freeze=False, mode=mode)
        idx, offs = batch(rows, 64, 12, 7)
        dY = torch.randn(64, D)
        yr, yp = ref(idx, offs), pim(idx, offs)
        if mode == "sum":
            same_bits(yr, yp)
        else:
            torch.testing.assert_close(yp, yr, rtol=1e-6, atol=1e-6)
        yr.backward(dY); yp.backward(dY)
        gr, gp = ref.weight.grad.to_dense(), pim.weight.grad.to_dense()
        # bound: |diff| <= 1e-5 * sum |terms|
        lens = torch.diff(torch.cat([offs, torch.tensor([idx.numel()])]))
        bag = torch.repeat_interleave(torch.arange(64), lens)
        scale = (1.0 / lens.clamp(min=1).float())[bag] if mode == "mean" else torch.ones(idx.numel())
        terms = torch.zeros(rows, D).index_add_(0, idx, (dY[bag] * scale[:, None]).abs())
        assert ((gr - gp).abs() <= 1e-5 * terms + 1e-30).all()


def test_weighted_2d_include_last_offset_padding_idx():
    rows, D = 20, 16
    W0 = torch.randn(rows, D)
    ref = nn.EmbeddingBag.from_pretrained(W0.clone(), freeze=False, mode="sum", padding_idx=3)
    pim = PIMEmbeddingBag.from_pretrained(W0, freeze=False, mode="sum", padding_idx=3)
    x = torch.tensor([[1, 3, 5], [3, 3, 3], [7, 8, 1]])
    psw = torch.randn(3, 3, requires_grad=True)
    psw2 = psw.detach().clone().requires_grad_(True)
    yr, yp = ref(x, per_sample_weights=psw), pim(x, per_sample_weights=psw2)
    # with padding_idx PyTorch's weighted kernel rounds w*row before adding (not fused): tolerance here;
    # without padding_idx it is the fused sequential sum (bitwise, below and in test_device.py)
    torch.testing.assert_close(yp, yr, rtol=1e-6, atol=1e-6)
    nopad_r = nn.EmbeddingBag.from_pretrained(W0.clone(), mode="sum")
    nopad_p = PIMEmbeddingBag.from_pretrained(W0, mode="sum")
    same_bits(nopad_r(x, per_sample_weights=psw.detach()), nopad_p(x, per_sample_weights=psw.detach()))
    C = int_coeffs(3, D, 0)
    (yr * C).sum().backward(); (yp * C).sum().backward()
    torch.testing.assert_close(ref.weight.grad, pim.weight.grad.to_dense())
    assert pim.weight.grad.to_dense()[3].abs().sum() == 0
    torch.testing.assert_close(psw.grad, psw2.grad)
    ilo_r = nn.EmbeddingBag.from_pretrained(W0.clone(), mode="mean", include_last_offset=True)
    ilo_p = PIMEmbeddingBag.from_pretrained(W0, mode="mean", include_last_offset=True)
    idx, off = torch.tensor([1, 2, 3, 4, 5]), torch.tensor([0, 2, 2, 5])
    torch.testing.assert_close(ilo_p(idx, off), ilo_r(idx, off))


def test_embedding_module_and_padding_idx():
    rows, D = 25, 8
    W0 = torch.randn(rows, D)
    W0[0] = 0
    ref = nn.Embedding.from_pretrained(W0.clone(), freeze=False, padding_idx=0, sparse=True)
    pim = PIMEmbedding.from_pretrained(W0, freeze=False, padding_idx=0)
    o1, o2 = torch.optim.SGD(ref.parameters(), lr=0.0625), PIMSGD(pim.parameters(), lr=0.0625)
    for step in range(3):
        x = torch.randint(0, rows, (6, 7), generator=torch.Generator().manual_seed(step))
        x[0, :3] = 0
        C = int_coeffs(42, D, step).reshape(6, 7, D)
        yr, yp = ref(x), pim(x)
        same_bits(yr, yp)
        (yr * C).sum().backward(); (yp * C).sum().backward()
        ref.weight.grad = ref.weight.grad.coalesce()
        same_bits(ref.weight.grad.to_dense(), pim.weight.grad.to_dense())
        o1.step(); o2.step(); o1.zero_grad(); o2.zero_grad()
    same_bits(ref.weight, pim.read_weight())
    assert pim.read_weight()[0].abs().sum() == 0
    with pytest.raises(IndexError, match="index out of range"):
        pim(torch.tensor([25]))


def test_sparse_adam_and_adagrad_run():
    pim = PIMEmbeddingBag(100, 16, mode="sum")
    W_before = pim.read_weight()
    opt = torch.optim.SparseAdam(pim.parameters(), lr=0.01)
    for step in range(3):
        idx, offs = batch(100, 8, 4, step)
        pim(idx, offs).pow(2).sum().backward()
        opt.step(); opt.zero_grad()
    assert not torch.equal(W_before, pim.read_weight())
    pim2 = PIMEmbeddingBag(100, 16, mode="sum")
    opt2 = torch.optim.Adagrad(pim2.parameters(), lr=0.01)
    idx, offs = batch(100, 8, 4, 0)
    pim2(idx, offs).sum().backward()
    opt2.step()


def test_facts_example_through_module():
    W = torch.arange(16.0).reshape(8, 2)
    m = PIMEmbeddingBag.from_pretrained(W, freeze=False, mode="sum")
    y = m(torch.tensor([1, 3, 6, 3, 5, 1, 3, 7]), torch.tensor([0, 3, 5]))
    (y * torch.tensor([[1.0, 10], [100, 1000], [10000, 100000]])).sum().backward()
    g = m.weight.grad
    assert g.indices()[0].tolist() == [1, 3, 5, 6, 7]
    assert g.values().tolist() == [[10001, 100010], [10101, 101010], [100, 1000], [1, 10], [10000, 100000]]
    PIMSGD(m.parameters(), lr=0.1).step()
    W2 = m.read_weight()
    assert W2[1].tolist() == [-16352871 / 16384, -9998.0]
    assert W2[3].tolist() == [-16451175 / 16384, -10094.0]
    assert abs(W2[1, 0] - (-998.1)) <= np.spacing(np.float32(998.1))
    assert abs(W2[3, 0] - (-1004.1)) <= np.spacing(np.float32(1004.1))


def test_table_held_once_and_parameter_aliases_device():
    m = PIMEmbeddingBag(1000, 50, mode="sum")
    dev = m.pim_device
    view = dev.host_view(m.table)
    assert m.weight.data_ptr() == view.data_ptr()
    assert m.weight.is_contiguous()
    assert m.weight.untyped_storage().nbytes() == 1000 * 50 * 4     # only the device image's payload
    dev.scatter_rows(m.table, torch.tensor([5]), torch.full((1, 50), 7.0))
    assert (m.weight[5] == 7).all()


def test_bad_input_like_torch_and_no_state_change():
    W0 = torch.randn(10, 4)
    ref = nn.EmbeddingBag.from_pretrained(W0.clone(), mode="sum")
    pim = PIMEmbeddingBag.from_pretrained(W0, mode="sum")
    mean = PIMEmbeddingBag.from_pretrained(W0, mode="mean")
    ref_mean = nn.EmbeddingBag.from_pretrained(W0.clone(), mode="mean")
    cases = [
        (torch.tensor([1, 10]), torch.tensor([0]), None),
        (torch.tensor([1, -1]), torch.tensor([0]), None),
        (torch.tensor([1, 2]), torch.tensor([1]), None),
        (torch.tensor([1, 2, 3]), torch.tensor([0, 5]), None),
        (torch.tensor([1, 2, 3]), None, None),
        (torch.tensor([[1, 2], [3, 4]]), torch.tensor([0]), None),
        (torch.tensor([1.0, 2.0]), torch.tensor([0]), None),
        (torch.tensor([1, 2]), torch.tensor([0]), torch.ones(3)),
        (torch.tensor([1, 2]), torch.tensor([0]), torch.ones(2, dtype=torch.float64)),
        (torch.tensor([[[1]]]), None, None),
    ]
    before = pim.pim_device.stats()
    for inp, off, psw in cases:
        with pytest.raises(Exception) as er:
            ref(inp, off, per_sample_weights=psw)
        with pytest.raises(type(er.value)):
            pim(inp, off, per_sample_weights=psw)
    with pytest.raises(NotImplementedError):
        ref_mean(torch.tensor([1, 2]), torch.tensor([0]), per_sample_weights=torch.ones(2))
    with pytest.raises(NotImplementedError, match="per_sample_weights"):
        mean(torch.tensor([1, 2]), torch.tensor([0]), per_sample_weights=torch.ones(2))
    assert pim.pim_device.stats() == before
    same_bits(pim.read_weight(), W0)


def test_capacity_error_and_shared_device():
    dev = open_device("model", "small-test")
    a = PIMEmbeddingBag(1000, 64, pim_device=dev, name="a")
    with pytest.raises(MemoryError, match="cannot allocate table 'b'"):
        PIMEmbeddingBag(4000, 64, pim_device=dev, name="b")
    assert dev.tables() == ["a"]
    assert a.weight.shape == (1000, 64)


# ----------------------------------------------------------------------------- stock optimizers, wide steps

@pytest.fixture
def two_threads():
    """The stock-optimizer bug needed > 1 intra-op thread (OpenMP workers drop ``no_grad``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(max(2, n))
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("opt_name", ["SGD", "Adagrad", "SparseAdam"])
@pytest.mark.parametrize("dim", [50, 16, 7])
def test_stock_optimizers_wide_step_any_width(two_threads, opt_name, dim):
    """Regression: stock sparse optimizers on a PIMEmbedding of width 50 touching >= 1,000 rows in
    one step failed ("a view of a leaf Variable that requires grad is being used in an in-place
    operation"); now they work and match torch.nn.Embedding with the same optimizer bit for bit."""
    rows, n = 1683, 1200
    W0 = torch.randn(rows, dim)
    W0[0] = 0
    ref = nn.Embedding.from_pretrained(W0.clone(), freeze=False, padding_idx=0, sparse=True)
    pim = PIMEmbedding.from_pretrained(W0, freeze=False, padding_idx=0)
    assert pim.weight.is_contiguous() and pim.weight.is_leaf
    kw = {"lr": 0.1} if opt_name != "SparseAdam" else {"lr": 0.01}
    o1 = getattr(torch.optim, opt_name)(ref.parameters(), **kw)
    o2 = getattr(torch.optim, opt_name)(pim.parameters(), **kw)
    for step in range(2):
        x = torch.randperm(rows - 1, generator=torch.Generator().manual_seed(step))[:n] + 1   # 1,200 rows
        x = torch.cat([x, x[:100], torch.zeros(5, dtype=torch.int64)])                       # + duplicates, padding
        C = int_coeffs(x.numel(), dim, step)
        (ref(x) * C).sum().backward()
        (pim(x) * C).sum().backward()
        assert pim.weight.grad._nnz() == n
        ref.weight.grad = ref.weight.grad.coalesce()        # integer sums: the same exact coalesced grad
        same_bits(ref.weight.grad.to_dense(), pim.weight.grad.to_dense())
        o1.step(); o2.step(); o1.zero_grad(); o2.zero_grad()
    same_bits(ref.weight, pim.read_weight())
    assert pim.read_weight()[0].abs().sum() == 0
    assert pim.pim_device.stats()["ops"].get("host_update") == 2


@pytest.mark.parametrize("backend", ["model", "golden"])
def test_stock_sgd_wide_dense_step_bitwise_with_golden(two_threads, backend):
    """Dense grads + stock torch.optim.SGD on a width-50 table, >= 1,000 rows touched: the table is
    bit-identical to the golden model (tensor-cast backward + exact SGD ``fma(-lr, g, w)``)."""
    from pimcast.models import tensor_cast as tc
    rows, D, B, L, lr = 3000, 50, 512, 6, 0.05
    W0 = torch.randn(rows, D)
    pim = PIMEmbeddingBag.from_pretrained(W0, freeze=False, mode="sum", sparse=False, backend=backend)
    opt = torch.optim.SGD(pim.parameters(), lr=lr)
    W = W0.clone()
    for step in range(2):
        idx, offs = batch(rows, B, L, 40 + step)
        dY = torch.randn(B, D, generator=torch.Generator().manual_seed(step))
        pim(idx, offs).backward(dY)
        c = tc.cast(idx, offs)
        assert c.unique.numel() >= 1000
        G = tc.tc_backward(dY, c)
        same_bits(pim.weight.grad[c.unique], G)
        opt.step(); opt.zero_grad()
        W = tc.sgd(W, c.unique, G, lr)
        same_bits(pim.read_weight(), W)
