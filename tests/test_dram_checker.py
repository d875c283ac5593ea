"""The incremental protocol checker (sim/dram_device.py) against hand-written sequences per rule
and against the reference ``check_sequence`` on random sequences."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimcast.hdl.dram.timing import check_sequence, load_preset, timing_rules, window_rules
from pimcast.sim.dram_device import ProtocolChecker, check_incremental

T = load_preset("ddr4-3200", ranks=2)


def _cases(t):
    """name -> (commands, rule expected when the last command comes one cycle early).

    Each command is ``(cycle, cmd, rank, bg, bank, row, col)``; the last command sits at exactly
    the legal gap for the named rule, which is the binding one in that sequence."""
    CL, CWL, BL2 = t.CL, t.CWL, t.BL2
    wtp = t.wr_to_pre
    late = t.tRAS - 2  # a column command late enough that tRAS is no longer binding for PRE
    A = lambda c, r=0, g=0, b=0, row=5: (c, "ACT", r, g, b, row, -1)  # noqa: E731
    RD = lambda c, r=0, g=0, b=0, row=5, col=0: (c, "RD", r, g, b, row, col)  # noqa: E731
    WR = lambda c, r=0, g=0, b=0, row=5, col=0: (c, "WR", r, g, b, row, col)  # noqa: E731
    RDA = lambda c, r=0, g=0, b=0, row=5: (c, "RDA", r, g, b, row, 0)  # noqa: E731
    WRA = lambda c, r=0, g=0, b=0, row=5: (c, "WRA", r, g, b, row, 0)  # noqa: E731
    PRE = lambda c, r=0, g=0, b=0: (c, "PRE", r, g, b, -1, -1)  # noqa: E731
    PREA = lambda c, r=0: (c, "PREA", r, 0, 0, -1, -1)  # noqa: E731
    REF = lambda c, r=0: (c, "REF", r, 0, 0, -1, -1)  # noqa: E731
    four = [A(0, g=0), A(t.tRRD_S, g=1), A(2 * t.tRRD_S, g=2), A(3 * t.tRRD_S, g=3)]
    return {
        "cmd_bus": ([A(0), A(1, r=1)], "cmd_bus"),
        "tRCD": ([A(0), RD(t.tRCD)], "tRCD"),
        "tRCDWR": ([A(0), WR(t.tRCDWR)], "tRCDWR"),
        "tRAS": ([A(0), PRE(t.tRAS)], "tRAS"),
        "tRAS_PREA": ([A(0), PREA(t.tRAS)], "tRAS"),
        "tRC": ([A(0), PRE(t.tRAS), A(t.tRC)], "tRC"),
        "tRP": ([A(0), PRE(t.tRC), A(t.tRC + t.tRP)], "tRP"),
        "tRP_PREA": ([A(0), PREA(t.tRC), A(t.tRC + t.tRP)], "tRP"),
        "tRTP": ([A(0), RD(late), PRE(late + t.tRTP)], "tRTP"),
        "tRTP_PREA": ([A(0), RD(late), PREA(late + t.tRTP)], "tRTP"),
        "tWR": ([A(0), WR(t.tRCDWR), PRE(t.tRCDWR + wtp)], "tWR"),
        "tWR_PREA": ([A(0), WR(t.tRCDWR), PREA(t.tRCDWR + wtp)], "tWR"),
        "RDA_tRTP_tRP": ([A(0), RDA(late), A(late + t.tRTP + t.tRP)], "RDA_tRTP_tRP"),
        "WRA_tWR_tRP": ([A(0), WRA(t.tRCDWR), A(t.tRCDWR + wtp + t.tRP)], "WRA_tWR_tRP"),
        "RDA_REF": ([A(0), RDA(late), REF(late + t.tRTP + t.tRP)], "RDA_tRTP_tRP"),
        "WRA_REF": ([A(0), WRA(t.tRCDWR), REF(t.tRCDWR + wtp + t.tRP)], "WRA_tWR_tRP"),
        "tRRD_L": ([A(0, b=0), A(t.tRRD_L, b=1)], "tRRD_L"),
        "tRRD_S": ([A(0, g=0), A(t.tRRD_S, g=1)], "tRRD_S"),
        "tFAW": (four + [A(t.tFAW, g=0, b=1)], "tFAW"),
        "tCCD_L": ([A(0), RD(t.tRCD), RD(t.tRCD + t.tCCD_L, col=8)], "tCCD_L"),
        "tCCD_S": ([A(0, g=0), A(t.tRRD_S, g=1), RD(t.tRRD_S + t.tRCD, g=0),
                    RD(t.tRRD_S + t.tRCD + t.tCCD_S, g=1)], "tCCD_S"),
        "tCCD_L_wr": ([A(0), WR(t.tRCDWR), WR(t.tRCDWR + t.tCCD_L, col=8)], "tCCD_L"),
        "tCCD_S_wr": ([A(0, g=0), A(t.tRRD_S, g=1), WR(t.tRRD_S + t.tRCDWR, g=0),
                       WR(t.tRRD_S + t.tRCDWR + t.tCCD_S, g=1)], "tCCD_S"),
        "tWTR_L": ([A(0), WR(t.tRCDWR), RD(t.tRCDWR + t.wr_to_rd(True))], "tWTR_L"),
        "tWTR_S": ([A(0, g=0), A(t.tRRD_S, g=1), WR(t.tRRD_S + t.tRCDWR, g=0),
                    RD(t.tRRD_S + t.tRCDWR + t.wr_to_rd(False), g=1)], "tWTR_S"),
        "rd_to_wr": ([A(0), RD(t.tRCD), WR(t.tRCD + t.rd_to_wr)], "rd_to_wr"),
        "rd_to_wr_rank": ([A(0), A(1, r=1), RD(t.tRCD + 1, r=1), WR(t.tRCD + 1 + t.rd_to_wr, r=0)], "rd_to_wr"),
        "rank_switch_rd": ([A(0), A(1, r=1), RD(t.tRCD + 1), RD(t.tRCD + 1 + BL2 + t.tRTRS, r=1)],
                           "rank_switch_rd"),
        "rank_switch_wr": ([A(0), A(1, r=1), WR(t.tRCDWR + 1), WR(t.tRCDWR + 1 + BL2 + t.tRTRS, r=1)],
                           "rank_switch_wr"),
        "rank_switch_wr_rd": ([A(0), A(1, r=1), WR(t.tRCDWR + 1), RD(t.tRCDWR + 1 + t.wr_to_rd_rank, r=1)],
                              "rank_switch_wr_rd"),
        "tRFC": ([REF(0), A(t.tRFC)], "tRFC"),
        "tRP_REF": ([A(0), PRE(t.tRAS), REF(t.tRAS + t.tRP)], "tRP_REF"),
        "tRP_REF_PREA": ([A(0), PREA(t.tRAS), REF(t.tRAS + t.tRP)], "tRP_REF"),
    }


CASES = _cases(T)
STATE_CASES = {
    "ACT_to_open_bank": [(0, "ACT", 0, 0, 0, 5, -1), (200, "ACT", 0, 0, 0, 6, -1)],
    "CAS_to_closed_bank": [(10, "RD", 0, 1, 1, 5, 0)],
    "CAS_wrong_row": [(0, "ACT", 0, 0, 0, 5, -1), (100, "WR", 0, 0, 0, 6, 0)],
    "REF_with_open_bank": [(0, "ACT", 1, 2, 3, 5, -1), (200, "REF", 1, 0, 0, -1, -1)],
    "cycle_order": [(10, "ACT", 0, 0, 0, 5, -1), (5, "ACT", 1, 0, 0, 5, -1)],
    "address_range": [(10, "ACT", 2, 0, 0, 5, -1)],
}


def test_every_binding_rule_has_a_case():
    names = {r.name for r in timing_rules(T) if r.gap > 1} | {w.name for w in window_rules(T)}
    covered = {rule for _, rule in CASES.values()}
    assert names - covered == set(), names - covered


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_caught_one_cycle_early_and_accepted_at_the_gap(case):
    cmds, rule = CASES[case]
    # exactly at the legal gap: clean for both checkers
    assert check_incremental(cmds, T) == []
    assert check_sequence(cmds, T) == []
    last = cmds[-1]
    early = cmds[:-1] + [(last[0] - 1,) + tuple(last[1:])]
    got = check_incremental(early, T)
    ref = check_sequence(early, T)
    assert rule in {v.rule for v in got}, (case, [str(v) for v in got])
    assert sorted((v.index, v.rule) for v in got) == sorted((v.index, v.rule) for v in ref)
    v = next(v for v in got if v.rule == rule)
    # the report names the cycle, the rule and both commands' addresses
    text = str(v)
    assert f"cycle {last[0] - 1}" in text and rule in text and f"rank {last[2]}" in text
    if rule != "cmd_bus":
        assert v.prev is not None and " after " in text


@pytest.mark.parametrize("case", sorted(STATE_CASES))
def test_state_rules(case):
    cmds = STATE_CASES[case]
    got = check_incremental(cmds, T)
    assert case in {v.rule for v in got}
    assert sorted((v.index, v.rule) for v in got) == sorted((v.index, v.rule) for v in check_sequence(cmds, T))


def test_pre_to_closed_bank_is_a_legal_nop():
    assert check_incremental([(0, "PRE", 0, 0, 0, -1, -1), (30, "PREA", 1, 0, 0, -1, -1)], T) == []


def test_checker_is_incremental():
    chk = ProtocolChecker(T)
    assert chk.issue(0, "ACT", 0, 0, 0, 5) == []
    bad = chk.issue(3, "RD", 0, 0, 0, 5, 0)
    assert [v.rule for v in bad] == ["tRCD"] and bad[0].prev[1] == "ACT"
    assert chk.is_open(0, 0, 0) == 5
    assert len(chk.violations) == 1


_KINDS = ["ACT", "RD", "RDA", "WR", "WRA", "PRE", "PREA", "REF"]


@st.composite
def _sequences(draw):
    n = draw(st.integers(1, 60))
    cyc = 0
    out = []
    for _ in range(n):
        cyc += draw(st.one_of(st.integers(0, 6), st.integers(0, 80)))
        kind = draw(st.sampled_from(_KINDS))
        rk, bg, bk = draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.integers(0, 1))
        row = draw(st.integers(0, 2))
        out.append((cyc, kind, rk, bg, bk, row, 8 * draw(st.integers(0, 3))))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sequences())
def test_agrees_with_reference_on_random_sequences(cmds):
    got = sorted((v.index, v.rule) for v in check_incremental(cmds, T))
    ref = sorted((v.index, v.rule) for v in check_sequence(cmds, T))
    assert got == ref


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.sampled_from(["ACT", "PRE", "RD", "WR"]),
                          st.integers(0, 1), st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=80))
def test_agrees_with_reference_ddr4_2400_dense(raw):
    t = load_preset("ddr4-2400", ranks=2)
    cyc, cmds = 0, []
    for d, k, r, g, b in raw:
        cyc += d
        cmds.append((cyc, k, r, g, b, 1, 0))
    got = sorted((v.index, v.rule) for v in check_incremental(cmds, t))
    assert got == sorted((v.index, v.rule) for v in check_sequence(cmds, t))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sequences())
def test_agrees_with_reference_on_a_bankgroup_data_path(cmds):
    tb = T.with_data_path("bankgroup")
    got = sorted((v.index, v.rule) for v in check_incremental(cmds, tb))
    assert got == sorted((v.index, v.rule) for v in check_sequence(cmds, tb))
