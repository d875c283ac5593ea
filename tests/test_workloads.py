"""Workload generators: seeded, vectorized, requested shapes and statistics."""
import numpy as np
import pytest
import torch

from pimcast.host.workloads import (WorkloadConfig, WorkloadError, data_root, dlrm_workload, estimate_zipf_alpha,
                                    make_workload, sasrec_workload, zipf_indices)


def test_deterministic_and_seeded():
    a = dlrm_workload(batch=256, pooling=7, dim=32, num_tables=3, rows=5000, dist="zipf", alpha=0.9, seed=3)
    b = dlrm_workload(batch=256, pooling=7, dim=32, num_tables=3, rows=5000, dist="zipf", alpha=0.9, seed=3)
    c = dlrm_workload(batch=256, pooling=7, dim=32, num_tables=3, rows=5000, dist="zipf", alpha=0.9, seed=4)
    for x, y in zip(a.tables, b.tables):
        assert torch.equal(x.indices, y.indices) and torch.equal(x.offsets, y.offsets)
    assert not torch.equal(a.tables[0].indices, c.tables[0].indices)
    assert not torch.equal(a.tables[0].indices, a.tables[1].indices)   # tables draw independently


def test_shapes():
    w = dlrm_workload(batch=100, pooling=5, num_tables=2, rows=1000, dims=(16, 48))
    assert [t.dim for t in w.tables] == [16, 48]
    for t in w.tables:
        assert t.indices.dtype == torch.int64 and t.offsets.dtype == torch.int64
        assert t.nnz == 500 and t.num_bags == 100
        assert torch.equal(t.offsets, torch.arange(0, 500, 5))
        assert int(t.indices.min()) >= 0 and int(t.indices.max()) < 1000
    assert w.nnz == 1000
    v = dlrm_workload(batch=2000, pooling=10, num_tables=1, rows=1000, pooling_dist="uniform")
    L = v.tables[0].lengths
    assert int(L.min()) >= 1 and int(L.max()) <= 19 and abs(float(L.float().mean()) - 10) < 0.5


def test_zipf_skew_measurable():
    uni = dlrm_workload(batch=4096, pooling=10, num_tables=1, rows=100_000).tables[0].stats()
    z = dlrm_workload(batch=4096, pooling=10, num_tables=1, rows=100_000, dist="zipf", alpha=1.0).tables[0].stats()
    assert abs(z["zipf_alpha_est"] - 1.0) < 0.1
    assert z["top1pct_share"] > 0.5 and uni["top1pct_share"] < 0.1
    assert z["unique_ratio"] < 0.5 < uni["unique_ratio"]
    # finite Zipf: rank 1 has probability 1/H(n, alpha)
    rng = np.random.default_rng(0)
    r = zipf_indices(rng, 200_000, 1000, 1.2, scatter=False)
    p1 = 1 / np.sum(np.arange(1, 1001) ** -1.2)
    assert abs(np.mean(r == 0) - p1) < 0.01
    assert estimate_zipf_alpha(np.bincount(r)) == pytest.approx(1.2, abs=0.1)
    # scattered ranks are a bijection: as many distinct rows as distinct ranks
    s = zipf_indices(np.random.default_rng(0), 200_000, 1000, 1.2)
    assert np.unique(s).size == np.unique(r).size


def test_sasrec_workload_shapes():
    w = sasrec_workload(dataset=None, seed=1)
    item, pos = w.tables
    assert (item.nnz, pos.nnz) == (19_200, 6_400)
    assert item.dim == pos.dim == 50 and pos.rows == 50 and item.rows == 10_001
    assert item.num_bags == item.nnz                      # pooling 1
    assert int(item.indices.min()) >= 1


@pytest.mark.skipif(not (data_root() / "ml-100k").is_dir(), reason="../shared/data/ml-100k absent")
def test_trace_workload():
    w = dlrm_workload(batch=512, pooling=20, num_tables=2, dist="trace:ml-100k", seed=1)
    t = w.tables[0]
    assert t.rows == 1683 and t.nnz == 512 * 20
    assert int(t.indices.min()) >= 1 and int(t.indices.max()) <= 1682
    assert t.stats()["unique_ratio"] < 0.2                   # real popularity skew


@pytest.mark.parametrize("kw, field", [
    (dict(batch=0), "batch"), (dict(pooling=-1), "pooling"), (dict(dist="gauss"), "dist"),
    (dict(dist="trace:"), "dist"), (dict(alpha=-1.0), "alpha"), (dict(num_tables=2, dims=(8,)), "dims"),
    (dict(pooling_dist="poisson"), "pooling_dist"), (dict(batch=True), "batch"),
])
def test_bad_configs(kw, field):
    with pytest.raises(WorkloadError, match=field):
        make_workload(WorkloadConfig(**kw))
    with pytest.raises(WorkloadError):
        dlrm_workload(bogus=1)
