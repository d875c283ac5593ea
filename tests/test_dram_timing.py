"""DRAM presets, the rule table, the reference checker (every rule caught at gap-1, accepted at the
minimum gap) and the address mapping."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from pimcast.config import CONFIG_ROOT, ConfigError
from pimcast.hdl.dram.timing import (AddressMapping, Cmd, Scope, check_sequence, load_preset,
                                     rule_gap_table, timing_rules, window_rules)

PRESETS = ("ddr4-3200", "ddr4-2400", "hbm2")


@pytest.fixture(scope="module")
def ddr4():
    return load_preset("ddr4-3200")


# ------------------------------------------------------------------------------ presets
@pytest.mark.parametrize("name", PRESETS)
def test_presets_load(name):
    t = load_preset(name)
    assert t.tRC >= t.tRAS + t.tRP and t.tFAW >= 4 * t.tRRD_S
    assert t.bursts_per_request * t.burst_bytes == 64


def test_ddr4_3200_values(ddr4):
    t = ddr4
    assert (t.CL, t.CWL, t.tRCD, t.tRP, t.tRAS, t.tRC) == (22, 16, 22, 22, 52, 74)
    assert (t.tCCD_S, t.tCCD_L, t.tRRD_S, t.tRRD_L, t.tFAW) == (4, 8, 4, 8, 34)
    assert (t.tWR, t.tRTP, t.tWTR_S, t.tWTR_L, t.tRFC, t.tREFI, t.BL2) == (24, 12, 4, 12, 560, 12480, 4)
    assert t.ranks == 2 and t.banks_per_rank == 16 and t.row_bytes == 8192
    assert t.capacity_bytes == 16 << 30


def test_ranks_override():
    assert load_preset("ddr4-2400", ranks=4).ranks == 4
    with pytest.raises(ConfigError, match="ranks"):
        load_preset("ddr4-2400", ranks=5)
    with pytest.raises(ConfigError, match="ranks"):
        load_preset("ddr4-2400", ranks=0)


def _bad_preset(tmp_path, edit):
    data = yaml.safe_load((CONFIG_ROOT / "dram" / "ddr4-3200.yaml").read_text())
    edit(data)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["timing"].update(tRC=70), "tRC"),
    (lambda d: d["organisation"].update(burst_length=0), "burst_length"),
    (lambda d: d["organisation"].update(burst_length=7), "burst_length"),
    (lambda d: d["timing"].update(tXYZ=3), "tXYZ"),
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d["timing"].pop("tRP"), "tRP"),
    (lambda d: d["timing"].update(tRCD=-1), "tRCD"),
    (lambda d: d["timing"].update(CL=0), "CL"),
    (lambda d: d["timing"].update(tCCD_L=2), "tCCD_L"),
    (lambda d: d["timing"].update(tRRD_L=2), "tRRD_L"),
    (lambda d: d["timing"].update(tWTR_L=1), "tWTR_L"),
    (lambda d: d["timing"].update(tFAW=10), "tFAW"),
    (lambda d: d["timing"].update(tRFC="560"), "tRFC"),
    (lambda d: d["organisation"].update(rows=1000), "rows"),
    (lambda d: d["organisation"].update(ranks=9), "ranks"),
])
def test_impossible_presets_name_the_field(tmp_path, edit, field):
    with pytest.raises(ConfigError, match=field):
        load_preset(_bad_preset(tmp_path, edit))


def test_unknown_preset():
    with pytest.raises(ConfigError, match="ddr5"):
        load_preset("ddr5")


# ------------------------------------------------------------------------------ rule table
def test_rule_table_covers_every_timing(ddr4):
    names = {r.name for r in timing_rules(ddr4)}
    for n in ("tRCD", "tRP", "tRAS", "tRC", "tCCD_S", "tCCD_L", "tRRD_S", "tRRD_L", "tWR", "tWTR_S",
              "tWTR_L", "tRTP", "rd_to_wr", "rank_switch_rd", "tRFC", "RDA_tRTP_tRP", "WRA_tWR_tRP"):
        assert n in names, n
    (w,) = window_rules(ddr4)
    assert (w.cmd, w.count, w.window, w.scope) == (Cmd.ACT, 4, 34, Scope.SAME_RANK)
    g = rule_gap_table(ddr4)
    assert g[(Cmd.WR, Cmd.PRE, Scope.SAME_BANK)] == (16 + 4 + 24, "tWR")
    assert g[(Cmd.WR, Cmd.RD, Scope.SAME_BANKGROUP)] == (16 + 4 + 12, "tWTR_L")
    assert g[(Cmd.RD, Cmd.WR, Scope.CHANNEL)] == (22 + 4 + 2 - 16, "rd_to_wr")
    assert g[(Cmd.RD, Cmd.RD, Scope.DIFF_RANK)] == (4 + 2, "rank_switch_rd")


# ------------------------------------------------------------------------------ checker
def _c(cyc, cmd, rank=0, bg=0, bank=0, row=0, col=0):
    return (cyc, cmd, rank, bg, bank, row, col)


def _directed(t):
    """(rule name, prefix commands, (cmd, rank, bg, bank, row), gap from the prefix's last command).

    Each prefix is legal; the last command is placed ``gap`` cycles after the prefix's last one.
    """
    BL2 = t.BL2
    act = lambda c, **k: _c(c, "ACT", **k)  # noqa: E731
    cases = [
        ("tRCD", [act(0)], ("RD", 0, 0, 0, 0), t.tRCD),
        ("tRCDWR", [act(0)], ("WR", 0, 0, 0, 0), t.tRCDWR),
        ("tRAS", [act(0)], ("PRE", 0, 0, 0, -1), t.tRAS),
        ("tRP", [act(0), _c(t.tRAS, "PRE")], ("ACT", 0, 0, 0, 1), t.tRP),
        ("tRC", [act(0), _c(t.tRAS, "PRE")], ("ACT", 0, 0, 0, 1), t.tRC - t.tRAS),
        ("tRRD_S", [act(0)], ("ACT", 0, 1, 0, 0), t.tRRD_S),
        ("tRRD_L", [act(0)], ("ACT", 0, 0, 1, 0), t.tRRD_L),
        ("tCCD_S", [act(0), act(t.tRRD_S, bg=1), _c(40, "RD")], ("RD", 0, 1, 0, 0), t.tCCD_S),
        ("tCCD_L", [act(0), act(t.tRRD_L, bank=1), _c(40, "RD")], ("RD", 0, 0, 1, 0), t.tCCD_L),
        ("tCCD_L", [act(0), act(t.tRRD_L, bank=1), _c(40, "WR")], ("WR", 0, 0, 1, 0), t.tCCD_L),
        ("tWTR_S", [act(0), act(t.tRRD_S, bg=1), _c(40, "WR")], ("RD", 0, 1, 0, 0), t.wr_to_rd(False)),
        ("tWTR_L", [act(0), act(t.tRRD_L, bank=1), _c(40, "WR")], ("RD", 0, 0, 1, 0), t.wr_to_rd(True)),
        ("tRTP", [act(0), _c(t.tRAS - 2, "RD")], ("PRE", 0, 0, 0, -1), t.tRTP),
        ("tWR", [act(0), _c(t.tRCDWR, "WR")], ("PRE", 0, 0, 0, -1), t.wr_to_pre),
        ("rd_to_wr", [act(0), _c(40, "RD")], ("WR", 0, 0, 0, 0), t.rd_to_wr),
        ("rank_switch_rd", [act(0), act(1, rank=1), _c(40, "RD")], ("RD", 1, 0, 0, 0), BL2 + t.tRTRS),
        ("rank_switch_wr", [act(0), act(1, rank=1), _c(40, "WR")], ("WR", 1, 0, 0, 0), BL2 + t.tRTRS),
        ("RDA_tRTP_tRP", [act(0), _c(t.tRAS, "RDA")], ("ACT", 0, 0, 0, 1), t.tRTP + t.tRP),
        ("WRA_tWR_tRP", [act(0), _c(t.tRAS, "WRA")], ("ACT", 0, 0, 0, 1), t.wr_to_pre + t.tRP),
        ("tRFC", [_c(0, "REF")], ("ACT", 0, 0, 0, 0), t.tRFC),
        ("tRP_REF", [act(0), _c(t.tRAS, "PREA")], ("REF", 0, 0, 0, -1), t.tRP),
        ("tRP", [act(0), _c(t.tRAS, "PREA")], ("ACT", 0, 2, 3, 5), t.tRP),
    ]
    if t.wr_to_rd_rank > 1:
        cases.append(("rank_switch_wr_rd", [act(0), act(1, rank=1), _c(40, "WR")], ("RD", 1, 0, 0, 0),
                      t.wr_to_rd_rank))
    return cases


@pytest.mark.parametrize("name", PRESETS)
def test_each_rule_caught_and_min_gap_accepted(name):
    t = load_preset(name, ranks=2)
    for rule, prefix, (cmd, rk, bg, bk, row), gap in _directed(t):
        assert check_sequence(prefix, t) == [], (rule, check_sequence(prefix, t))
        last = prefix[-1][0]
        ok = prefix + [_c(last + gap, cmd, rk, bg, bk, row)]
        assert check_sequence(ok, t) == [], (rule, [str(v) for v in check_sequence(ok, t)])
        bad = prefix + [_c(last + gap - 1, cmd, rk, bg, bk, row)]
        v = check_sequence(bad, t)
        assert any(x.rule == rule for x in v), (rule, [str(x) for x in v])


@pytest.mark.parametrize("name", PRESETS)
def test_tfaw_window(name):
    t = load_preset(name, ranks=1)
    # 4 ACTs to 4 bank groups at tRRD_S spacing (allowed), the 5th at first + tFAW (allowed) / -1
    seq = [_c(i * t.tRRD_S, "ACT", 0, i % 4, i // 4) for i in range(4)]
    fifth = lambda c: _c(c, "ACT", 0, 0, 1)  # noqa: E731
    start = max(t.tFAW, 3 * t.tRRD_S + t.tRRD_L)
    assert check_sequence(seq + [fifth(start)], t) == []
    if start == t.tFAW:
        v = check_sequence(seq + [fifth(t.tFAW - 1)], t)
        assert [x.rule for x in v] == ["tFAW"]


def test_command_bus_and_order(ddr4):
    v = check_sequence([_c(0, "ACT"), _c(0, "ACT", 1)], ddr4)
    assert [x.rule for x in v] == ["cmd_bus"]
    v = check_sequence([_c(5, "ACT"), _c(3, "ACT", 1)], ddr4)
    assert "cycle_order" in [x.rule for x in v]


def test_state_rules(ddr4):
    t = ddr4
    assert [x.rule for x in check_sequence([_c(0, "RD")], t)] == ["CAS_to_closed_bank"]
    v = check_sequence([_c(0, "ACT", row=1), _c(t.tRC, "ACT", row=2)], t)
    assert [x.rule for x in v] == ["ACT_to_open_bank"]
    v = check_sequence([_c(0, "ACT", row=1), _c(t.tRCD, "RD", row=2)], t)
    assert [x.rule for x in v] == ["CAS_wrong_row"]
    v = check_sequence([_c(0, "ACT"), _c(t.tRAS + t.tRP, "REF")], t)
    assert [x.rule for x in v] == ["REF_with_open_bank"]
    # RDA closes the bank; ACT after the implied precharge is legal
    seq = [_c(0, "ACT"), _c(t.tRAS, "RDA"), _c(t.tRAS + t.tRTP + t.tRP, "ACT", row=3),
           _c(t.tRAS + t.tRTP + t.tRP + t.tRCD, "RD", row=3)]
    assert check_sequence(seq, t) == []
    # PRE to a closed bank is a NOP
    assert check_sequence([_c(0, "PRE")], t) == []
    # names the rule, cycle and addresses
    s = str(check_sequence([_c(0, "ACT"), _c(3, "RD")], t)[0])
    assert "tRCD" in s and "cycle 3" in s


# ------------------------------------------------------------------------------ mapping
@pytest.mark.parametrize("scheme", ["rochrababgco", "robarabgchco", "chrarobabgco", "cobgbarorach"])
def test_mapping_roundtrip(ddr4, scheme):
    m = AddressMapping(scheme, ddr4)
    rng = np.random.default_rng(1)
    addr = (rng.integers(0, ddr4.capacity_bytes // 64, 5000, dtype=np.int64) * 64).astype(np.uint64)
    d = m.decode(addr)
    assert (m.encode(**d) == addr).all()
    assert d["co"].max() < 128 and d["ro"].max() < 65536 and d["ra"].max() < 2


def test_mapping_rochrababgco_layout(ddr4):
    m = AddressMapping("rochrababgco", ddr4)
    d = m.decode(np.array([0, 64, 8192, 8192 * 4, 8192 * 16, 8192 * 32], dtype=np.uint64))
    assert d["co"].tolist() == [0, 1, 0, 0, 0, 0]
    assert d["bg"].tolist() == [0, 0, 1, 0, 0, 0]
    assert d["ba"].tolist() == [0, 0, 0, 1, 0, 0]
    assert d["ra"].tolist() == [0, 0, 0, 0, 1, 0]
    assert d["ro"].tolist() == [0, 0, 0, 0, 0, 1]


@pytest.mark.parametrize("scheme, msg", [("rochrababgxx", "unknown field 'xx'"),
                                         ("rorochbabgco", "duplicate field 'ro'"),
                                         ("rochraba", "expected 6")])
def test_mapping_rejects_bad_schemes(ddr4, scheme, msg):
    with pytest.raises(ConfigError, match=msg):
        AddressMapping(scheme, ddr4)


def test_mapping_rejects_bad_addresses(ddr4):
    m = AddressMapping("rochrababgco", ddr4)
    with pytest.raises(ValueError, match="0x41"):
        m.decode(np.array([0, 0x41], dtype=np.uint64))
    with pytest.raises(ValueError, match="beyond the capacity"):
        m.decode(np.array([16 << 30], dtype=np.uint64))


# ------------------------------------------------------------------------------ data path
@pytest.mark.parametrize("name", PRESETS)
def test_bankgroup_data_path_drops_only_the_shared_read_bus_rules(name):
    t = load_preset(name)
    tb = t.with_data_path("bankgroup")
    assert t.data_path == "channel" and tb.data_path == "bankgroup"
    ch, bg = set(timing_rules(t)), set(timing_rules(tb))
    assert bg < ch
    dropped = ch - bg
    # exactly the read -> read rules between bank groups / ranks (data bus), nothing else
    assert {(r.name, r.scope) for r in dropped} == {("tCCD_S", Scope.DIFF_BANKGROUP),
                                                    ("rank_switch_rd", Scope.DIFF_RANK)}
    assert all(r.prev in (Cmd.RD, Cmd.RDA) and r.next in (Cmd.RD, Cmd.RDA) for r in dropped)
    assert window_rules(tb) == window_rules(t)
    assert tb.with_data_path("channel") == t
    with pytest.raises(ConfigError, match="'dq'"):
        t.with_data_path("dq")


def test_bankgroup_data_path_checker(ddr4):
    tb = ddr4.with_data_path("bankgroup")
    s = ddr4.tRRD_S
    act = [(0, "ACT", 0, 0, 0, 5, -1), (s, "ACT", 0, 1, 0, 5, -1), (2 * s, "ACT", 1, 0, 0, 5, -1)]
    rd0 = s + ddr4.tRCD
    # reads of two bank groups and another rank one cycle apart: tCCD_S / rank switch on the
    # channel data path, legal on a bank-group one
    seq = act + [(rd0, "RD", 0, 1, 0, 5, 0), (rd0 + 1, "RD", 0, 0, 0, 5, 0), (rd0 + 2 + s, "RD", 1, 0, 0, 5, 0),
                 (rd0 + 3 + s, "RD", 0, 1, 0, 5, 8)]
    assert {v.rule for v in check_sequence(seq, ddr4)} >= {"tCCD_S", "rank_switch_rd"}
    # ... but the same bank group still needs tCCD_L
    assert [v.rule for v in check_sequence(seq, tb)] == ["tCCD_L"]
    seq[-1] = (rd0 + ddr4.tCCD_L, "RD", 0, 1, 0, 5, 8)
    assert check_sequence(seq, tb) == []
    # writes keep the shared-bus rules
    wr = act[:2] + [(rd0, "WR", 0, 1, 0, 5, 0), (rd0 + 1, "WR", 0, 0, 0, 5, 0)]
    assert [v.rule for v in check_sequence(wr, tb)] == ["tCCD_S"]
