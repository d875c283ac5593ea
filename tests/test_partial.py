"""``accumulate: partial`` (TRiM-style partial sums): golden numerics, device backends, timing.

The golden definition (``models.tensor_cast.gather_reduce_partial``) is checked against an
independent scalar loop; the ``model`` and ``golden`` device backends against the golden
function, bit for bit; the timing against the counts it is built from.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pimcast.config import ConfigError
from pimcast.host import load_pim_config, open_device
from pimcast.models import tensor_cast as tc
from pimcast.models.numerics import fma_f32


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


def _scalar_partial(table, idx, offs, w, row_unit, unit_group):
    """The module doc's definition, one bag and one element at a time (no shared code)."""
    T = table.numpy()
    nnz, nb = len(idx), len(offs)
    ends = list(offs[1:]) + [nnz]
    out = np.zeros((nb, T.shape[1]), np.float32)
    for b in range(nb):
        lk = list(range(offs[b], ends[b]))
        units = sorted({int(row_unit[idx[j]]) for j in lk})
        groups = sorted({int(unit_group[u]) for u in units})
        y = np.zeros(T.shape[1], np.float32)
        for g in groups:
            c = np.zeros(T.shape[1], np.float32)
            for u in (u for u in units if unit_group[u] == g):
                p = np.zeros(T.shape[1], np.float32)
                for j in (j for j in lk if row_unit[idx[j]] == u):
                    wj = np.float32(1.0) if w is None else np.float32(w[j])
                    p = np.array([fma_f32(wj, T[idx[j], k], p[k]) for k in range(T.shape[1])], np.float32)
                c = (c + p).astype(np.float32)
            y = (y + c).astype(np.float32)
        out[b] = y
    return torch.from_numpy(out)


@pytest.mark.parametrize("weighted", [False, True])
def test_golden_partial_matches_scalar_definition(weighted):
    g = torch.Generator().manual_seed(3)
    rows, dim = 40, 5
    table = (torch.randn(rows, dim, generator=g) * torch.logspace(-3, 6, dim)).float()
    table[3] = -0.0
    table[7, 0] = float("inf")
    idx = torch.randint(0, rows, (90,), generator=g)
    idx[10:14] = 7                                             # duplicates inside a bag
    offs = torch.tensor([0, 0, 12, 30, 31, 77, 90])            # empty bags (first and last)
    w = torch.rand(90, generator=g) * 3 - 1 if weighted else None
    row_unit = np.random.default_rng(1).integers(0, 8, rows)
    group = np.arange(8) // 4                                  # two ranks of four bank-group units
    got = tc.gather_reduce_partial(table, idx, offs, w, row_unit=row_unit, unit_group=group)
    want = _scalar_partial(table, idx.tolist(), offs.tolist(), None if w is None else w.numpy(), row_unit, group)
    assert torch.equal(_bits(got), _bits(want))
    assert torch.equal(got[0], torch.zeros(dim)) and torch.equal(got[-1], torch.zeros(dim))
    # reassociated: differs from the sequential sum somewhere, equal where a bag sits in one unit
    seq = tc.gather_reduce(table, idx, offs, w)
    assert not torch.equal(_bits(got), _bits(seq))
    one = tc.gather_reduce_partial(table, idx, offs, w, row_unit=np.zeros(rows, np.int64))
    assert torch.equal(_bits(one), _bits(seq))


def test_golden_partial_mean_and_errors():
    table = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    idx, offs = torch.tensor([0, 5, 1, 2]), torch.tensor([0, 3])
    ru = np.array([0, 1, 0, 1, 0, 1])
    got = tc.gather_reduce_partial(table, idx, offs, mode="mean", row_unit=ru)
    w = torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0], dtype=torch.float32)
    assert torch.equal(got, tc.gather_reduce_partial(table, idx, offs, w, row_unit=ru))
    with pytest.raises(ValueError, match=r"row_unit must have one unit per table row \(6\), got shape \(5,\)"):
        tc.gather_reduce_partial(table, idx, offs, row_unit=ru[:5])
    with pytest.raises(ValueError, match="unit_group must be a non-decreasing"):
        tc.gather_reduce_partial(table, idx, offs, row_unit=ru, unit_group=[1, 0])
    with pytest.raises(ValueError, match="lookup unit 1 is out of range"):
        tc.gather_reduce_partial(table, idx, offs, row_unit=ru, unit_group=[0])
    with pytest.raises(IndexError):
        tc.gather_reduce_partial(table, torch.tensor([6]), torch.tensor([0]), row_unit=ru)


def test_config_accumulate_field():
    cfg = load_pim_config("trim-ddr4-3200")
    assert (cfg.placement, cfg.accumulate, cfg.address_mapping) == ("bankgroup", "partial", "robachrabgco")
    assert load_pim_config("rank-ddr4-3200").accumulate == "sequential"
    with pytest.raises(ConfigError, match="field accumulate: must be one of sequential, partial, not 'tree'"):
        load_pim_config("trim-ddr4-3200", accumulate="tree")
    assert cfg.unit_group().tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # robachrabgco: the column field sits right above the 64 B offset: an 8 KB DRAM page per unit
    assert cfg.straddling_row(0, 1000, 256) is None
    assert cfg.straddling_row(0, 1000, 192) == 42              # 42 * 192 = 8064 .. 8255 crosses 8 KiB
    striped = load_pim_config("bankgroup-ddr4-3200")
    assert striped.straddling_row(0, 10, 256) == 0


def _unit_of_rows(dev, name):
    info = dev.info(name)
    addr = np.uint64(info.base) + np.arange(info.rows, dtype=np.uint64) * np.uint64(info.row_bytes)
    return dev.cfg.unit_of_fields(dev._mapping.decode(addr))


@pytest.mark.parametrize("dim", [16, 60, 256])
def test_device_backends_equal_golden_partial(dim):
    g = torch.Generator().manual_seed(dim)
    rows = 5000
    W = torch.randn(rows, dim, generator=g)
    idx = torch.randint(0, rows, (600,), generator=g)
    offs = torch.sort(torch.randint(0, 600, (40,), generator=g)).values
    offs[0] = 0
    w = torch.randn(600, generator=g)
    outs = []
    for backend in ("model", "golden"):
        d = open_device(backend, "trim-ddr4-3200", timing="off")
        d.alloc("t", rows, dim)
        d.write("t", W)
        outs.append((d.gather_reduce("t", idx, offs), d.gather_reduce("t", idx, offs, w), d))
    d = outs[0][2]
    ru = _unit_of_rows(d, "t")
    assert len(np.unique(ru)) == 8
    want = tc.gather_reduce_partial(W, idx, offs, row_unit=ru, unit_group=d.cfg.unit_group())
    want_w = tc.gather_reduce_partial(W, idx, offs, w, row_unit=ru, unit_group=d.cfg.unit_group())
    for y, yw, _ in outs:
        assert torch.equal(_bits(y), _bits(want))
        assert torch.equal(_bits(yw), _bits(want_w))
    assert not torch.equal(_bits(want), _bits(tc.gather_reduce(W, idx, offs)))


def test_alloc_rejects_rows_straddling_units_and_changes_nothing():
    d = open_device("model", "bankgroup-ddr4-3200", accumulate="partial")   # striped default mapping
    free = d.free_bytes()
    with pytest.raises(ValueError, match=r"table 'e'.*row 0 \(256 B at device address 0x0\) spans two units "
                                         r"under mapping 'robacobgrach'"):
        d.alloc("e", 100, 64)
    assert d.tables() == [] and d.free_bytes() == free
    t = open_device("model", "trim-ddr4-3200")
    t.alloc("a", 1, 16)                                        # 4 KiB-aligned allocations
    with pytest.raises(ValueError, match=r"table .b.*row 21 \(192 B at device address 0x1fc0\)"):
        t.alloc("b", 100, 48)
    assert t.tables() == ["a"]


def test_every_placement_and_accumulate_has_a_core():
    from pimcast.hdl.core import from_config
    for placement, acc, units, path in (("rank", "sequential", 1, "channel"), ("rank", "partial", 1, "channel"),
                                        ("bankgroup", "sequential", 1, "bankgroup"),
                                        ("bankgroup", "partial", 4, "bankgroup")):
        cfg = load_pim_config("rank-ddr4-3200", placement=placement, accumulate=acc,
                              mapping="robabgrachco" if acc == "partial" else None)
        assert (cfg.core_units, cfg.core_data_path, cfg.per_rank_cores) == (units, path, acc == "partial")
        core = from_config(cfg)
        core._MustUse__silence = True
        assert (core.units, core.data_path) == (units, path)


def test_partial_timing_counts_partial_sums():
    """Host link = one row per (bag, rank) holding rows of the bag; the rank's data bus carries one
    row per (bag, bank-group unit); random D = 64 gathers run faster than the striped placement."""
    rows, dim, nb, pool = 1 << 18, 64, 16, 20
    g = torch.Generator().manual_seed(5)
    idx = torch.randint(0, rows, (nb * pool,), generator=g)
    offs = torch.arange(nb) * pool
    res = {}
    for name in ("trim-ddr4-3200", "bankgroup-ddr4-3200", "rank-ddr4-3200"):
        d = open_device("model", name, timing="fast")
        d.alloc("t", rows, dim)
        d.reset_stats()
        d.gather_reduce("t", idx, offs)
        res[name] = (d.stats(), d)
    s, d = res["trim-ddr4-3200"]
    ru = _unit_of_rows(d, "t")[idx.numpy()]
    bag = np.repeat(np.arange(nb), pool)
    partials = np.unique(bag * 8 + ru)
    rank_sums = np.unique(bag * 2 + ru // 4).size
    host_beats = -(-(64 + 4 * nb * pool + 4 * nb + rank_sums * 256) // 64)
    assert s["busy"]["host_link"] == host_beats * 4
    per_rank = np.bincount((partials % 8) // 4, minlength=2)
    assert s["busy"]["rank_shared"] >= int(per_rank.max()) * 4 * 4
    assert s["fmas"] == nb * pool * dim + (partials.size - rank_sums) * dim
    assert s["forwarded_beats"] == 0
    assert s["cycles"] * 2 < res["bankgroup-ddr4-3200"][0]["cycles"]
    # one controller per rank drives the 4 units (as the RTL core): faster than the rank placement,
    # bound by the controller's window (RTL at D 64, pooling 20: 1.5x the rank-level core)
    assert s["cycles"] * 1.2 < res["rank-ddr4-3200"][0]["cycles"]
    # each rank core's one datapath: its rows' beats, then per bag it receives the flush and the rank
    # buffer's in-order adder chain: (units - 1) * max(R, L) + R = 3 * 5 + 4 = 19 cycles
    rank_of = ru // 4
    reads_r = np.bincount(rank_of, minlength=2) * 4
    flush_r = np.bincount(np.unique(bag * 2 + rank_of) % 2, minlength=2) * 19
    assert s["busy"]["reduce_max"] == int((reads_r + flush_r).max()) > nb * pool * 4 // 2


def test_embedding_bag_trains_with_partial_sums():
    """Forward and tensor-cast backward both run the partial-sum reduction; model == golden."""
    from pimcast.host.embedding import PIMEmbeddingBag
    from pimcast.host.optim import PIMSGD
    g = torch.Generator().manual_seed(11)
    W0 = torch.randn(3000, 32, generator=g)
    idx = torch.randint(0, 3000, (400,), generator=g)
    offs = torch.arange(0, 400, 10)
    weights = []
    for backend in ("model", "golden"):
        dev = open_device(backend, "trim-ddr4-3200", timing="off")
        emb = PIMEmbeddingBag(3000, 32, mode="sum", pim_device=dev, _weight=W0.clone())
        opt = PIMSGD(emb.parameters(), lr=0.05)
        for _ in range(2):
            opt.zero_grad()
            emb(idx, offs).pow(2).sum().backward()
            opt.step()
        weights.append(dev.read(emb.table).clone())
    assert torch.equal(_bits(weights[0]), _bits(weights[1]))
    assert not torch.equal(weights[0], W0)


def _rank_core_golden(cfg, table, lay):
    """A stand-in for the rank cores (``_run_ranks``): each rank reduces its rows of every bag with
    the golden partial sums of one combiner (its bank-group units added in unit order)."""
    from pimcast.hdl.dram.timing import AddressMapping

    loc = AddressMapping(cfg.address_mapping, cfg.dram_timing().with_ranks(1))

    def run(calls, timed=True):
        out = {}
        for r, (op, (base, row_bytes, rows, idx, offs, w)) in calls.items():
            assert op == "gather_reduce" and row_bytes == lay.row_bytes and rows == lay.counts[r]
            assert np.all(np.diff(np.r_[offs, len(idx)]) > 0)          # a rank core gets only bags it holds rows of
            tab = table[torch.from_numpy(np.flatnonzero(lay.rank == r))]        # ascending = local order
            bg = loc.decode(np.uint64(base) + np.arange(rows, dtype=np.uint64) * np.uint64(row_bytes))["bg"]
            wt = None if w is None else torch.from_numpy(w)
            out[r] = tc.gather_reduce_partial(tab, torch.from_numpy(idx), torch.from_numpy(offs), wt, row_unit=bg,
                                              unit_group=np.zeros(cfg.dram_timing().bankgroups, np.int64)).numpy()
        return out
    return run


def test_rtl_rank_layout_and_host_combine_equal_golden_partial():
    """The rtl backend's split of a bank-group gather over the rank cores (each rank's rows as a
    table of its own, contiguous in its local address space) and the host's add of the ranks'
    sums in rank order equal the golden partial sums bit for bit — with -0.0, inf and NaN rows,
    empty bags and bags held by one rank only.  (The rank core itself: test_rtl_backend.py.)"""
    from pimcast.hdl.dram.timing import AddressMapping
    from pimcast.host.backends.rtl import RankLayout, RTLBackend
    from pimcast.host.device import _canon

    gold = open_device("golden", "trim-ddr4-3200", capacity=1 << 20)
    cfg = gold.cfg
    gold.alloc("pad", 320, 16)                     # 20 KiB: the table starts in bank group 2 of rank 0
    rows, dim = 384, 16                            # 24 KiB: rank 0 bank groups 2-3, rank 1 bank groups 0-1
    info = gold.alloc("t", rows, dim)
    lay = RankLayout(cfg, info.base, rows, info.row_bytes)
    assert lay.counts.tolist() == [192, 192] and lay.bases.tolist() == [20 << 10, 0]
    dev_map = AddressMapping(cfg.address_mapping, cfg.dram_timing())
    loc_map = AddressMapping(cfg.address_mapping, cfg.dram_timing().with_ranks(1))
    addr = np.uint64(info.base) + np.arange(rows, dtype=np.uint64) * np.uint64(info.row_bytes)
    f = dev_map.decode(addr)
    assert np.array_equal(lay.rank, f["ra"])
    local_addr = lay.bases[lay.rank] + lay.local * info.row_bytes
    assert np.array_equal(local_addr, loc_map.encode(bg=f["bg"], ba=f["ba"], ro=f["ro"], co=f["co"]).astype(np.int64))
    for r in (0, 1):
        assert np.array_equal(lay.local[lay.rank == r], np.arange(192))
    assert sorted(np.unique(f["bg"][lay.rank == 0]).tolist()) == [2, 3]

    g = torch.Generator().manual_seed(11)
    W = torch.randn(rows, dim, generator=g) * 1e3
    W[5] = -0.0                                     # rank 0
    W[300] = -0.0                                   # rank 1
    W[7, :4] = float("inf")
    W[250, 4:8] = float("-inf")
    W[9, 8] = float("nan")
    gold.write("t", W)
    bags = [[5], [300], [5, 300], [], [7, 250], [9, 200, 1], list(range(0, 384, 7)), [300, 5, 300, 5],
            [190, 191, 192, 193], []]
    idx = torch.tensor([i for b in bags for i in b])
    offs = torch.tensor(np.cumsum([0] + [len(b) for b in bags[:-1]]))
    wts = torch.randn(idx.numel(), generator=g)
    wts[0] = -1.0
    be = RTLBackend(cfg)
    be._run_ranks = _rank_core_golden(cfg, W, lay)
    lengths = torch.tensor([len(b) for b in bags])
    for w in (None, wts):
        got = _canon(be._gather_reduce_ranks(info, idx.numpy(), lengths.numpy(), None if w is None else w.numpy()))
        want = gold.gather_reduce("t", idx, offs, per_sample_weights=w)
        assert torch.equal(_bits(got), _bits(want))
    assert _bits(want)[0].tolist() == [0] * dim          # -0.0 rows summed from +0.0 in one rank: +0.0
    assert not torch.equal(_bits(gold.gather_reduce("t", idx, offs)), _bits(tc.gather_reduce(W, idx, offs)))


def test_rtl_backend_cores_per_config():
    from pimcast.host.backends.rtl import RTLBackend
    # one core per rank (sequential: column slices; partial: whole rows), plus one holding tables
    # that split over no rank cores
    assert RTLBackend(load_pim_config("bankgroup-ddr4-3200")).n_cores == 2
    assert RTLBackend(load_pim_config("rank-ddr4-3200")).n_cores == 2
    assert RTLBackend(load_pim_config("rank-ddr4-3200-1rank")).n_cores == 1
    assert RTLBackend(load_pim_config("rank-ddr4-3200", accumulate="partial", mapping="robabgrachco")).n_cores == 2
    be = RTLBackend(load_pim_config("trim-ddr4-3200"))
    assert be.partial and be.n_cores == 2 and be._servers == {}          # nothing started yet
