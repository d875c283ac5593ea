"""The ``rtl`` device backend: every operation runs on the PIM-core Verilog (here under Icarus,
whose build takes seconds), checked bit for bit against the ``golden`` backend."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pimcast.host import open_device
from pimcast.host.backends.rtl import RTLBackendError, RTLStatusError
from pimcast.models import tensor_cast as tc
from pimcast.sim.toolchain import have_icarus

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.rtl, pytest.mark.skipif(not have_icarus(), reason="Icarus missing")]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


@pytest.fixture(scope="module")
def rtl_dev():
    mp = pytest.MonkeyPatch()
    mp.setenv("PIMCAST_RTL_SIMULATOR", "icarus")
    dev = open_device("rtl", "small-test")
    yield dev
    dev.backend.close()
    mp.undo()


def test_device_ops_match_golden_bit_for_bit(rtl_dev, device_ops):
    gold = open_device("golden", "small-test")
    g = torch.Generator().manual_seed(3)
    rows, dim, bags = 24, 20, 7          # dim 20: rows padded to 2 beats in device memory
    table = torch.randn(rows, dim, generator=g)
    table[2] = -0.0
    lengths = torch.tensor([3, 0, 5, 1, 4, 2, 6])
    idx = torch.randint(0, rows, (int(lengths.sum()),), generator=g)
    idx[:3] = 2                                          # duplicates inside a bag
    offs = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    psw = torch.randn(idx.numel(), generator=g)
    dy = torch.randn(bags, dim, generator=g)
    c = tc.cast(idx, offs)
    out = {}
    for name, dev in (("rtl", rtl_dev), ("golden", gold)):
        r = device_ops(dev, table, idx, offs, psw, dy, c)
        dev.free("t")
        dev.free("dy")
        out[name] = r
    for k in ("fwd", "wfwd", "bwd", "table"):
        assert torch.equal(_bits(out["rtl"][k]), _bits(out["golden"][k])), k
    assert torch.equal(_bits(out["rtl"]["bwd"]), _bits(tc.tc_backward(dy, c)))
    assert torch.equal(_bits(out["rtl"]["fwd"]), _bits(tc.gather_reduce(table, idx, offs)))
    # rows the update did not touch keep their bits
    untouched = sorted(set(range(rows)) - set(c.unique.tolist()))
    assert untouched and torch.equal(_bits(out["rtl"]["table"][untouched]), _bits(table[untouched]))
    st = out["rtl"]["stats"]
    assert st["cycles"] > 0 and st["dram"]["reads"] > 0 and st["dram"]["writes"] > 0, st


def test_core_error_status_reaches_the_host_and_changes_nothing(rtl_dev):
    rtl_dev.alloc("e", 8, 16)
    w = torch.arange(8 * 16, dtype=torch.float32).reshape(8, 16)
    rtl_dev.write("e", w)
    info = rtl_dev.info("e")
    # past the Device's own checks: the core itself must reject a row beyond the table
    with pytest.raises(RTLStatusError, match="ROW_OUT_OF_RANGE") as ei:
        rtl_dev.backend.scatter_sgd_table(info, torch.tensor([1, 8]), torch.ones(2, 16), 0.5)
    assert ei.value.status == "ROW_OUT_OF_RANGE"
    # nothing was written: the RTL's memory still holds w (read back and compared to the mirror)
    assert torch.equal(_bits(rtl_dev.read("e")), _bits(w))
    assert torch.equal(_bits(rtl_dev.backend.load_rows(info, torch.arange(8))), _bits(w))
    rtl_dev.free("e")


def test_embedding_bag_training_rtl_equals_golden():
    """Two SGD steps of a toy EmbeddingBag model: rtl and golden tables stay bit-identical."""
    import runpy

    main = runpy.run_path(str(REPO / "examples" / "train_toy_rtl.py"))["main"]
    assert main(["--simulator", "icarus", "--steps", "2", "--rows", "16", "--bags", "4"]) == 0


def test_bad_simulator_is_rejected(monkeypatch):
    monkeypatch.setenv("PIMCAST_RTL_SIMULATOR", "modelsim")
    with pytest.raises(ValueError, match="modelsim"):
        open_device("rtl", "small-test")


@pytest.mark.slow          # two Icarus simulations of the small core (~2 min on 2 cores)
def test_rank_level_partial_sums_one_core_per_rank(monkeypatch, rtl_golden_round):
    """placement 'rank' with accumulate 'partial' (rows whole per rank): one rank-level core per
    rank, the host adds the ranks' sums: equal to the golden backend's partial sums bit for bit."""
    monkeypatch.setenv("PIMCAST_RTL_SIMULATOR", "icarus")
    kw = dict(accumulate="partial", mapping="robabgrachco")
    rtl, gold = open_device("rtl", "small-test", **kw), open_device("golden", "small-test", **kw)
    assert rtl.backend.n_cores == 2
    g = torch.Generator().manual_seed(4)
    rows, dim = 256, 16                  # 16 KiB: rows 0-127 in rank 0, 128-255 in rank 1
    table = torch.randn(rows, dim, generator=g)
    lengths = torch.tensor([6, 0, 2, 9])
    idx = torch.randint(0, rows, (int(lengths.sum()),), generator=g)
    idx[:3] = torch.tensor([3, 200, 7])
    try:
        out, offs, _, _ = rtl_golden_round(rtl, gold, table, idx, lengths, g)
        lay = rtl.backend.layout(rtl.info("t"))
    finally:
        rtl.backend.close()
    assert lay.counts.tolist() == [128, 128]
    for k in ("fwd", "wfwd", "bwd", "table"):
        assert torch.equal(_bits(out["rtl"][k]), _bits(out["golden"][k])), k
    assert not torch.equal(_bits(out["rtl"]["fwd"]), _bits(tc.gather_reduce(table, idx, offs)))


def test_simulation_that_does_not_start_in_time_is_an_error(monkeypatch):
    monkeypatch.setenv("PIMCAST_RTL_SIMULATOR", "icarus")
    monkeypatch.setenv("PIMCAST_RTL_TIMEOUT", "0.5")      # elaboration alone takes longer
    dev = open_device("rtl", "small-test")
    with pytest.raises(RTLBackendError, match="did not start"):
        dev.alloc("x", 4, 16)
    assert dev.tables() == [] and dev.free_bytes() == dev.capacity     # the failed alloc left nothing
