"""FMA throughput (vectors/s) on the Amaranth simulator, Icarus and Verilator, in one run.

    .venv/bin/python benchmarks/fma_throughput.py [--count N] [--seed S]

Amaranth: the component on Amaranth's Python simulator (valid/ready held high, results read each
cycle, no checking inside the loop). Icarus/Verilator: the cocotb testbench's ``test_random``
(10 % idle cycles and 10 % back-pressure, full Driver/Monitor loop; checking happens after the
loop and is not timed). Builds are excluded (Verilator builds once and is cached). The numbers
are the per-test wall time of the stimulus loop measured inside the simulator process.
Writes ``build/bench/fma_throughput.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=20000, help="random vectors per simulator")
    p.add_argument("--amaranth-count", type=int, default=None, help="vectors on Amaranth (default: --count)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()

    from pimcast.models.numerics import fma_f32_bits
    from pimcast.sim.runner import run_cocotb
    from pimcast.sim.tb_fma import random_vectors
    from pimcast.sim.verify_fp import run_amaranth

    rows = []
    n_am = a.amaranth_count or a.count
    vec = random_vectors(n_am, a.seed)
    t0 = time.perf_counter()
    got = run_amaranth(vec)
    secs = time.perf_counter() - t0
    bad = int((got != fma_f32_bits(vec[:, 0], vec[:, 1], vec[:, 2])).sum())
    rows.append({"simulator": "amaranth", "vectors": n_am, "seconds": round(secs, 3),
                 "vectors_per_s": round(n_am / secs, 1), "mismatches": bad, "mode": "valid/ready high"})
    for sim in ("icarus", "verilator"):
        t0 = time.perf_counter()
        res = run_cocotb("fma", simulator=sim, testcase="test_random",
                         env={"PIMCAST_FMA_COUNT": str(a.count), "PIMCAST_SEED": str(a.seed)})
        total = time.perf_counter() - t0
        st = next(s for s in res.stats if s["test"] == "random")
        rows.append({"simulator": sim, "vectors": st["vectors"], "seconds": st["seconds"],
                     "vectors_per_s": st["vectors_per_s"], "mismatches": res.failures,
                     "mode": "10% idle, 10% back-pressure", "process_seconds": round(total, 1)})
    print(f"{'simulator':<10} {'vectors':>8} {'seconds':>8} {'vectors/s':>10}  mode")
    for r in rows:
        print(f"{r['simulator']:<10} {r['vectors']:>8} {r['seconds']:>8.2f} {r['vectors_per_s']:>10.0f}  {r['mode']}"
              + ("" if not r["mismatches"] else f"  FAILURES={r['mismatches']}"))
    out = REPO / "build" / "bench" / "fma_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                               "seed": a.seed, "results": rows}, indent=1) + "\n")
    print(f"saved {out}")
    return 0 if all(r["mismatches"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
