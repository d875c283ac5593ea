"""Device API: semantics, errors (state and stats unchanged), backends bit-identical, stats, timing sanity."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pimcast.config import ConfigError
from pimcast.host import OutOfDeviceMemory, UnknownTableError, open_device, load_pim_config
from pimcast.models import tensor_cast as tc
from pimcast.models.numerics import f32_to_bits

BACKENDS = ("golden", "model")


def bits(t):
    return f32_to_bits(t.contiguous())


def same_bits(a, b):
    assert a.shape == b.shape
    assert np.array_equal(bits(a), bits(b))


def nasty_table(rows, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    e = torch.randint(-20, 20, (rows, dim), generator=g).float()
    t = torch.randn(rows, dim, generator=g) * torch.exp2(e)
    special = torch.tensor([float("nan"), float("inf"), -0.0, 1e-45, -float("inf"), 3e38, 3e38, -0.0])
    t.view(-1)[: special.numel()] = special[: t.numel()]
    return t


def workload(rows, nnz, bags, seed=1):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, rows, (nnz,), generator=g)
    cuts = torch.sort(torch.randint(0, nnz + 1, (bags - 1,), generator=g)).values
    offs = torch.cat([torch.zeros(1, dtype=torch.int64), cuts])
    w = torch.randn(nnz, generator=g)
    return idx, offs, w


@pytest.fixture(params=BACKENDS)
def dev(request):
    return open_device(request.param, "rank-ddr4-3200", timing="analytic")


def test_facts_worked_example_both_backends():
    for be in BACKENDS:
        d = open_device(be)
        d.alloc("e", 8, 2)
        d.write("e", torch.arange(16.0).reshape(8, 2))
        idx, off = torch.tensor([1, 3, 6, 3, 5, 1, 3, 7]), torch.tensor([0, 3, 5])
        c = tc.cast(idx, off)
        d.alloc("dy", 3, 2)
        d.write("dy", torch.tensor([[1.0, 10], [100, 1000], [10000, 100000]]))
        G = d.gather_reduce("dy", c.casted_index, c.casted_offsets)
        assert G.tolist() == [[10001, 100010], [10101, 101010], [100, 1000], [1, 10], [10000, 100000]]
        d.scatter_sgd("e", c.unique, G, 0.1)
        W = d.read("e")
        assert W[1].tolist() == [-16352871 / 16384, -9998.0]
        assert W[3].tolist() == [-16451175 / 16384, -10094.0]


@pytest.mark.parametrize("dim", [1, 16, 50, 37])
@pytest.mark.parametrize("mode", ["sum", "mean", "weighted"])
def test_backends_bit_identical_and_equal_golden(dim, mode):
    table = nasty_table(40, dim)
    idx, offs, w = workload(40, 300, 23)
    offs[5] = offs[4]  # an empty bag
    outs = []
    for be in BACKENDS:
        d = open_device(be, timing="off")
        d.alloc("t", 40, dim)
        d.write("t", table)
        psw = w if mode == "weighted" else None
        outs.append(d.gather_reduce("t", idx, offs, psw, mode="mean" if mode == "mean" else "sum"))
    same_bits(outs[0], outs[1])
    ref = tc.gather_reduce(table, idx, offs, w if mode == "weighted" else None,
                           mode="mean" if mode == "mean" else "sum")
    from pimcast.models.numerics import canonicalize_nan
    same_bits(outs[0], canonicalize_nan(ref))
    nan = torch.isnan(outs[0])
    assert nan.any()
    assert (bits(outs[0])[nan.numpy()] == 0x7FC00000).all()


def test_sum_matches_torch_embedding_bag_bitwise(dev):
    table = torch.randn(100, 24)
    idx, offs, w = workload(100, 500, 40)
    dev.alloc("t", 100, 24)
    dev.write("t", table)
    same_bits(dev.gather_reduce("t", idx, offs), torch.nn.functional.embedding_bag(idx, table, offs, mode="sum"))
    same_bits(dev.gather_reduce("t", idx, offs, w),
              torch.nn.functional.embedding_bag(idx, table, offs, mode="sum", per_sample_weights=w))
    y = dev.gather_reduce("t", idx, torch.cat([offs, torch.tensor([500])]), include_last_offset=True)
    same_bits(y, torch.nn.functional.embedding_bag(idx, table, offs, mode="sum"))


def test_optimizers_bit_identical_to_golden(dev):
    W = torch.randn(30, 20)
    rows = torch.tensor([3, 0, 29, 7])
    G = torch.randn(4, 20)
    dev.alloc("w", 30, 20)
    dev.write("w", W)
    dev.scatter_sgd("w", rows, G, 0.05)
    same_bits(dev.read("w"), tc.sgd(W, rows, G, 0.05))
    W1 = dev.read("w")
    dev.scatter_adagrad("w", rows, G, 0.1)
    dev.scatter_adagrad("w", rows, G * 2, 0.1)
    w2, s2 = tc.adagrad(*tc.adagrad(W1, torch.zeros_like(W1), rows, G, 0.1), rows, G * 2, 0.1)
    same_bits(dev.read("w"), w2)
    same_bits(dev.state("w", "adagrad"), s2)
    W2 = dev.read("w")
    dev.scatter_rowwise_adagrad("w", rows, G, 0.1)
    w3, h3 = tc.rowwise_adagrad(W2, torch.zeros(30), rows, G, 0.1)
    same_bits(dev.read("w"), w3)
    same_bits(dev.state("w", "rowwise_adagrad"), h3)


def test_rows_access_and_write_offset(dev):
    dev.alloc("t", 10, 5)
    x = torch.randn(3, 5)
    dev.write("t", x, row_offset=7)
    same_bits(dev.gather_rows("t", torch.tensor([9, 7, 7])), x[[2, 0, 0]])
    v = torch.randn(2, 5)
    dev.scatter_rows("t", torch.tensor([1, 8]), v)
    full = dev.read("t")
    same_bits(full[[1, 8]], v)
    assert full[0].abs().sum() == 0


def test_alloc_free_capacity():
    d = open_device("model", "small-test")   # 1 MiB
    d.alloc("a", 1000, 64)                    # 256000 B -> 258048 reserved
    with pytest.raises(OutOfDeviceMemory) as e:
        d.alloc("b", 4000, 50)                # 50 -> 64 floats: 1024000 B
    msg = str(e.value)
    assert "'b'" in msg and "4000 rows x 50" in msg and "free" in msg and str(d.free_bytes()) in msg
    assert d.tables() == ["a"]
    d.free("a")
    assert d.free_bytes() == d.capacity
    d.alloc("b", 4000, 50)
    with pytest.raises(ValueError, match="already allocated"):
        d.alloc("b", 1, 1)


def snapshot(d):
    return {n: d.read.__self__._storage[n].clone() for n in d.tables()}, copy.deepcopy(d.stats())


def check_unchanged(d, snap):
    store, st = snap
    for n, s in store.items():
        assert torch.equal(d._storage[n], s) or (torch.isnan(s).any())
    assert d.stats() == st


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_raise_before_any_change(backend):
    d = open_device(backend, timing="analytic")
    d.alloc("t", 10, 4)
    d.write("t", torch.randn(10, 4))
    idx, off = torch.tensor([1, 2, 3]), torch.tensor([0, 2])
    snap = snapshot(d)
    cases = [
        (UnknownTableError, "nope", lambda: d.gather_reduce("nope", idx, off)),
        (IndexError, r"indices\[1\] = 10", lambda: d.gather_reduce("t", torch.tensor([1, 10]), torch.tensor([0]))),
        (IndexError, r"indices\[0\] = -1", lambda: d.gather_reduce("t", torch.tensor([-1]), torch.tensor([0]))),
        (ValueError, r"offsets\[0\] must be 0", lambda: d.gather_reduce("t", idx, torch.tensor([1]))),
        (ValueError, "non-decreasing", lambda: d.gather_reduce("t", idx, torch.tensor([0, 2, 1]))),
        (ValueError, "past the end", lambda: d.gather_reduce("t", idx, torch.tensor([0, 4]))),
        (TypeError, "integer dtype", lambda: d.gather_reduce("t", idx.float(), off)),
        (TypeError, "float32", lambda: d.gather_reduce("t", idx, off, torch.ones(3, dtype=torch.float64))),
        (ValueError, r"shape \(3,\)", lambda: d.gather_reduce("t", idx, off, torch.ones(4))),
        (ValueError, "only supported with mode='sum'", lambda: d.gather_reduce("t", idx, off, torch.ones(3), mode="mean")),
        (ValueError, "mode must be", lambda: d.gather_reduce("t", idx, off, mode="max")),
        (ValueError, "duplicate row 3", lambda: d.scatter_sgd("t", torch.tensor([3, 1, 3]), torch.ones(3, 4), 0.1)),
        (ValueError, r"shape \(2, 4\)", lambda: d.scatter_sgd("t", torch.tensor([3, 1]), torch.ones(2, 5), 0.1)),
        (IndexError, r"rows\[1\] = 11", lambda: d.scatter_sgd("t", torch.tensor([3, 11]), torch.ones(2, 4), 0.1)),
        (TypeError, "float32", lambda: d.scatter_sgd("t", torch.tensor([3]), torch.ones(1, 4, dtype=torch.float64), 0.1)),
        (ValueError, "lr must be", lambda: d.scatter_sgd("t", torch.tensor([3]), torch.ones(1, 4), float("nan"))),
        (ValueError, r"shape \(n, 4\)", lambda: d.write("t", torch.ones(2, 5))),
        (IndexError, "outside table", lambda: d.write("t", torch.ones(2, 4), row_offset=9)),
        (TypeError, "float32", lambda: d.write("t", torch.ones(2, 4, dtype=torch.float64))),
        (ValueError, "duplicate row 2", lambda: d.scatter_rows("t", torch.tensor([2, 2]), torch.ones(2, 4))),
        (IndexError, r"rows\[0\] = 10", lambda: d.gather_rows("t", torch.tensor([10]))),
        (UnknownTableError, "unknown table", lambda: d.free("x")),
        (ValueError, "dim must be", lambda: d.alloc("z", 3, 0)),
    ]
    for exc, pat, fn in cases:
        with pytest.raises(exc, match=pat):
            fn()
        check_unchanged(d, snap)


def test_bad_backend_and_config():
    with pytest.raises(ValueError, match="unknown device backend 'rtlx'"):
        open_device("rtlx")
    with pytest.raises(ConfigError, match="unknown pim preset"):
        open_device("model", "no-such-config")
    with pytest.raises(ConfigError, match="placement"):
        load_pim_config("rank-ddr4-3200", placement="bank")
    with pytest.raises(ConfigError, match="lanes"):
        load_pim_config("rank-ddr4-3200", lanes=3)
    with pytest.raises(ConfigError, match="exceeds"):
        load_pim_config("rank-ddr4-3200", capacity="64GiB")
    with pytest.raises(ConfigError, match="field rob_tags: must be a power of two in 2..256.*not 48"):
        load_pim_config("rank-ddr4-3200", rob_tags=48)
    with pytest.raises(ConfigError, match="field queue: must be in 1..32 .*placement 'rank'.*not 64"):
        load_pim_config("rank-ddr4-3200", queue=64)


def test_stats_counts_bytes_requests_padding():
    for be in BACKENDS:
        d = open_device(be, timing="analytic")
        d.alloc("t", 100, 50)                      # 50 -> 64 floats: 4 beats of 64 B per row
        d.reset_stats()
        idx, off = torch.tensor([1, 2, 3, 4, 5]), torch.tensor([0, 2])
        d.gather_reduce("t", idx, off)
        s = d.stats()
        assert s["ops"] == {"gather_reduce": 1}
        assert s["lookups"] == 5 and s["bags"] == 2
        assert s["requests"] == {"read": 20, "write": 0}
        assert s["bytes"]["dram_read"] == 20 * 64
        assert s["bytes"]["padding"] == 5 * 14 * 4
        assert s["bytes"]["host_out"] == 2 * 256
        assert s["fmas"] == 5 * 64
        d.scatter_sgd("t", torch.tensor([7, 9]), torch.ones(2, 50), 0.1)
        s = d.stats()
        assert s["requests"] == {"read": 28, "write": 8}
        if be == "golden":
            assert s["timing"] is None and "cycles" not in s
        else:
            assert s["cycles"] > 0 and s["dram"]["acts"] + s["dram"]["row_hits"] == 36
            assert s["energy_pJ"]["total"] > 0 and s["ns"] == pytest.approx(s["cycles"] * 0.625)
        d.reset_stats()
        assert d.stats()["requests"] == {"read": 0, "write": 0}


def _gather_cycles(cfg, nnz, rows=200000, dim=128, seed=0, idx=None, **kw):
    d = open_device("model", cfg, **kw)
    d.alloc("t", rows, dim)
    g = torch.Generator().manual_seed(seed)
    if idx is None:
        idx = torch.randint(0, rows, (nnz,), generator=g)
    off = torch.arange(0, nnz, 10)
    d.reset_stats()
    d.gather_reduce("t", idx, off)
    return d.stats()


@pytest.mark.parametrize("timing", ["fast", "analytic"])
def test_timing_sanity(timing):
    small = _gather_cycles("rank-ddr4-3200", 500, timing=timing)
    big = _gather_cycles("rank-ddr4-3200", 2000, timing=timing)
    assert big["cycles"] > 2 * small["cycles"]
    one = _gather_cycles("rank-ddr4-3200-1rank", 2000, timing=timing)
    assert big["cycles"] < 0.7 * one["cycles"]           # 2 ranks in parallel
    seq = _gather_cycles("rank-ddr4-3200", 2000, idx=torch.arange(2000) % 64, timing=timing)
    assert seq["dram"]["acts"] < 0.2 * big["dram"]["acts"]
    assert seq["energy_pJ"]["act"] < 0.2 * big["energy_pJ"]["act"]
    # (not necessarily faster: a hit stream stays in one bank and is paced by tCCD_L, FACTS.md 4(a))
    for s in (small, big, one, seq):
        assert s["busy"]["dram_max"] <= s["cycles"]
        assert 0 < s["GBps"] < 2 * 25.6 * 1.01
        assert s["energy_pJ"]["act"] == pytest.approx(s["dram"]["acts"] * s["energy_pJ"]["act"] / max(1, s["dram"]["acts"]))


def test_bankgroup_and_pool_configs_run():
    s = _gather_cycles("bankgroup-ddr4-3200", 1000, timing="analytic")
    p = _gather_cycles("tensordimm-32x-ddr4-3200", 1000)
    r = _gather_cycles("rank-ddr4-3200", 1000, timing="analytic")
    # striped bank-group placement: a D = 128 row's 8 beats lie in 8 (rank, bank group) units, each
    # activates its own DRAM row (the rank placement: 2); beat b always in rank b % 2, no forwarding
    assert s["dram"]["acts"] > 3 * r["dram"]["acts"] and s["forwarded_beats"] == r["forwarded_beats"] == 0
    assert p["cycles"] < r["cycles"] / 4


def test_sampled_fast_timing_flag():
    s = _gather_cycles("rank-ddr4-3200", 3000, max_timed_requests=2000)
    assert s["timing_sampled"]
    full = _gather_cycles("rank-ddr4-3200", 3000)
    assert not full["timing_sampled"]
    assert abs(s["cycles"] - full["cycles"]) < 0.2 * full["cycles"]
