"""Validate the fast DRAM timing model against DRAMsim3 / Ramulator 2.0 reference numbers.

Runs the 8 embedding-gather cases of ``shared/golden/dram_gather_ddr4.json`` (DDR4-3200 and
DDR4-2400, row_B 64/256/512/1024, 200,000 reads, 2 ranks) on traces built the same way
(:func:`pimcast.host.trace.random_gather_trace`), then directed traces (sequential streams under
``rochrababgco`` and with bank-group bits below the column bits, whole-row gathers (row-hit
heavy), Zipf-skewed gathers with and without duplicate merging, 1/3 writes, read-modify-write of
rows); prints a table, and saves ``build/bench/dram_validate.json`` and ``dram_validate.png``
(GB/s per trace: fast, rtl when run, DRAMsim3, Ramulator).

A gather case agrees when the model's cycles fall in [0.9 x min(ds3, ram), 1.1 x max(ds3, ram)].
For the streams the reference behaviour is a GB/s range measured in both simulators (FACTS.md
§4): 14-17 GB/s with ``rochrababgco``, about 24.2 GB/s (>= 90 % of 24.45) with bank-group bits
lowest. The other directed traces have no reference numbers (reported only).

``--rtl N`` also replays the first N requests of every trace through the controller RTL
(:mod:`pimcast.host.dram_rtl`; slow: one Verilator build per configuration) and reports the
fast model on the same N requests next to it.

Usage: ``python benchmarks/dram_validate.py [--requests N] [--seed S] [--rtl N [--simulator icarus]
[--build-root DIR]] [--golden PATH] [--out DIR]``
(with ``--requests`` < 200,000 the reference band is scaled by N / 200,000).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_GOLDEN = REPO.parent / "shared" / "golden" / "dram_gather_ddr4.json"


def _model(t, mapping, queue, merge=False):
    from pimcast.host.dram_model import FastDRAMModel

    m = FastDRAMModel(t, mapping, queue=queue, merge_duplicates=merge)
    m.warmup()  # compile / load the numba kernel outside the timed runs
    return m


RTL_SIM = {"simulator": "verilator"}


def _rtl(row: dict, t, mapping, queue, addr, wr, cyc, n_rtl: int) -> None:
    """Replay the first ``n_rtl`` requests through the RTL and the fast model; add the figures to ``row``."""
    if not n_rtl:
        return
    from pimcast.host.dram_rtl import replay_rtl

    a, w, c = addr[:n_rtl], wr[:n_rtl], cyc[:n_rtl]
    try:
        s = replay_rtl(t, a, w, c, mapping=mapping, queue=queue, read_buffer=12, **RTL_SIM)
    except Exception as exc:  # report, go on
        row["rtl_error"] = str(exc)[:200]
        return
    f = _model(t, mapping, queue).run(a, w, c)
    row.update(rtl_requests=len(a), rtl_cycles=int(s["cycles"]), rtl_GBps=round(s["GBps"], 2),
               fast_cycles_same=f.cycles, fast_vs_rtl_pct=round(100 * (f.cycles / s["cycles"] - 1), 2),
               rtl_req_per_s=round(s.get("requests_per_second", 0.0)))


def run_cases(golden: list[dict], n_requests: int = 200_000, seed: int = 1, queue: int = 32,
              n_rtl: int = 0) -> list[dict]:
    from pimcast.hdl.dram.timing import load_preset
    from pimcast.host.trace import random_gather_trace

    rows = []
    scale = n_requests / 200_000
    for g in golden:
        t = load_preset(g["cfg"].lower(), ranks=2)
        tr = random_gather_trace(n_requests, g["row_B"], seed=seed)
        res = _model(t, "rochrababgco", queue).run(tr.addr, tr.is_write, tr.cycle)
        ds3, ram = g["dramsim3_cycles"] * scale, g["ramulator20_cycles"] * scale
        lo, hi = 0.9 * min(ds3, ram), 1.1 * max(ds3, ram)
        row = dict(case=f"{g['cfg']} gather {g['row_B']}B", kind="gather", cfg=g["cfg"], D=g["D"],
                   row_B=g["row_B"], requests=n_requests,
                   dramsim3_cycles=round(ds3), ramulator_cycles=round(ram), model_cycles=res.cycles,
                   band_lo=round(lo), band_hi=round(hi), within=bool(lo <= res.cycles <= hi),
                   vs_ds3_pct=round(100 * (res.cycles / ds3 - 1), 1),
                   vs_ram_pct=round(100 * (res.cycles / ram - 1), 1),
                   # where the model lands: 0 % = DRAMsim3's cycles, 100 % = Ramulator's
                   between_pct=round(100 * (res.cycles - ds3) / (ram - ds3), 1) if ram != ds3 else None,
                   model_GBps=round(res.GBps, 2), dramsim3_GBps=g["dramsim3_GBps"],
                   ramulator_GBps=g["ramulator20_GBps"], acts=res.acts, row_hits=res.row_hits,
                   refreshes=res.refreshes, merged=res.merged, requests_per_second=round(res.requests_per_second))
        _rtl(row, t, "rochrababgco", queue, tr.addr, tr.is_write, tr.cycle, n_rtl)
        rows.append(row)
    return rows


def directed_traces(n: int, seed: int = 1) -> list[dict]:
    """``[{case, cfg, mapping, addr, is_write, cycle, merge, gbps_range}]`` on DDR4-3200, 2 ranks."""
    import numpy as np

    from pimcast.host.trace import random_gather_trace

    rng = np.random.default_rng(seed)
    seq = np.arange(n, dtype=np.uint64) * 64
    z = np.zeros(n, bool)
    c0 = np.zeros(n, np.int64)
    out = []

    def add(case, addr, wr=z, mapping="rochrababgco", merge=False, gbps_range=None):
        out.append(dict(case=case, cfg="DDR4-3200", mapping=mapping, addr=np.asarray(addr, np.uint64),
                        is_write=np.asarray(wr, bool), cycle=c0[:len(addr)], merge=merge, gbps_range=gbps_range))

    add("stream 64B, rochrababgco", seq, gbps_range=(14.0, 17.0))
    add("stream 64B, bg bits lowest (rorabacobgch)", seq, mapping="rorabacobgch", gbps_range=(0.9 * 24.45, 25.6))
    add("row-hit heavy: 8 KB row gather", random_gather_trace(n, 8192, n_rows=1 << 16, seed=seed).addr)
    rows = (np.minimum(rng.zipf(1.1, n // 4 + 1), 1 << 20) - 1) * 7919 % (1 << 22)
    zipf = (rows[:, None] * 256 + np.arange(4)[None, :] * 64).reshape(-1)[:n]
    add("Zipf(1.1) gather 256B", zipf)
    add("Zipf(1.1) gather 256B, merged", zipf, merge=True)
    g = random_gather_trace(n, 256, seed=seed + 1)
    add("gather 256B, 1/3 writes", g.addr, rng.random(n) < 1 / 3)
    h = random_gather_trace(n // 2 // 4 * 4, 256, seed=seed + 2).addr.reshape(-1, 4)
    add("read-modify-write 256B rows", np.concatenate([h, h], axis=1).reshape(-1),
        np.tile(np.repeat([False, True], 4), len(h)))
    return out


def run_directed(n_requests: int = 200_000, seed: int = 1, queue: int = 32, n_rtl: int = 0) -> list[dict]:
    from pimcast.hdl.dram.timing import load_preset

    t = load_preset("ddr4-3200", ranks=2)
    rows = []
    for d in directed_traces(n_requests, seed):
        res = _model(t, d["mapping"], queue, d["merge"]).run(d["addr"], d["is_write"], d["cycle"])
        rng_ = d["gbps_range"]
        row = dict(case=d["case"], kind="directed", cfg=d["cfg"], mapping=d["mapping"], requests=len(d["addr"]),
                   writes=int(d["is_write"].sum()), model_cycles=res.cycles, model_GBps=round(res.GBps, 2),
                   ref_GBps_range=list(rng_) if rng_ else None,
                   within=bool(rng_[0] <= res.GBps <= rng_[1]) if rng_ else None,
                   acts=res.acts, row_hits=res.row_hits, refreshes=res.refreshes, merged=res.merged,
                   requests_per_second=round(res.requests_per_second))
        if not d["merge"]:
            _rtl(row, t, d["mapping"], queue, d["addr"], d["is_write"], d["cycle"], n_rtl)
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    hdr = (f"{'case':<44}{'dramsim3':>10}{'ramulator':>10}{'fast':>10}{'band / ref GB/s':>22}{'ok':>5}"
           f"{'vs ds3':>8}{'vs ram':>8}{'ds3->ram':>9}{'GB/s':>7}{'Mreq/s':>8}{'rtl vs fast':>12}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if r["kind"] == "gather":
            band = f"[{r['band_lo']}, {r['band_hi']}]"
            refs = f"{r['dramsim3_cycles']:>10}{r['ramulator_cycles']:>10}"
            bt = r.get("between_pct")
            vs = f"{r['vs_ds3_pct']:>7}%{r['vs_ram_pct']:>7}%" + (f"{bt:>8}%" if bt is not None else f"{'-':>9}")
        else:
            band = f"{r['ref_GBps_range'][0]:.1f}-{r['ref_GBps_range'][1]:.1f} GB/s" if r["ref_GBps_range"] else "-"
            refs = f"{'-':>10}{'-':>10}"
            vs = f"{'':>8}{'':>8}{'':>9}"
        ok = {True: "yes", False: "NO", None: "-"}[r["within"]]
        rtl = (f"{r['fast_vs_rtl_pct']:+.2f}%" if "fast_vs_rtl_pct" in r else ("err" if "rtl_error" in r else "-"))
        print(f"{r['case']:<44}{refs}{r['model_cycles']:>10}{band:>22}{ok:>5}{vs}{r['model_GBps']:>7}"
              f"{r['requests_per_second'] / 1e6:>8.2f}{rtl:>12}")
    g = [r for r in rows if r["within"] is not None]
    print(f"{sum(r['within'] for r in g)}/{len(g)} checks within their reference band; median speed "
          f"{sorted(r['requests_per_second'] for r in rows)[len(rows) // 2] / 1e6:.2f} M requests/s")
    for line in summary(rows):
        print(line)


def summary(rows: list[dict]) -> list[str]:
    """Plain-language findings: position between the references, merging, writes."""
    out = []
    gat = [r for r in rows if r["kind"] == "gather" and r.get("between_pct") is not None]
    if gat:
        pos = ", ".join(f"{r['cfg']} {r['row_B']}B {r['between_pct']:+.0f}%" for r in gat)
        out.append("gathers, position between the references (0 % = DRAMsim3, 100 % = Ramulator; "
                   f"< 0 or > 100: outside the two): {pos}")
    by = {r["case"]: r for r in rows if r["kind"] == "directed"}
    z, zm = by.get("Zipf(1.1) gather 256B"), by.get("Zipf(1.1) gather 256B, merged")
    if z and zm:
        out.append(f"duplicate merging (option, default off): Zipf(1.1) 256B gather {z['model_GBps']} GB/s without "
                   f"(Ramulator's behaviour) vs {zm['model_GBps']} GB/s with merging (DRAMsim3's; {zm['merged']} of "
                   f"{zm['requests']} reads merged into a pending read; above the 25.6 GB/s bus peak is possible)")
    w, rmw = by.get("gather 256B, 1/3 writes"), by.get("read-modify-write 256B rows")
    if w and rmw:
        out.append(f"write-heavy: 256B gather with 1/3 writes {w['model_GBps']} GB/s, read-modify-write of 256B rows "
                   f"{rmw['model_GBps']} GB/s; shared/golden has no reference cycles for these traces (FACTS.md "
                   f"§4c: DRAMsim3 and Ramulator disagree by 9-18 % on such traces), so they are reported only")
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [r["case"].replace(", ", "\n").replace(" gather ", "\ngather ") for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(11, 1.1 * len(rows)), 4.8))
    w = 0.2
    get = lambda k: [r.get(k) or 0 for r in rows]  # noqa: E731
    ax.bar(x - 1.5 * w, get("model_GBps"), w, label="pimcast fast")
    ax.bar(x - 0.5 * w, get("rtl_GBps"), w, label="pimcast rtl (first N requests)")
    ax.bar(x + 0.5 * w, get("dramsim3_GBps"), w, label="DRAMsim3")
    ax.bar(x + 1.5 * w, get("ramulator_GBps"), w, label="Ramulator 2.0")
    for i, r in enumerate(rows):
        if r.get("ref_GBps_range"):
            lo, hi = r["ref_GBps_range"]
            ax.plot([i - 2 * w, i + 2 * w], [lo, lo], "k:", lw=1)
            ax.plot([i - 2 * w, i + 2 * w], [min(hi, 26), min(hi, 26)], "k:", lw=1)
    ax.set_xticks(x, labels, fontsize=6.5)
    ax.set_ylabel("GB/s (2 ranks)")
    ax.set_title("DRAM timing: pimcast fast model (and RTL) vs DRAMsim3 / Ramulator 2.0 (dotted: reference range)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--queue", type=int, default=32)
    ap.add_argument("--rtl", type=int, default=0, metavar="N",
                    help="also replay the first N requests of each trace through the RTL (slow)")
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"),
                    help="HDL simulator for --rtl (Icarus builds in seconds)")
    ap.add_argument("--build-root", type=Path, default=None, help="RTL build folder (default build/sim)")
    ap.add_argument("--no-directed", action="store_true", help="only the 8 reference gather cases")
    ap.add_argument("--golden", type=Path, default=DEFAULT_GOLDEN)
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    args = ap.parse_args(argv)
    if not args.golden.is_file():
        print(f"reference numbers not found: {args.golden}", file=sys.stderr)
        return 2
    golden = json.loads(args.golden.read_text())
    RTL_SIM["simulator"] = args.simulator
    if args.build_root is not None:
        import pimcast.sim.runner as runner

        runner.BUILD_ROOT = args.build_root.resolve()
    rows = run_cases(golden, args.requests, args.seed, args.queue, args.rtl)
    if not args.no_directed:
        rows += run_directed(args.requests, args.seed, args.queue, args.rtl)
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dram_validate.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, args.out / "dram_validate.png")
    print(f"saved {args.out / 'dram_validate.json'} and {args.out / 'dram_validate.png'}")
    return 0 if all(r["within"] is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
