"""The ``rtl`` device backend on the bank-group placement's cores (Icarus), checked bit for bit
against the ``golden`` backend: the bank-group core (``accumulate: partial``, ``trim-ddr4-3200``,
one simulated core per rank) and the striped bank-group core (``bankgroup-ddr4-3200``, sequential
numerics).  The rank split and the host's add of the ranks' sums alone (no simulator):
``test_partial.py``."""
from __future__ import annotations

import pytest
import torch

from pimcast.host import open_device
from pimcast.models import tensor_cast as tc
from pimcast.sim.toolchain import have_icarus

pytestmark = [pytest.mark.rtl, pytest.mark.skipif(not have_icarus(), reason="Icarus missing")]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


@pytest.mark.slow          # one Icarus build of the bank-group core, two simulations (~5 min on 2 cores)
def test_bank_group_cores_one_per_rank_match_golden_partial(monkeypatch, rtl_golden_round):
    """trim (bank-group units, partial sums) on the rtl backend: one bank-group core per rank, each
    holding its rank's rows; forward (plain, weighted), tensor-cast backward and SCATTER_SGD equal
    the golden backend bit for bit, with a table spread over two bank groups of each rank."""
    monkeypatch.setenv("PIMCAST_RTL_SIMULATOR", "icarus")
    kw = dict(capacity=1 << 20, queue=16, rob_tags=32)        # the small core of small-test
    rtl, gold = open_device("rtl", "trim-ddr4-3200", **kw), open_device("golden", "trim-ddr4-3200", **kw)
    assert rtl.backend.n_cores == 2
    g = torch.Generator().manual_seed(8)
    rows, dim = 384, 16
    table = torch.randn(rows, dim, generator=g)
    table[3] = -0.0
    table[200, :2] = float("inf")
    lengths = torch.tensor([4, 0, 9, 1, 12, 3, 2])
    idx = torch.randint(0, rows, (int(lengths.sum()),), generator=g)
    idx[:2] = 3
    idx[4] = 200
    try:
        # 20 KiB first: "t" spans rank 0 bank groups 2-3 and rank 1 bank groups 0-1
        out, offs, _, _ = rtl_golden_round(rtl, gold, table, idx, lengths, g,
                                           prepare=lambda dev: dev.alloc("pad", 320, 16))
        lay = rtl.backend.layout(rtl.info("t"))
    finally:
        rtl.backend.close()
    assert lay.counts.tolist() == [192, 192]
    assert set(lay.rank[idx.numpy()].tolist()) == {0, 1}
    for k in ("fwd", "wfwd", "bwd", "table"):
        assert torch.equal(_bits(out["rtl"][k]), _bits(out["golden"][k])), k
    # the partial sums are not the sequential bits (so the comparison tells the numerics apart)
    assert not torch.equal(_bits(out["rtl"]["fwd"]), _bits(tc.gather_reduce(table, idx, offs)))
    st = out["rtl"]["stats"]
    assert st["cycles"] > 0 and st["dram"]["reads"] > 0 and st["dram"]["writes"] > 0, st


@pytest.mark.slow          # one Icarus build of the striped bank-group core, two simulations (~3 min on 2 cores)
def test_striped_bank_group_core_matches_golden_sequential(monkeypatch, rtl_golden_round):
    """bankgroup-ddr4-3200 (rows striped over the ranks and bank groups, sequential numerics) on the
    rtl backend: one core per rank on the bank-group data path, each reducing its column slice of
    every bag (two beats, in two bank groups), gives the golden / PyTorch bits for the
    forward (plain, weighted), the tensor-cast backward and SCATTER_SGD, with every row's beats in
    different bank groups."""
    import numpy as np

    from pimcast.hdl.dram.timing import AddressMapping

    monkeypatch.setenv("PIMCAST_RTL_SIMULATOR", "icarus")
    kw = dict(capacity=1 << 20, queue=16, rob_tags=32)        # the small core of small-test
    rtl, gold = open_device("rtl", "bankgroup-ddr4-3200", **kw), open_device("golden", "bankgroup-ddr4-3200", **kw)
    assert rtl.backend.n_cores == 2
    g = torch.Generator().manual_seed(9)
    rows, dim = 64, 64                                      # 4 beats per row
    table = torch.randn(rows, dim, generator=g)
    table[5] = -0.0
    table[9, :3] = float("nan")
    table[11, 4:8] = 1e-44                                  # subnormals
    lengths = torch.tensor([5, 0, 7, 1, 3])
    idx = torch.randint(0, rows, (int(lengths.sum()),), generator=g)
    idx[:2] = 5
    idx[6] = 9
    idx[8] = 11
    try:
        out, offs, dy, c = rtl_golden_round(rtl, gold, table, idx, lengths, g)
        info = rtl.info("t")
        # each rank's core holds its two beats (two bank groups) of every row: column slices
        assert rtl.backend.layout_kind(info) == "columns" and sorted(rtl.backend._servers) == [0, 1]
    finally:
        rtl.backend.close()
    # a row's 4 beats lie in 4 different (rank, bank group) units: the column slices are striped
    beats = np.uint64(info.base) + np.arange(4, dtype=np.uint64) * np.uint64(64)
    cfg = rtl.cfg
    dev_map = AddressMapping(cfg.address_mapping, cfg.dram_timing(), channels=cfg.channels)
    assert len(set(cfg.unit_of_fields(dev_map.decode(beats)).tolist())) == 4
    for k in ("fwd", "wfwd", "bwd", "table"):
        assert torch.equal(_bits(out["rtl"][k]), _bits(out["golden"][k])), k
    assert torch.equal(_bits(out["rtl"]["fwd"]), _bits(tc.gather_reduce(table, idx, offs)))
    assert torch.equal(_bits(out["rtl"]["bwd"]), _bits(tc.tc_backward(dy, c)))
    st = out["rtl"]["stats"]
    assert st["cycles"] > 0 and st["dram"]["reads"] > 0 and st["dram"]["writes"] > 0, st
