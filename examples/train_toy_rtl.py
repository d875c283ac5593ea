"""Train a toy EmbeddingBag model for a few steps on the ``rtl`` backend (the PIM-core Verilog).

The same model is trained twice from the same seed: once with its table on the ``rtl`` device
(forward GATHER_REDUCE, tensor-cast backward GATHER_REDUCE over dY, in-memory SCATTER_SGD — all
run by the generated RTL under Verilator through cocotb) and once on the ``golden`` device.  The
script prints the loss and the RTL's cycle count per step and checks that both tables are
bit-identical after every step.

    .venv/bin/python examples/train_toy_rtl.py [--steps 3] [--rows 64] [--dim 16] [--simulator verilator]
        [--config small-test | trim-ddr4-3200 ...]

``--config trim-ddr4-3200`` trains on the bank-group core (partial sums, one simulated core per rank;
the golden device uses the same config, so the tables still match bit for bit).

The first run builds the simulator (1-3 minutes; cached under build/sim/).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn


def build(backend: str, rows: int, dim: int, seed: int, config: str = "small-test"):
    from pimcast.host import PIMEmbeddingBag
    torch.manual_seed(seed)
    w0 = torch.randn(rows, dim) * 0.1
    emb = PIMEmbeddingBag(rows, dim, mode="sum", backend=backend, config=config, _weight=w0)
    head = nn.Linear(dim, 1)
    return emb, head


def batch(rows: int, bags: int, gen: torch.Generator):
    lengths = torch.randint(0, 6, (bags,), generator=gen)
    idx = torch.randint(0, rows, (int(lengths.sum()),), generator=gen)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)[:-1]])
    y = torch.randn(bags, 1, generator=gen)
    return idx, offsets, y


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--bags", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    ap.add_argument("--config", default="small-test", help="PIM config preset or YAML path (default small-test)")
    args = ap.parse_args(argv)
    os.environ["PIMCAST_RTL_SIMULATOR"] = args.simulator
    from pimcast.host.optim import PIMSGD

    models = {b: build(b, args.rows, args.dim, seed=0, config=args.config) for b in ("golden", "rtl")}
    opts = {b: (PIMSGD([e.weight], lr=args.lr), torch.optim.SGD(h.parameters(), lr=args.lr))
            for b, (e, h) in models.items()}
    gen = {b: torch.Generator().manual_seed(1) for b in models}
    print(f"{'step':>4} {'loss (rtl)':>12} {'loss (golden)':>14} {'rtl cycles':>11} {'wall s':>7}  tables")
    ok = True
    for step in range(args.steps):
        losses, cycles, wall = {}, 0, 0.0
        for b, (emb, head) in models.items():
            dev = emb.pim_device
            idx, offs, y = batch(args.rows, args.bags, gen[b])
            dev.reset_stats()
            t0 = time.perf_counter()
            for o in opts[b]:
                o.zero_grad()
            loss = ((head(emb(idx, offs)) - y) ** 2).mean()
            loss.backward()
            for o in opts[b]:
                o.step()
            if b == "rtl":
                cycles = dev.stats()["cycles"]
                wall = time.perf_counter() - t0
            losses[b] = loss.item()
        a = models["rtl"][0].pim_device.read(models["rtl"][0].table)
        g = models["golden"][0].pim_device.read(models["golden"][0].table)
        same = torch.equal(a.view(torch.int32), g.view(torch.int32))
        ok &= same and losses["rtl"] == losses["golden"]
        print(f"{step:>4} {losses['rtl']:>12.6f} {losses['golden']:>14.6f} {cycles:>11} {wall:>7.1f}  "
              f"{'bit-identical' if same else 'DIFFER'}")
    print("rtl == golden after every step" if ok else "MISMATCH between rtl and golden")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
