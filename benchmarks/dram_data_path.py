"""Bank-group data path vs the channel data bus: what one per-rank controller can read.

Bank-group-level PIM (TRiM style) keeps read data inside the bank group, so reads of different
bank groups (and ranks) no longer share a data bus: :meth:`DRAMTiming.with_data_path` drops the
read -> read ``tCCD_S`` and rank-switch gaps and keeps every other rule (``tCCD_L``, tRRD, tFAW,
refresh, writes).  This benchmark replays random embedding gathers (the reference trace of
``shared/golden/README.md``: rows of ``row_bytes`` read as consecutive 64 B requests) through the
fast controller model (cycle-identical to the RTL controller on both data paths, see
``tests/test_dram_cli.py``) for both data paths, several FR-FCFS queue depths and two mappings,
and reports GB/s, beats per cycle per rank, the ratio bank-group / channel, and the bound of a
rank on the bank-group data path with the column lowest (one ACT per row):
``min(4 * beats per row / tFAW, bank groups / tCCD_L, beats / (beats + 2) command slots)``.

Usage: ``python benchmarks/dram_data_path.py [--requests N] [--ranks R] [--out DIR]``; prints a
table and saves ``dram_data_path.json`` and ``dram_data_path.png`` under ``--out``
(default ``build/bench``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

ROW_BYTES = (64, 256, 1024)
QUEUES = (16, 32, 64, 128)
#: rochrababgco: DRAMsim3's default (the column lowest: a table row lives whole in one bank of one
#: bank group, one ACT per row); rorabacobgch: the bank group lowest (a row's 64 B beats stripe over
#: the bank groups: one ACT per beat for rows of up to 4 beats)
MAPPINGS = ("rochrababgco", "rorabacobgch")


def measure(n: int, ranks: int, seed: int = 3) -> list[dict]:
    from pimcast.hdl.dram.timing import AddressMapping, load_preset
    from pimcast.host.dram_model import FastDRAMModel
    from pimcast.host.trace import random_gather_trace

    t = load_preset("ddr4-3200", ranks=ranks)
    rows = []
    for rb in ROW_BYTES:
        tr = random_gather_trace(n, rb, seed=seed)
        per = rb // 64
        # beats per cycle per rank, one ACT per row: tFAW, each bank group's tCCD_L, the command bus
        # (ACT + PRE + one RD per beat)
        faw_bound = min(4 * per / t.tFAW, t.bankgroups / t.tCCD_L, per / (per + 2))
        for mp in MAPPINGS:
            for q in QUEUES:
                rec = {"row_bytes": rb, "mapping": mp, "queue": q, "ranks": ranks, "requests": n,
                       "bound_beats_per_cycle_per_rank": round(faw_bound, 4)}
                for dp in ("channel", "bankgroup"):
                    td = t.with_data_path(dp)
                    r = FastDRAMModel(td, AddressMapping(mp, td), queue=q).run(tr.addr, tr.is_write, tr.cycle)
                    rec[dp] = {"cycles": r.cycles, "GBps": round(r.GBps, 3), "acts": r.acts,
                               "beats_per_cycle_per_rank": round(n / r.cycles / ranks, 4)}
                rec["ratio"] = round(rec["channel"]["cycles"] / rec["bankgroup"]["cycles"], 3)
                rows.append(rec)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=60_000)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    args = ap.parse_args(argv)
    rows = measure(args.requests, args.ranks)
    hdr = (f"{'row B':>6} {'mapping':<13} {'queue':>5} {'channel GB/s':>12} {'bankgroup GB/s':>14} "
           f"{'ratio':>6} {'bg beats/cyc/rank':>17} {'bound':>6}")
    print(f"DDR4-3200, {args.ranks} rank(s), {args.requests} requests per trace (random gathers)")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['row_bytes']:>6} {r['mapping']:<13} {r['queue']:>5} {r['channel']['GBps']:>12.2f} "
              f"{r['bankgroup']['GBps']:>14.2f} {r['ratio']:>6.2f} "
              f"{r['bankgroup']['beats_per_cycle_per_rank']:>17.3f} {r['bound_beats_per_cycle_per_rank']:>6.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dram_data_path.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        print("matplotlib missing: no plot", file=sys.stderr)
        return 0
    fig, axes = plt.subplots(1, len(ROW_BYTES), figsize=(4 * len(ROW_BYTES), 3.4), sharey=True)
    for ax, rb in zip(axes, ROW_BYTES):
        for mp, ls in zip(MAPPINGS, ("-", "--")):
            sel = [r for r in rows if r["row_bytes"] == rb and r["mapping"] == mp]
            q = [r["queue"] for r in sel]
            ax.plot(q, [r["channel"]["GBps"] for r in sel], "o" + ls, color="tab:blue", label=f"channel, {mp}")
            ax.plot(q, [r["bankgroup"]["GBps"] for r in sel], "s" + ls, color="tab:red", label=f"bank group, {mp}")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{rb} B rows")
        ax.set_xlabel("controller queue")
    axes[0].set_ylabel("GB/s")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "dram_data_path.png", dpi=120)
    print(f"saved {args.out / 'dram_data_path.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
