"""``pimcast bench``: PIM vs CPU-centric vs GPU embedding-training sweeps (table, JSON, plots).

Each sweep point is one training step of a :class:`~pimcast.host.workloads.Workload` (several
tables), timed as

* **PIM** (``model`` backend timing, :class:`pimcast.host.timing.PIMTimer`): forward = device
  GATHER_REDUCE; backward (tensor casting) = write ``dY`` to a device scratch region + GATHER_REDUCE
  over it with the casted index (the host sort is done during the forward, off the critical path,
  and is not counted); update = SCATTER_SGD (read-modify-write of the unique rows).  The request
  streams are exactly those :class:`pimcast.host.device.Device` builds for these calls
  (:func:`pim_step_time` checks it against a real device run in the tests); to bound the sweep time
  each operation times at most ``max_requests`` requests (a prefix of the bags / of the casted
  entries, a contiguous slice of the sorted unique rows) and scales linearly (``sampled``).
  ``--functional`` runs the real Device instead (functional emulation + timing, no sampling; slow).
* **CPU-centric** (:func:`pimcast.host.baselines.cpu_centric_time`): expand-coalesce backward +
  SGD on the host over the DDR4 channel(s), analytic bound model (``--cpu-timing fast`` for the
  fast DRAM model).
* **GPU** (:func:`pimcast.host.baselines.gpu_time`): FBGEMM bandwidth definitions at a stated
  efficiency of peak HBM.

Systems (documented assumptions)
--------------------------------
* ``dimm``: one 2-rank DDR4-3200 DIMM.  PIM ``rank`` = ``configs/pim/rank-ddr4-3200`` (one unit per
  rank), ``bankgroup`` = ``configs/pim/bankgroup-ddr4-3200`` (one unit per bank group); the CPU
  uses the same DIMM on one channel (25.6 GB/s).  The physical ceilings of FACTS.md §3 apply here.
  The ``placement`` sweep adds ``rank1`` (a 1-rank DIMM) and ``trim`` =
  ``configs/pim/trim-ddr4-3200`` (bank-group units with TRiM-style partial sums, rows whole per
  bank group: ``accumulate: partial``, reassociated numerics).
* ``pool`` (the paper's setting): PIM = ``configs/pim/tensordimm-32x-ddr4-3200`` (32 DIMMs,
  819.2 GB/s; the ``bankgroup`` variant is the same pool with bank-group units); CPU-centric = a
  server socket with ``--cpu-channels`` (default 8) DDR4-3200 channels of 2-rank DIMMs
  (204.8 GB/s).  The paper does not state its CPU's channel count in the facts we have; 8 is the
  common server configuration (assumption, configurable).

Outputs (``--out``, default ``build/bench``): ``bench.json`` (every point, the config, the
measured host numbers), ``speedup_<sweep>.png``, ``breakdown.png``, ``utilization.png``; a table
on stdout.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from pimcast.hdl.dram.timing import REQUEST_BYTES
from pimcast.host import baselines as bl
from pimcast.host.timing import gather_stream_args, partial_plan, unit_setup_cycles
from pimcast.host.workloads import Workload, WorkloadConfig, WorkloadError, make_workload, sasrec_workload

__all__ = ["add_arguments", "main", "pim_step_time", "run_bench", "SWEEPS", "BenchError", "SYSTEMS",
           "PAPER_RANGE"]

SWEEPS = ("batch", "dim", "pooling", "skew", "placement", "sasrec")
PAPER_RANGE = (1.9, 21.0)
_INSTR = 64
_ALIGN = 4096


class BenchError(ValueError):
    """A bad bench parameter."""


# ----------------------------------------------------------------------------- systems

def _systems(cpu_channels: int) -> dict:
    """name -> (pim config name, overrides, cpu channels)."""
    return {
        "rank@dimm": ("rank-ddr4-3200", {}, 1),
        "bankgroup@dimm": ("bankgroup-ddr4-3200", {}, 1),
        "rank@pool": ("tensordimm-32x-ddr4-3200", {}, cpu_channels),
        "bankgroup@pool": ("tensordimm-32x-ddr4-3200", {"placement": "bankgroup", "mapping": None}, cpu_channels),
    }


SYSTEMS = tuple(_systems(8))


# ----------------------------------------------------------------------------- PIM timing

def _padded(dim: int) -> int:
    return -(-dim // 16) * 16


def _row_addrs(base: int, rows: np.ndarray, row_bytes: int) -> np.ndarray:
    r = np.asarray(rows).astype(np.uint64)
    k = np.arange(row_bytes // REQUEST_BYTES, dtype=np.uint64) * np.uint64(REQUEST_BYTES)
    return (np.uint64(base) + r[:, None] * np.uint64(row_bytes) + k[None, :]).ravel()


def _add(acc: dict, r: dict, scale: float = 1.0) -> None:
    acc["cycles"] += r["cycles"] * scale
    acc["ns"] += r["ns"] * scale
    acc["reads"] += r["reads"] * scale
    acc["writes"] += r["writes"] * scale
    acc["acts"] += r["acts"] * scale
    acc["forwarded_beats"] += r["forwarded_beats"] * scale
    acc["energy_pJ"] += r["energy_pJ"]["total"] * scale
    acc["sampled"] |= bool(r["sampled"]) or scale != 1.0


def _zero() -> dict:
    return {"cycles": 0.0, "ns": 0.0, "reads": 0.0, "writes": 0.0, "acts": 0.0, "forwarded_beats": 0.0,
            "energy_pJ": 0.0, "sampled": False}


def _gather(timer, base, row_bytes, pdim, idx, starts, nnz, max_requests):
    """GATHER_REDUCE stream of Device.gather_reduce (prefix of bags when over the cap)."""
    beats = row_bytes // REQUEST_BYTES
    nb = len(starts)
    lengths = np.diff(np.r_[starts, nnz])
    host_in = _INSTR + 4 * nnz + 4 * nb
    host_out = nb * row_bytes
    scale = 1.0
    if nnz * beats > max_requests:
        cum = np.cumsum(lengths)
        m_b = max(1, int(np.searchsorted(cum, max_requests // beats, side="right")))
        m = int(cum[m_b - 1])
        if m == 0:
            m_b, m = nb, nnz
        scale = nnz / m
        idx, lengths = idx[:m], lengths[:m_b]
        host_in = int(host_in / scale)
        host_out = int(host_out / scale)
    plan = None
    if timer.cfg.accumulate == "partial":
        plan = partial_plan(timer.cfg, timer.mapping, base, row_bytes, idx, lengths)
    kw = gather_stream_args(timer.cfg, row_bytes, pdim, lengths, plan)   # as the device
    if plan is None:
        kw.pop("host_out")          # the whole workload's results, scaled to the timed prefix (above)
    else:
        host_out = kw.pop("host_out")
    r = timer.time_stream(_row_addrs(base, idx, row_bytes), host_in=host_in, host_out=host_out,
                          setup_cycles=unit_setup_cycles(timer.cfg, len(idx), len(lengths), lengths=lengths, plan=plan),
                          **kw)
    return r, scale


def _rmw(timer, base, row_bytes, pdim, rows, max_requests):
    beats = row_bytes // REQUEST_BYTES
    n = len(rows)
    scale = 1.0
    if 2 * n * beats > max_requests:
        m = max(1, max_requests // (2 * beats))
        s0 = (n - m) // 2
        rows = rows[s0:s0 + m]
        scale = n / m
    k = len(rows)
    a = _row_addrs(base, rows, row_bytes).reshape(k, beats)
    addr = np.concatenate([a, a], axis=1).ravel()
    flags = np.tile(np.r_[np.zeros(beats, bool), np.ones(beats, bool)], k)
    r = timer.time_stream(addr, flags, fmas=k * pdim, host_in=int((_INSTR + 4 * n + n * row_bytes) / scale))
    return r, scale


def pim_step_time(workload: Workload, config="rank-ddr4-3200", *, timing: str = "analytic",
                  max_requests: int = 262_144, overrides: Optional[dict] = None, lr: float = 0.01,
                  functional: bool = False) -> dict:
    """Time one PIM training step of ``workload`` (all tables, operations back to back).

    Tables are allocated in order (4 KiB aligned, as :meth:`Device.alloc`), then per table: forward
    GATHER_REDUCE, ``dY`` write to a scratch region after the tables + GATHER_REDUCE with the casted
    index (backward), SCATTER_SGD of the unique rows (update).  ``functional=True`` runs a real
    ``model`` Device (tables zero, ``dY`` ones) instead of replaying its streams.
    Returns ns per stage, DRAM bytes, GB/s, activations, forwarded beats, energy and ``sampled``.
    """
    from pimcast.host.pim_config import load_pim_config
    from pimcast.models.tensor_cast import cast
    ov = dict(overrides or {})
    ov["timing"] = timing
    cfg = load_pim_config(config, **ov)
    stages = {"forward": _zero(), "backward": _zero(), "update": _zero()}
    if functional:
        return _pim_step_device(workload, cfg, lr)
    from pimcast.host.timing import PIMTimer
    timer = PIMTimer(cfg)
    bases, base = [], 0
    for tb in workload.tables:
        rb = _padded(tb.dim) * 4
        bases.append(base)
        base += -(-(tb.rows * rb) // _ALIGN) * _ALIGN
    if base > cfg.capacity_bytes:
        raise BenchError(f"workload {workload.name!r} needs {base} B of device memory; {cfg.name} has "
                         f"{cfg.capacity_bytes} B")
    scratch = base
    for tb, tbase in zip(workload.tables, bases):
        pd = _padded(tb.dim)
        rb = pd * 4
        idx = tb.indices.numpy()
        starts = tb.offsets.numpy()
        r, s = _gather(timer, tbase, rb, pd, idx, starts, tb.nnz, max_requests)
        _add(stages["forward"], r, s)
        c = cast(tb.indices, tb.offsets)
        nb = tb.num_bags
        r = timer.time_sequential(scratch, nb * rb, True, host_in=nb * rb + _INSTR)
        _add(stages["backward"], r)
        r, s = _gather(timer, scratch, rb, pd, c.casted_index.numpy(), c.casted_offsets.numpy(), tb.nnz,
                       max_requests)
        _add(stages["backward"], r, s)
        r, s = _rmw(timer, tbase, rb, pd, c.unique.numpy(), max_requests)
        _add(stages["update"], r, s)
    return _summarize(stages, cfg)


def _pim_step_device(workload, cfg, lr):
    from pimcast.host.device import open_device
    from pimcast.models.tensor_cast import cast
    dev = open_device("model", cfg)
    for tb in workload.tables:
        dev.alloc(tb.name, tb.rows, tb.dim)
    stages = {}
    ns = {"forward": 0.0, "backward": 0.0, "update": 0.0}
    snap = dev.stats()

    def take(stage):
        nonlocal snap
        s = dev.stats()
        d = stages.setdefault(stage, _zero())
        d["cycles"] += s["cycles"] - snap["cycles"]
        d["ns"] += s["ns"] - snap["ns"]
        d["reads"] += s["requests"]["read"] - snap["requests"]["read"]
        d["writes"] += s["requests"]["write"] - snap["requests"]["write"]
        d["acts"] += s["dram"]["acts"] - snap["dram"]["acts"]
        d["forwarded_beats"] += s["forwarded_beats"] - snap["forwarded_beats"]
        d["energy_pJ"] += s["energy_pJ"]["total"] - snap["energy_pJ"]["total"]
        d["sampled"] |= bool(s["timing_sampled"])
        snap = s

    for tb in workload.tables:
        dev.gather_reduce(tb.name, tb.indices, tb.offsets)
        take("forward")
        c = cast(tb.indices, tb.offsets)
        dev.alloc("dy", tb.num_bags, tb.dim)
        dev.write("dy", torch.ones(tb.num_bags, tb.dim))
        G = dev.gather_reduce("dy", c.casted_index, c.casted_offsets)
        dev.free("dy")
        take("backward")
        dev.scatter_sgd(tb.name, c.unique, G, lr)
        take("update")
    return _summarize(stages, cfg)


def _summarize(stages: dict, cfg) -> dict:
    t = cfg.dram_timing()
    out = {f"{k}_ns": v["ns"] for k, v in stages.items()}
    out["ns"] = sum(v["ns"] for v in stages.values())
    reads = sum(v["reads"] for v in stages.values())
    writes = sum(v["writes"] for v in stages.values())
    out["dram_bytes"] = (reads + writes) * REQUEST_BYTES
    out["GBps"] = out["dram_bytes"] / out["ns"] if out["ns"] else 0.0
    f = stages["forward"]
    out["forward_GBps"] = f["reads"] * REQUEST_BYTES / f["ns"] if f["ns"] else 0.0
    out["acts"] = sum(v["acts"] for v in stages.values())
    out["forwarded_beats"] = sum(v["forwarded_beats"] for v in stages.values())
    out["energy_uJ"] = sum(v["energy_pJ"] for v in stages.values()) / 1e6
    out["sampled"] = any(v["sampled"] for v in stages.values())
    units = cfg.num_units()
    per_unit = t.peak_GBps if cfg.placement == "rank" else REQUEST_BYTES / (t.tCCD_L * t.tCK_ns)
    out["internal_peak_GBps"] = units * per_unit
    out["config"] = {"name": cfg.name, "placement": cfg.placement, "channels": cfg.channels, "ranks": cfg.ranks,
                     "units": units, "mapping": cfg.address_mapping, "timing": cfg.timing}
    return out


# ----------------------------------------------------------------------------- sweeps

def base_config(quick: bool) -> WorkloadConfig:
    if quick:
        return WorkloadConfig(batch=1024, pooling=10, dim=64, num_tables=2, rows=200_000, dist="uniform", seed=0)
    return WorkloadConfig(batch=2048, pooling=10, dim=64, num_tables=8, rows=1_000_000, dist="uniform", seed=0)


def sweep_points(sweep: str, quick: bool, base: Optional[WorkloadConfig] = None) -> list[tuple[str, object]]:
    """``[(x label, WorkloadConfig | Workload | (WorkloadConfig, systems)), ...]`` of one sweep."""
    b = base or base_config(quick)
    if sweep == "batch":
        xs = (1024, 2048, 4096) if not quick else (512, 1024, 2048)
        return [(str(x), b.with_(batch=x)) for x in xs]
    if sweep == "dim":
        xs = (16, 32, 64, 128, 256) if not quick else (16, 64, 256)
        return [(str(x), b.with_(dim=x)) for x in xs]
    if sweep == "pooling":
        xs = (1, 10, 20, 50, 100) if not quick else (1, 10, 50)
        return [(str(x), b.with_(pooling=x)) for x in xs]
    if sweep == "skew":
        pts = [("uniform", b.with_(dist="uniform"))]
        for a in ((0.5, 0.8, 1.0, 1.2) if not quick else (0.8, 1.2)):
            pts.append((f"zipf{a:g}", b.with_(dist="zipf", alpha=a)))
        from pimcast.host.workloads import data_root
        traces = ("ml-100k", "amazon-scientific") if not quick else ("ml-100k",)
        for name in traces:
            folder = {"ml-100k": "ml-100k", "amazon-scientific": "amazon2018-scientific-unisrec"}[name]
            if (data_root() / folder).is_dir():
                pts.append((f"trace:{name}", b.with_(dist=f"trace:{name}")))
        return pts
    if sweep == "placement":
        xs = (16, 64, 256)
        return [(f"D{x}", b.with_(dim=x)) for x in xs]
    if sweep == "sasrec":
        from pimcast.host.workloads import data_root
        ds = "amazon-scientific" if (data_root() / "amazon2018-scientific-unisrec").is_dir() else None
        return [("sasrec", ("sasrec", ds))]
    raise BenchError(f"unknown sweep {sweep!r}; choose from {', '.join(SWEEPS)} or 'all'")


def _make(spec) -> Workload:
    if isinstance(spec, WorkloadConfig):
        return make_workload(spec)
    if isinstance(spec, tuple) and spec[0] == "sasrec":
        return sasrec_workload(dataset=spec[1])
    raise BenchError(f"bad sweep point {spec!r}")


def _placement_systems(cpu_channels: int) -> dict:
    s = _systems(cpu_channels)
    return {"rank1@dimm": ("rank-ddr4-3200-1rank", {}, 1), "rank@dimm": s["rank@dimm"],
            "bankgroup@dimm": s["bankgroup@dimm"], "trim@dimm": ("trim-ddr4-3200", {}, 1)}


def run_point(wl: Workload, systems: dict, *, timing: str, cpu_timing: str, gpu: str, gpu_eff: float,
              max_requests: int, functional: bool = False) -> dict:
    st = wl.stats()
    dims = sorted({t.dim for t in wl.tables})
    rec = {"workload": wl.name, "config": wl.config, "nnz": st["nnz"], "unique": st["unique"],
           "unique_ratio": st["unique"] / st["nnz"] if st["nnz"] else 0.0,
           "top1pct_share": float(np.mean([p["top1pct_share"] for p in st["per_table"]])),
           "pim": {}, "cpu": {}, "speedup": {}, "speedup_vs_gpu": {}, "utilization": {}}
    cpu_cache = {}
    for name, (cfg, ov, cch) in systems.items():
        ranks = 1 if cfg.endswith("1rank") else 2
        if (cch, ranks) not in cpu_cache:
            cpu_cache[(cch, ranks)] = bl.cpu_centric_time(wl, channels=cch, ranks=ranks, timing=cpu_timing,
                                                          max_rows=max(1024, max_requests // 4))
        cpu = cpu_cache[(cch, ranks)]
        ckey = f"{cch}ch" + ("-1rank" if ranks == 1 else "")
        rec["cpu"][ckey] = {k: cpu[k] for k in ("ns", "forward_ns", "backward_ns", "update_ns", "GBps",
                                                "peak_GBps", "phases_ns")}
        rec["cpu"][ckey]["bytes"] = cpu["bytes"]["total"]
        p = pim_step_time(wl, cfg, timing=timing, overrides=ov, max_requests=max_requests, functional=functional)
        rec["pim"][name] = p
        rec["pim"][name]["cpu"] = ckey
        rec["speedup"][name] = cpu["ns"] / p["ns"] if p["ns"] else float("nan")
        ceil = [bl.gather_ceilings(d, ranks=p["config"]["ranks"], channels=p["config"]["channels"]) for d in dims]
        hceil = [bl.gather_ceilings(d, ranks=ranks, channels=cch) for d in dims]
        ck = "rank" if p["config"]["placement"] == "rank" else "bankgroup_per_rank_ca"
        c_pim = float(np.mean([c[ck] for c in ceil]))
        c_host = float(np.mean([c["host"] for c in hceil]))
        cpu_fwd_gbps = sum(t.nnz * -(-t.dim * 4 // 64) * 64 for t in wl.tables) / cpu["phases_ns"]["fwd_gather"]
        rec["utilization"][name] = {
            "pim_forward_GBps": p["forward_GBps"], "pim_gather_ceiling_GBps": c_pim,
            "pim_forward_util": p["forward_GBps"] / c_pim if c_pim else 0.0,
            "pim_step_GBps": p["GBps"], "pim_internal_peak_GBps": p["internal_peak_GBps"],
            "pim_step_util": p["GBps"] / p["internal_peak_GBps"],
            "cpu_forward_GBps": cpu_fwd_gbps, "host_gather_ceiling_GBps": c_host,
            "cpu_forward_util": cpu_fwd_gbps / c_host if c_host else 0.0,
            "ceiling_speedup": c_pim / c_host if c_host else 0.0,
            "forward_speedup": cpu["phases_ns"]["fwd_gather"] / p["forward_ns"] if p["forward_ns"] else 0.0,
        }
    g = bl.gpu_time(wl, gpu, gpu_eff)
    rec["gpu"] = g
    for name, p in rec["pim"].items():
        rec["speedup_vs_gpu"][name] = g["ns"] / p["ns"] if p["ns"] else float("nan")
    return rec


def run_bench(sweeps: list[str], *, quick: bool = False, out: Path = Path("build/bench"), timing: str = "analytic",
              cpu_timing: str = "analytic", cpu_channels: int = 8, gpu: str = "H100", gpu_eff: float = 0.6,
              max_requests: Optional[int] = None, measure: str = "base", plots: bool = True,
              base: Optional[WorkloadConfig] = None, progress: bool = True, functional: bool = False) -> dict:
    for s in sweeps:
        if s not in SWEEPS:
            raise BenchError(f"unknown sweep {s!r}; choose from {', '.join(SWEEPS)} or 'all'")
    if measure not in ("none", "base", "all"):
        raise BenchError(f"measure must be none, base or all, got {measure!r}")
    if timing not in ("analytic", "fast"):
        raise BenchError(f"timing must be analytic or fast, got {timing!r}")
    if gpu not in bl.GPUS:
        raise BenchError(f"unknown gpu {gpu!r}; known: {', '.join(bl.GPUS)}")
    if max_requests is None:
        max_requests = 65_536 if quick else 131_072
    systems = _systems(cpu_channels)
    t0 = time.time()
    plan = []
    for s in sweeps:
        for x, spec in sweep_points(s, quick, base):
            plan.append((s, x, spec))
    try:
        from tqdm import tqdm
        bar = tqdm(total=len(plan), desc="pimcast bench", unit="pt", disable=not progress, file=sys.stderr)
    except ImportError:  # pragma: no cover
        bar = None
    results = {s: [] for s in sweeps}
    cache: dict = {}
    for s, x, spec in plan:
        if bar is not None:
            bar.set_postfix_str(f"{s}={x}")
        key = (repr(spec), s == "placement")
        if key not in cache:
            wl = _make(spec)
            sy = _placement_systems(cpu_channels) if s == "placement" else systems
            cache[key] = run_point(wl, sy, timing=timing, cpu_timing=cpu_timing, gpu=gpu, gpu_eff=gpu_eff,
                                   max_requests=max_requests, functional=functional)
        rec = dict(cache[key])
        rec["x"] = x
        results[s].append(rec)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    measured = {}
    if measure != "none":
        todo = [("base", base or base_config(quick))]
        if measure == "all":
            todo += [(f"{s}={x}", spec) for s, x, spec in plan if isinstance(spec, WorkloadConfig)]
        for label, spec in todo:
            wl = _make(spec)
            measured[label] = {"workload": wl.name,
                               "torch_step": bl.measure_torch(wl, reps=2 if quick else 3),
                               "casting": bl.measure_casting(wl, reps=2 if quick else 3, golden=not quick)}
    doc = {
        "pimcast_bench": 1, "quick": quick, "sweeps": sweeps, "timing": timing, "cpu_timing": cpu_timing,
        "cpu_channels": cpu_channels, "gpu": {"name": gpu, "efficiency": gpu_eff, "peak_GBps": bl.GPUS[gpu]},
        "max_requests": max_requests, "systems": {k: {"pim": v[0], "overrides": v[1], "cpu_channels": v[2]}
                                                  for k, v in systems.items()},
        "paper_speedup_range": list(PAPER_RANGE),
        "ceilings": {str(d): bl.gather_ceilings(d) for d in (16, 32, 64, 128, 256)},
        "results": results, "measured": measured,
        "host": {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
        "wall_s": None,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc["plots"] = make_plots(doc, out) if plots else []
    doc["wall_s"] = time.time() - t0
    with open(out / "bench.json", "w") as f:
        json.dump(doc, f, indent=1, default=_json_default)
    return doc


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


# ----------------------------------------------------------------------------- table + plots

def format_table(doc: dict) -> str:
    lines = []
    hdr = (f"{'sweep':<9} {'x':<22} {'nnz':>8} {'uniq%':>6} | {'CPU1ch us':>9} {'rank':>6} {'bg':>6} | "
           f"{'CPU8ch us':>9} {'rank':>6} {'bg':>6} | {'vsGPU r/bg':>11} | {'fwd util r/bg':>13}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for s, pts in doc["results"].items():
        for r in pts:
            sp = r["speedup"]
            cpus = r["cpu"]
            if s == "placement":
                row = (f"{s:<9} {r['x']:<22} {r['nnz']:>8} {100 * r['unique_ratio']:>6.1f} | "
                       + "  ".join(f"{k}={v:.2f}x" for k, v in sp.items()))
                lines.append(row)
                continue
            c1 = cpus.get("1ch", {}).get("ns", float("nan")) / 1e3
            cN = [v for k, v in cpus.items() if k != "1ch"]
            cN = cN[0]["ns"] / 1e3 if cN else float("nan")
            g = r["speedup_vs_gpu"]
            u = r["utilization"]
            lines.append(
                f"{s:<9} {r['x']:<22} {r['nnz']:>8} {100 * r['unique_ratio']:>6.1f} | {c1:>9.1f} "
                f"{sp.get('rank@dimm', float('nan')):>5.2f}x {sp.get('bankgroup@dimm', float('nan')):>5.2f}x | "
                f"{cN:>9.1f} {sp.get('rank@pool', float('nan')):>5.2f}x {sp.get('bankgroup@pool', float('nan')):>5.2f}x | "
                f"{g.get('rank@pool', float('nan')):>5.2f}/{g.get('bankgroup@pool', float('nan')):<5.2f} | "
                f"{u.get('rank@dimm', {}).get('pim_forward_util', float('nan')):>5.2f}/"
                f"{u.get('bankgroup@dimm', {}).get('pim_forward_util', float('nan')):<5.2f}")
    lines.append("")
    lines.append("speedup = modeled CPU-centric step time / PIM step time (fwd + tensor-cast bwd + SGD); "
                 "dimm: 1 DIMM PIM vs CPU on that 1 channel; pool: 32-DIMM PIM pool vs "
                 f"{doc['cpu_channels']}-channel CPU; vsGPU = {doc['gpu']['name']} at "
                 f"{100 * doc['gpu']['efficiency']:.0f}% of peak / PIM pool (>1: PIM faster). "
                 f"Paper: {PAPER_RANGE[0]}-{PAPER_RANGE[1]}x. fwd util = PIM forward GB/s / random-gather ceiling "
                 "(FACTS §3).")
    for label, m in doc.get("measured", {}).items():
        ts, c = m["torch_step"], m["casting"]
        lines.append(f"measured on this host ({label}, {m['workload']}, {ts['threads']} threads): stock PyTorch "
                     f"step {ts['ns'] / 1e6:.1f} ms (fwd {ts['forward_ns'] / 1e6:.1f} / bwd {ts['backward_ns'] / 1e6:.1f}"
                     f" / SGD {ts['update_ns'] / 1e6:.1f}); casting: cast {1e3 * c['cast']:.1f} ms + gather "
                     f"{1e3 * c['tc_backward_fast']:.1f} ms"
                     + (f" (golden {1e3 * c['tc_backward']:.1f} ms)" if "tc_backward" in c else "")
                     + f" vs torch sparse bwd {1e3 * c['torch_sparse_backward']:.1f} ms (+coalesce "
                     f"{1e3 * c['torch_sparse_coalesce']:.1f}), dense bwd {1e3 * c['torch_dense_backward']:.1f} ms")
    return "\n".join(lines)


def make_plots(doc: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    res = doc["results"]
    for s in ("batch", "dim", "pooling", "skew", "placement", "sasrec"):
        pts = res.get(s)
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        xs = [p["x"] for p in pts]
        names = list(pts[0]["speedup"])
        for n in names:
            ax.plot(range(len(xs)), [p["speedup"][n] for p in pts], marker="o", label=n)
        if s != "placement" and "rank@pool" in pts[0]["speedup_vs_gpu"]:
            ax.plot(range(len(xs)), [p["speedup_vs_gpu"]["rank@pool"] for p in pts], ls="--", marker="x",
                    label=f"rank@pool vs {doc['gpu']['name']}")
        ax.axhspan(PAPER_RANGE[0], PAPER_RANGE[1], color="0.9", zorder=0, label="paper 1.9-21x")
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs, rotation=20 if s == "skew" else 0)
        ax.set_yscale("log")
        ax.set_xlabel(s)
        ax.set_ylabel("speedup over CPU-centric (step)")
        ax.set_title(f"PIM training-step speedup vs {s}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        f = out / f"speedup_{s}.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f.name)
    # breakdown: first point of each sweep's base-like entry -> CPU vs PIM stacked
    base_pts = []
    for s, pts in res.items():
        if s == "placement" or not pts:
            continue
        base_pts = pts
        break
    if base_pts:
        fig, axes = plt.subplots(1, len(base_pts), figsize=(3.2 * len(base_pts), 4.0), squeeze=False)
        for ax, p in zip(axes[0], base_pts):
            bars = {}
            for ck, c in p["cpu"].items():
                bars[f"CPU {ck}"] = c
            for n, q in p["pim"].items():
                bars[n] = q
            labels = list(bars)
            bottom = np.zeros(len(labels))
            for stage, col in (("forward", "C0"), ("backward", "C1"), ("update", "C2")):
                v = np.array([bars[k][f"{stage}_ns"] / 1e3 for k in labels])
                ax.bar(range(len(labels)), v, bottom=bottom, color=col, label=stage)
                bottom += v
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=60, fontsize=7)
            ax.set_yscale("log")
            ax.set_title(f"{p['x']}", fontsize=8)
            ax.set_ylabel("step time (us)")
        axes[0][0].legend(fontsize=7)
        fig.suptitle("time breakdown forward / backward / update")
        fig.tight_layout()
        f = out / "breakdown.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f.name)
    # utilization vs D (dim sweep, else whatever we have)
    pts = res.get("dim") or res.get("placement") or next((v for v in res.values() if v), [])
    if pts:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        xs = [p["x"] for p in pts]
        for n in pts[0]["utilization"]:
            ax.plot(range(len(xs)), [p["utilization"][n]["pim_forward_util"] for p in pts], marker="o",
                    label=f"{n} fwd / gather ceiling")
        ax.plot(range(len(xs)), [next(iter(p["utilization"].values()))["cpu_forward_util"] for p in pts],
                marker="s", ls="--", label="CPU fwd / host ceiling")
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs)
        ax.set_ylabel("utilization of the physical ceiling")
        ax.set_title("forward gather bandwidth vs FACTS §3 ceilings")
        ax.legend(fontsize=7)
        fig.tight_layout()
        f = out / "utilization.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f.name)
    return files


# ----------------------------------------------------------------------------- CLI

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sweep", default="all",
                   help=f"which sweep: {', '.join(SWEEPS)} or all (comma-separated list allowed; default all)")
    p.add_argument("--quick", action="store_true", help="small workloads, fewer points (<= 2 minutes)")
    p.add_argument("--out", default="build/bench", help="output folder (default build/bench)")
    p.add_argument("--timing", default="analytic", choices=("analytic", "fast"),
                   help="PIM DRAM timing model (default analytic: the resource-bound model)")
    p.add_argument("--cpu-timing", default="analytic", choices=("analytic", "fast"),
                   help="CPU-centric DRAM timing model (default analytic)")
    p.add_argument("--cpu-channels", type=int, default=8, help="CPU channels of the paper-setting system (default 8)")
    p.add_argument("--gpu", default="H100", help=f"GPU for the bandwidth model: {', '.join(bl.GPUS)}")
    p.add_argument("--gpu-efficiency", type=float, default=0.6, help="fraction of peak HBM (default 0.6)")
    p.add_argument("--batch", type=int, default=None, help="base batch size (default 2048; quick 1024)")
    p.add_argument("--tables", type=int, default=None, help="base number of tables (default 8; quick 2)")
    p.add_argument("--rows", type=int, default=None, help="base rows per table (default 1,000,000; quick 200,000)")
    p.add_argument("--max-requests", type=int, default=None,
                   help="per PIM operation, time at most this many 64 B requests and scale (default 131072; quick 65536)")
    p.add_argument("--measure", default="base", choices=("none", "base", "all"),
                   help="measure stock PyTorch + host tensor casting on this machine (default: the base workload)")
    p.add_argument("--functional", action="store_true", help="run the real model Device (slow, no sampling)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def main(args) -> int:
    sw = [s.strip() for s in str(args.sweep).split(",") if s.strip()]
    if sw == ["all"]:
        sw = list(SWEEPS)
    bad = [s for s in sw if s not in SWEEPS]
    if bad or not sw:
        print(f"pimcast bench: unknown sweep {', '.join(bad) or repr(args.sweep)}; choose from "
              f"{', '.join(SWEEPS)} or all", file=sys.stderr)
        return 2
    try:
        base = base_config(args.quick)
        ch = {}
        if args.batch is not None:
            ch["batch"] = args.batch
        if args.tables is not None:
            ch["num_tables"] = args.tables
        if args.rows is not None:
            ch["rows"] = args.rows
        if ch:
            base = base.with_(**ch)
        if args.cpu_channels < 1 or args.cpu_channels & (args.cpu_channels - 1):
            raise BenchError(f"--cpu-channels must be a power of two >= 1, got {args.cpu_channels}")
        if args.max_requests is not None and args.max_requests < 1024:
            raise BenchError(f"--max-requests must be >= 1024, got {args.max_requests}")
        doc = run_bench(sw, quick=args.quick, out=Path(args.out), timing=args.timing, cpu_timing=args.cpu_timing,
                        cpu_channels=args.cpu_channels, gpu=args.gpu, gpu_eff=args.gpu_efficiency,
                        max_requests=args.max_requests, measure=args.measure, plots=not args.no_plots,
                        base=base, progress=not args.no_progress, functional=args.functional)
    except (BenchError, WorkloadError, bl.BaselineError) as exc:
        print(f"pimcast bench: {exc}", file=sys.stderr)
        return 2
    print(format_table(doc))
    print(f"\nwrote {Path(args.out) / 'bench.json'} and {', '.join(doc['plots'])} in {doc['wall_s']:.1f} s")
    return 0
