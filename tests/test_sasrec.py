"""SASRec: architecture properties, training on the synthetic data, item-table backends."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pimcast.models import datasets as D
from pimcast.models import evaluate as E
from pimcast.models import sasrec as S


@pytest.fixture(scope="module")
def synth_split():
    return D.generate_synthetic(num_users=300, num_items=100, num_clusters=8, max_length=30, seed=1).split()


def small_cfg(**kw):
    base = dict(hidden=32, max_len=20, dropout=0.1)
    base.update(kw)
    return S.SASRecConfig(**base)


def test_default_config_matches_paper():
    c = S.SASRecConfig()
    assert (c.hidden, c.num_blocks, c.num_heads, c.max_len, c.dropout) == (50, 2, 1, 50, 0.5)
    assert (c.lr, c.betas, c.batch_size) == (1e-3, (0.9, 0.98), 128)
    m = S.SASRec(10)
    assert m.item_table().shape == (11, 50) and torch.all(m.item_table()[0] == 0)
    assert m.pos_emb.weight.shape == (51, 50)


def test_causal_and_padding_masked():
    torch.manual_seed(0)
    m = S.SASRec(30, small_cfg(max_len=8), seed=0).eval()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    f1 = m.log2feats(seq)
    seq2 = seq.clone()
    seq2[0, -1] = 20  # change the last item: earlier positions must not move
    f2 = m.log2feats(seq2)
    assert torch.equal(f1[0, :-1], f2[0, :-1]) and not torch.equal(f1[0, -1], f2[0, -1])
    with pytest.raises(ValueError, match="exceeds max_len"):
        m.log2feats(torch.ones(1, 9, dtype=torch.long))
    scores = m.predict(seq, torch.tensor([[1, 2, 3]]))
    assert scores.shape == (1, 3)


def test_training_decreases_loss_and_beats_random(synth_split):
    torch.manual_seed(0)
    # torch table for speed: the PIM tables follow the same trajectory (bit-identity test below)
    m = S.SASRec(synth_split.dataset.num_items, small_cfg(), backend="torch", seed=0)
    cand = D.sample_candidates(synth_split, "valid", seed=2)
    before = E.rank_metrics(S.sasrec_scores(m, synth_split, cand, "valid"))
    hist = S.train_sasrec(m, synth_split, epochs=6, batch_size=64, lr=5e-3, item_lr=2e-2)
    assert hist["steps"] == 6 * 5
    assert np.mean(hist["loss"][-5:]) < 0.8 * np.mean(hist["loss"][:5])
    after = E.rank_metrics(S.sasrec_scores(m, synth_split, cand, "valid"))
    assert after["hit@1"] > 0.15 > 0.05  # random is 1/20
    assert after["hit@1"] > before["hit@1"] and after["ndcg@10"] > before["ndcg@10"]


def test_sgd_item_optimizer_uses_sparse_grads(synth_split):
    m = S.SASRec(synth_split.dataset.num_items, small_cfg(dropout=0.0), seed=0)
    w0 = m.item_table()
    seen = []
    S.train_sasrec(m, synth_split, epochs=1, batch_size=32, item_optimizer="sgd", item_lr=0.5,
                   max_steps=2, on_step=lambda s, l: seen.append(m.item_emb.weight.grad))
    assert all(g is not None and g.is_sparse for g in seen)
    w1 = m.item_table()
    assert torch.equal(w1[0], w0[0])  # padding row never moves
    assert not torch.equal(w1, w0)


def test_item_embedding_factory_and_backends():
    calls = []

    def factory(n, d, init):
        calls.append((n, d, init.clone()))
        return torch.nn.Embedding(n, d, _weight=init.clone())

    m = S.SASRec(12, small_cfg(), item_embedding_factory=factory, seed=3)
    m_ref = S.SASRec(12, small_cfg(), seed=3)
    (n, d, init), = calls
    assert (n, d) == (13, 32)
    assert torch.equal(init, m_ref.item_table())  # same initial table whatever the backend
    assert m.backend == "custom"
    with pytest.raises(ValueError, match="backend must be one of"):
        S.SASRec(12, small_cfg(), backend="fpga")
    # dense/item parameter groups are disjoint and complete
    ids = {id(p) for p in m.item_parameters()}
    assert ids and not ids & {id(p) for p in m.dense_parameters()}
    assert len(ids) + len(m.dense_parameters()) == len(list(m.parameters()))


def test_pim_item_table_bit_identical_to_torch_with_sgd(synth_split):
    """With plain SGD on the item table, the PIM paths (``model`` and ``golden`` backends; host
    SGD on the device image or in-memory PIMSGD) and a ``torch.nn.Embedding`` path whose backward
    sums duplicate rows in lookup order give bit-identical item tables after N steps. Stock PyTorch
    (uncoalesced sparse gradient, duplicates applied one by one) agrees to rounding only."""
    pytest.importorskip("pimcast.host.embedding")
    cfg = small_cfg(dropout=0.0, hidden=16, num_blocks=1)
    runs = {
        "torch-sequential": (dict(item_embedding_factory=S.make_item_embedding("torch", sequential_grad=True)), "sgd"),
        "torch-stock": (dict(backend="torch"), "sgd"),
        "model": (dict(backend="model"), "sgd"),
        "model-pimsgd": (dict(backend="model"), "pim_sgd"),
        "golden-pimsgd": (dict(backend="golden"), "pim_sgd"),
    }
    tables = {}
    for name, (kw, opt) in runs.items():
        torch.manual_seed(0)
        m = S.SASRec(synth_split.dataset.num_items, cfg, seed=0, **kw)
        S.train_sasrec(m, synth_split, epochs=1, batch_size=16, item_optimizer=opt, item_lr=0.5, max_steps=4, seed=0)
        tables[name] = m.item_table()
    ref = tables["torch-sequential"]
    for name in ("model", "model-pimsgd", "golden-pimsgd"):
        assert torch.equal(tables[name], ref), name
    assert torch.allclose(tables["torch-stock"], ref, rtol=0, atol=1e-5)


def test_pim_backend_is_default_and_counts_device_work(synth_split):
    pytest.importorskip("pimcast.host.embedding")
    from pimcast.host import PIMEmbedding

    m = S.SASRec(synth_split.dataset.num_items, small_cfg(), seed=0)
    assert m.backend == "model" and isinstance(m.item_emb, PIMEmbedding)
    dev = m.item_emb.pim_device
    dev.reset_stats()
    S.train_sasrec(m, synth_split, epochs=1, batch_size=32, max_steps=1)
    st = dev.stats()
    assert st and any(isinstance(v, (int, float)) and v > 0 for v in st.values())


def test_sparse_adam_updates_a_wide_pim_table_in_place():
    """Stock SparseAdam on a PIM table with padded rows (dim 50) and a step touching 1000 rows:
    the touched rows move in device memory, the others (and the padding row) do not, and the
    result matches the same optimizer on a plain sparse nn.Embedding."""
    pim = pytest.importorskip("pimcast.host.embedding")
    torch.manual_seed(0)
    w0 = torch.randn(1201, 50)
    w0[0] = 0.0
    e = pim.PIMEmbedding(1201, 50, padding_idx=0, sparse=True, _weight=w0.clone())
    ref = torch.nn.Embedding(1201, 50, padding_idx=0, sparse=True, _weight=w0.clone())
    o = torch.optim.SparseAdam(e.parameters(), lr=0.1)
    r = torch.optim.SparseAdam(ref.parameters(), lr=0.1)
    idx = torch.arange(1, 1001)
    e(idx).sum().backward()
    ref(idx).sum().backward()
    o.step()
    r.step()
    after = e.read_weight()
    assert not torch.equal(after[1:1001], w0[1:1001])
    assert torch.equal(after[1001:], w0[1001:]) and torch.equal(after[0], w0[0])
    assert torch.allclose(after, ref.weight.detach(), atol=1e-6)
    assert not hasattr(S, "LazySparseAdam")
