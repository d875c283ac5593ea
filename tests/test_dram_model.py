"""Fast DRAM timing model: directed timing, rule compliance of every emitted command list, the
controller policy shared with the RTL (same-address ordering, refresh, duplicate merging), and the
validation against the DRAMsim3 / Ramulator reference numbers (full size for two cases).

Cycle frame (the RTL's): a request accepted in cycle 0 is a candidate in cycle 1; a command decided
in cycle T is on the command port at T + 1 (``PIPE`` = 2 cycles in total for a lone request)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pimcast.hdl.dram.timing import AddressMapping, check_sequence, load_preset
from pimcast.host.dram_model import FastDRAMModel
from pimcast.host.trace import random_gather_trace


@pytest.fixture(scope="module")
def t():
    return load_preset("ddr4-3200", ranks=2)


def _run(t, addr, wr=None, cyc=None, mapping="rochrababgco", **kw):
    return FastDRAMModel(t, mapping, **kw).run(np.asarray(addr, np.uint64), wr, cyc, record_commands=True)


def _cmds(res, kind):
    return [c for c in res.commands if c[1] == kind]


PIPE = 2  # queue register + registered command port


@pytest.fixture(scope="module", autouse=True)
def _compiled(t):
    FastDRAMModel(t).warmup()


def test_single_read_to_closed_bank(t):
    r = _run(t, [0])
    assert r.cycles == PIPE + t.tRCD + t.CL + t.BL2
    assert [c[1] for c in r.commands] == ["ACT", "RD"]
    assert r.commands[0][0] == 2 and r.commands[1][0] - r.commands[0][0] == t.tRCD
    assert (r.reads, r.writes, r.bytes, r.acts, r.row_hits) == (1, 0, 64, 1, 0)


def test_single_write(t):
    r = _run(t, [0], [True])
    assert r.cycles == PIPE + t.tRCDWR + t.CWL + t.BL2 and r.writes == 1


def test_row_hit_stream_paced_by_tccd_l(t):
    n = 64  # one bank, one row (rochrababgco: column bits lowest)
    r = _run(t, np.arange(n) * 64)
    rd = [c[0] for c in _cmds(r, "RD")]
    assert np.all(np.diff(rd) == t.tCCD_L)
    assert r.acts == 1 and r.row_hits == n - 1
    assert r.cycles == PIPE + t.tRCD + (n - 1) * t.tCCD_L + t.CL + t.BL2


def test_stream_across_bankgroups_paced_by_tccd_s(t):
    m = AddressMapping("rorabacobgch", t)  # bank-group bits lowest
    n = 64
    r = _run(t, np.arange(n) * 64, mapping=m)
    rd = np.array([c[0] for c in _cmds(r, "RD")])
    assert np.median(np.diff(rd)) == t.tCCD_S
    assert not check_sequence(r.commands, t)


def test_sequential_stream_bandwidth(t):
    n = 20_000
    seq = np.arange(n, dtype=np.uint64) * 64
    fast = FastDRAMModel(t, "rorabacobgch").run(seq)
    slow = FastDRAMModel(t, "rochrababgco").run(seq)
    assert fast.GBps >= 0.9 * 24.45, fast.GBps          # refresh-limited peak
    assert 12.0 <= slow.GBps <= 17.5, slow.GBps          # paced by tCCD_L (refs: 14-17 GB/s)


def test_refresh_every_trefi(t):
    # one request every 1000 cycles for ~5 tREFI: rank r refreshes at tREFI + r*tREFI/ranks + k*tREFI
    # (staggered like the RTL refresher), PREA first, REF tRP later, within the postponement bound
    from pimcast.hdl.dram.refresher import refresh_postpone_bound

    n = 5 * t.tREFI // 1000
    r = _run(t, (np.arange(n) * 64 * 977) % (1 << 30) // 64 * 64, None, np.arange(n) * 1000)
    refs = _cmds(r, "REF")
    bound = refresh_postpone_bound(t)
    for rank in range(t.ranks):
        first = t.tREFI + rank * t.tREFI // t.ranks
        cyc = np.array([c[0] for c in refs if c[2] == rank])
        due = first + np.arange(len(cyc)) * t.tREFI
        assert len(cyc) == (r.commands[-1][0] - first) // t.tREFI + 1
        assert np.all(cyc > due) and np.all(cyc - due <= bound + 2), (cyc - due, bound)
        prea = np.array([c[0] for c in _cmds(r, "PREA") if c[2] == rank])
        assert np.all(cyc - prea[:len(cyc)] >= t.tRP)
    assert r.refreshes == len(refs)
    assert not check_sequence(r.commands, t)


def test_refresh_under_saturation_is_not_starved(t):
    tr = random_gather_trace(30_000, 64, seed=2)
    r = _run(t, tr.addr)
    for rank in range(t.ranks):
        cyc = np.array([c[0] for c in _cmds(r, "REF") if c[2] == rank])
        first = t.tREFI + rank * t.tREFI // t.ranks
        assert len(cyc) >= (r.cycles - first) // t.tREFI
        assert np.all(np.abs(np.diff(cyc) - t.tREFI) <= 200)


def test_write_then_read_pays_twtr(t):
    # write then read of the same row (same bank group): the read waits CWL + BL/2 + tWTR_L
    r = _run(t, [0, 64], [True, False])
    (w,), (rd,) = _cmds(r, "WR"), _cmds(r, "RD")
    assert rd[0] - w[0] == t.wr_to_rd(True)
    # other bank group of the same rank: tWTR_S
    r = _run(t, [0, 8192], [True, False])
    (w,), (rd,) = _cmds(r, "WR"), _cmds(r, "RD")
    assert rd[0] - w[0] >= t.wr_to_rd(False)


def test_read_modify_write_keeps_order(t):
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 1 << 20, 300) * 256
    addr = np.stack([rows[:, None] + np.arange(4) * 64] * 2, axis=1).reshape(-1)
    wr = np.tile(np.repeat([False, True], 4), len(rows))
    r = _run(t, addr, wr)
    assert not check_sequence(r.commands, t)
    # every write completes after the read of the same address
    first_rd = {}
    for c in r.commands:
        key = (c[2], c[3], c[4], c[5], c[6])
        if c[1] == "RD":
            first_rd.setdefault(key, c[0])
        elif c[1] == "WR":
            assert key in first_rd and first_rd[key] < c[0]


@pytest.mark.parametrize("preset, ranks, mapping", [
    ("ddr4-3200", 2, "rochrababgco"), ("ddr4-2400", 1, "robarabgchco"), ("ddr4-3200", 4, "rorabacobgch"),
    ("hbm2", 2, "rochrababgco")])
def test_emitted_commands_obey_every_rule(preset, ranks, mapping):
    t = load_preset(preset, ranks=ranks)
    rng = np.random.default_rng(ranks)
    n = 1500
    m = AddressMapping(mapping, t)
    cap = m.capacity // 64
    parts = [rng.integers(0, cap, n // 3) * 64,                                  # random
             (rng.integers(0, cap - 64) + np.arange(n // 3)) * 64,               # stream
             np.repeat(rng.integers(0, cap // 4, n // 12) * 256, 4) + np.tile(np.arange(4) * 64, n // 12)]
    addr = np.concatenate(parts).astype(np.uint64)
    wr = rng.random(len(addr)) < 0.35
    cyc = np.sort(rng.integers(0, 3 * t.tREFI, len(addr)))
    r = FastDRAMModel(t, m, queue=16).run(addr, wr, cyc, record_commands=True)
    v = check_sequence(r.commands, t, max_violations=5)
    assert v == [], [str(x) for x in v]
    assert r.reads + r.writes == len(addr)
    assert len(_cmds(r, "RD")) + len(_cmds(r, "WR")) == len(addr) * t.bursts_per_request
    assert len(_cmds(r, "ACT")) == r.acts
    assert r.acts + r.row_hits == len(addr)


def test_gather_commands_obey_every_rule(t):
    for row_b in (64, 1024):
        tr = random_gather_trace(3000, row_b, seed=5)
        r = FastDRAMModel(t).run(tr.addr, record_commands=True)
        assert check_sequence(r.commands, t, max_violations=3) == []


def test_bad_addresses(t):
    # uint64 input is checked inside the decode pass, other dtypes by AddressMapping.check first:
    # both name the first bad address and its index, deep inside a long trace too
    good = random_gather_trace(5000, 64, seed=2).addr.astype(np.uint64)
    for dtype in (np.uint64, np.int64):
        for bad, msg in ((3, r"address 0x3 at index 4321 is not aligned"),
                         (t.capacity_bytes, rf"address {hex(t.capacity_bytes)} at index 4321 is beyond the capacity")):
            a = good.astype(dtype)
            a[4321] = bad
            a[4500] = bad
            with pytest.raises(ValueError, match=msg):
                FastDRAMModel(t).run(a)
    with pytest.raises(ValueError, match="negative address -64 at index 1"):
        FastDRAMModel(t).run(np.array([0, -64], np.int64))
    t3 = load_preset("ddr4-3200", ranks=3)          # 3 ranks: rank code 3 exists in the address bits
    m3 = AddressMapping("rochrababgco", t3)
    a = np.zeros(10, np.uint64)
    a[7] = np.uint64(3) << np.uint64(m3.shifts["ra"])
    assert int(a[7]) < m3.capacity
    with pytest.raises(ValueError, match="at index 7 decodes to rank 3"):
        FastDRAMModel(t3, m3).run(a)


def test_same_address_read_after_write_and_write_after_read(t):
    # W(a) R(a) W(a): each column command waits for the older one to the same address
    a = np.array([0, 0, 0, 64 * 200], np.uint64)
    r = _run(t, a, [True, False, True, False])
    cas = [c for c in r.commands if c[1] in ("RD", "WR") and c[6] == 0 and c[5] == 0]
    assert [c[1] for c in cas] == ["WR", "RD", "WR"]
    assert not check_sequence(r.commands, t)


def test_read_modify_write_rows_each_write_waits_for_its_read(t):
    # 64 rows of 1 KB, each read then written (RMW), with a 4-deep queue: no deadlock, every write
    # after its own read
    rng = np.random.default_rng(4)
    rows = rng.integers(0, 1 << 20, 64) * 1024
    addr = np.concatenate([np.concatenate([r + np.arange(16) * 64, r + np.arange(16) * 64]) for r in rows])
    wr = np.tile(np.repeat([False, True], 16), len(rows))
    for q in (4, 32):
        r = _run(t, addr.astype(np.uint64), wr, queue=q)
        assert r.reads == r.writes == 64 * 16
        seen = set()
        for c in r.commands:
            key = (c[2], c[3], c[4], c[5], c[6])
            if c[1] == "RD":
                seen.add(key)
            elif c[1] == "WR":
                assert key in seen
        assert not check_sequence(r.commands, t)


def test_duplicate_merging_option(t):
    # Zipf-skewed gather: many repeated rows pending at once
    rng = np.random.default_rng(7)
    rows = np.minimum(rng.zipf(1.2, 20_000), 1 << 20) - 1
    addr = (rows * 64).astype(np.uint64)
    off = FastDRAMModel(t).run(addr)
    on = FastDRAMModel(t, merge_duplicates=True).run(addr, record_commands=True)
    assert off.merged == 0 and on.merged > 1000
    assert len(_cmds(on, "RD")) == len(addr) - on.merged
    assert on.cycles < off.cycles
    assert on.reads == off.reads == len(addr)
    assert np.all(on.completion > 0)
    # a read behind a write to the same address is never merged across the write
    a = np.array([0, 0, 0], np.uint64)
    r = FastDRAMModel(t, merge_duplicates=True).run(a, [False, True, False], record_commands=True)
    assert r.merged == 0 and len(_cmds(r, "RD")) == 2
    r = FastDRAMModel(t, merge_duplicates=True).run(np.zeros(3, np.uint64), record_commands=True)
    assert r.merged == 2 and len(_cmds(r, "RD")) == 1


def test_queue_depth_one_serves_in_order(t):
    tr = random_gather_trace(200, 256, seed=3)
    r = _run(t, tr.addr, queue=1)
    rd = _cmds(r, "RD")
    got = [(c[2], c[3], c[4], c[5], c[6]) for c in rd]
    f = AddressMapping("rochrababgco", t).decode(tr.addr)
    want = list(zip(f["ra"], f["bg"], f["ba"], f["ro"], f["co"] * t.burst_length))
    assert got == [tuple(int(v) for v in w) for w in want]


# ------------------------------------------------------------------------ validation
def _golden_cases():
    from pathlib import Path

    p = Path(__file__).resolve().parents[2] / "shared" / "golden" / "dram_gather_ddr4.json"
    if not p.is_file():
        return []
    return json.loads(p.read_text())


def _band(case, scale=1.0):
    lo = 0.9 * min(case["dramsim3_cycles"], case["ramulator20_cycles"]) * scale
    hi = 1.1 * max(case["dramsim3_cycles"], case["ramulator20_cycles"]) * scale
    return lo, hi


@pytest.mark.parametrize("case", [g for g in _golden_cases() if g["cfg"] == "DDR4-3200" and g["D"] in (64, 256)],
                         ids=lambda g: f"{g['cfg']}-{g['row_B']}B-full")
def test_full_size_validation(case):
    t = load_preset(case["cfg"].lower(), ranks=2)
    tr = random_gather_trace(200_000, case["row_B"], seed=1)
    r = FastDRAMModel(t).run(tr.addr)
    lo, hi = _band(case)
    assert lo <= r.cycles <= hi, (r.cycles, lo, hi)


# 20,000-request gather traces against the reference band scaled by 20,000 / 200,000 (the start-up
# and the tail are < 0.5 % of such a trace, so the band keeps its meaning)
@pytest.mark.parametrize("case", _golden_cases(), ids=lambda g: f"{g['cfg']}-{g['row_B']}B")
def test_reduced_validation(case):
    n = 20_000
    t = load_preset(case["cfg"].lower(), ranks=2)
    tr = random_gather_trace(n, case["row_B"], seed=1)
    r = FastDRAMModel(t).run(tr.addr)
    lo, hi = _band(case, n / 200_000)
    assert lo <= r.cycles <= hi, (r.cycles, lo, hi)


def test_row_hits_never_negative_when_refresh_reopens_rows():
    # random 64 B gathers: a refresh closes rows that queued requests had opened, so some rows take
    # a second ACT and ACTs exceed requests; row_hits (requests - ACTs) is then clamped at 0
    t = load_preset("ddr4-3200", ranks=2)
    tr = random_gather_trace(40_000, 64, seed=3)
    r = FastDRAMModel(t).run(tr.addr)
    assert r.refreshes > 0 and r.acts > len(tr.addr)
    assert r.row_hits == 0


def test_read_only_inputs_reuse_the_compiled_kernel():
    # a trace's arrays may be read-only views; run() must not compile a second kernel signature
    # (that compilation would land in the timed run and in requests_per_second)
    from pimcast.host import dram_model

    t = load_preset("ddr4-3200", ranks=1)
    m = FastDRAMModel(t)
    m.warmup()
    before = len(dram_model._kernel.signatures)
    addr = random_gather_trace(500, 64, seed=2).addr
    cyc = np.arange(500, dtype=np.int64)
    wr = np.zeros(500, bool)
    for a in (addr, cyc, wr):
        a.setflags(write=False)
    r = m.run(addr, wr, cyc)
    assert r.reads == 500 and len(dram_model._kernel.signatures) == before


def test_kernel_compiles_without_negative_index_wraparound():
    # the kernel is compiled with numba's negative-index wraparound off (6-15 % faster); the switch
    # is in effect only inside the context (restored after it, also on an error), and a function
    # compiled inside it has no compare-and-select of the index against 0, one compiled outside has
    import numba
    import numba.np.arrayobj as ao

    from pimcast.host.dram_model import _no_index_wraparound

    def make():
        @numba.njit
        def at(a, i):
            return a[i]
        return at

    orig = ao.fix_integer_index
    outside, inside = make(), make()
    a = np.arange(5, dtype=np.int64)
    assert outside(a, -1) == 4                       # Python's meaning of -1 outside the context
    with _no_index_wraparound() as active:
        assert active and ao.fix_integer_index is not orig
        assert inside(a, 3) == 3
    assert ao.fix_integer_index is orig
    with pytest.raises(KeyError):
        with _no_index_wraparound():
            raise KeyError("x")
    assert ao.fix_integer_index is orig
    ir_out = outside.inspect_llvm(outside.signatures[0])
    ir_in = inside.inspect_llvm(inside.signatures[0])
    assert "icmp slt" in ir_out and "select" in ir_out
    assert "icmp slt" not in ir_in and "select" not in ir_in


def test_wide_vectors_are_scoped_to_the_kernels_compilation(monkeypatch):
    # inside _wide_vectors() every function numba lowers carries LLVM's
    # "prefer-vector-width"="512" (zmm code on AVX-512 hosts); outside it, or on a first-generation
    # AVX-512 CPU, nothing is changed; the hook is restored after the context, also on an error
    import numba
    import numba.core.cpu as nb_cpu

    from pimcast.host import dram_model

    def make():
        @numba.njit
        def total(a):
            s = 0
            for x in a:
                s += x
            return s
        return total

    orig = nb_cpu.CPUContext.post_lowering
    outside, inside = make(), make()
    a = np.arange(100, dtype=np.int32)
    assert outside(a) == 4950
    monkeypatch.setattr(numba.config, "CPU_NAME", None)
    with dram_model._wide_vectors() as active:
        assert active and nb_cpu.CPUContext.post_lowering is not orig
        assert inside(a) == 4950
    assert nb_cpu.CPUContext.post_lowering is orig
    with pytest.raises(KeyError):
        with dram_model._wide_vectors():
            raise KeyError("x")
    assert nb_cpu.CPUContext.post_lowering is orig
    assert dram_model._WIDE_ATTR in inside.inspect_llvm(inside.signatures[0])
    assert dram_model._WIDE_ATTR not in outside.inspect_llvm(outside.signatures[0])
    monkeypatch.setattr(numba.config, "CPU_NAME", "skylake-avx512")
    with dram_model._wide_vectors() as active:
        assert not active and nb_cpu.CPUContext.post_lowering is orig


def test_every_kernel_signature_is_compiled_without_wraparound():
    # run() types its arguments and compiles a new kernel signature under the switch before the
    # call; a signature the dispatcher compiled on its own (typed differently) would run with
    # wraparound, slower, unnoticed: every overload must be one compiled under the switch
    from pimcast.host import dram_model

    t = load_preset("ddr4-3200", ranks=2)
    tr = random_gather_trace(300, 64, seed=4)
    FastDRAMModel(t).run(tr.addr)
    FastDRAMModel(t, queue=8, merge_duplicates=True).run(tr.addr, np.arange(300) % 3 == 0, np.arange(300) * 2)
    FastDRAMModel(t, max_reads_in_flight=16, recurrence=5).run(tr.addr, slots=np.arange(300) % 4)
    FastDRAMModel(load_preset("hbm2", ranks=1)).run(np.arange(200, dtype=np.uint64) * 64, record_commands=True)
    assert dram_model._kernel.overloads
    assert set(dram_model._kernel.overloads) <= dram_model._UNWRAPPED_SIGNATURES


def test_geometry_beyond_the_packed_request_fields_is_refused():
    # the kernel packs bank, bank group, rank, row and column into one int64 per request: a
    # geometry that does not fit is refused at construction, naming the sizes
    import dataclasses

    t = load_preset("ddr4-3200", ranks=1)
    with pytest.raises(ValueError, match=r"33554432 rows .* exceed the fast model's packed request fields"):
        FastDRAMModel(dataclasses.replace(t, rows=1 << 25))
    FastDRAMModel(dataclasses.replace(t, rows=1 << 24))      # the largest that fits


def test_timing_gap_beyond_the_packed_keys_is_refused():
    # the int32 scheduling keys hold (cycle - base) << 18 with the base at most 1,024 cycles behind:
    # a gap beyond 1,535 cycles (2 x gap + 1,024 must stay below 2**12 - 1) is refused, naming it
    import dataclasses

    t = load_preset("ddr4-3200", ranks=2)
    with pytest.raises(ValueError, match=r"timing gap of 1536 cycles exceeds the fast model's limit of 1535 "
                                         r"cycles .* --model rtl"):
        FastDRAMModel(dataclasses.replace(t, tRFC=1536))
    m = FastDRAMModel(dataclasses.replace(t, tRFC=1535))       # the largest that fits: still exact
    r = m.run(random_gather_trace(3000, 64, seed=9).addr, record_commands=True)
    assert r.refreshes > 0
    assert check_sequence(r.commands, m.t) == []


def test_speed_benchmark_runs_and_checks_command_lists(tmp_path):
    # benchmarks/dram_speed.py on small traces: every trace type timed, the fast and reference
    # kernels' command lists compared, JSON with best / median / first-run figures written
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "dram_speed_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "dram_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--requests", "3000", "--repeat", "2", "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "dram_speed.json").read_text())
    assert len(out["rows"]) == 9
    for r in out["rows"]:
        assert r["same_commands"] is True and r["same_cycles"] is True
        assert r["fast_req_per_s"] >= r["fast_median_req_per_s"] > 0 and r["fast_first_req_per_s"] > 0
    # the figures are attributable to a CPU (the replay speed depends on its clock and vector width)
    cpu = out["meta"]["cpu"]
    assert cpu["model"] and cpu["vector"] in ("avx512f", "avx2", "avx", "sse4_2", "none")


def test_data_path_benchmark(tmp_path):
    # benchmarks/dram_data_path.py on small traces: the bank-group data path never reads less than
    # the channel, beats it by far on 256 B rows whole in a bank group with a deep queue, and no
    # rank exceeds the stated bound
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "dram_data_path_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "dram_data_path.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--requests", "8000", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "dram_data_path.json").read_text())["rows"]
    assert len(rows) == len(mod.ROW_BYTES) * len(mod.MAPPINGS) * len(mod.QUEUES)
    assert (tmp_path / "dram_data_path.png").is_file()
    for r in rows:
        assert r["bankgroup"]["cycles"] <= 1.02 * r["channel"]["cycles"], r
        assert r["bankgroup"]["beats_per_cycle_per_rank"] <= r["bound_beats_per_cycle_per_rank"] + 1e-9, r
        assert r["channel"]["GBps"] <= 25.6
    best = {(r["row_bytes"], r["mapping"], r["queue"]): r["ratio"] for r in rows}
    assert best[(256, "rochrababgco", 128)] > 1.8
    # the deeper FR-FCFS window helps the bank-group path (many bank groups' rows in flight)
    assert best[(256, "rochrababgco", 128)] > best[(256, "rochrababgco", 16)]
