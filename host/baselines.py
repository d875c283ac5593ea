"""Baselines for embedding training on the same workload: CPU-centric (modeled + measured), GPU, ceilings.

CPU-centric (the Tensor Casting paper's baseline: embeddings trained on the CPU)
-------------------------------------------------------------------------------
:func:`cpu_traffic` lists the DRAM traffic of one training step, per table, as *phases*
(``kind`` ``"seq"`` = a sequential stream, ``"rows"`` = whole table/buffer rows at given row ids):

========================  ======================================================================
forward  ``fwd_index``     read indices + offsets (int64): ``(nnz + B) * 8`` B, sequential
forward  ``fwd_gather``    read ``nnz`` table rows (random rows, ``lines`` 64 B lines each)
forward  ``fwd_out``       write the pooled output ``B * D * 4`` B, sequential
backward ``bwd_dy``        read the output gradient ``B * D * 4`` B (once: it is reused ``L`` times)
backward ``bwd_expand``    write the expanded gradient ``nnz * lines * 64`` B, sequential
backward ``bwd_sort``      (row id, position) int64 pairs: write ``nnz * 16`` B, then ``passes`` LSD
                           radix passes of read + write ``nnz * 16`` B (``passes = ceil(log2(rows)/8)``)
backward ``bwd_coalesce``  read the sorted pairs (``nnz * 16`` B, seq) and the expanded rows in
                           sorted order (``nnz`` rows of the expand buffer: random rows)
backward ``bwd_grad_out``  write the coalesced gradient ``U * lines * 64`` B + ``U * 8`` B ids
update   ``upd_grad``      read the coalesced gradient + ids (sequential)
update   ``upd_rmw``       read + write ``U`` table rows (random rows)
========================  ======================================================================

(``B`` bags, ``nnz`` lookups, ``U`` unique rows, ``lines = ceil(D * 4 / 64)``; rows are 64 B
aligned, as the PIM device's.)  Assumptions: every byte goes to DRAM (no cache hits — optimistic
for the PIM side on tiny tables, see the report), the CPU is memory bound (no compute time), the
phases run one after the other, writes are drained in batches (write-back caches), the PCIe
transfers of the pooled embeddings/gradients to/from the GPU's MLPs are not counted.

:func:`cpu_centric_time` times those phases on ``channels`` DDR4 channels (``ranks`` per channel)
with the DRAM preset's timing:

* ``timing="analytic"`` (default, fast): a resource-bound model per channel (data bus incl. rank
  switches, tCCD_S/L, per-bank tRC, tFAW, tRRD_S, command bus, read/write turnarounds per drained
  write batch, refresh derating; row hits from the open row of each bank in issue order) — the same
  bounds as :class:`pimcast.host.timing.PIMTimer`'s analytic mode, extended to a multi-rank channel.
* ``timing="fast"``: :class:`pimcast.host.dram_model.FastDRAMModel` per channel, at most
  ``max_timed`` requests per phase and channel, scaled linearly.

The CPU's address mapping (default ``"rorabacobgch"``: channel, then bank group interleaved at
64 B, then column) keeps sequential streams near the bus peak (FACTS.md §4a).

:func:`measure_torch` measures stock PyTorch (``nn.EmbeddingBag(mode="sum", sparse=True)``
forward + backward + ``optim.SGD`` step) on this machine; :func:`measure_casting` compares host
tensor casting (``cast`` + ``tc_backward``) with PyTorch's own embedding backward.

GPU (FACTS.md §5)
-----------------
FBGEMM's benchmark bandwidth: forward bytes = ``4 * Σ_t nnz_t * D_t`` (fp32); forward+backward+SGD
moves 3x that.  Time = bytes / (``efficiency`` x peak HBM); default 60 % of an H100 SXM's
3.35 TB/s (published gather kernels reach 51-65 %).

Ceilings (FACTS.md §3)
----------------------
:func:`gather_ceilings` gives the random-row gather bandwidth bounds of the host (CPU) and of the
NMP placements per channel.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from pimcast.hdl.dram.timing import REQUEST_BYTES, AddressMapping, DRAMTiming, load_preset

__all__ = ["GPUS", "CPU_MAPPING", "Phase", "cpu_traffic", "traffic_bytes", "ChannelTimer", "cpu_centric_time",
           "gpu_time", "gpu_bytes", "gather_ceilings", "measure_torch", "measure_casting", "BaselineError",
           "PHASE_STAGE"]

#: peak HBM bandwidth (GB/s) per GPU (FACTS.md §5)
GPUS = {"V100": 900.0, "A100-40GB": 1560.0, "A100": 2039.0, "H100": 3350.0, "H200": 4800.0}
CPU_MAPPING = "rorabacobgch"
_IDX = 8            # int64 index bytes
_PAIR = 16          # (row id, position) int64 pair
#: which step stage each CPU phase belongs to
PHASE_STAGE = {"fwd_index": "forward", "fwd_gather": "forward", "fwd_out": "forward",
               "bwd_dy": "backward", "bwd_expand": "backward", "bwd_sort": "backward",
               "bwd_coalesce": "backward", "bwd_grad_out": "backward", "upd_grad": "update",
               "upd_rmw": "update"}


class BaselineError(ValueError):
    """A bad baseline parameter (names the parameter and the value)."""


# ----------------------------------------------------------------------------- traffic

@dataclass
class Phase:
    """One phase of CPU DRAM traffic.

    ``kind="seq"``: ``read_bytes``/``write_bytes`` streamed sequentially from ``region``.
    ``kind="rows"``: whole ``lines``-line rows at ``row_ids`` of ``region`` are read (and, with
    ``rmw``, written back).
    """
    name: str
    kind: str
    region: str
    read_bytes: int = 0
    write_bytes: int = 0
    row_ids: Optional[np.ndarray] = None
    lines: int = 0
    rmw: bool = False

    @property
    def stage(self) -> str:
        return PHASE_STAGE.get(self.name, "other")


def _lines(dim: int) -> int:
    return -(-dim * 4 // REQUEST_BYTES)


def _round64(n: int) -> int:
    return -(-n // REQUEST_BYTES) * REQUEST_BYTES


def sort_passes(rows: int) -> int:
    """LSD radix passes (8-bit digits) to sort row ids ``< rows``."""
    return max(1, math.ceil(math.log2(max(rows, 2)) / 8))


def cpu_traffic(table) -> list[Phase]:
    """The CPU-centric step's DRAM phases for one :class:`~pimcast.host.workloads.TableBatch`."""
    idx = table.indices.numpy()
    nnz, B, D = table.nnz, table.num_bags, table.dim
    lines = _lines(D)
    rowb = lines * REQUEST_BYTES
    uniq = np.unique(idx)
    U = int(uniq.size)
    order = np.argsort(idx, kind="stable")          # coalesce reads the expand buffer in sorted order
    P = sort_passes(table.rows)
    return [
        Phase("fwd_index", "seq", "index", read_bytes=_round64((nnz + B) * _IDX)),
        Phase("fwd_gather", "rows", "table", row_ids=idx, lines=lines, read_bytes=nnz * rowb),
        Phase("fwd_out", "seq", "out", write_bytes=_round64(B * D * 4)),
        Phase("bwd_dy", "seq", "dy", read_bytes=_round64(B * D * 4)),
        Phase("bwd_expand", "seq", "expand", write_bytes=nnz * rowb),
        Phase("bwd_sort", "seq", "pairs", read_bytes=P * nnz * _PAIR, write_bytes=(P + 1) * nnz * _PAIR),
        Phase("bwd_coalesce", "rows", "expand", row_ids=order, lines=lines,
              read_bytes=nnz * rowb + nnz * _PAIR),
        Phase("bwd_grad_out", "seq", "grad", write_bytes=U * rowb + _round64(U * _IDX)),
        Phase("upd_grad", "seq", "grad", read_bytes=U * rowb + _round64(U * _IDX)),
        Phase("upd_rmw", "rows", "table", row_ids=uniq, lines=lines, rmw=True,
              read_bytes=U * rowb, write_bytes=U * rowb),
    ]


def traffic_bytes(phases: list[Phase]) -> dict:
    """``{phase: {"read": B, "write": B}, ..., "total": {...}, per stage}``."""
    out: dict = {}
    tot = {"read": 0, "write": 0}
    for p in phases:
        d = out.setdefault(p.name, {"read": 0, "write": 0})
        d["read"] += p.read_bytes
        d["write"] += p.write_bytes
        s = out.setdefault(p.stage, {"read": 0, "write": 0})
        s["read"] += p.read_bytes
        s["write"] += p.write_bytes
        tot["read"] += p.read_bytes
        tot["write"] += p.write_bytes
    out["total"] = tot
    return out


# ----------------------------------------------------------------------------- channel timing

class ChannelTimer:
    """Time 64 B request streams on ``channels`` channels of a DRAM preset (CPU memory controllers)."""

    def __init__(self, dram: str = "ddr4-3200", channels: int = 1, ranks: int = 2, mapping: str = CPU_MAPPING,
                 timing: str = "analytic", queue: int = 32, max_timed: int = 16384):
        if timing not in ("analytic", "fast"):
            raise BaselineError(f"timing must be 'analytic' or 'fast', got {timing!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1 or channels & (channels - 1):
            raise BaselineError(f"channels must be a power of two >= 1, got {channels!r}")
        self.t: DRAMTiming = load_preset(dram, ranks=ranks)
        self.channels = channels
        self.mapping = AddressMapping(mapping, self.t, channels=channels)
        self.local = AddressMapping(mapping, self.t)   # one channel: the ch field has no bits
        self.timing = timing
        self.queue = queue
        self.max_timed = max_timed
        self.capacity = self.mapping.capacity
        self._fast = None

    @property
    def peak_GBps(self) -> float:
        return self.t.peak_GBps * self.channels

    def _analytic(self, f: dict, w: np.ndarray) -> int:
        """Resource-bound cycles of one channel's stream (fields decoded, issue order)."""
        t = self.t
        n = len(w)
        if n == 0:
            return 0
        G, Bk = t.bankgroups, t.banks_per_group
        rank = f["ra"]
        bgr = rank * G + f["bg"]
        bank = bgr * Bk + f["ba"]
        order = np.argsort(bank, kind="stable")
        sb, sr = bank[order], f["ro"][order]
        hit = np.zeros(n, bool)
        hit[1:] = (sb[1:] == sb[:-1]) & (sr[1:] == sr[:-1])
        acts = n - int(hit.sum())
        k = t.bursts_per_request
        bursts = n * k
        nb = t.ranks * G * Bk
        acts_b = np.bincount(sb[~hit], minlength=nb)
        n_b = np.bincount(sb, minlength=nb)
        n_g = np.bincount(bgr, minlength=t.ranks * G)
        n_r = np.bincount(rank, minlength=t.ranks)
        acts_r = np.bincount(rank[order][~hit], minlength=t.ranks)
        # rank switches: the controller serves a queue window per rank
        win = np.arange(n) // self.queue
        rank_switches = int(np.unique(win * t.ranks + rank).size) - 1 if t.ranks > 1 else 0
        # read/write turnarounds: writes drained in batches of `queue`
        nw = int(w.sum())
        turn = 0
        if 0 < nw < n:
            turn = 2 * math.ceil(nw / self.queue) * max(t.rd_to_wr, t.wr_to_rd(False))
        bounds = [
            bursts * t.BL2 + rank_switches * t.tRTRS,
            int(n_g.max()) * k * t.tCCD_L,
            int(n_r.max()) * k * t.tCCD_S,
            int(np.max(np.maximum(acts_b * t.tRC, n_b * k * t.tCCD_L))),
            math.ceil(int(acts_r.max()) * t.tFAW / 4),
            int(acts_r.max()) * t.tRRD_S,
            2 * acts + bursts,
        ]
        core = max(bounds) + turn
        derate = t.tREFI / (t.tREFI - t.tRFC)
        return int(math.ceil(core * derate)) + t.tRCD + t.CL + t.BL2

    def _fast_cycles(self, f: dict, w: np.ndarray) -> int:
        if self._fast is None:
            from pimcast.host.dram_model import FastDRAMModel
            self._fast = FastDRAMModel(self.t, self.local, queue=self.queue)
        n = len(w)
        if n == 0:
            return 0
        m = min(n, self.max_timed)
        addr = self.local.encode(ra=f["ra"][:m], bg=f["bg"][:m], ba=f["ba"][:m], ro=f["ro"][:m], co=f["co"][:m])
        r = self._fast.run(addr, w[:m])
        return int(math.ceil(r.cycles * n / m))

    def time(self, addr: np.ndarray, is_write: Optional[np.ndarray] = None) -> int:
        """Cycles (tCK) to serve the stream: channels work in parallel, the slowest one decides."""
        addr = np.asarray(addr, np.uint64) % np.uint64(self.capacity)
        n = len(addr)
        if n == 0:
            return 0
        w = np.zeros(n, bool) if is_write is None else np.asarray(is_write, bool)
        f = self.mapping.decode(addr)
        ch = f["ch"]
        worst = 0
        for c in range(self.channels):
            sel = np.flatnonzero(ch == c) if self.channels > 1 else slice(None)
            fc = {k: v[sel] for k, v in f.items()}
            wc = w[sel]
            cyc = self._analytic(fc, wc) if self.timing == "analytic" else self._fast_cycles(fc, wc)
            worst = max(worst, cyc)
        return worst

    def time_seq(self, base: int, read_bytes: int, write_bytes: int) -> int:
        """A sequential read stream then a sequential write stream (timed on a prefix, scaled)."""
        total = 0
        for nbytes, wr, off in ((read_bytes, False, 0), (write_bytes, True, 1 << 33)):
            n = -(-nbytes // REQUEST_BYTES)
            if n == 0:
                continue
            m = min(n, 4096 * self.channels)
            a = np.uint64(base + off) + np.arange(m, dtype=np.uint64) * np.uint64(REQUEST_BYTES)
            c = self.time(a, np.full(m, wr))
            t = self.t
            fixed = t.tRCD + t.CL + t.BL2
            total += int(math.ceil((c - fixed) * n / m)) + fixed
        return total


_REGION_BASE = {"table": 0, "index": 40 << 30, "out": 44 << 30, "dy": 46 << 30, "expand": 48 << 30,
                "pairs": 56 << 30, "grad": 60 << 30}


def _row_addrs(base: int, rows: np.ndarray, lines: int) -> np.ndarray:
    r = np.asarray(rows, np.uint64)
    k = np.arange(lines, dtype=np.uint64) * np.uint64(REQUEST_BYTES)
    return (np.uint64(base) + r[:, None] * np.uint64(lines * REQUEST_BYTES) + k[None, :]).ravel()


def _sample_rows(rows: np.ndarray, cap: int) -> tuple[np.ndarray, float]:
    """A contiguous prefix of at most ``cap`` rows (issue order kept) and the scale factor."""
    if rows.size <= cap:
        return rows, 1.0
    return rows[:cap], rows.size / cap


def cpu_centric_time(workload, *, dram: str = "ddr4-3200", channels: int = 1, ranks: int = 2,
                     timing: str = "analytic", mapping: str = CPU_MAPPING, max_rows: int = 200_000,
                     max_timed: int = 16384) -> dict:
    """Modeled CPU-centric step time of ``workload`` (all tables, phases back to back).

    Returns ``{"ns", "forward_ns", "backward_ns", "update_ns", "phases_ns": {...}, "bytes": {...},
    "GBps", "peak_GBps", "config": {...}}``.  ``max_rows``: random-row phases time at most this many
    rows (a prefix in issue order) and scale linearly.
    """
    ct = ChannelTimer(dram, channels, ranks, mapping, timing, max_timed=max_timed)
    tck = ct.t.tCK_ns
    phases_ns: dict = {}
    all_phases = []
    table_base = 0
    for tb in workload.tables:
        phases = cpu_traffic(tb)
        all_phases += phases
        for p in phases:
            if p.kind == "seq":
                cyc = ct.time_seq(_REGION_BASE[p.region], p.read_bytes, p.write_bytes)
            else:
                base = table_base if p.region == "table" else _REGION_BASE[p.region]
                rows, s = _sample_rows(p.row_ids, max_rows)
                a = _row_addrs(base, rows, p.lines)
                if p.rmw:
                    nr = a.size
                    a = np.concatenate([a, a])
                    w = np.r_[np.zeros(nr, bool), np.ones(nr, bool)]
                else:
                    w = None
                cyc = int(math.ceil(ct.time(a, w) * s))
                if p.name == "bwd_coalesce":   # + the sorted pairs, streamed
                    cyc += ct.time_seq(_REGION_BASE["pairs"], tb.nnz * _PAIR, 0)
            phases_ns[p.name] = phases_ns.get(p.name, 0.0) + cyc * tck
        table_base += _round64(tb.rows * _lines(tb.dim) * REQUEST_BYTES)
    by_stage = {"forward": 0.0, "backward": 0.0, "update": 0.0}
    for k, v in phases_ns.items():
        by_stage[PHASE_STAGE[k]] += v
    total = sum(by_stage.values())
    tb_ = traffic_bytes(all_phases)
    nbytes = tb_["total"]["read"] + tb_["total"]["write"]
    return {"ns": total, "forward_ns": by_stage["forward"], "backward_ns": by_stage["backward"],
            "update_ns": by_stage["update"], "phases_ns": phases_ns, "bytes": tb_,
            "GBps": nbytes / total if total else 0.0, "peak_GBps": ct.peak_GBps,
            "config": {"dram": ct.t.name, "channels": channels, "ranks": ranks, "timing": timing, "mapping": mapping}}


# ----------------------------------------------------------------------------- GPU

def gpu_bytes(workload) -> int:
    """FBGEMM forward bytes: ``4 * Σ_t nnz_t * D_t`` (fp32)."""
    return sum(4 * t.nnz * t.dim for t in workload.tables)


def gpu_time(workload, gpu: str = "H100", efficiency: float = 0.6) -> dict:
    """GPU step time from FBGEMM's bandwidth definitions (FACTS.md §5) at ``efficiency`` x peak HBM."""
    if gpu not in GPUS:
        raise BaselineError(f"unknown gpu {gpu!r}; known: {', '.join(GPUS)}")
    if isinstance(efficiency, bool) or not isinstance(efficiency, (int, float)) or not 0 < efficiency <= 1:
        raise BaselineError(f"efficiency must be in (0, 1], got {efficiency!r}")
    bw = GPUS[gpu] * efficiency          # GB/s = bytes/ns
    fwd = gpu_bytes(workload) / bw
    return {"ns": 3 * fwd, "forward_ns": fwd, "backward_ns": 2 * fwd, "update_ns": 0.0,
            "gpu": gpu, "efficiency": efficiency, "peak_GBps": GPUS[gpu], "bytes": 3 * gpu_bytes(workload),
            "note": "backward + SGD fused (FBGEMM): 2x forward bytes, reported as backward"}


# ----------------------------------------------------------------------------- ceilings

def gather_ceilings(dim: int, dram: str = "ddr4-3200", ranks: int = 2, channels: int = 1) -> dict:
    """Random fp32 row-gather bandwidth bounds (GB/s) of FACTS.md §3 for rows of ``dim`` floats.

    ``host``: ``min(peak, ranks x ACT-rate x row)``; ``rank``: per rank ``min(peak, ACT-rate x row)``;
    ``bankgroup_shared_ca``: one unit per bank group, the channel's command bus shared (one RD per
    64 B + one ACT per row, auto-precharge), ``min(cmd-rate x row / (beats + 1), ranks x ACT-rate x
    row, units x 64 B / tCCD_L)``; ``bankgroup_per_rank_ca``: the same with a command bus per rank.
    ACT-rate = 4 / tFAW per rank.  ``speedup_*`` = ratio to ``host``.
    """
    t = load_preset(dram, ranks=ranks)
    ck = t.tCK_ns
    peak = t.peak_GBps
    row = _lines(dim) * REQUEST_BYTES
    beats = row // REQUEST_BYTES
    act = 4 / (t.tFAW * ck)                       # ACTs per ns per rank
    cmd = 1 / ck                                  # commands per ns (one command bus)
    bg_stream = REQUEST_BYTES / (t.tCCD_L * ck)   # GB/s per bank group streaming
    units = ranks * t.bankgroups
    host = min(peak, ranks * act * row)
    rank = ranks * min(peak, act * row)
    bg_shared = min(cmd * row / (beats + 1), ranks * act * row, units * bg_stream)
    bg_per_rank = min(ranks * cmd * row / (beats + 1), ranks * act * row, units * bg_stream)
    out = {"dim": dim, "row_bytes": row, "host": host * channels, "rank": rank * channels,
           "bankgroup_shared_ca": bg_shared * channels, "bankgroup_per_rank_ca": bg_per_rank * channels}
    for k in ("rank", "bankgroup_shared_ca", "bankgroup_per_rank_ca"):
        out[f"speedup_{k}"] = out[k] / out["host"]
    return out


# ----------------------------------------------------------------------------- measured (this machine)

def _measure_rows(tb, max_table_bytes: int) -> tuple[int, torch.Tensor]:
    rows = min(tb.rows, max(1, max_table_bytes // (tb.dim * 4)))
    idx = tb.indices if rows == tb.rows else tb.indices % rows
    return rows, idx


class _threads:
    """``torch.set_num_threads(n)`` inside the block (``None``: unchanged)."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(int(self.n))

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


def measure_torch(workload, *, reps: int = 3, lr: float = 0.01, max_table_bytes: int = 256 << 20,
                  seed: int = 0, threads: Optional[int] = 1) -> dict:
    with _threads(threads):
        return _measure_torch(workload, reps=reps, lr=lr, max_table_bytes=max_table_bytes, seed=seed)


def _measure_torch(workload, *, reps: int = 3, lr: float = 0.01, max_table_bytes: int = 256 << 20,
                   seed: int = 0) -> dict:
    """Wall time of stock PyTorch on this CPU: ``nn.EmbeddingBag(mode="sum", sparse=True)`` forward,
    backward (``out.backward(dY)``) and ``optim.SGD`` step, per table, median of ``reps`` after one
    warm-up.  Tables larger than ``max_table_bytes`` are shrunk (ids taken modulo the new row count;
    stated in the result).  ``threads``: intra-op threads while measuring (default 1: on a shared,
    oversubscribed machine OpenMP barriers inflate small ops 10-100x; ``None`` keeps torch's setting)."""
    g = torch.Generator().manual_seed(seed)
    fwd = bwd = upd = 0.0
    shrunk = []
    for tb in workload.tables:
        rows, idx = _measure_rows(tb, max_table_bytes)
        if rows != tb.rows:
            shrunk.append({"table": tb.name, "rows": tb.rows, "measured_rows": rows})
        emb = torch.nn.EmbeddingBag(rows, tb.dim, mode="sum", sparse=True)
        opt = torch.optim.SGD(emb.parameters(), lr=lr)
        dy = torch.randn(tb.num_bags, tb.dim, generator=g)
        tf, tbk, tu = [], [], []
        for r in range(reps + 1):
            opt.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            out = emb(idx, tb.offsets)
            t1 = time.perf_counter()
            out.backward(dy)
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            if r:
                tf.append(t1 - t0), tbk.append(t2 - t1), tu.append(t3 - t2)
        fwd += statistics.median(tf)
        bwd += statistics.median(tbk)
        upd += statistics.median(tu)
        del emb, opt
    s = 1e9
    return {"ns": (fwd + bwd + upd) * s, "forward_ns": fwd * s, "backward_ns": bwd * s, "update_ns": upd * s,
            "threads": torch.get_num_threads(), "reps": reps, "shrunk_tables": shrunk,
            "torch": torch.__version__}


def measure_casting(workload, *, reps: int = 3, max_table_bytes: int = 256 << 20, seed: int = 0,
                    golden: bool = True, threads: Optional[int] = 1) -> dict:
    with _threads(threads):
        return _measure_casting(workload, reps=reps, max_table_bytes=max_table_bytes, seed=seed, golden=golden)


def _measure_casting(workload, *, reps: int = 3, max_table_bytes: int = 256 << 20, seed: int = 0,
                     golden: bool = True) -> dict:
    """Host tensor casting vs PyTorch's own embedding backward on the same lookups (this machine).

    Per table (medians over ``reps``, summed over tables), seconds:
    ``cast`` (:func:`~pimcast.models.tensor_cast.cast`: the stable sort, done at forward time),
    ``tc_backward`` (golden reducer, :func:`~pimcast.models.tensor_cast.tc_backward`),
    ``tc_backward_fast`` (the same gather-reduce by ``F.embedding_bag`` over ``dY``, the ``model``
    backend's bit-exact path), ``torch_sparse_backward`` (``nn.EmbeddingBag(sparse=True)`` autograd
    backward, uncoalesced), ``torch_sparse_coalesce`` (+ ``grad.coalesce()``) and
    ``torch_dense_backward`` (``sparse=False``).  ``threads`` as for :func:`measure_torch`.
    """
    from pimcast.models.tensor_cast import cast, tc_backward
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed)
    keys = ("cast", "tc_backward", "tc_backward_fast", "torch_sparse_backward", "torch_sparse_coalesce",
            "torch_dense_backward")
    acc = {k: 0.0 for k in keys}
    if not golden:
        acc.pop("tc_backward")

    def med(fn):
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    for tb in workload.tables:
        rows, idx = _measure_rows(tb, max_table_bytes)
        dy = torch.randn(tb.num_bags, tb.dim, generator=g)
        c = cast(idx, tb.offsets)
        acc["cast"] += med(lambda: cast(idx, tb.offsets))
        if golden:
            acc["tc_backward"] += med(lambda: tc_backward(dy, c))
        acc["tc_backward_fast"] += med(lambda: F.embedding_bag(c.casted_index, dy, c.casted_offsets, mode="sum"))
        for sparse in (True, False):
            emb = torch.nn.EmbeddingBag(rows, tb.dim, mode="sum", sparse=sparse)

            def run_bwd(coalesce=False):
                emb.weight.grad = None
                out = emb(idx, tb.offsets)
                t0 = time.perf_counter()
                out.backward(dy)
                if coalesce:
                    emb.weight.grad.coalesce()
                return time.perf_counter() - t0

            run_bwd()
            if sparse:
                acc["torch_sparse_backward"] += statistics.median([run_bwd() for _ in range(reps)])
                acc["torch_sparse_coalesce"] += statistics.median([run_bwd(True) for _ in range(reps)])
            else:
                acc["torch_dense_backward"] += statistics.median([run_bwd() for _ in range(reps)])
            del emb
    acc["cast_plus_tc_fast"] = acc["cast"] + acc["tc_backward_fast"]
    acc["threads"] = torch.get_num_threads()
    acc["reps"] = reps
    return acc
