"""Area of the PIM core's in-flight window (issue 4 §5): what 128 reads in flight / queue 32 cost
against the core constructor's 32 / 16.

Two views, because a gate-level ``generic`` synthesis of the whole core maps its memories to
flip-flops (the 1,024-beat x 512-bit input buffer alone is 512 Kbit) and did not finish in 15 min
on the shared 2-core host:

1. **whole core, RTL level** (``--tool amaranth``: ``proc; flatten; opt``, word-level cells,
   flip-flop bits and memory bits) for both windows, from ``from_config`` of
   ``rank-ddr4-3200-1rank`` with ``rob_tags``/``queue`` overridden;
2. **gate level** (``--tool yowasp`` generic ``synth``: technology-independent cells and FFs;
   memories mapped to FFs) of the same cores with a 16-beat input buffer, so the difference is
   what the window changes (ROB data/info memories, valid bits, tags in the controller queue,
   the queue itself).

Prints a table and saves ``build/bench/window_area.json``.
Usage: ``python benchmarks/window_area.py [--skip-gate] [--out build/bench]``
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WINDOWS = ((32, 16), (128, 32))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-gate", action="store_true", help="only the RTL-level whole-core counts")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=str(REPO / "build" / "bench"))
    args = ap.parse_args(argv)
    from pimcast.hdl.core import from_config
    from pimcast.hdl.export import TOPS
    from pimcast.hdl.synth import synthesize
    from pimcast.host.pim_config import load_pim_config

    out = Path(args.out)
    work = out / "window_area"
    rows = []
    for level, tool, kw in (("rtl", "amaranth", {}), ("gate", "yowasp", {"buf_beats": 16})):
        if level == "gate" and args.skip_gate:
            continue
        for rob, q in WINDOWS:
            cfg = load_pim_config("rank-ddr4-3200-1rank", rob_tags=rob, queue=q)
            name = f"core_rob{rob}_q{q}" + ("_buf16" if kw else "")
            TOPS[name] = lambda c=None, cfg=cfg, kw=kw: from_config(cfg, **kw)
            t0 = time.perf_counter()
            r = synthesize(name, "generic", tool=tool, out=work, timeout=args.timeout)
            mem = (r.utilisation.get("memory_bits") or {}).get("used")
            rec = {"level": level, "rob_tags": rob, "queue": q, "input_buffer_beats": kw.get("buf_beats", 1024),
                   "cells": r.cells, "ffs": r.ffs, "memory_bits": mem, "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(rec)
            print(json.dumps(rec), flush=True)
    print(f"\n{'level':>5} {'rob':>4} {'queue':>5} {'buf':>5} {'cells':>9} {'FF bits':>9} {'mem bits':>9} {'s':>6}")
    for r in rows:
        print(f"{r['level']:>5} {r['rob_tags']:>4} {r['queue']:>5} {r['input_buffer_beats']:>5} {r['cells'] or 0:>9} "
              f"{r['ffs'] or 0:>9} {r['memory_bits'] if r['memory_bits'] is not None else '-':>9} {r['seconds']:>6}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "window_area.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"saved {out / 'window_area.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
