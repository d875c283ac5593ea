"""Embedding-training workloads: DLRM-style multi-table batches and the SASRec embedding workload.

A :class:`Workload` is one training step's lookups: for every table a :class:`TableBatch`
(``rows x dim`` fp32 table, int64 ``indices`` and PyTorch-style start ``offsets``, one bag per
sample).  Everything is generated with numpy from a seeded ``Generator`` and is vectorized (no
Python loop over lookups), so the same :class:`WorkloadConfig` always gives the same tensors.

Index distributions (``dist``)
------------------------------
* ``"uniform"``: ids uniform over the table.
* ``"zipf"``: popularity rank ``k`` (1-based) has probability ``∝ k^-alpha`` over the table's
  ``rows`` (finite Zipf, inverse-CDF sampling; ``alpha = 0`` is uniform).  Ranks are scattered
  over the table with the bijection ``row = (k-1) * a mod rows`` (``a`` an odd constant coprime
  with ``rows``) so hot rows are not adjacent in memory (no artificial DRAM row-buffer locality).
* ``"trace:<dataset>"``: index traces from a real dataset of ``../shared/data`` (or
  ``$PIMCAST_DATA``): ``ml-100k``, ``ml-1m-subset``, ``amazon-scientific``, ``games-6k`` or a path,
  read with :mod:`pimcast.models.datasets`.  The users' chronological item sequences are
  concatenated (user order) into one stream; each bag is ``pooling`` consecutive items of that
  stream from a random start, so both item popularity and within-user co-occurrence are kept.
  The table has the dataset's ``num_items + 1`` rows (row 0 = padding, never looked up), whatever
  ``rows`` says: these tables are small (1.7 k-16.9 k items).  Each table of a multi-table
  workload draws its own random windows.

Pooling: every bag has exactly ``pooling`` lookups (the paper's characterization uses a fixed
pooling factor); ``pooling_dist="uniform"`` draws bag lengths uniformly from ``1..2*pooling-1``
(mean ``pooling``) instead.

SASRec (FACTS.md §6): per user ``max_len`` (50) input items, 50 positives and 50 negatives = 150
item-table rows, plus 50 position-table rows; 128 users per batch -> 19,200 item lookups and
6,400 position lookups per step, D = 50 (padded to 64 floats = 256 B in device memory).  Every
lookup is its own output row (bags of 1: ``nn.Embedding``); the backward coalesces duplicates.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ["WorkloadConfig", "TableBatch", "Workload", "WorkloadError", "make_workload", "dlrm_workload",
           "sasrec_workload", "zipf_indices", "estimate_zipf_alpha", "DISTRIBUTIONS", "TRACE_DATASETS",
           "data_root"]

DISTRIBUTIONS = ("uniform", "zipf", "trace")
#: dataset names for ``dist="trace:<name>"`` (folders of ../shared/data)
TRACE_DATASETS = ("ml-100k", "ml-1m-subset", "amazon-scientific", "games-6k")
_ZIPF_MULT = 0x9E3779B97F4A7C15 & ((1 << 61) - 1)   # odd golden-ratio constant (row scatter)


class WorkloadError(ValueError):
    """A workload configuration is invalid (the message names the field and the bad value)."""


def data_root() -> Path:
    """``$PIMCAST_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("PIMCAST_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


# ----------------------------------------------------------------------------- configs

@dataclass(frozen=True)
class WorkloadConfig:
    """A DLRM-style embedding workload (one training step).

    Attributes
    ----------
    batch: samples per step (one bag per sample per table).
    pooling: lookups per bag (pooling factor).
    dim: embedding dim of every table (or ``dims`` per table).
    num_tables: number of tables.
    rows: rows per table (ignored by ``trace:`` distributions).
    dist: ``"uniform"``, ``"zipf"`` or ``"trace:<dataset>"``.
    alpha: Zipf exponent (``dist="zipf"``).
    seed: generator seed.
    dims: optional per-table dims (overrides ``dim``; length ``num_tables``).
    pooling_dist: ``"fixed"`` or ``"uniform"`` (lengths 1..2*pooling-1).
    name: free text.
    """
    batch: int = 2048
    pooling: int = 10
    dim: int = 64
    num_tables: int = 8
    rows: int = 1_000_000
    dist: str = "uniform"
    alpha: float = 1.0
    seed: int = 0
    dims: Optional[tuple] = None
    pooling_dist: str = "fixed"
    name: str = ""

    def table_dims(self) -> list[int]:
        return list(self.dims) if self.dims is not None else [self.dim] * self.num_tables

    def with_(self, **changes) -> "WorkloadConfig":
        return replace(self, **changes).validate()

    def as_dict(self) -> dict:
        d = asdict(self)
        if d["dims"] is not None:
            d["dims"] = list(d["dims"])
        return d

    def label(self) -> str:
        if self.name:
            return self.name
        d = self.dist if self.dist != "zipf" else f"zipf{self.alpha:g}"
        dims = "x".join(str(x) for x in sorted(set(self.table_dims())))
        return f"B{self.batch}-L{self.pooling}-D{dims}-T{self.num_tables}-{d}"

    def validate(self) -> "WorkloadConfig":
        def bad(f, msg):
            raise WorkloadError(f"workload field {f}: {msg}")

        for f, lo in (("batch", 1), ("pooling", 1), ("dim", 1), ("num_tables", 1), ("rows", 1)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                bad(f, f"must be an integer >= {lo}, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            bad("seed", f"must be an integer >= 0, got {self.seed!r}")
        kind = self.dist.split(":", 1)[0] if isinstance(self.dist, str) else None
        if kind not in DISTRIBUTIONS or (kind == "trace") != (":" in self.dist):
            bad("dist", f"must be 'uniform', 'zipf' or 'trace:<dataset>' ({', '.join(TRACE_DATASETS)} or a "
                        f"path), got {self.dist!r}")
        if kind == "trace" and not self.dist.split(":", 1)[1]:
            bad("dist", "trace: needs a dataset name or path, e.g. 'trace:ml-100k'")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha) \
                or self.alpha < 0:
            bad("alpha", f"must be a finite number >= 0, got {self.alpha!r}")
        if self.dims is not None:
            if len(self.dims) != self.num_tables:
                bad("dims", f"has {len(self.dims)} entries for num_tables={self.num_tables}")
            for d in self.dims:
                if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
                    bad("dims", f"entries must be integers >= 1, got {d!r}")
        if self.pooling_dist not in ("fixed", "uniform"):
            bad("pooling_dist", f"must be 'fixed' or 'uniform', got {self.pooling_dist!r}")
        return self


# ----------------------------------------------------------------------------- workload

@dataclass(eq=False)
class TableBatch:
    """One table's lookups of a step: ``indices`` (int64), start ``offsets`` (int64, one per bag)."""
    name: str
    rows: int
    dim: int
    indices: torch.Tensor
    offsets: torch.Tensor

    @property
    def nnz(self) -> int:
        return int(self.indices.numel())

    @property
    def num_bags(self) -> int:
        return int(self.offsets.numel())

    @property
    def lengths(self) -> torch.Tensor:
        return torch.diff(torch.cat([self.offsets, torch.tensor([self.nnz], dtype=torch.int64)]))

    @functools.cached_property
    def num_unique(self) -> int:
        return int(np.unique(self.indices.numpy()).size)

    def stats(self) -> dict:
        idx = self.indices.numpy()
        counts = np.bincount(idx, minlength=1) if self.nnz else np.zeros(1, np.int64)
        c = np.sort(counts[counts > 0])[::-1]
        top = max(1, int(math.ceil(0.01 * self.rows)))
        return {
            "name": self.name, "rows": self.rows, "dim": self.dim, "bags": self.num_bags, "nnz": self.nnz,
            "unique": int(c.size), "unique_ratio": c.size / self.nnz if self.nnz else 0.0,
            "max_row_count": int(c[0]) if c.size else 0,
            "top1pct_share": float(c[:top].sum() / self.nnz) if self.nnz else 0.0,
            "zipf_alpha_est": estimate_zipf_alpha(counts),
        }


@dataclass(eq=False)
class Workload:
    """A step's lookups over several tables (+ the config it came from)."""
    name: str
    tables: list
    config: dict = field(default_factory=dict)
    kind: str = "dlrm"          # "dlrm" (bags) or "sasrec" (bags of 1)

    @property
    def batch(self) -> int:
        return self.config.get("batch", self.tables[0].num_bags if self.tables else 0)

    @property
    def nnz(self) -> int:
        return sum(t.nnz for t in self.tables)

    def stats(self) -> dict:
        per = [t.stats() for t in self.tables]
        return {"name": self.name, "kind": self.kind, "tables": len(self.tables), "nnz": self.nnz,
                "unique": sum(p["unique"] for p in per),
                "table_bytes": sum(t.rows * t.dim * 4 for t in self.tables), "per_table": per}


# ----------------------------------------------------------------------------- samplers

@functools.lru_cache(maxsize=8)
def _zipf_cdf(n: int, alpha: float) -> np.ndarray:
    k = np.arange(1, n + 1, dtype=np.float64)
    p = k ** (-alpha)
    c = np.cumsum(p)
    c /= c[-1]
    return c


def _scatter_mult(rows: int) -> int:
    a = _ZIPF_MULT % rows if rows > 1 else 1
    a |= 1
    while rows > 1 and math.gcd(a, rows) != 1:
        a += 2
    return a


def zipf_indices(rng: np.random.Generator, n: int, rows: int, alpha: float, scatter: bool = True) -> np.ndarray:
    """``n`` row ids with ``P(rank k) ∝ k^-alpha`` (k = 1..rows); ranks scattered over the table."""
    if alpha == 0:
        return rng.integers(0, rows, n, dtype=np.int64)
    u = rng.random(n)
    rank0 = np.searchsorted(_zipf_cdf(rows, float(alpha)), u, side="right").astype(np.int64)
    np.minimum(rank0, rows - 1, out=rank0)
    if not scatter:
        return rank0
    a = _scatter_mult(rows)
    # (rank0 * a) mod rows without overflow: Python ints are too slow, so use object-free uint math
    return ((rank0.astype(np.uint64) * np.uint64(a)) % np.uint64(rows)).astype(np.int64) if rows < (1 << 32) \
        else np.array([(int(r) * a) % rows for r in rank0], dtype=np.int64)


def estimate_zipf_alpha(counts: np.ndarray, top: int = 1000) -> float:
    """Zipf exponent fitted to the rank-frequency curve: least-squares slope of ``log count`` vs
    ``log rank`` over the ``top`` most frequent rows with count >= 2 (0.0 when there is too little data)."""
    c = np.sort(np.asarray(counts)[np.asarray(counts) > 0])[::-1][:top]
    c = c[c >= 2]
    if c.size < 5:
        return 0.0
    x = np.log(np.arange(1, c.size + 1))
    y = np.log(c.astype(np.float64))
    slope = np.polyfit(x, y, 1)[0]
    return float(max(0.0, -slope))


@functools.lru_cache(maxsize=4)
def _trace_stream(spec: str) -> tuple[np.ndarray, int]:
    """(concatenated item stream, number of table rows) of a dataset (cached per process)."""
    from pimcast.models import datasets as ds
    if spec in TRACE_DATASETS:
        ds_ = ds.load_dataset(spec, data_root=str(data_root()))
    else:
        ds_ = ds.load_dataset(spec)
    stream = np.concatenate([s for s in ds_.sequences if len(s)]) if ds_.sequences else np.zeros(0, np.int64)
    if stream.size == 0:
        raise WorkloadError(f"dataset {spec!r} has no interactions")
    return stream.astype(np.int64), ds_.num_items + 1


def _trace_indices(rng: np.random.Generator, spec: str, num_bags: int, lengths: np.ndarray) -> tuple[np.ndarray, int]:
    stream, rows = _trace_stream(spec)
    L = int(lengths.max()) if lengths.size else 0
    if stream.size <= L:
        raise WorkloadError(f"dataset {spec!r} has {stream.size} interactions, fewer than a bag of {L}")
    starts = rng.integers(0, stream.size - L, num_bags)
    offs = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if lengths.size else np.zeros(0, np.int64)
    bag = np.repeat(np.arange(num_bags), lengths)
    pos = np.arange(int(lengths.sum())) - np.repeat(offs, lengths)
    return stream[starts[bag] + pos], rows


# ----------------------------------------------------------------------------- generators

def make_workload(cfg: WorkloadConfig) -> Workload:
    """Generate the lookups of ``cfg`` (deterministic for a given config, seed included)."""
    if not isinstance(cfg, WorkloadConfig):
        raise TypeError(f"cfg must be a WorkloadConfig, got {type(cfg).__name__}")
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    tables = []
    for t, dim in enumerate(cfg.table_dims()):
        trng = np.random.default_rng([cfg.seed, t])
        if cfg.pooling_dist == "fixed":
            lengths = np.full(cfg.batch, cfg.pooling, np.int64)
        else:
            lengths = trng.integers(1, 2 * cfg.pooling, cfg.batch).astype(np.int64)
        n = int(lengths.sum())
        rows = cfg.rows
        if cfg.dist == "uniform":
            idx = trng.integers(0, rows, n, dtype=np.int64)
        elif cfg.dist == "zipf":
            idx = zipf_indices(trng, n, rows, cfg.alpha)
        else:
            idx, rows = _trace_indices(trng, cfg.dist.split(":", 1)[1], cfg.batch, lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        tables.append(TableBatch(f"t{t}", int(rows), int(dim), torch.from_numpy(idx.astype(np.int64)),
                                 torch.from_numpy(offsets)))
    del rng
    return Workload(cfg.label(), tables, cfg.as_dict(), "dlrm")


def dlrm_workload(**kw) -> Workload:
    """``make_workload(WorkloadConfig(**kw))``."""
    try:
        cfg = WorkloadConfig(**kw)
    except TypeError as exc:
        raise WorkloadError(f"bad workload field: {exc}") from None
    return make_workload(cfg)


def sasrec_workload(users: int = 128, max_len: int = 50, dim: int = 50, num_items: Optional[int] = None,
                    dataset: Optional[str] = "amazon-scientific", alpha: float = 0.8, seed: int = 0) -> Workload:
    """The SASRec pre-training embedding workload (FACTS.md §6).

    Per user: ``max_len`` input items, ``max_len`` positives (the next items), ``max_len`` random
    negatives (uniform over the items) from the item table, and ``max_len`` positions from the
    position table.  With ``dataset`` (a trace name/path) the sequences are real users' windows
    (left-padded with 0 like SASRec when shorter); otherwise items are Zipf(``alpha``) over
    ``num_items`` (default 10,000).  Returns two tables (``item``: ``num_items + 1`` rows,
    ``pos``: ``max_len`` rows), every lookup its own bag (pooling 1).
    """
    for v, n in ((users, "users"), (max_len, "max_len"), (dim, "dim")):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise WorkloadError(f"sasrec field {n}: must be an integer >= 1, got {v!r}")
    rng = np.random.default_rng(seed)
    if dataset is not None:
        from pimcast.models import datasets as ds
        d = ds.load_dataset(dataset, data_root=str(data_root())) if dataset in TRACE_DATASETS \
            else ds.load_dataset(dataset)
        items = d.num_items
        seqs = [s for s in d.sequences if len(s) >= 2]
        pick = rng.integers(0, len(seqs), users)
        inp = np.zeros((users, max_len), np.int64)
        pos = np.zeros((users, max_len), np.int64)
        for r, u in enumerate(pick):          # loop over 128 users (not lookups): windows of a sequence
            s = seqs[u][-(max_len + 1):]
            k = len(s) - 1
            inp[r, max_len - k:] = s[:-1]
            pos[r, max_len - k:] = s[1:]
    else:
        items = 10_000 if num_items is None else int(num_items)
        seq = zipf_indices(rng, users * (max_len + 1), items, alpha) + 1
        seq = seq.reshape(users, max_len + 1)
        inp, pos = seq[:, :-1], seq[:, 1:]
    neg = rng.integers(1, items + 1, (users, max_len))
    item_idx = np.concatenate([inp.ravel(), pos.ravel(), neg.ravel()]).astype(np.int64)
    pos_idx = np.tile(np.arange(max_len, dtype=np.int64), users)
    tabs = [TableBatch("item", items + 1, dim, torch.from_numpy(item_idx), torch.arange(item_idx.size)),
            TableBatch("pos", max_len, dim, torch.from_numpy(pos_idx), torch.arange(pos_idx.size))]
    cfg = {"batch": users, "users": users, "max_len": max_len, "dim": dim, "pooling": 1, "num_items": items,
           "dataset": dataset, "seed": seed, "dist": f"trace:{dataset}" if dataset else "zipf",
           "alpha": alpha if dataset is None else None, "num_tables": 2}
    return Workload(f"sasrec-{dataset or 'zipf'}-U{users}", tabs, cfg, "sasrec")
