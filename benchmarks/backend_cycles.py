"""Cycles of the same device operations on the ``rtl`` backend (the PIM-core RTL, one simulated
core per rank) and on the ``model`` backend (the timing model), with the results compared bit for bit.

For each embedding width D: a table of ``--rows`` rows on the device, ``--bags`` bags of
``--pooling`` lookups (uniform or Zipf indices), then four operations, each timed alone
(``reset_stats()`` before it): the forward GATHER_REDUCE, the weighted forward, the tensor-cast
backward (GATHER_REDUCE over dY with the casted index) and SCATTER_SGD of the coalesced rows.
Cycles are ``Device.stats()["cycles"]`` of each backend: on ``rtl`` the slowest rank core's own
cycle count (instruction issue to the last result beat), on ``model`` the timing model's total
(per-rank DRAM model, reduction, host link).  ``layout`` is how the rtl backend placed the table
(``columns``: each rank core holds its column slice; ``whole``: one core reads every beat, the
approximation used when a row's beats do not fall on the ranks alike, e.g. D 16 on two ranks).

Prints a table and saves ``<out>/backend_cycles.json`` and ``backend_cycles.png``.
Usage: ``python benchmarks/backend_cycles.py [--config rank-ddr4-3200] [--dims 16,32,64,128]
[--simulator verilator|icarus] [--zipf 1.1]``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OPS = ("forward", "weighted", "backward", "sgd")


def _workload(rows: int, bags: int, pooling: int, zipf: float, seed: int):
    import numpy as np
    import torch

    from pimcast.host.workloads import zipf_indices

    rng = np.random.default_rng(seed)
    n = bags * pooling
    idx = zipf_indices(rng, n, rows, zipf)          # alpha 0: uniform (as benchmarks/core_speedup.py)
    offs = np.arange(bags, dtype=np.int64) * pooling
    w = rng.standard_normal(n).astype(np.float32)
    return torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(offs), torch.from_numpy(w)


def _run_ops(dev, name: str, table, idx, offs, psw, dy, cast) -> dict:
    """The four operations on ``dev``; each one's result and cycles."""
    dev.alloc(name, *table.shape)
    dev.write(name, table)
    dev.alloc(name + "_dy", *dy.shape)
    dev.write(name + "_dy", dy)
    out, cyc = {}, {}

    def timed(op, fn):
        dev.reset_stats()
        out[op] = fn()
        cyc[op] = int(dev.stats()["cycles"])

    timed("forward", lambda: dev.gather_reduce(name, idx, offs))
    timed("weighted", lambda: dev.gather_reduce(name, idx, offs, per_sample_weights=psw))
    timed("backward", lambda: dev.gather_reduce(name + "_dy", cast.casted_index,
                                                cast.casted_offsets[:cast.unique.numel()]))

    timed("sgd", lambda: dev.scatter_sgd(name, cast.unique, out["backward"], 0.05))
    out["sgd"] = dev.gather_rows(name, cast.unique)          # the updated rows (not timed)
    dev.free(name)
    dev.free(name + "_dy")
    return {"out": out, "cycles": cyc}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="rank-ddr4-3200", help="PIM config preset (default rank-ddr4-3200)")
    ap.add_argument("--capacity", type=int, default=1 << 24, help="device bytes simulated (default 16 MiB)")
    ap.add_argument("--dims", default="16,32,64,128")
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--bags", type=int, default=16)
    ap.add_argument("--pooling", type=int, default=20)
    ap.add_argument("--zipf", type=float, default=0.0, help="Zipf exponent of the indices (0: uniform)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    ap.add_argument("--out", default=str(REPO / "build" / "bench"))
    args = ap.parse_args(argv)
    os.environ["PIMCAST_RTL_SIMULATOR"] = args.simulator

    import torch

    from pimcast.host import open_device
    from pimcast.models import tensor_cast as tc

    dims = [int(x) for x in args.dims.split(",")]
    rtl = open_device("rtl", args.config, capacity=args.capacity)
    model = open_device("model", args.config, capacity=args.capacity)
    idx, offs, psw = _workload(args.rows, args.bags, args.pooling, args.zipf, args.seed)
    cast = tc.cast(idx, offs)
    records = []
    t_all = time.perf_counter()
    try:
        for d in dims:
            g = torch.Generator().manual_seed(1000 + d)
            table = torch.randn(args.rows, d, generator=g)
            dy = torch.randn(args.bags, d, generator=g)
            t0 = time.perf_counter()
            r_rtl = _run_ops(rtl, f"t{d}", table, idx, offs, psw, dy, cast)
            wall = time.perf_counter() - t0
            r_mod = _run_ops(model, f"t{d}", table, idx, offs, psw, dy, cast)
            rtl.alloc("probe", args.rows, d)
            kind = rtl.backend.layout_kind(rtl.info("probe"))
            rtl.free("probe")
            for op in OPS:
                same = torch.equal(r_rtl["out"][op].contiguous().view(torch.int32),
                                   r_mod["out"][op].contiguous().view(torch.int32))
                rc, mc = r_rtl["cycles"][op], r_mod["cycles"][op]
                rec = {"dim": d, "op": op, "layout": kind, "rtl_cycles": rc, "model_cycles": mc,
                       "model_over_rtl": round(mc / rc, 3) if rc else None, "bit_exact": same}
                records.append(rec)
                print(json.dumps(rec), flush=True)
            print(f"D {d}: rtl wall {wall:.1f} s", flush=True)
    finally:
        rtl.backend.close()
    wall_all = time.perf_counter() - t_all

    print(f"\n{'D':>4} {'op':>9} {'layout':>8} {'rtl cyc':>9} {'model cyc':>10} {'model/rtl':>10} {'bits':>5}")
    for r in records:
        print(f"{r['dim']:>4} {r['op']:>9} {r['layout']:>8} {r['rtl_cycles']:>9} {r['model_cycles']:>10} "
              f"{r['model_over_rtl']:>10} {'same' if r['bit_exact'] else 'DIFF':>5}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {k: getattr(args, k) for k in ("config", "capacity", "rows", "bags", "pooling", "zipf", "seed", "simulator")}
    meta.update(cpu=platform.processor() or platform.machine(), wall_s=round(wall_all, 1),
                argv=sys.argv[1:] if argv is None else list(argv))
    (out / "backend_cycles.json").write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        width = 0.8 / len(OPS)
        for k, op in enumerate(OPS):
            xs = [i + k * width for i, _ in enumerate(dims)]
            ys = [next(r["model_over_rtl"] for r in records if r["dim"] == d and r["op"] == op) for d in dims]
            ax.bar(xs, ys, width, label=op)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(dims))], [f"D {d}" for d in dims])
        ax.set_ylabel("model cycles / rtl cycles")
        ax.set_title(f"{args.config}: model vs RTL backend ({args.bags} bags x {args.pooling})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "backend_cycles.png", dpi=120)
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        pass
    print(f"saved {out / 'backend_cycles.json'}")
    return 0 if all(r["bit_exact"] for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
