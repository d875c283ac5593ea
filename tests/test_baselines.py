"""Baselines: CPU-centric byte counts (hand-checked), channel timing sanity, GPU model, ceilings."""
import math

import numpy as np
import pytest
import torch

from pimcast.host import baselines as bl
from pimcast.host.workloads import TableBatch, Workload


def _worked(dim=16):
    # FACTS.md §1 worked example: 3 bags over an 8-row table
    idx = torch.tensor([1, 3, 6, 3, 5, 1, 3, 7])
    return TableBatch("t", 8, dim, idx, torch.tensor([0, 3, 5]))


def test_cpu_traffic_bytes_hand_checked():
    b = bl.traffic_bytes(bl.cpu_traffic(_worked(16)))   # 1 line per row, nnz 8, B 3, U 5, 1 sort pass
    assert b["fwd_index"] == {"read": 128, "write": 0}      # (8 + 3) * 8 = 88 -> 128
    assert b["fwd_gather"] == {"read": 512, "write": 0}     # 8 rows x 64 B
    assert b["fwd_out"] == {"read": 0, "write": 192}        # 3 x 16 x 4
    assert b["bwd_dy"] == {"read": 192, "write": 0}
    assert b["bwd_expand"] == {"read": 0, "write": 512}
    assert b["bwd_sort"] == {"read": 128, "write": 256}     # pairs 8 x 16: write + 1 pass r/w
    assert b["bwd_coalesce"] == {"read": 640, "write": 0}   # 512 expanded + 128 pairs
    assert b["bwd_grad_out"] == {"read": 0, "write": 384}   # 5 x 64 + 40 -> 64
    assert b["upd_grad"] == {"read": 384, "write": 0}
    assert b["upd_rmw"] == {"read": 320, "write": 320}
    assert b["total"] == {"read": 2304, "write": 1664}
    assert b["forward"] == {"read": 640, "write": 192}
    # D = 50: rows padded to 4 lines (256 B)
    b50 = bl.traffic_bytes(bl.cpu_traffic(_worked(50)))
    assert b50["fwd_gather"]["read"] == 8 * 256 and b50["upd_rmw"]["write"] == 5 * 256
    assert b50["fwd_out"]["write"] == 640                    # 3 x 50 x 4 = 600 -> 640
    assert bl.sort_passes(8) == 1 and bl.sort_passes(1 << 20) == 3


def test_channel_timer_sanity():
    ct = bl.ChannelTimer()
    n = 1 << 20                                               # 64 MiB sequential read
    cyc = ct.time_seq(0, n * 64, 0)
    gbps = n * 64 / (cyc * ct.t.tCK_ns)
    assert 0.85 * 25.6 < gbps <= 25.6
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 1 << 24, 50_000).astype(np.uint64) * np.uint64(64)
    g = 50_000 * 64 / (ct.time(rows) * ct.t.tCK_ns)
    assert g <= bl.gather_ceilings(16)["host"] * 1.001        # a random 64 B gather stays under the ceiling
    assert bl.ChannelTimer(channels=8).peak_GBps == pytest.approx(204.8)
    with pytest.raises(bl.BaselineError, match="channels"):
        bl.ChannelTimer(channels=3)
    with pytest.raises(bl.BaselineError, match="timing"):
        bl.ChannelTimer(timing="slow")


def test_cpu_centric_time():
    w = Workload("w", [_worked(16)], {"batch": 3})
    r = bl.cpu_centric_time(w)
    assert r["ns"] > 0 and r["ns"] == pytest.approx(r["forward_ns"] + r["backward_ns"] + r["update_ns"])
    assert set(r["phases_ns"]) == set(bl.PHASE_STAGE)
    assert r["bytes"]["total"] == {"read": 2304, "write": 1664}
    r8 = bl.cpu_centric_time(w, channels=8)
    assert r8["peak_GBps"] == pytest.approx(204.8)


def test_gpu_model_exact():
    w = Workload("w", [_worked(16)], {"batch": 3})
    g = bl.gpu_time(w, "H100", 0.6)
    fwd = 4 * 8 * 16 / (3350.0 * 0.6)                        # bytes / (GB/s) = ns
    assert g["forward_ns"] == pytest.approx(fwd) and g["ns"] == pytest.approx(3 * fwd)
    assert bl.gpu_time(w, "V100", 1.0)["ns"] == pytest.approx(3 * 512 / 900.0)
    with pytest.raises(bl.BaselineError, match="gpu"):
        bl.gpu_time(w, "TPU")
    with pytest.raises(bl.BaselineError, match="efficiency"):
        bl.gpu_time(w, "H100", 1.5)


def test_ceilings_match_facts():
    # FACTS.md §3: rank-level 1.0/2.0/2.0/2.0x, bank-level with a shared C/A bus 1.0/3.2/3.6/3.8x
    for d, r, b in ((16, 1.0, 1.0), (64, 2.0, 3.2), (128, 2.0, 3.6), (256, 2.0, 3.8)):
        c = bl.gather_ceilings(d)
        assert c["speedup_rank"] == pytest.approx(r, abs=0.05)
        assert c["speedup_bankgroup_shared_ca"] == pytest.approx(b, abs=0.06)
    assert bl.gather_ceilings(64, channels=32)["rank"] == pytest.approx(32 * 51.2)


def test_measured_torch_tiny():
    w = Workload("w", [_worked(16)], {"batch": 3})
    m = bl.measure_torch(w, reps=1)
    assert m["ns"] > 0 and m["forward_ns"] > 0 and m["threads"] == 1
    c = bl.measure_casting(w, reps=1)
    assert all(c[k] > 0 for k in ("cast", "tc_backward", "tc_backward_fast", "torch_sparse_backward"))
