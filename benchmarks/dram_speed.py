"""Replay speed of the fast DRAM model (requests/s) per trace type, before/after in the same run.

Times :meth:`pimcast.host.dram_model.FastDRAMModel.run` (the event-driven kernel used by ``pimcast
dram replay --model fast``) and :class:`pimcast.host.dram_model_ref.ReferenceDRAMModel` (the
previous scan-per-step kernel, kept as the equivalence reference) on the same traces, same
process, same machine: best (and median) of ``--repeat`` runs of ``run()`` including the address
decode and checks, excluding numba compilation (warm-up run first), the repeats round-robin over
the traces so that a burst of load on the shared host does not sink one trace; requests/s from the
CPU (process) time, which on a shared 2-core host is the model's own cost (the best wall time is
saved too); "1st run" is a fresh model's first replay (its workspace allocated and faulted in, as
in a one-shot ``pimcast dram replay``). Also checks that both emit the same
command list (``same_commands``; recorded on a 20,000-request prefix so recording does not slow
the timed runs). Prints a table and saves ``build/bench/dram_speed.json`` and ``dram_speed.png``.

Usage: ``python benchmarks/dram_speed.py [--requests N] [--repeat K] [--standard S --ranks R]
[--no-ref] [--out DIR]``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def speed_traces(t, n: int, seed: int = 1) -> list[dict]:
    """``[{name, addr, is_write, cycle, mapping}]``: the trace types whose speed is reported."""
    from pimcast.host.trace import random_gather_trace

    rng = np.random.default_rng(seed)
    z = np.zeros(n, bool)
    out = []

    def add(name, addr, wr=z, mapping="rochrababgco", cyc=None):
        out.append(dict(name=name, addr=np.asarray(addr, np.uint64)[:n], is_write=np.asarray(wr, bool)[:n],
                        cycle=np.zeros(n, np.int64) if cyc is None else cyc[:n], mapping=mapping))

    for rb in (64, 256, 1024):
        add(f"gather-{rb}B", random_gather_trace(n, rb, seed=seed).addr)
    g64 = random_gather_trace(n, 64, seed=seed + 1).addr
    add("gather-64B-1/3-writes", g64, rng.random(n) < 1 / 3)
    rows = (np.minimum(rng.zipf(1.2, n), 1 << 22) - 1) * 7919 % (1 << 22)
    add("zipf1.2-64B", rows * 64)
    per = 4
    g = random_gather_trace(n // 2, 256, seed=seed + 2).addr.reshape(-1, per)
    add("rmw-256B-rows", np.concatenate([g, g], axis=1).reshape(-1), np.tile(np.repeat([False, True], per), len(g)))
    seq = np.arange(n, dtype=np.uint64) * 64
    add("stream-rochrababgco", seq)
    add("stream-bg-low", seq, mapping="rorabacobgch")
    add("paced-gather-64B", g64, cyc=np.arange(n, dtype=np.int64) * 12)
    return out


def cpu_info() -> dict:
    """The host CPU (model name, clock, vector extensions): replay speed depends on it — the kernel
    is branch-bound scalar code plus int32 vector scans (AVX-512 doubles their lanes over AVX2)."""
    info = {"model": platform.processor() or platform.machine(), "mhz": None, "vector": "none"}
    try:
        txt = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields = dict(ln.split(":", 1) for ln in txt.splitlines()[:40] if ":" in ln)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    info["model"] = fields.get("model name", info["model"])
    info["family_model"] = f"{fields.get('cpu family', '?')}/{fields.get('model', '?')}"
    info["mhz"] = float(fields["cpu MHz"]) if "cpu MHz" in fields else None
    info["vector"] = next((v for v in ("avx512f", "avx2", "avx", "sse4_2") if v in flags), "none")
    return info


def _timed(model, tr):
    c0, t0 = time.process_time(), time.perf_counter()
    res = model.run(tr["addr"], tr["is_write"], tr["cycle"])
    return time.process_time() - c0, time.perf_counter() - t0, res


def _rounds(models, traces, repeat):
    """Time every (model, trace) ``repeat`` times, round-robin over the traces (a burst of load
    on the shared host then spreads over all of them instead of sinking one): per trace the
    first run's CPU time (a fresh model's first replay, as ``pimcast dram replay`` runs once),
    the best and the median CPU time (process time: what the model costs, not the waits of a
    shared host), the best wall time, and the result."""
    cpu = [[] for _ in traces]
    wall = [[] for _ in traces]
    res = [None] * len(traces)
    for _ in range(repeat):
        for k, (m, tr) in enumerate(zip(models, traces)):
            c, w, res[k] = _timed(m, tr)
            cpu[k].append(c)
            wall[k].append(w)
    return [dict(first=c[0], best=min(c), median=float(np.median(c)), wall=min(w), res=r)
            for c, w, r in zip(cpu, wall, res)]


def main(argv: list[str] | None = None) -> int:
    from pimcast.hdl.dram.timing import load_preset
    from pimcast.host.dram_model import FastDRAMModel
    from pimcast.host.dram_model_ref import ReferenceDRAMModel

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--standard", default="ddr4-3200")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--queue", type=int, default=32)
    ap.add_argument("--no-ref", action="store_true", help="time the new kernel only")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    args = ap.parse_args(argv)
    t = load_preset(args.standard, ranks=args.ranks)
    cpu = cpu_info()
    print(f"host CPU: {cpu['model']} (family/model {cpu.get('family_model', '?')}, {cpu['mhz']} MHz, "
          f"widest vector extension {cpu['vector']})")
    rows = []
    hdr = (f"{'trace':<24}{'mapping':<14}{'fast Mreq/s':>12}{'median':>8}{'1st run':>8}{'ref Mreq/s':>12}"
           f"{'speedup':>9}{'GB/s':>8}{'same cmds':>10}")
    print(hdr)
    print("-" * len(hdr))
    traces = speed_traces(t, args.requests)
    fms = [FastDRAMModel(t, tr["mapping"], queue=args.queue) for tr in traces]
    fms[0].warmup()
    fast = _rounds(fms, traces, args.repeat)
    if not args.no_ref:
        rms = [ReferenceDRAMModel(t, tr["mapping"], queue=args.queue) for tr in traces]
        rms[0].warmup()
        ref = _rounds(rms, traces, args.repeat)
    for k, tr in enumerate(traces):
        fm, f = fms[k], fast[k]
        wf, rf, n = f["best"], f["res"], len(tr["addr"])
        row = dict(name=tr["name"], mapping=tr["mapping"], requests=n, fast_cpu_s=round(wf, 4),
                   fast_req_per_s=round(n / wf), fast_median_req_per_s=round(n / f["median"]),
                   fast_first_req_per_s=round(n / f["first"]), fast_wall_req_per_s=round(n / f["wall"]),
                   cycles=rf.cycles, GBps=round(rf.GBps, 2))
        if not args.no_ref:
            rm, r = rms[k], ref[k]
            wr_, wallr, rr = r["best"], r["wall"], r["res"]
            k = min(20_000, len(tr["addr"]))
            a = fm.run(tr["addr"][:k], tr["is_write"][:k], tr["cycle"][:k], record_commands=True)
            b = rm.run(tr["addr"][:k], tr["is_write"][:k], tr["cycle"][:k], record_commands=True)
            row.update(ref_cpu_s=round(wr_, 4), ref_req_per_s=round(len(tr["addr"]) / wr_),
                       ref_wall_req_per_s=round(len(tr["addr"]) / wallr),
                       speedup=round(wr_ / wf, 2), same_cycles=rr.cycles == rf.cycles,
                       same_commands=a.commands == b.commands)
        rows.append(row)
        print(f"{row['name']:<24}{row['mapping']:<14}{row['fast_req_per_s'] / 1e6:>12.2f}"
              f"{row['fast_median_req_per_s'] / 1e6:>8.2f}{row['fast_first_req_per_s'] / 1e6:>8.2f}"
              f"{row.get('ref_req_per_s', float('nan')) / 1e6:>12.2f}{row.get('speedup', float('nan')):>9.2f}"
              f"{row['GBps']:>8.2f}{str(row.get('same_commands', '-')):>10}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = dict(standard=args.standard, ranks=args.ranks, queue=args.queue, repeat=args.repeat,
                host=platform.node(), cpus=os.cpu_count(), cpu=cpu, load_avg=os.getloadavg(),
                timing="req/s from the best-of-repeat CPU (process) time of run() incl. decode, excl. "
                       "compilation, repeats round-robin over the traces; *_median_* the median, *_first_* "
                       "a fresh model's first run (workspace allocated), *_wall_* the best wall time")
    (args.out / "dram_speed.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4))
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["fast_req_per_s"] / 1e6 for r in rows], 0.4, label="fast (event-driven)")
        if not args.no_ref:
            ax.bar(x + 0.2, [r["ref_req_per_s"] / 1e6 for r in rows], 0.4, label="reference (scan per step)")
        ax.axhline(5, color="k", ls="--", lw=1, label="5 M req/s target")
        ax.set_xticks(x, [r["name"] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("million requests / s")
        ax.set_title(f"fast DRAM model replay speed ({args.standard} x{args.ranks}, q{args.queue})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out / "dram_speed.png", dpi=120)
    except ImportError:
        pass
    print(f"saved {args.out / 'dram_speed.json'}")
    bad = [r["name"] for r in rows if r.get("same_commands") is False]
    if bad:
        print("COMMAND LISTS DIFFER:", ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
