"""The ``rtl`` device backend on the bank-group core (``accumulate: partial``, ``trim-ddr4-3200``):
one simulated core per rank (Icarus), checked bit for bit against the ``golden`` backend.  The
rank split and the host's add of the ranks' sums alone (no simulator): ``test_partial.py``."""
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
def test_bank_group_cores_one_per_rank_match_golden_partial(monkeypatch, device_ops):
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
    offs = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    psw = torch.randn(idx.numel(), generator=g)
    dy = torch.randn(len(lengths), dim, generator=g)
    c = tc.cast(idx, offs)
    out = {}
    try:
        for name, dev in (("rtl", rtl), ("golden", gold)):
            dev.alloc("pad", 320, 16)       # 20 KiB: "t" spans rank 0 bank groups 2-3 and rank 1 bank groups 0-1
            out[name] = device_ops(dev, table, idx, offs, psw, dy, c)
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
