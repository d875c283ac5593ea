"""``pimcast dram replay``: JSON fields, both trace formats, --dump-commands CSV, --merge-duplicates,
every error path (one line naming file / line / value, exit status 2), and --model rtl (slow)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from pimcast.cli import main as cli
from pimcast.hdl.dram.timing import check_sequence, load_preset
from pimcast.host.trace import Trace, random_gather_trace, write_trace

FIELDS = ("cycles", "reads", "writes", "bytes", "GBps", "acts", "row_hits", "refreshes", "requests_per_second")


def _replay(*args):
    return cli(["dram", "replay", *map(str, args)])


def _read_commands(csv_path):
    """``--dump-commands`` rows as ``(cycle, cmd, rank, bankgroup, bank, row, col)`` tuples."""
    with csv_path.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["cycle", "cmd", "rank", "bankgroup", "bank", "row", "col"]
    return [(int(r[0]), r[1], *map(int, r[2:])) for r in rows[1:]]


def _replay_json_commands(capsys, csv_path, *args):
    """Replay with ``--json -`` and ``--dump-commands``: (stats, commands)."""
    assert _replay(*args, "--json", "-", "--dump-commands", csv_path) == 0
    return json.loads(capsys.readouterr().out), _read_commands(csv_path)


@pytest.fixture
def gather(tmp_path):
    tr = random_gather_trace(2000, 256, seed=2)
    tr.is_write[::3] = True
    tr.cycle[:] = np.arange(len(tr)) // 2
    p = tmp_path / "g.trace"
    write_trace(tr, p, "dramsim3")
    return p, tr


def test_json_fields_and_values(gather, tmp_path, capsys):
    p, tr = gather
    out = tmp_path / "o" / "s.json"
    assert _replay("--trace", p, "--standard", "ddr4-3200", "--ranks", 2, "--json", out) == 0
    s = json.loads(out.read_text())
    for k in FIELDS:
        assert k in s, k
    assert s["reads"] + s["writes"] == len(tr) and s["writes"] == int(tr.is_write.sum())
    assert s["bytes"] == 64 * len(tr)
    assert s["acts"] + s["row_hits"] == len(tr)
    assert s["GBps"] == pytest.approx(s["bytes"] / (s["cycles"] * 0.625))
    assert s["model"] == "fast" and s["queue"] == 32 and s["merge_duplicates"] is False
    assert "requests/s" in capsys.readouterr().out


def test_json_stdout_and_ramulator_format(tmp_path, capsys):
    tr = Trace(np.arange(300, dtype=np.uint64) * 64, np.zeros(300, bool), np.zeros(300, np.int64))
    p = tmp_path / "r.trace"
    write_trace(tr, p, "ramulator")
    assert _replay("--trace", p, "--format", "ramulator", "--standard", "ddr4-2400", "--json", "-") == 0
    s = json.loads(capsys.readouterr().out)
    assert s["reads"] == 300 and s["writes"] == 0 and s["standard"].startswith("DDR4-2400")


def test_dump_commands_csv_passes_checker(gather, tmp_path):
    p, tr = gather
    csv_path = tmp_path / "cmds.csv"
    assert _replay("--trace", p, "--ranks", 2, "--dump-commands", csv_path, "--queue", 16) == 0
    cmds = _read_commands(csv_path)
    assert {c[1] for c in cmds} <= {"ACT", "RD", "WR", "PRE", "PREA", "REF"}
    assert sum(c[1] in ("RD", "WR") for c in cmds) == len(tr)
    assert check_sequence(cmds, load_preset("ddr4-3200", ranks=2), max_violations=3) == []


def test_merge_duplicates(tmp_path, capsys):
    tr = Trace(np.repeat(np.arange(50, dtype=np.uint64) * 4096, 4), np.zeros(200, bool), np.zeros(200, np.int64))
    p = tmp_path / "d.trace"
    write_trace(tr, p)
    assert _replay("--trace", p, "--json", "-") == 0
    off = json.loads(capsys.readouterr().out)
    assert _replay("--trace", p, "--json", "-", "--merge-duplicates") == 0
    on = json.loads(capsys.readouterr().out)
    assert off["merged"] == 0 and on["merged"] == 150 and on["merge_duplicates"] is True
    assert on["cycles"] < off["cycles"]


@pytest.mark.parametrize("body, expect", [
    ("0x40 READ 0\n0x80 REED 1\n", ["line 2", "'REED'"]),
    ("0x40 READ 0\nzz READ 1\n", ["2", "'zz'"]),
    ("0x40 READ 0\n0x80 READ -1\n", ["2", "-1"]),
    ("0x40 READ 0\n0x80 READ\n", ["2"]),
    ("# c\n0x40 READ 0\n\n0x41 READ 3\n", [":4", "0x41", "not aligned"]),
    ("0x40 READ 0\n0x4000000000 WRITE 3\n", [":2", "0x4000000000", "capacity"]),
])
def test_trace_errors_name_file_line_value(tmp_path, capsys, body, expect):
    p = tmp_path / "bad.trace"
    p.write_text(body)
    assert _replay("--trace", p, "--ranks", 2) == 2
    err = capsys.readouterr().err
    assert str(p) in err and err.count("\n") == 1
    for e in expect:
        assert e.replace("line ", "") in err, (e, err)


@pytest.mark.parametrize("args, expect", [
    (["--standard", "ddr5-9999"], "ddr5-9999"),
    (["--ranks", "9"], "ranks"),
    (["--mapping", "rochrababgxx"], "xx"),
    (["--queue", "0"], "--queue"),
    (["--model", "rtl", "--merge-duplicates"], "merge"),
])
def test_option_errors(gather, capsys, args, expect):
    p, _ = gather
    assert _replay("--trace", p, *args) == 2
    err = capsys.readouterr().err
    assert expect in err and err.startswith("pimcast dram: error:")


def test_missing_trace_file(tmp_path, capsys):
    assert _replay("--trace", tmp_path / "nope.trace") == 2
    assert "nope.trace" in capsys.readouterr().err


def _rtl_gather(tmp_path, n: int, seed: int):
    """(simulator, trace, trace file) for an RTL replay of an ``n``-request 256 B-row gather; skips
    without a simulator. Icarus first: it builds the controller in seconds (Verilator takes many
    minutes on a small host)."""
    from pimcast.sim.toolchain import have_icarus, have_verilator

    sim = "icarus" if have_icarus() else "verilator" if have_verilator() else None
    if sim is None:
        pytest.skip("no Verilog simulator")
    tr = random_gather_trace(n, 256, seed=seed)
    p = tmp_path / "g.trace"
    write_trace(tr, p)
    return sim, tr, p


@pytest.mark.rtl
@pytest.mark.slow
def test_model_rtl_replay(tmp_path, capsys):
    sim, tr, p = _rtl_gather(tmp_path, 300, seed=4)
    csv_path = tmp_path / "rtl.csv"
    assert _replay("--trace", p, "--ranks", 2, "--model", "rtl", "--simulator", sim, "--json", "-",
                   "--dump-commands", csv_path) == 0
    rtl = json.loads(capsys.readouterr().out)
    assert _replay("--trace", p, "--ranks", 2, "--json", "-") == 0
    fast = json.loads(capsys.readouterr().out)
    assert rtl["reads"] == fast["reads"] == 300 and rtl["model"] == "rtl"
    assert abs(rtl["cycles"] / fast["cycles"] - 1) < 0.05
    # the fast model issues the very same commands as the RTL
    from pimcast.host.dram_model import FastDRAMModel

    got = FastDRAMModel(load_preset("ddr4-3200", ranks=2)).run(tr.addr, record_commands=True).commands
    with csv_path.open() as fh:
        rows = [r for r in csv.reader(fh)][1:]
    want = [(int(r[0]), r[1], int(r[2])) + ((int(r[3]), int(r[4])) if r[1] not in ("PREA", "REF") else (0, 0))
            for r in rows]
    assert [c[:5] for c in got] == want


def test_bankgroup_data_path(tmp_path, capsys):
    """``--data-path bankgroup``: reads of different bank groups / ranks no longer share a data
    bus, so a random 256 B-row gather beats the channel's peak; the commands are legal under the
    bank-group rules and break the channel's tCCD_S."""
    tr = random_gather_trace(3000, 256, seed=5)
    p = tmp_path / "g.trace"
    write_trace(tr, p)
    out = {}
    for dp in ("channel", "bankgroup"):
        out[dp], out[dp]["cmds"] = _replay_json_commands(capsys, tmp_path / f"{dp}.csv", "--trace", p, "--ranks", 2,
                                                         "--data-path", dp)
    t = load_preset("ddr4-3200", ranks=2)
    assert out["bankgroup"]["data_path"] == "bankgroup" and out["channel"]["data_path"] == "channel"
    assert out["channel"]["GBps"] <= t.peak_GBps
    assert out["bankgroup"]["GBps"] > 1.3 * out["channel"]["GBps"] and out["bankgroup"]["GBps"] > t.peak_GBps
    assert check_sequence(out["bankgroup"]["cmds"], t.with_data_path("bankgroup"), max_violations=3) == []
    assert {v.rule for v in check_sequence(out["bankgroup"]["cmds"], t, max_violations=50)} & {"tCCD_S", "rank_switch_rd"}
    assert check_sequence(out["channel"]["cmds"], t, max_violations=3) == []


@pytest.mark.rtl
@pytest.mark.slow
def test_model_rtl_replay_bankgroup_data_path(tmp_path, capsys):
    """The RTL controller generated for a bank-group data path (no tCCD_S between bank groups)
    issues the very same commands as the fast model, and its DRAM model's protocol checker
    (bank-group rules) passes."""
    sim, tr, p = _rtl_gather(tmp_path, 400, seed=6)
    cmds = {}
    for model in ("rtl", "fast"):
        args = ["--simulator", sim] if model == "rtl" else []
        stats, cmds[model] = _replay_json_commands(capsys, tmp_path / f"{model}.csv", "--trace", p, "--ranks", 2,
                                                   "--data-path", "bankgroup", "--model", model, *args)
        assert stats["data_path"] == "bankgroup"
    assert len(cmds["rtl"]) > 400 and cmds["rtl"] == cmds["fast"]
    t = load_preset("ddr4-3200", ranks=2)
    assert {v.rule for v in check_sequence(cmds["rtl"], t, max_violations=50)} & {"tCCD_S", "rank_switch_rd"}
