"""The fast DRAM model against the controller RTL, trace by trace.

Builds >= 20 varied small traces (uniform gathers of several row sizes, Zipf-skewed gathers,
sequential streams, bank-group-interleaved streams, 1/3 writes, all writes, read-modify-write of
rows, read-after-write hazards, row-hit and bank-conflict heavy patterns, paced and bursty
arrivals) and runs each through ``fast`` (:class:`pimcast.host.dram_model.FastDRAMModel`) and
``rtl`` (:func:`pimcast.host.dram_rtl.replay_rtl`: the generated bank controller under
Verilator, against the protocol-checking DRAM device model). Prints the per-trace % difference
in cycles and saves ``build/bench/dram_fast_vs_rtl.json``. Acceptance: |fast / rtl - 1| <= 5 %.

All traces of one run use one controller configuration (default DDR4-3200, 2 ranks,
``rochrababgco``, queue 32; ``--standard/--ranks/--queue`` pick another), so the RTL is built once
(Verilator takes many minutes on a shared 2-core host; ``--simulator icarus`` builds in seconds
and simulates ~300 cycles/s).

Usage: ``python benchmarks/dram_fast_vs_rtl.py [--requests N] [--only NAME,...] [--no-rtl]
[--simulator verilator|icarus] [--build-root DIR] [--standard S --ranks R --queue Q] [--out DIR]``
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
#: RTL controller parameters. ``read_buffer`` never binds on DDR4 (< 8 reads in flight); 12 gives
#: this benchmark its own Verilator build folder (the build is keyed by the parameters). Same for
#: HBM2 (an entry is taken by a request's last RD).
RTL_KW = dict(queue=32, read_buffer=12)


def _gather(rng, n, row_b, n_rows=1 << 22, zipf=None):
    per = row_b // 64
    k = -(-n // per)
    if zipf:
        rows = (np.minimum(rng.zipf(zipf, k), n_rows) - 1) * 7919 % n_rows  # skewed, scattered
    else:
        rows = rng.integers(0, n_rows, k)
    return (rows[:, None] * row_b + np.arange(per)[None, :] * 64).reshape(-1)[:n]


def trace_suite(t, n: int = 2000, seed: int = 11, mapping: str = "rochrababgco") -> list[dict]:
    """The varied trace set: ``[{name, addr, is_write, cycle, merge}]`` (64 B-aligned addresses)."""
    from pimcast.hdl.dram.timing import AddressMapping

    m = AddressMapping(mapping, t)
    rng = np.random.default_rng(seed)
    z = np.zeros(n, bool)
    c0 = np.zeros(n, np.int64)
    out = []

    def add(name, addr, wr=None, cyc=None, merge=False):
        addr = np.asarray(addr, np.int64) % m.capacity  # fit smaller configurations
        k = len(addr)
        out.append(dict(name=name, addr=addr.astype(np.uint64), is_write=(np.zeros(k, bool) if wr is None else np.asarray(wr, bool)),
                        cycle=np.zeros(k, np.int64) if cyc is None else np.asarray(cyc, np.int64), merge=merge))

    for rb in (64, 256, 1024, 4096):
        add(f"uniform-{rb}B", _gather(rng, n, rb))
    add("zipf1.1-64B", _gather(rng, n, 64, zipf=1.1))
    add("zipf1.5-256B", _gather(rng, n, 256, zipf=1.5))
    base = int(rng.integers(0, 1 << 20)) * 8192
    add("stream-seq", base + np.arange(n) * 64)
    # bank-group bits below the column bits: the same order as a 'ro..cobg' mapping would give
    idx = np.arange(n)
    add("stream-bg-interleaved", m.encode(bg=idx % t.bankgroups, ba=(idx // t.bankgroups) % t.banks_per_group,
                                          co=idx // t.banks_per_rank % t.requests_per_row, ro=5 % t.rows))
    add("stream-rank-interleaved", m.encode(ra=idx % t.ranks, bg=(idx // t.ranks) % t.bankgroups,
                                            co=idx // (t.ranks * t.bankgroups) % t.requests_per_row, ro=9 % t.rows))
    add("writes-1/3-64B", _gather(rng, n, 64), rng.random(n) < 1 / 3)
    add("writes-1/3-256B", _gather(rng, n, 256), rng.random(n) < 1 / 3)
    add("writes-all-256B", _gather(rng, n, 256), ~z)
    for rb in (256, 1024):
        per = rb // 64
        g = _gather(rng, n // 2 // per * per, rb).reshape(-1, per)
        addr = np.concatenate([g, g], axis=1).reshape(-1)
        wr = np.tile(np.repeat([False, True], rb // 64), len(g))
        add(f"rmw-rows-{rb}B", addr, wr)
    hot = _gather(rng, 64, 64)
    a = hot[rng.integers(0, 64, n)]
    add("raw-hazards-hot64", a, rng.random(n) < 0.5)
    add("hot-set-reads-merge", a, merge=True)
    # row-hit heavy: 8 open rows, requests shuffled among them
    rows = rng.integers(0, t.rows, 8)
    add("row-hit-heavy", m.encode(bg=np.arange(n) % t.bankgroups, ba=(np.arange(n) // t.bankgroups) % 2,
                                  ro=rows[np.arange(n) % 8],
                                  co=rng.integers(0, t.requests_per_row, n)))
    nc = max(1, n // 4)  # every request a row miss in one bank: ~75 cycles each
    add("bank-conflict", m.encode(bg=1 % t.bankgroups, ba=1, ro=rng.integers(0, t.rows, nc),
                                  co=rng.integers(0, t.requests_per_row, nc)))
    add("paced-8cyc-uniform", _gather(rng, n, 64), None, np.arange(n) * 8)
    add("bursty-arrivals-256B", _gather(rng, n, 256), None, (np.arange(n) // 200) * 1500)
    add("zipf1.2-64B-1/4-writes", _gather(rng, n, 64, zipf=1.2), rng.random(n) < 0.25)
    return out


def run_suite(n: int, only: set[str] | None, rtl: bool, seed: int = 11, simulator: str = "verilator",
              preset: str = "ddr4-3200", ranks: int = 2, queue: int = 32) -> list[dict]:
    from pimcast.hdl.dram.timing import load_preset
    from pimcast.host.dram_model import FastDRAMModel

    t = load_preset(preset, ranks=ranks)
    kw = dict(RTL_KW, queue=queue)
    rows = []
    for tr in trace_suite(t, n, seed):
        if only and tr["name"] not in only:
            continue
        fm = FastDRAMModel(t, "rochrababgco", queue=queue, merge_duplicates=tr["merge"])
        fm.warmup()
        f = fm.run(tr["addr"], tr["is_write"], tr["cycle"])
        row = dict(name=tr["name"], config=f"{t.name} x{t.ranks} q{queue}", requests=len(tr["addr"]), writes=int(tr["is_write"].sum()),
                   fast_cycles=f.cycles, fast_GBps=round(f.GBps, 2), fast_acts=f.acts,
                   fast_req_per_s=round(f.requests_per_second))
        if rtl and not tr["merge"]:  # the RTL does not merge duplicate reads
            from pimcast.host.dram_rtl import replay_rtl

            t0 = time.perf_counter()
            try:
                s = replay_rtl(t, tr["addr"], tr["is_write"], tr["cycle"], mapping="rochrababgco",
                               simulator=simulator, **kw)
            except Exception as exc:  # report and go on
                row.update(rtl_error=str(exc)[:300])
            else:
                row.update(rtl_cycles=int(s["cycles"]), rtl_GBps=round(s["GBps"], 2), rtl_acts=int(s["acts"]),
                           rtl_wall_s=round(time.perf_counter() - t0, 1), rtl_simulator=simulator,
                           rtl_cycles_per_s=round(s.get("cycles_per_s", 0.0)),
                           rtl_req_per_s=round(s.get("requests_per_second", 0.0)),
                           diff_pct=round(100 * (f.cycles / s["cycles"] - 1), 2))
        rows.append(row)
        print(_fmt(row), flush=True)
    return rows


def _fmt(r: dict) -> str:
    d = r.get("diff_pct")
    rt = r.get("rtl_cycles", r.get("rtl_error", "-"))
    return (f"{r['name']:<26}{r['requests']:>7}{r['writes']:>7}{r['fast_cycles']:>10}{str(rt)[:12]:>13}"
            f"{(f'{d:+.2f}%' if d is not None else '-'):>9}{r['fast_GBps']:>8}{r.get('rtl_GBps', '-'):>8}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--only", default="", help="comma-separated trace names")
    ap.add_argument("--standard", default="ddr4-3200", help="DRAM preset (ddr4-3200, ddr4-2400, hbm2)")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--queue", type=int, default=32)
    ap.add_argument("--no-rtl", action="store_true", help="fast model only")
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"),
                    help="HDL simulator for the RTL (Icarus builds in seconds, Verilator in minutes)")
    ap.add_argument("--build-root", type=Path, default=None,
                    help="build the RTL under this folder instead of build/sim (isolation from other runs)")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    args = ap.parse_args(argv)
    only = set(filter(None, args.only.split(","))) or None
    print(f"{'trace':<26}{'reqs':>7}{'writes':>7}{'fast':>10}{'rtl':>13}{'diff':>9}{'fGB/s':>8}{'rGB/s':>8}")
    if args.build_root is not None:
        import pimcast.sim.runner as runner

        runner.BUILD_ROOT = args.build_root.resolve()
    rows = run_suite(args.requests, only, not args.no_rtl, args.seed, args.simulator, args.standard, args.ranks,
                     args.queue)
    diffs = [abs(r["diff_pct"]) for r in rows if "diff_pct" in r]
    if diffs:
        ok = sum(d <= 5.0 for d in diffs)
        print(f"{ok}/{len(diffs)} traces within ±5 % (max |diff| {max(diffs):.2f} %, mean {np.mean(diffs):.2f} %)")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "dram_fast_vs_rtl.json" if (args.standard, args.ranks, args.queue) == ("ddr4-3200", 2, 32) else \
        f"dram_fast_vs_rtl_{args.standard}_r{args.ranks}_q{args.queue}.json"
    (args.out / name).write_text(json.dumps(rows, indent=1) + "\n")
    print(f"saved {args.out / name}")
    return 0 if diffs and all(d <= 5.0 for d in diffs) else (0 if args.no_rtl else 1)


if __name__ == "__main__":
    sys.exit(main())
