"""RTL replay speed: requests/s and simulated cycles/s of ``pimcast dram replay --model rtl``.

Replays a few traces (64 B and 256 B random gathers, a sequential stream, 1/3 writes) through the
generated bank controller (:func:`pimcast.host.dram_rtl.replay_rtl`: cocotb + the protocol-checking
DRAM device model) and through the fast model, and reports per trace: RTL requests/s (wall time of
the simulation run, excluding the one-time build), simulated cycles/s, fast-model requests/s, and
the cycle difference. The build time of the first replay (Verilator compiles the controller once
per parameter set) is reported separately. Prints a table; saves ``build/bench/dram_rtl_speed.json``.

Usage: ``python benchmarks/dram_rtl_speed.py [--requests N] [--simulator verilator|icarus]
[--standard ddr4-3200|ddr4-2400|hbm2] [--ranks R] [--queue Q] [--out DIR]``
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    from pimcast.hdl.dram.timing import load_preset
    from pimcast.host.dram_model import FastDRAMModel
    from pimcast.host.dram_rtl import replay_rtl
    from pimcast.host.trace import random_gather_trace

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    ap.add_argument("--standard", default="ddr4-3200")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--queue", type=int, default=16)
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    args = ap.parse_args(argv)
    t = load_preset(args.standard, ranks=args.ranks)
    n = args.requests
    rng = np.random.default_rng(1)
    # tables of the golden trace's 4 Mi rows, or as many as the channel holds (HBM2: 256 MiB)
    def rows(row_bytes):
        return min(4 * 2**20, t.capacity_bytes // row_bytes)

    traces = [("gather-64B", random_gather_trace(n, 64, rows(64), seed=1).addr, np.zeros(n, bool)),
              ("gather-256B", random_gather_trace(n, 256, rows(256), seed=2).addr, np.zeros(n, bool)),
              ("stream-seq", np.arange(n, dtype=np.uint64) * 64, np.zeros(n, bool)),
              ("gather-64B-1/3-writes", random_gather_trace(n, 64, rows(64), seed=3).addr, rng.random(n) < 1 / 3)]
    fm = FastDRAMModel(t, queue=args.queue)
    fm.warmup()
    rows = []
    hdr = (f"{'trace':<24}{'reqs':>7}{'rtl cycles':>11}{'fast cycles':>12}{'diff':>8}{'rtl req/s':>11}"
           f"{'rtl cyc/s':>11}{'fast Mreq/s':>12}{'wall s':>8}")
    print(f"{args.simulator}, {t.name} x{t.ranks}, queue {args.queue}")
    print(hdr)
    print("-" * len(hdr))
    for k, (name, addr, wr) in enumerate(traces):
        t0 = time.perf_counter()
        s = replay_rtl(t, addr, wr, queue=args.queue, simulator=args.simulator)
        wall = time.perf_counter() - t0
        f = fm.run(addr, wr)
        row = dict(name=name, requests=n, simulator=args.simulator, rtl_cycles=int(s["cycles"]),
                   fast_cycles=f.cycles, diff_pct=round(100 * (f.cycles / s["cycles"] - 1), 2),
                   rtl_req_per_s=round(s["requests_per_second"]), rtl_cycles_per_s=round(s.get("cycles_per_s", 0)),
                   fast_req_per_s=round(f.requests_per_second), wall_s=round(wall, 1), includes_build=k == 0)
        rows.append(row)
        print(f"{name:<24}{n:>7}{row['rtl_cycles']:>11}{row['fast_cycles']:>12}{row['diff_pct']:>7.2f}%"
              f"{row['rtl_req_per_s']:>11}{row['rtl_cycles_per_s']:>11}{row['fast_req_per_s'] / 1e6:>12.2f}"
              f"{row['wall_s']:>8}", flush=True)
    print("(wall s of the first trace includes the build when the controller was not built before)")
    args.out.mkdir(parents=True, exist_ok=True)
    p = args.out / f"dram_rtl_speed_{args.simulator}{'' if args.standard == 'ddr4-3200' else '_' + args.standard}.json"
    p.write_text(json.dumps(dict(standard=t.name, ranks=t.ranks, queue=args.queue, rows=rows), indent=1) + "\n")
    print(f"saved {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
