"""Host-runtime measurements (issue 5 section 5): emulation overhead of a training step, tensor
casting vs PyTorch's backward, ``model`` backend lookups/s, peak RSS of a 4M x 128 table.

    .venv/bin/python benchmarks/host_overhead.py [--rows 100000 --dim 64 --batch 2048 --pooling 10]
                                                [--steps 5] [--skip-big]

Prints a table and writes build/bench/host_overhead.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent


def _batch(rows, B, L, g):
    idx = torch.randint(0, rows, (B * L,), generator=g)
    offs = torch.arange(0, B * L, L)
    return idx, offs


def _time_steps(step, n):
    step(0)  # warm-up
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        step(i)
    return (time.perf_counter() - t0) / n


def training_step_overhead(rows, dim, B, L, steps):
    from pimcast.host import PIMEmbeddingBag, PIMSGD
    W = torch.randn(rows, dim)
    batches = [_batch(rows, B, L, torch.Generator().manual_seed(s)) for s in range(steps + 1)]
    dY = torch.randn(B, dim)
    ref = nn.EmbeddingBag.from_pretrained(W.clone(), freeze=False, mode="sum", sparse=True)
    opt = torch.optim.SGD(ref.parameters(), lr=0.01)

    def torch_step(i):
        idx, offs = batches[i]
        ref(idx, offs).backward(dY)
        opt.step()
        opt.zero_grad()

    res = {"torch_s": _time_steps(torch_step, steps)}
    for timing in ("off", "analytic", "fast"):
        m = PIMEmbeddingBag.from_pretrained(W, freeze=False, mode="sum", config="rank-ddr4-3200",
                                            **({} if timing == "fast" else {}))
        m.pim_device.cfg = m.pim_device.cfg.with_(timing=timing)
        from pimcast.host.backends import get_backend
        m.pim_device.backend = get_backend("model")(m.pim_device.cfg)
        m.pim_device.reset_stats()
        popt = PIMSGD(m.parameters(), lr=0.01)

        def pim_step(i):
            idx, offs = batches[i]
            m(idx, offs).backward(dY)
            popt.step()
            popt.zero_grad()

        res[f"pim_{timing}_s"] = _time_steps(pim_step, steps)
        if timing == "fast":
            st = m.pim_device.stats()
            res["modeled_step_ns"] = st["ns"] / (steps + 1)
            res["modeled_timing_sampled"] = st["timing_sampled"]
        del m
    # casting (in the forward) vs the backward critical path and PyTorch's own backward
    from pimcast.models.tensor_cast import cast
    idx, offs = batches[0]
    t0 = time.perf_counter()
    for _ in range(steps):
        cast(idx, offs)
    res["cast_s"] = (time.perf_counter() - t0) / steps
    m = PIMEmbeddingBag.from_pretrained(W, freeze=False, mode="sum", config="rank-ddr4-3200")
    m.pim_device.cfg = m.pim_device.cfg.with_(timing="off")
    from pimcast.host.backends import get_backend
    m.pim_device.backend = get_backend("model")(m.pim_device.cfg)
    m.pim_device._timing = None
    tb = tt = 0.0
    for i in range(steps):
        idx, offs = batches[i]
        y = m(idx, offs)
        t0 = time.perf_counter(); y.backward(dY); tb += time.perf_counter() - t0
        m.weight.grad = None
        yr = ref(idx, offs)
        t0 = time.perf_counter(); yr.backward(dY); tt += time.perf_counter() - t0
        ref.weight.grad = None
    res["pim_backward_s"] = tb / steps
    res["torch_backward_s"] = tt / steps
    return res


def lookups_per_second(rows, dim, B, L, reps):
    from pimcast.host import open_device
    out = {}
    g = torch.Generator().manual_seed(0)
    idx, offs = _batch(rows, B, L, g)
    for timing in ("off", "analytic", "fast"):
        d = open_device("model", "rank-ddr4-3200", timing=timing)
        d.alloc("t", rows, dim)
        d.gather_reduce("t", idx, offs)
        t0 = time.perf_counter()
        for _ in range(reps):
            d.gather_reduce("t", idx, offs)
        dt = (time.perf_counter() - t0) / reps
        out[f"timing_{timing}"] = idx.numel() / dt
    return out


_BIG = r"""
import resource, time, torch, json
from pimcast.host import PIMEmbeddingBag, PIMSGD
rows, dim = 4_000_000, 128
m = PIMEmbeddingBag(rows, dim, mode="sum", config="rank-ddr4-3200", timing_off=None) if False else None
from pimcast.host import open_device
dev = open_device("model", "rank-ddr4-3200", timing="off")
m = PIMEmbeddingBag(rows, dim, mode="sum", pim_device=dev)
opt = PIMSGD(m.parameters(), lr=0.01)
g = torch.Generator().manual_seed(0)
for s in range(3):
    idx = torch.randint(0, rows, (2048 * 10,), generator=g)
    m(idx, torch.arange(0, 2048 * 10, 10)).sum().backward()
    opt.step(); opt.zero_grad()
print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "table_bytes": rows * dim * 4}))
"""


def big_table_rss():
    base = subprocess.run([sys.executable, "-c", "import resource, torch, pimcast.host; "
                           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss*1024)"],
                          capture_output=True, text=True, cwd=REPO, check=True)
    r = subprocess.run([sys.executable, "-c", _BIG], capture_output=True, text=True, cwd=REPO, check=True)
    d = json.loads(r.stdout.strip().splitlines()[-1])
    d["baseline_rss_bytes"] = int(base.stdout.strip())
    return d


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--pooling", type=int, default=10)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--out", default=str(REPO / "build" / "bench" / "host_overhead.json"))
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    res = {"workload": dict(rows=a.rows, dim=a.dim, batch=a.batch, pooling=a.pooling, steps=a.steps),
           "machine": dict(python=platform.python_version(), torch=torch.__version__, cpus=os.cpu_count(),
                           threads=torch.get_num_threads())}
    res["step"] = training_step_overhead(a.rows, a.dim, a.batch, a.pooling, a.steps)
    res["lookups_per_s"] = lookups_per_second(a.rows, a.dim, a.batch, a.pooling, a.steps)
    if not a.skip_big:
        res["big_table"] = big_table_rss()
    s = res["step"]
    rows = [("torch.nn.EmbeddingBag + SGD step", f"{s['torch_s'] * 1e3:.2f} ms", "1.00x")]
    for t in ("off", "analytic", "fast"):
        rows.append((f"PIMEmbeddingBag + PIMSGD, model, timing={t}", f"{s[f'pim_{t}_s'] * 1e3:.2f} ms",
                     f"{s[f'pim_{t}_s'] / s['torch_s']:.2f}x"))
    rows.append(("cast() (in forward)", f"{s['cast_s'] * 1e3:.2f} ms", ""))
    rows.append(("PIM backward (timing off)", f"{s['pim_backward_s'] * 1e3:.2f} ms", ""))
    rows.append(("torch backward", f"{s['torch_backward_s'] * 1e3:.2f} ms", ""))
    rows.append(("modeled device time per step (fast)", f"{s['modeled_step_ns'] / 1e3:.1f} us",
                 "sampled" if s["modeled_timing_sampled"] else ""))
    for k, v in res["lookups_per_s"].items():
        rows.append((f"model backend gather_reduce, {k}", f"{v / 1e6:.2f} M lookups/s", ""))
    if "big_table" in res:
        b = res["big_table"]
        rows.append(("4M x 128 table: peak RSS (3 training steps)", f"{b['peak_rss_bytes'] / 2**30:.2f} GiB",
                     f"table {b['table_bytes'] / 2**30:.2f} GiB, baseline {b['baseline_rss_bytes'] / 2**30:.2f} GiB"))
    w = max(len(r[0]) for r in rows)
    print(f"workload: {res['workload']}")
    for r in rows:
        print(f"{r[0]:<{w}}  {r[1]:>22}  {r[2]}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
