"""cocotb measurement bench of the PIM core: RTL cycles of GATHER_REDUCE workloads.

Run by :mod:`benchmarks.core_speedup` (never by pytest): ``PIMCAST_CORE_WORKLOADS`` names an
``.npz`` file with, for each workload ``k``, arrays ``idx_k`` (row ids, core-local table),
``off_k`` (bag start offsets) and a JSON header ``meta`` (``[{"name", "row_bytes", "rows",
"base"}, ...]``).  The test :func:`measure` runs every workload once on the core (no idle cycles,
no back-pressure: the host keeps every stream full, as a fast host link would) and writes one
JSON line per workload to ``PIMCAST_STATS``: RTL cycles (first instruction offered to the last
``STATUS`` beat, about 4 cycles of ``STATUS`` per instruction included), DRAM commands from the
device model, lookups, and the simulator's wall time.

The table contents are the DRAM model's initial pattern (no WRITE needed: timing does not depend
on the values; the FMA lanes have a fixed latency), so tables can be large and sparse.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

try:
    import cocotb
except ImportError:  # pragma: no cover - host-only use
    cocotb = None

__all__ = ["measure"]


if cocotb is not None:

    @cocotb.test()
    async def measure(dut):
        """RTL cycles per GATHER_REDUCE workload (see the module docstring)."""
        import torch

        from pimcast.hdl.dram.timing import Cmd
        from pimcast.sim.core_driver import CoreDriver
        from pimcast.sim.tb_core import core_params

        drv = CoreDriver(dut, core_params())
        await drv.start()
        data = np.load(os.environ["PIMCAST_CORE_WORKLOADS"])
        meta = json.loads(str(data["meta"]))
        counts = drv.dev.checker.counts
        out = []
        for k, w in enumerate(meta):
            idx = torch.from_numpy(data[f"idx_{k}"].astype(np.int64))
            off = torch.from_numpy(data[f"off_{k}"].astype(np.int64))
            c0 = drv.cycles
            n0 = {c: counts[c] for c in Cmd}
            t0 = time.perf_counter()
            res = await drv.gather_reduce(int(w["base"]), int(w["row_bytes"]), idx, off, rows=int(w["rows"]))
            secs = time.perf_counter() - t0
            assert tuple(res.shape) == (off.numel(), int(w["row_bytes"]) // 4)
            rec = {"test": "measure", "name": w["name"], "cycles": drv.cycles - c0, "lookups": int(idx.numel()),
                   "bags": int(off.numel()), "row_bytes": int(w["row_bytes"]), "seconds": secs,
                   "acts": counts[Cmd.ACT] - n0[Cmd.ACT], "reads": counts[Cmd.RD] + counts[Cmd.RDA]
                   - n0[Cmd.RD] - n0[Cmd.RDA], "refreshes": counts[Cmd.REF] - n0[Cmd.REF]}
            out.append(rec)
            with open(os.environ["PIMCAST_STATS"], "a") as f:
                f.write(json.dumps(rec) + "\n")
        assert not drv.dev.errors, drv.dev.errors
        assert len(out) == len(meta)
