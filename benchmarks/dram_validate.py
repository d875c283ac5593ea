"""Validate the fast DRAM timing model against DRAMsim3 / Ramulator 2.0 reference numbers.

Runs the 8 embedding-gather cases of ``shared/golden/dram_gather_ddr4.json`` (DDR4-3200 and
DDR4-2400, row_B 64/256/512/1024, 200,000 reads, 2 ranks) on traces built the same way
(:func:`pimcast.host.trace.random_gather_trace`), prints a table, and saves
``build/bench/dram_validate.json`` and ``build/bench/dram_validate.png``.

A case agrees when the model's cycles fall in [0.9 x min(ds3, ram), 1.1 x max(ds3, ram)].

Usage: ``python benchmarks/dram_validate.py [--requests N] [--seed S] [--golden PATH] [--out DIR]``
(with ``--requests`` < 200,000 the reference band is scaled by N / 200,000).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_GOLDEN = REPO.parent / "shared" / "golden" / "dram_gather_ddr4.json"


def run_cases(golden: list[dict], n_requests: int = 200_000, seed: int = 1, queue: int = 32) -> list[dict]:
    from pimcast.hdl.dram.timing import load_preset
    from pimcast.host.dram_model import FastDRAMModel
    from pimcast.host.trace import random_gather_trace

    rows = []
    scale = n_requests / 200_000
    for g in golden:
        t = load_preset(g["cfg"].lower(), ranks=2)
        tr = random_gather_trace(n_requests, g["row_B"], seed=seed)
        res = FastDRAMModel(t, "rochrababgco", queue=queue).run(tr.addr, tr.is_write, tr.cycle)
        ds3, ram = g["dramsim3_cycles"] * scale, g["ramulator20_cycles"] * scale
        lo, hi = 0.9 * min(ds3, ram), 1.1 * max(ds3, ram)
        rows.append(dict(cfg=g["cfg"], D=g["D"], row_B=g["row_B"], requests=n_requests,
                         dramsim3_cycles=round(ds3), ramulator_cycles=round(ram), model_cycles=res.cycles,
                         band_lo=round(lo), band_hi=round(hi), within=bool(lo <= res.cycles <= hi),
                         vs_ds3_pct=round(100 * (res.cycles / ds3 - 1), 1),
                         vs_ram_pct=round(100 * (res.cycles / ram - 1), 1),
                         model_GBps=round(res.GBps, 2), dramsim3_GBps=g["dramsim3_GBps"],
                         ramulator_GBps=g["ramulator20_GBps"], acts=res.acts, row_hits=res.row_hits,
                         refreshes=res.refreshes, requests_per_second=round(res.requests_per_second)))
    return rows


def print_table(rows: list[dict]) -> None:
    hdr = f"{'case':<18}{'dramsim3':>10}{'ramulator':>11}{'model':>10}{'band':>21}{'within':>8}{'vs ds3':>8}{'vs ram':>8}{'req/s':>10}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        case = f"{r['cfg']} B={r['row_B']}"
        band = f"[{r['band_lo']}, {r['band_hi']}]"
        print(f"{case:<18}{r['dramsim3_cycles']:>10}{r['ramulator_cycles']:>11}{r['model_cycles']:>10}"
              f"{band:>21}{'yes' if r['within'] else 'NO':>8}{r['vs_ds3_pct']:>7}%{r['vs_ram_pct']:>7}%"
              f"{r['requests_per_second']:>10}")
    n_ok = sum(r["within"] for r in rows)
    print(f"{n_ok}/{len(rows)} cases within the band; "
          f"mean speed {sum(r['requests_per_second'] for r in rows) / len(rows):.0f} requests/s")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{r['cfg']}\nrow {r['row_B']} B" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(11, 4.2))
    w = 0.27
    ax.bar(x - w, [r["dramsim3_GBps"] for r in rows], w, label="DRAMsim3")
    ax.bar(x, [r["ramulator_GBps"] for r in rows], w, label="Ramulator 2.0")
    ax.bar(x + w, [r["model_GBps"] for r in rows], w, label="pimcast fast model")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("GB/s (random embedding gather, 2 ranks)")
    ax.set_title("Fast DRAM timing model vs reference simulators")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--queue", type=int, default=32)
    ap.add_argument("--golden", type=Path, default=DEFAULT_GOLDEN)
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    args = ap.parse_args(argv)
    if not args.golden.is_file():
        print(f"reference numbers not found: {args.golden}", file=sys.stderr)
        return 2
    golden = json.loads(args.golden.read_text())
    rows = run_cases(golden, args.requests, args.seed, args.queue)
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dram_validate.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, args.out / "dram_validate.png")
    print(f"saved {args.out / 'dram_validate.json'} and {args.out / 'dram_validate.png'}")
    return 0 if all(r["within"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
