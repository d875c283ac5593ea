"""The rtl backend's split of a sequential-numerics table over the rank cores by column slices
(:class:`pimcast.host.backends.rtl.ColumnLayout`), without a simulator: the layout's addresses
against the device mapping, and the whole data flow (stores, reads, forward, weighted forward,
SCATTER_SGD) through stand-in cores that hold their memory as bytes and reduce with the golden
numerics — the split and the reassembly must give the golden backend's bits.  (The RTL cores
themselves: ``test_rtl_backend.py``.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pimcast.hdl.dram.timing import AddressMapping
from pimcast.host import open_device
from pimcast.host.backends.rtl import ColumnLayout, RTLBackend
from pimcast.models import tensor_cast as tc


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def test_column_layout_of_two_ranks_is_one_beat_each():
    gold = open_device("golden", "small-test")
    cfg = gold.cfg
    gold.alloc("pad", 3, 16)                        # the next table starts at 4 KiB
    info = gold.alloc("t", 40, 32)                  # 128 B rows: beat 0 in rank 0, beat 1 in rank 1
    assert info.base == 4096 and info.row_bytes == 128
    lay = ColumnLayout(cfg, info.base, info.rows, info.row_bytes)
    assert lay.ok, lay.reason
    assert {r: b.tolist() for r, b in lay.beats.items()} == {0: [0], 1: [1]}
    assert lay.bases == {0: 2048, 1: 2048} and lay.slice_bytes == {0: 64, 1: 64}
    # every (row, beat) decodes to the rank holding it at its slice's local address
    dev_map = AddressMapping(cfg.address_mapping, cfg.dram_timing())
    loc_map = AddressMapping(cfg.address_mapping, cfg.dram_timing().with_ranks(1))
    for k in (0, 1):
        a = np.uint64(info.base) + np.arange(40, dtype=np.uint64) * np.uint64(128) + np.uint64(64 * k)
        f = dev_map.decode(a)
        assert (f["ra"] == k).all()
        loc = loc_map.encode(bg=f["bg"], ba=f["ba"], ro=f["ro"], co=f["co"]).astype(np.int64)
        assert np.array_equal(loc, lay.bases[k] + np.arange(40) * 64)
    assert lay.cols(1).tolist() == list(range(16, 32))


def test_column_layout_refuses_rows_on_alternating_ranks():
    cfg = open_device("golden", "small-test").cfg
    lay = ColumnLayout(cfg, 4096, 10, 64)            # D 16: whole rows alternate ranks
    assert not lay.ok and "row 1's beats lie on ranks [1], row 0's on [0]" in lay.reason
    lay = ColumnLayout(cfg, 4096, 10, 192)           # 3 beats: rows start on alternating ranks
    assert not lay.ok and "row 1" in lay.reason
    lay = ColumnLayout(cfg, 4096, 0, 128)
    assert not lay.ok and lay.reason == "empty table"


def test_striped_bank_group_config_splits_two_beats_per_rank():
    cfg = open_device("golden", "bankgroup-ddr4-3200", capacity=1 << 20).cfg
    lay = ColumnLayout(cfg, 8192, 16, 256)           # D 64: beats alternate ranks, then bank groups
    assert lay.ok and {r: b.tolist() for r, b in lay.beats.items()} == {0: [0, 2], 1: [1, 3]}
    assert lay.slice_bytes == {0: 128, 1: 128} and lay.bases == {0: 4096, 1: 4096}


class _Core:
    """A stand-in rank core: byte memory, golden numerics, the core server's operations."""

    def __init__(self, calls: list, key: int):
        self.mem = bytearray(1 << 20)
        self.calls, self.key = calls, key

    def _rows(self, base, row_bytes, rows):
        return np.stack([np.frombuffer(bytes(self.mem[base + r * row_bytes: base + (r + 1) * row_bytes]), np.float32)
                         for r in rows.tolist()]) if len(rows) else np.zeros((0, row_bytes // 4), np.float32)

    def call(self, op, *a):
        self.calls.append((self.key, op, a[:2]))
        if op == "fill_zero":
            self.mem[a[0]:a[0] + a[1]] = bytes(a[1])
            return None
        if op == "write":
            self.mem[a[0]:a[0] + len(a[1])] = a[1]
            return None
        if op == "write_rows":
            base, rb, rows, v = a
            for i, r in enumerate(rows.tolist()):
                self.mem[base + r * rb: base + (r + 1) * rb] = np.ascontiguousarray(v[i], np.float32).tobytes()
            return None
        if op == "read_rows":
            return self._rows(a[0], a[1], a[2]).tobytes()
        if op == "gather_reduce":
            base, rb, nrows, idx, offs, w = a
            tab = torch.from_numpy(self._rows(base, rb, np.arange(nrows)))
            out = tc.gather_reduce(tab, torch.from_numpy(idx), torch.from_numpy(offs),
                                   None if w is None else torch.from_numpy(w))
            return out.numpy().ravel().tolist()
        if op == "scatter_sgd":
            base, rb, nrows, rows, g, lr = a
            w = torch.from_numpy(self._rows(base, rb, rows))
            new = torch.addcmul(w, torch.from_numpy(np.ascontiguousarray(g)), torch.tensor(-lr, dtype=torch.float32))
            self.call("write_rows", base, rb, rows, new.numpy())
            return None
        raise AssertionError(op)


def _fake_cores(be: RTLBackend, calls: list):
    cores: dict = {}

    class Srv:
        def __init__(self, key):
            self.core, self.reply = _Core(calls, key), None

        def send(self, op, *a):
            self.reply = ("ok", self.core.call(op, *a), {"cycles": 10 + self.core.key})

        def recv(self, op):
            return self.reply

    def srvs(keys):
        for k in keys:
            cores.setdefault(k, Srv(k))
        return cores
    be._srvs = srvs
    return cores


@pytest.mark.parametrize("dim, kind", [(20, "columns"), (64, "columns"), (16, "whole")])
def test_column_split_data_flow_equals_golden(dim, kind):
    rtl = open_device("rtl", "small-test")
    gold = open_device("golden", "small-test")
    calls: list = []
    cores = _fake_cores(rtl.backend, calls)
    g = torch.Generator().manual_seed(dim)
    rows = 30
    W = torch.randn(rows, dim, generator=g)
    W[3] = -0.0
    W[4, :2] = float("nan")
    lengths = [4, 0, 7, 1, 5]
    idx = torch.randint(0, rows, (sum(lengths),), generator=g)
    idx[:2] = 3
    offs = torch.tensor(np.cumsum([0] + lengths[:-1]))
    psw = torch.randn(idx.numel(), generator=g)
    out = {}
    for name, dev in (("rtl", rtl), ("golden", gold)):
        dev.alloc("t", rows, dim)
        dev.write("t", W)
        dev.scatter_rows("t", torch.tensor([7, 2]), W[[2, 7]])            # rows swapped
        o = {"fwd": dev.gather_reduce("t", idx, offs), "wfwd": dev.gather_reduce("t", idx, offs, per_sample_weights=psw)}
        dev.scatter_sgd("t", torch.tensor([1, 3, 29]), torch.randn(3, dim, generator=torch.Generator().manual_seed(1)), 0.5)
        o["table"] = dev.read("t")
        o["rows"] = dev.gather_rows("t", torch.tensor([29, 3, 0]))
        out[name] = o
    assert rtl.backend.layout_kind(rtl.info("t")) == kind
    for k in ("fwd", "wfwd", "table", "rows"):
        assert torch.equal(_bits(out["rtl"][k]), _bits(out["golden"][k])), k
    used = {c[0] for c in calls}
    assert used == ({0, 1} if kind == "columns" else {RTLBackend.WHOLE}), used
    if kind == "columns":
        # each rank core gathered over narrower rows of its own slice; cycles = the slower core's
        gathers = [c for c in calls if c[1] == "gather_reduce"]
        assert len(gathers) == 4 and {c[2][1] for c in gathers} == {rtl.info("t").row_bytes // 2}
        assert set(cores) == {0, 1}
        info = rtl.info("t")
        rtl.backend.gather_reduce_table(info, idx, offs, torch.tensor(lengths), None)
        assert rtl.backend._last["cycles"] == 11           # the slower rank core's (10 and 11)


def test_column_split_sgd_refuses_bad_rows_before_any_core_runs():
    rtl = open_device("rtl", "small-test")
    calls: list = []
    _fake_cores(rtl.backend, calls)
    rtl.alloc("t", 8, 32)
    rtl.write("t", torch.ones(8, 32))
    info = rtl.info("t")
    n = len(calls)
    with pytest.raises(ValueError, match="row 8 is outside table 't' of 8 rows"):
        rtl.backend.scatter_sgd_table(info, torch.tensor([1, 8]), torch.ones(2, 32), 0.5)
    with pytest.raises(ValueError, match="unique"):
        rtl.backend.scatter_sgd_table(info, torch.tensor([1, 1]), torch.ones(2, 32), 0.5)
    assert len(calls) == n                            # no core was asked to do anything
    assert torch.equal(rtl.read("t"), torch.ones(8, 32))
