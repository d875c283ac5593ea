"""The fast DRAM model against the controller RTL on the 20-trace suite of
``benchmarks/dram_fast_vs_rtl.py`` (uniform and Zipf gathers, streams, 1/3 and all writes,
read-modify-write rows, same-address hazards, row-hit and bank-conflict heavy, paced and bursty
arrivals): on every trace the RTL's command port (dumped by the protocol-checking DRAM model)
carries exactly the fast model's command list, and the cycle counts agree within +-5 % (they
differ by the 2-3 cycle end-of-trace convention). Icarus builds the small controller (DDR4-2400,
one rank, queue 8) in seconds; 300 requests per trace keep the whole suite to a few minutes.
The same holds for an HBM2 pseudo-channel (two column commands per request)."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from pimcast.sim.toolchain import have_icarus

pytestmark = [pytest.mark.rtl, pytest.mark.slow,
              pytest.mark.skipif(not have_icarus(), reason="Icarus missing")]

_spec = importlib.util.spec_from_file_location(
    "dram_fast_vs_rtl_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "dram_fast_vs_rtl.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)


def _rtl_commands(path: Path) -> list[tuple]:
    with path.open() as fh:
        rows = list(csv.reader(fh))[1:]
    return [(int(r[0]), r[1], int(r[2])) + ((int(r[3]), int(r[4]), int(r[5]), int(r[6]))
                                           if r[1] not in ("PREA", "REF") else (0, 0)) for r in rows]


@pytest.mark.parametrize("preset,read_buffer", [("ddr4-2400", 8), ("hbm2", 8)])
def test_fast_model_issues_the_rtl_commands_on_20_traces(tmp_path, preset, read_buffer):
    from pimcast.hdl.dram.timing import load_preset
    from pimcast.host.dram_model import FastDRAMModel
    from pimcast.host.dram_rtl import replay_rtl

    t = load_preset(preset, ranks=1)
    suite = [tr for tr in _bench.trace_suite(t, 300, seed=5) if not tr["merge"]]  # the RTL never merges
    assert len(suite) >= 20
    diffs = {}
    for tr in suite:
        dump = tmp_path / f"{tr['name'].replace('/', '_')}.csv"
        s = replay_rtl(t, tr["addr"], tr["is_write"], tr["cycle"], queue=8, read_buffer=read_buffer, simulator="icarus",
                       dump_commands=dump)
        f = FastDRAMModel(t, queue=8).run(tr["addr"], tr["is_write"], tr["cycle"], record_commands=True)
        got = [c[:3] + ((c[3], c[4], c[5], c[6]) if c[1] not in ("PREA", "REF") else (0, 0)) for c in f.commands]
        want = _rtl_commands(dump)
        assert len(got) == len(want), tr["name"]
        bad = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), None)
        assert bad is None, f"{tr['name']}: command {bad}: fast {got[bad]} rtl {want[bad]}"
        assert (s["reads"], s["writes"]) == (f.reads, f.writes)
        diffs[tr["name"]] = f.cycles / s["cycles"] - 1
    assert all(abs(d) <= 0.05 for d in diffs.values()), diffs
