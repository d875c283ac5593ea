"""In-memory optimizers: bit-identical to the golden exact optimizers over several steps; errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pimcast.host import PIMAdagrad, PIMEmbeddingBag, PIMRowWiseAdagrad, PIMSGD
from pimcast.models import tensor_cast as tc
from pimcast.models.numerics import f32_to_bits


def same_bits(a, b):
    assert np.array_equal(f32_to_bits(a.detach().contiguous()), f32_to_bits(b.detach().contiguous()))


@pytest.mark.parametrize("backend", ["model", "golden"])
@pytest.mark.parametrize("kind", ["sgd", "adagrad", "rowwise"])
def test_optimizer_steps_match_golden(backend, kind):
    rows, D = 40, 50
    W = torch.randn(rows, D)
    m = PIMEmbeddingBag.from_pretrained(W, freeze=False, mode="mean", backend=backend)
    opt = {"sgd": lambda p: PIMSGD(p, lr=0.3), "adagrad": lambda p: PIMAdagrad(p, lr=0.1),
           "rowwise": lambda p: PIMRowWiseAdagrad(p, lr=0.1)}[kind](m.parameters())
    state = torch.zeros(rows, D) if kind == "adagrad" else torch.zeros(rows)
    for step in range(3):
        g = torch.Generator().manual_seed(step)
        idx = torch.randint(0, rows, (60,), generator=g)
        offs = torch.arange(0, 60, 6)
        dY = torch.randn(10, D, generator=g)
        m(idx, offs).backward(dY)
        c = tc.cast(idx, offs)
        G = tc.tc_backward(dY, c, mode="mean")
        same_bits(m.weight.grad.to_dense()[c.unique], G)
        opt.step()
        opt.zero_grad()
        if kind == "sgd":
            W = tc.sgd(W, c.unique, G, 0.3)
        elif kind == "adagrad":
            W, state = tc.adagrad(W, state, c.unique, G, 0.1)
        else:
            W, state = tc.rowwise_adagrad(W, state, c.unique, G, 0.1)
        same_bits(m.read_weight(), W)
    if kind == "adagrad":
        same_bits(opt.state_sum(m.weight), state)
    if kind == "rowwise":
        same_bits(opt.state_rows(m.weight), state)
    s = m.pim_device.stats()
    assert s["rows_updated"] > 0


def test_dense_grad_and_rejects_plain_parameters():
    W = torch.randn(10, 16)
    m = PIMEmbeddingBag.from_pretrained(W, freeze=False, mode="sum", sparse=False)
    ref = nn.EmbeddingBag.from_pretrained(W.clone(), freeze=False, mode="sum")
    idx, offs = torch.tensor([1, 2, 2, 5]), torch.tensor([0, 1])
    m(idx, offs).sum().backward()
    ref(idx, offs).sum().backward()
    assert not m.weight.grad.is_sparse
    PIMSGD(m.parameters(), lr=0.1).step()
    torch.optim.SGD(ref.parameters(), lr=0.1).step()
    same_bits(m.read_weight(), ref.weight)
    with pytest.raises(ValueError, match="only updates PIM tables"):
        PIMSGD([nn.Parameter(torch.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        PIMSGD(m.parameters(), lr=-1.0)


@pytest.mark.parametrize("cls", [PIMAdagrad, PIMRowWiseAdagrad])
def test_adagrad_variants_check_arguments_before_state_changes(cls):
    W = torch.randn(6, 16)
    m = PIMEmbeddingBag.from_pretrained(W, freeze=False, mode="sum")
    for bad in (-0.1, True, "1"):
        with pytest.raises(ValueError, match="Invalid learning rate"):
            cls(m.parameters(), lr=bad)
        with pytest.raises(ValueError, match="Invalid epsilon value"):
            cls(m.parameters(), lr=0.1, eps=bad)
    same_bits(m.read_weight(), W)
    opt = cls(m.parameters(), lr=0.1)
    assert opt.param_groups[0]["eps"] == cls.default_eps > 0
    m(torch.tensor([1, 3]), torch.tensor([0])).sum().backward()
    opt.step()
    st = opt.device_state(m.weight)
    assert st.shape == ((6, 16) if cls is PIMAdagrad else (6,))
    assert st[1].abs().sum() > 0 and st[0].abs().sum() == 0
