"""Host-runtime measurements (issue 5 section 5): emulation overhead of a training step, tensor
casting vs PyTorch's backward, ``model`` backend lookups/s, peak RSS of a 4M x 128 table.

    .venv/bin/python benchmarks/host_overhead.py [--rows 100000 --dim 64 --batch 2048 --pooling 10]
                                                [--steps 7] [--threads 1] [--skip-big]
                                                [--baseline GIT_REF --rounds 2]

Times are medians over the steps, with torch and every PIM variant interleaved step by step (the
ratios survive a loaded machine).  ``--baseline REF`` measures the pimcast of a git ref too
(``git archive`` into a temp dir, alternating fresh processes) and prints before/after columns.
Prints a table and writes build/bench/host_overhead.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent


def _batch(rows, B, L, g):
    idx = torch.randint(0, rows, (B * L,), generator=g)
    offs = torch.arange(0, B * L, L)
    return idx, offs


def training_step_overhead(rows, dim, B, L, steps):
    """Median wall time per training step; every variant runs each step in turn (interleaved), so
    a load change on the machine hits all of them alike and their ratios stay meaningful."""
    from pimcast.host import PIMEmbeddingBag, PIMSGD, open_device
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

    variants = {"torch_s": torch_step}
    mods = {}
    for timing in ("off", "analytic", "fast"):
        dev = open_device("model", "rank-ddr4-3200", timing=timing)
        m = PIMEmbeddingBag.from_pretrained(W, freeze=False, mode="sum", pim_device=dev)
        popt = PIMSGD(m.parameters(), lr=0.01)
        mods[timing] = m

        def pim_step(i, m=m, popt=popt):
            idx, offs = batches[i]
            m(idx, offs).backward(dY)
            popt.step()
            popt.zero_grad()

        variants[f"pim_{timing}_s"] = pim_step
    times = {k: [] for k in variants}
    for k, f in variants.items():
        f(0)                                   # warm-up (numba kernels load from the cache)
    for i in range(1, steps + 1):
        for k, f in variants.items():
            t0 = time.perf_counter()
            f(i)
            times[k].append(time.perf_counter() - t0)
    res = {k: statistics.median(v) for k, v in times.items()}
    st = mods["fast"].pim_device.stats()
    res["modeled_step_ns"] = st["ns"] / (steps + 1)
    res["modeled_timing_sampled"] = st["timing_sampled"]
    # casting (in the forward) vs the backward critical path and PyTorch's own backward
    from pimcast.models.tensor_cast import cast
    m = mods["off"]
    tc_, tb, tt = [], [], []
    for i in range(steps):
        idx, offs = batches[i]
        t0 = time.perf_counter(); cast(idx, offs); tc_.append(time.perf_counter() - t0)
        y = m(idx, offs)
        t0 = time.perf_counter(); y.backward(dY); tb.append(time.perf_counter() - t0)
        m.weight.grad = None
        yr = ref(idx, offs)
        t0 = time.perf_counter(); yr.backward(dY); tt.append(time.perf_counter() - t0)
        ref.weight.grad = None
    res["cast_s"] = statistics.median(tc_)
    res["pim_backward_s"] = statistics.median(tb)
    res["torch_backward_s"] = statistics.median(tt)
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
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            d.gather_reduce("t", idx, offs)
            ts.append(time.perf_counter() - t0)
        out[f"timing_{timing}"] = idx.numel() / statistics.median(ts)
    return out


_BIG = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
from pimcast.host import PIMEmbeddingBag, PIMSGD, open_device
rows, dim, optname = 4_000_000, 128, sys.argv[1]
dev = open_device("model", "rank-ddr4-3200", timing="off")
m = PIMEmbeddingBag(rows, dim, mode="sum", pim_device=dev)
opt = PIMSGD(m.parameters(), lr=0.01) if optname == "PIMSGD" else torch.optim.SGD(m.parameters(), lr=0.01)
g = torch.Generator().manual_seed(0)
for s in range(3):
    idx = torch.randint(0, rows, (2048 * 10,), generator=g)
    m(idx, torch.arange(0, 2048 * 10, 10)).sum().backward()
    opt.step(); opt.zero_grad()
print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "table_bytes": rows * dim * 4}))
"""


def big_table_rss(env=None):
    """Peak RSS of a process training a 4M x 128 fp32 table for 3 steps (PIMSGD and stock SGD)."""
    base = subprocess.run([sys.executable, "-c", "import resource, torch, pimcast.host; "
                           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss*1024)"],
                          capture_output=True, text=True, cwd=REPO, check=True, env=env)
    d = {"baseline_rss_bytes": int(base.stdout.strip())}
    for optname in ("PIMSGD", "torch.optim.SGD"):
        r = subprocess.run([sys.executable, "-c", _BIG, optname], capture_output=True, text=True, cwd=REPO,
                           env=env)
        if r.returncode:
            d[optname] = {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"rc {r.returncode}"}
        else:
            d[optname] = json.loads(r.stdout.strip().splitlines()[-1])
    d["table_bytes"] = d["PIMSGD"].get("table_bytes", 4_000_000 * 128 * 4)
    d["peak_rss_bytes"] = d["PIMSGD"].get("peak_rss_bytes")
    return d


def _baseline_env(ref: str, tmp: Path) -> dict:
    """Environment that imports pimcast from ``git archive ref`` (same layout as the editable install)."""
    tree = tmp / "tree"
    tree.mkdir()
    arc = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=arc, check=True)
    shim = tmp / "shim"
    shim.mkdir()
    shutil.copytree(tree / "pimcast", shim / "pimcast")
    for sub in ("host", "models", "hdl", "sim"):
        (shim / "pimcast" / sub).symlink_to(tree / sub)
    (shim / "configs").symlink_to(tree / "configs")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(shim) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _sub_measure(a, env, out: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_measure-only", "--out", str(out),
           "--rows", str(a.rows), "--dim", str(a.dim), "--batch", str(a.batch), "--pooling", str(a.pooling),
           "--steps", str(a.steps), "--threads", str(a.threads)]
    subprocess.run(cmd, cwd=str(out.parent), env=env, check=True, capture_output=True)
    return json.loads(out.read_text())


def _median_dicts(ds: list) -> dict:
    out = {}
    for k, v in ds[0].items():
        if isinstance(v, dict):
            out[k] = _median_dicts([d[k] for d in ds])
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(d[k] for d in ds)
        else:
            out[k] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--pooling", type=int, default=10)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--baseline", metavar="GIT_REF", default=None,
                    help="also measure the pimcast of this git ref, alternating with the working tree "
                         "in fresh processes (--rounds each), and print before/after")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--_measure-only", dest="measure_only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(REPO / "build" / "bench" / "host_overhead.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.measure_only:
        res = {"step": training_step_overhead(a.rows, a.dim, a.batch, a.pooling, a.steps),
               "lookups_per_s": lookups_per_second(a.rows, a.dim, a.batch, a.pooling, a.steps)}
        Path(a.out).write_text(json.dumps(res))
        return
    res = {"workload": dict(rows=a.rows, dim=a.dim, batch=a.batch, pooling=a.pooling, steps=a.steps),
           "machine": dict(python=platform.python_version(), torch=torch.__version__, cpus=os.cpu_count(),
                           threads=torch.get_num_threads())}
    before = None
    if a.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            env = _baseline_env(a.baseline, tmp)
            runs = {"before": [], "after": []}
            for r in range(a.rounds):
                for tag in ("before", "after"):
                    runs[tag].append(_sub_measure(a, env if tag == "before" else None, tmp / f"{tag}{r}.json"))
            before = _median_dicts(runs["before"])
            after = _median_dicts(runs["after"])
        rev = subprocess.run(["git", "rev-parse", "--short", a.baseline], cwd=REPO, capture_output=True,
                             text=True).stdout.strip()
        res["baseline"] = dict(ref=a.baseline, commit=rev, **before)
        res["step"], res["lookups_per_s"] = after["step"], after["lookups_per_s"]
        res["rounds"] = a.rounds
    else:
        res["step"] = training_step_overhead(a.rows, a.dim, a.batch, a.pooling, a.steps)
        res["lookups_per_s"] = lookups_per_second(a.rows, a.dim, a.batch, a.pooling, a.steps)
    if not a.skip_big:
        res["big_table"] = big_table_rss()
    _print(res)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")


def _print(res):
    s, b = res["step"], res.get("baseline")
    bs = b["step"] if b else None
    rows = []

    def row(label, key, fmt, ratio=False, src="step"):
        now = res[src][key]
        cells = [fmt(now)]
        if ratio:
            cells.append(f"{now / res[src]['torch_s']:.2f}x")
        if b:
            old = b[src][key]
            cells = [fmt(old)] + ([f"{old / b[src]['torch_s']:.2f}x"] if ratio else []) + cells
        rows.append((label, cells))

    ms = lambda v: f"{v * 1e3:.2f} ms"
    row("torch.nn.EmbeddingBag + SGD step", "torch_s", ms, True)
    for t in ("off", "analytic", "fast"):
        row(f"PIMEmbeddingBag + PIMSGD, model, timing={t}", f"pim_{t}_s", ms, True)
    row("cast() (in forward)", "cast_s", ms)
    row("PIM backward (timing off)", "pim_backward_s", ms)
    row("torch backward", "torch_backward_s", ms)
    row("modeled device time per step (fast)", "modeled_step_ns", lambda v: f"{v / 1e3:.1f} us")
    for k in res["lookups_per_s"]:
        row(f"model backend gather_reduce, {k}", k, lambda v: f"{v / 1e6:.2f} M lookups/s", src="lookups_per_s")
    print(f"workload: {res['workload']}  threads: {res['machine']['threads']}")
    if b:
        print(f"before = {b['ref']} ({b['commit']}), after = working tree; medians of {res['rounds']} alternating "
              f"runs each; ratios are vs torch measured in the same process, interleaved step by step")
        head = ("", "before", "ratio", "after", "ratio")
    else:
        head = ("", "time", "ratio")
    w = max(len(r[0]) for r in rows)
    print(f"{head[0]:<{w}}  " + "  ".join(f"{h:>20}" for h in head[1:]))
    for label, cells in rows:
        if len(cells) < len(head) - 1:     # no ratio column for this row
            cells = [cells[0], ""] + ([cells[1], ""] if b else [])
        print(f"{label:<{w}}  " + "  ".join(f"{c:>20}" for c in cells))
    if "big_table" in res:
        bt = res["big_table"]
        for k in ("PIMSGD", "torch.optim.SGD"):
            v = bt[k]
            val = f"{v['peak_rss_bytes'] / 2**30:.2f} GiB" if "peak_rss_bytes" in v else v.get("error")
            print(f"4M x 128 table, 3 training steps with {k}: peak RSS {val} "
                  f"(table {bt['table_bytes'] / 2**30:.2f} GiB, interpreter + torch + pimcast "
                  f"{bt['baseline_rss_bytes'] / 2**30:.2f} GiB)")


if __name__ == "__main__":
    main()
