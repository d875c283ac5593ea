"""cocotb testbench of the PIM core (:class:`pimcast.hdl.core.PIMCore`) against the golden model.

Every test drives the core through :class:`pimcast.sim.core_driver.CoreDriver`: the DRAM device
model with its protocol checker is always on (any timing violation fails the test), and every
stream has random pacing (idle cycles on ``insn``/``din``, back-pressure on ``dout``).

* ``test_write_read`` — bulk WRITE/READ round trips, raw bits (including address 0).
* ``test_gather_forward`` — GATHER_REDUCE vs ``models.tensor_cast.gather_reduce`` bit for bit
  (NaNs canonical) over the dims in ``PIMCAST_CORE_DIMS``: bag lengths 0..``PIMCAST_CORE_MAXLEN``,
  duplicates inside and across bags, a hot row, weighted bags, extreme values.
* ``test_tc_backward`` — host ``cast()``, dY written to the device, GATHER_REDUCE with the casted
  index vs ``tc_backward`` (plain and weighted).
* ``test_scatter_sgd`` — SCATTER_SGD vs ``models.tensor_cast.sgd`` bit for bit (signed zeros,
  extreme values), memory outside the updated rows unchanged (the device model's store).
* ``test_errors`` — each error of the ISA reports its code and leaves memory unchanged.

Settings: ``PIMCAST_CORE_PARAMS`` (JSON of ``PIMCore.params()``; else derived from
``PIMCAST_CONFIG``), ``PIMCAST_SEED``, ``PIMCAST_CORE_DIMS`` (default ``16,64``),
``PIMCAST_CORE_MAXLEN`` (default 100), ``PIMCAST_CORE_BAGS`` (bags per case, default 12),
``PIMCAST_CORE_IDLE`` / ``PIMCAST_CORE_BACKPRESSURE`` (default 0.2 / 0.3).
Figures (cycles, lookups, wall time) go to ``PIMCAST_STATS`` as JSON lines.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

__all__ = ["register_top", "run_core", "core_params"]


# ---------------------------------------------------------------------------------------------
# host side


def register_top(config: Any = "small-test", name: str | None = None, **overrides: Any
                 ) -> tuple[str, dict[str, str]]:
    """Register a ``core`` variant (``from_config(config, **overrides)``) in the export TOPS of
    this process; return ``(top name, env)`` for :func:`pimcast.sim.runner.run_cocotb`."""
    import hashlib

    from pimcast.hdl import export
    from pimcast.hdl.core import from_config

    core = from_config(config, **overrides)
    core._MustUse__silence = True
    params = core.params()
    if name is None:
        h = hashlib.sha256(json.dumps({"p": params, "c": str(config), "o": overrides}, sort_keys=True,
                                      default=str).encode()).hexdigest()[:8]
        name = f"core_{h}"
    export.TOPS[name] = lambda cfg=None: from_config(config, **overrides)
    return name, {"PIMCAST_CORE_PARAMS": json.dumps(params)}


#: the variant the tests use: DDR4-3200 rank, 1024 rows per bank (fewer address bits)
TEST_OVERRIDES = dict(rows=1024, buf_beats=256, sgd_rows=32)


def run_core(simulator: str = "verilator", config: Any = "small-test", env: dict[str, str] | None = None,
             testcase=None, **overrides: Any):
    """Build and run this testbench; returns the runner's ``SimResult``."""
    from pimcast.sim.runner import run_cocotb
    from pimcast.sim.tb_bankctl import verilator_pch_fix

    ov = {**TEST_OVERRIDES, **overrides}
    top, penv = register_top(config, **ov)
    with verilator_pch_fix():
        return run_cocotb(top, "pimcast.sim.tb_core", simulator=simulator, env={**penv, **(env or {})},
                          testcase=testcase)


def core_params() -> dict:
    raw = os.environ.get("PIMCAST_CORE_PARAMS")
    if raw:
        return json.loads(raw)
    from pimcast.hdl.core import from_config

    core = from_config(os.environ.get("PIMCAST_CONFIG") or None)
    core._MustUse__silence = True
    return core.params()


# ---------------------------------------------------------------------------------------------
# simulator side

try:
    import cocotb
except ImportError:  # pragma: no cover - host-only use
    cocotb = None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw, 0) if raw.strip() else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


def _stats(record: dict) -> None:
    path = os.environ.get("PIMCAST_STATS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


async def _driver(dut, salt: int = 0):
    from pimcast.sim.core_driver import CoreDriver

    seed = _env_int("PIMCAST_SEED", 1) * 1000 + salt
    drv = CoreDriver(dut, core_params(), seed=seed, idle=_env_float("PIMCAST_CORE_IDLE", 0.2),
                     backpressure=_env_float("PIMCAST_CORE_BACKPRESSURE", 0.3))
    await drv.start()
    return drv, np.random.default_rng(seed)


def _dims() -> list[int]:
    """Row widths (fp32 per row) of the sweeps: ``PIMCAST_CORE_DIMS`` (default ``16,64``)."""
    return [int(d) for d in os.environ.get("PIMCAST_CORE_DIMS", "16,64").split(",") if d.strip()]


def _bits(t) -> np.ndarray:
    from pimcast.models.numerics import canonicalize_nan, f32_to_bits

    return canonicalize_nan(f32_to_bits(t))


def _raw(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy()).view(np.uint32)


def _assert_bits(got, want, what: str) -> None:
    g, w = _bits(got), _bits(want)
    if g.shape != w.shape:
        raise AssertionError(f"{what}: shape {g.shape} != golden {w.shape}")
    bad = np.argwhere(g != w)
    if bad.size:
        i = tuple(bad[0])
        raise AssertionError(f"{what}: {len(bad)} elements differ; first at {i}: "
                             f"core {int(g[i]):#010x} golden {int(w[i]):#010x}")


async def _put_table(drv, base: int, table: np.ndarray) -> None:
    await drv.write(base, np.ascontiguousarray(table, dtype=np.float32).tobytes())


if cocotb is not None:

    @cocotb.test()
    async def test_smoke(dut):
        """STATUS after reset is OK with 0 retired; one beat written and read back."""
        drv, rng = await _driver(dut, 0)
        t0 = time.perf_counter()
        st = await drv.status()
        assert st["status"].name == "OK" and st["retired"] == 1, st
        await drv.write(64 * 3, bytes(range(64)))
        assert await drv.read(64 * 3, 64) == bytes(range(64))
        secs = time.perf_counter() - t0
        _stats({"test": "smoke", "cycles": drv.clock, "seconds": secs, "cycles_per_s": drv.clock / secs})

    @cocotb.test()
    async def test_write_read(dut):
        """WRITE/READ round trips of random bytes (address 0 included), raw bits."""
        drv, rng = await _driver(dut, 1)
        t0 = time.perf_counter()
        for addr, n in ((0, 16), (64 * 37, 3), (64 * 1000, 40), (64 * 5000, 1)):
            data = rng.integers(0, 256, n * 64, dtype=np.uint8).tobytes()
            await drv.write(addr, data)
            got = await drv.read(addr, n * 64)
            assert got == data, f"read back at {addr:#x} differs"
        # a write larger than the input buffer is split; a read of it returns everything
        big = rng.integers(0, 256, (drv.buf_beats + 5) * 64, dtype=np.uint8).tobytes()
        await drv.write(64 * 20000, big)
        assert await drv.read(64 * 20000, len(big)) == big
        _stats({"test": "write_read", "cycles": drv.cycles, "seconds": time.perf_counter() - t0})

    @cocotb.test()
    async def test_gather_partial(dut):
        """Bank-group units (``units > 1``): GATHER_REDUCE vs the golden partial-sum reduction
        (:func:`pimcast.models.tensor_cast.gather_reduce_partial`: each unit — the bank group of
        the row — sums its rows of a bag in index order, the rank buffer adds the units' sums in
        unit order), bit for bit; the table spans every bank group; plain, weighted with extreme
        weights (inf, NaN, subnormals, signed zeros) and a hot row; empty bags.  Returns at once
        on a rank-level core."""
        import torch

        from pimcast.models.tensor_cast import gather_reduce, gather_reduce_partial
        from pimcast.sim.tb_reduce import make_workload, random_lengths

        p = core_params()
        units = int(p.get("units", 1))
        if units == 1:
            return
        bg_lo, bg_n = p["bg_field"]
        drv, rng = await _driver(dut, 7)
        maxlen = _env_int("PIMCAST_CORE_MAXLEN", 40)
        nbags = _env_int("PIMCAST_CORE_BAGS", 6)
        base_beat = 64
        lookups = differ = 0
        t0, c0 = time.perf_counter(), drv.cycles
        for dim in _dims():
            r = dim // 16
            # rows enough to cover every bank group (a bank group holds 2**bg_lo consecutive beats)
            nrows = (units << bg_lo) // r + 8
            row_unit = ((base_beat + np.arange(nrows) * r) >> bg_lo) & ((1 << bg_n) - 1)
            assert len(set(row_unit.tolist())) == units
            tab = None   # one table per D (written once; extreme values come from the weights)
            for name, kw in (("plain", dict(weighted=False, extreme=False)),
                             ("weighted_extreme", dict(weighted=True, extreme=True)),
                             ("hot_row", dict(weighted=False, extreme=False, hot_row=True))):
                lengths = random_lengths(rng, nbags, maxlen)
                lengths[0], lengths[-1] = maxlen, 0
                w = make_workload(rng, dim, lengths, table_rows=nrows, **kw)
                if tab is None:
                    await _put_table(drv, 64 * base_beat, w.table)
                    tab = torch.from_numpy(w.table)
                idx, offs = torch.from_numpy(w.indices), torch.from_numpy(w.offsets)
                wt = None if w.weights is None else torch.from_numpy(w.weights)
                g0 = drv.cycles
                got = await drv.gather_reduce(64 * base_beat, dim * 4, idx, offs, wt, rows=nrows)
                g_cycles = drv.cycles - g0
                want = gather_reduce_partial(tab, idx, offs, wt, row_unit=row_unit,
                                             unit_group=np.zeros(units, np.int64))
                _assert_bits(got, want, f"partial gather D={dim} {name}")
                differ += int((_bits(want) != _bits(gather_reduce(tab, idx, offs, wt))).sum())
                lookups += int(w.indices.size)
                _stats({"test": f"partial_d{dim}_{name}", "cycles": g_cycles, "lookups": int(w.indices.size),
                        "bags": int(lengths.size), "dim": dim})
        secs = time.perf_counter() - t0
        _stats({"test": "gather_partial", "cycles": drv.cycles - c0, "lookups": lookups, "seconds": secs,
                "differ_from_sequential": differ})

    @cocotb.test()
    async def test_gather_forward(dut):
        """GATHER_REDUCE vs the golden gather_reduce, bit for bit, over dims and bag shapes."""
        import torch

        from pimcast.models.tensor_cast import gather_reduce
        from pimcast.sim.tb_reduce import make_workload, random_lengths

        drv, rng = await _driver(dut, 2)
        dims = _dims()
        maxlen = _env_int("PIMCAST_CORE_MAXLEN", 100)
        nbags = _env_int("PIMCAST_CORE_BAGS", 12)
        lookups = 0
        t0, c0 = time.perf_counter(), drv.cycles
        base = 64 * 64   # the table starts at beat 64 (row 0 is at address 4096)
        for dim in dims:
            cases = [
                ("plain", dict(weighted=False, extreme=False, hot_row=False)),
                ("hot_row", dict(weighted=False, extreme=False, hot_row=True)),
                ("weighted_extreme", dict(weighted=True, extreme=True, hot_row=False)),
            ]
            for name, kw in cases:
                lengths = random_lengths(rng, nbags, maxlen)
                lengths[0] = maxlen          # the longest bag
                lengths[-1] = 0              # and an empty one
                w = make_workload(rng, dim, lengths, table_rows=48, **kw)
                await _put_table(drv, base, w.table)
                idx, offs = torch.from_numpy(w.indices), torch.from_numpy(w.offsets)
                wt = None if w.weights is None else torch.from_numpy(w.weights)
                g0 = drv.cycles
                got = await drv.gather_reduce(base, dim * 4, idx, offs, wt, rows=48)
                g_cycles = drv.cycles - g0
                want = gather_reduce(torch.from_numpy(w.table), idx, offs, wt)
                _assert_bits(got, want, f"gather D={dim} {name}")
                lookups += int(w.indices.size)
                _stats({"test": f"gather_d{dim}_{name}", "cycles": g_cycles, "lookups": int(w.indices.size),
                        "bags": int(lengths.size), "dim": dim})
            # bag lengths 0..maxlen in one batch (every length once, shuffled), duplicates across bags
            lengths = rng.permutation(np.arange(0, maxlen + 1, max(1, maxlen // 12)))
            w = make_workload(rng, dim, lengths, table_rows=8, weighted=False, extreme=False)
            await _put_table(drv, base, w.table)
            idx, offs = torch.from_numpy(w.indices), torch.from_numpy(w.offsets)
            got = await drv.gather_reduce(base, dim * 4, idx, offs, rows=8)
            _assert_bits(got, gather_reduce(torch.from_numpy(w.table), idx, offs), f"gather D={dim} lengths")
            lookups += int(w.indices.size)
        secs = time.perf_counter() - t0
        _stats({"test": "gather_forward", "cycles": drv.cycles - c0, "lookups": lookups, "seconds": secs,
                "cycles_per_s": (drv.cycles - c0) / secs, "lookups_per_s": lookups / secs})

    @cocotb.test()
    async def test_tc_backward(dut):
        """Tensor-cast backward on the core: cast() on the host, dY on the device, gather."""
        import torch

        from pimcast.models.tensor_cast import cast, tc_backward

        drv, rng = await _driver(dut, 3)
        dims = _dims()
        base = 64 * 300
        for dim in dims:
            for weighted in (False, True):
                bags = 10
                lengths = rng.integers(0, 9, bags)
                idx = torch.from_numpy(rng.integers(0, 20, int(lengths.sum())).astype(np.int64))
                offs = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
                dy = torch.from_numpy(rng.standard_normal((bags, dim)).astype(np.float32))
                psw = torch.from_numpy(rng.standard_normal(idx.numel()).astype(np.float32)) if weighted else None
                c = cast(idx, offs)
                await _put_table(drv, base, dy.numpy())
                wts = None if psw is None else psw[c.perm].contiguous()
                g0 = drv.cycles
                got = await drv.gather_reduce(base, dim * 4, c.casted_index, c.casted_offsets, wts, rows=bags)
                g_cycles = drv.cycles - g0
                _assert_bits(got, tc_backward(dy, c, psw), f"tc_backward D={dim} weighted={weighted}")
                _stats({"test": f"tc_backward_d{dim}_w{int(weighted)}", "cycles": g_cycles,
                        "lookups": int(idx.numel()), "unique": c.num_unique})

    @cocotb.test()
    async def test_scatter_sgd(dut):
        """SCATTER_SGD vs the golden sgd, bit for bit; memory outside the rows unchanged."""
        import torch

        from pimcast.models.tensor_cast import sgd
        from pimcast.sim.tb_reduce import extreme_values

        drv, rng = await _driver(dut, 4)
        dims = _dims()
        base = 64 * 2000
        for dim in dims:
            nrows = 40
            table = extreme_values(rng, (nrows, dim), 0.1)
            table[1, :] = np.float32(-0.0)        # w = -0.0, g = 0: fma(-lr, 0, -0.0) must stay -0.0
            guard = rng.integers(0, 256, 64 * 4, dtype=np.uint8).tobytes()
            await drv.write(base - len(guard), guard)
            await drv.write(base + nrows * dim * 4, guard)
            await _put_table(drv, base, table)
            await drv.read(base, table.nbytes)
            before = dict(drv.dev.store)
            for count in (1, 7, nrows - 5):
                others = rng.permutation(np.array([r for r in range(nrows) if r != 1]))
                rows = torch.from_numpy(np.concatenate([[1], others])[:count].astype(np.int64))
                grads = torch.from_numpy(extreme_values(rng, (count, dim), 0.05))
                grads[0] = 0.0                    # row 1 stays -0.0 through every round
                lr = float(rng.choice([0.01, 0.5, 3.0]))
                want = sgd(torch.from_numpy(table), rows, grads, lr)
                s0 = drv.cycles
                await drv.scatter_sgd(base, dim * 4, rows, grads, lr, table_rows=nrows)
                s_cycles = drv.cycles - s0
                got = np.frombuffer(await drv.read(base, nrows * dim * 4), dtype=np.float32).reshape(nrows, dim)
                _assert_bits(torch.from_numpy(got.copy()), want, f"sgd D={dim} count={count}")
                assert (_raw(torch.from_numpy(got.copy()))[1] == 0x80000000).all(), "-0.0 lost its sign"
                # bits outside the table are untouched
                assert await drv.read(base - len(guard), len(guard)) == guard
                assert await drv.read(base + nrows * dim * 4, len(guard)) == guard
                table = got.copy()
                _stats({"test": f"sgd_d{dim}_n{count}", "cycles": s_cycles, "rows": count, "dim": dim})
            # every DRAM burst outside the table's beats kept its bits
            table_keys = set()
            after = drv.dev.store
            for k in set(before) | set(after):
                if before.get(k) != after.get(k):
                    table_keys.add(k)
            amap_beats = _beats_of(drv, base, nrows * dim * 4 // 64)
            extra = table_keys - amap_beats
            assert not extra, f"SGD changed memory outside the table: {sorted(extra)[:4]}"

    def _beats_of(drv, addr: int, nbeats: int) -> set:
        from pimcast.hdl.dram.timing import AddressMapping

        amap = AddressMapping(drv.params["mapping"], drv.t)
        out = set()
        for a in range(addr, addr + 64 * nbeats, 64):
            f = amap.decode(np.array([a], dtype=np.uint64))
            out.add((int(f["ra"][0]), int(f["bg"][0]), int(f["ba"][0]), int(f["ro"][0]),
                     int(f["co"][0]) * drv.t.burst_length))
        return out

    @cocotb.test()
    async def test_errors(dut):
        """Each error: the right code (and detail), no memory change, no output data."""
        import torch

        from pimcast.hdl import isa
        from pimcast.host import isa_codec as codec
        from pimcast.sim.core_driver import PIMStatusError

        drv, rng = await _driver(dut, 5)
        S = isa.Status
        p = drv.params
        cap = p["capacity_beats"]
        dim, nrows, base = 16, 20, 64 * 64
        table = rng.standard_normal((nrows, dim)).astype(np.float32)
        await _put_table(drv, base, table)
        await drv.read(base, table.nbytes)   # the writes have reached the DRAM model once this returns
        tb = base // 64
        snapshot = dict(drv.dev.store)
        grads = torch.from_numpy(rng.standard_normal((3, dim)).astype(np.float32))
        sgd_ok = codec.scatter_sgd_program(tb, nrows, [2, 5, 7], grads, 0.5)
        gr_ok = codec.gather_reduce_program(tb, nrows, dim, [1, 2, 3], [0, 2])

        def reenc(insn, **kw):
            d = codec.decode(insn)
            op = d.pop("opcode")
            d.update(kw)
            return codec.encode(op, **d)

        sg = lambda **kw: reenc(sgd_ok.insn, **kw)  # noqa: E731
        cases = [
            ("unknown_opcode", 0x7E, [], None, S.UNKNOWN_OPCODE, 0x7E),
            ("row_bytes_zero", sg(row_bytes=0), sgd_ok.beats_in, None, S.BAD_ROW_BYTES, 0),
            ("row_bytes_not_64", sg(row_bytes=100), sgd_ok.beats_in, None, S.BAD_ROW_BYTES, 100),
            ("row_bytes_too_big", sg(row_bytes=p["max_row_bytes"] + 64), sgd_ok.beats_in, None, S.BAD_ROW_BYTES,
             p["max_row_bytes"] + 64),
            ("write_beyond", codec.write_program(cap - 1, [1, 2]).insn, [1, 2], None, S.ADDR_OUT_OF_RANGE, cap + 1),
            ("read_beyond", codec.read_program(cap, 1).insn, [], None, S.ADDR_OUT_OF_RANGE, cap + 1),
            ("table_beyond", sg(table=cap - 10), sgd_ok.beats_in, None, S.ADDR_OUT_OF_RANGE, cap - 10 + nrows),
            ("sgd_count_too_large", sg(count=p["sgd_rows"] + 1), sgd_ok.beats_in, None, S.COUNT_TOO_LARGE,
             p["sgd_rows"] + 1),
            ("write_too_large", codec.write_program(10, [0] * (p["buf_beats"] + 1)).insn, [7] * (p["buf_beats"] + 1),
             None, S.COUNT_TOO_LARGE, p["buf_beats"] + 1),
            ("sgd_row_out_of_range", codec.scatter_sgd_program(tb, nrows, [2, nrows, 7], grads, 0.5).insn,
             codec.scatter_sgd_program(tb, nrows, [2, nrows, 7], grads, 0.5).beats_in, None, S.ROW_OUT_OF_RANGE, nrows),
            ("sgd_duplicate", codec.scatter_sgd_program(tb, nrows, [2, 5, 2], grads, 0.5).insn,
             codec.scatter_sgd_program(tb, nrows, [2, 5, 2], grads, 0.5).beats_in, None, S.DUPLICATE_ROW, 2),
            # the first 9 takes the one-cycle path (larger than every earlier id), 7 does not (compared
            # with 9), nor does the second 9: compared, found
            ("sgd_duplicate_unsorted", codec.scatter_sgd_program(tb, nrows, [9, 7, 9], grads, 0.5).insn,
             codec.scatter_sgd_program(tb, nrows, [9, 7, 9], grads, 0.5).beats_in, None, S.DUPLICATE_ROW, 9),
            ("sgd_ended_early", sgd_ok.insn, sgd_ok.beats_in[:-1], None, S.STREAM_ENDED_EARLY, len(sgd_ok.beats_in)),
            ("sgd_too_long", sgd_ok.insn, sgd_ok.beats_in + [5], None, S.STREAM_TOO_LONG, len(sgd_ok.beats_in)),
            ("write_ended_early", codec.write_program(tb, [1, 2, 3]).insn, [1, 2], None, S.STREAM_ENDED_EARLY, 3),
            ("gather_row_out_of_range", codec.gather_reduce_program(tb, nrows, dim, [1, nrows + 3], [0]).insn,
             codec.gather_reduce_program(tb, nrows, dim, [1, nrows + 3], [0]).beats_in, None, S.ROW_OUT_OF_RANGE,
             nrows + 3),
            ("gather_ended_early", reenc(gr_ok.insn, bags=40), gr_ok.beats_in, None, S.STREAM_ENDED_EARLY, None),
            ("gather_too_long", gr_ok.insn, gr_ok.beats_in + [0], None, S.STREAM_TOO_LONG, None),
        ]
        # the validation pass checks a run of lookups per cycle (all ids of a bag in one beat):
        # the FIRST bad id is reported (detail = the id, position = its lookup number, counted
        # over all bags) wherever it sits in the beat, and a weighted pair cut by the end of the
        # stream is STREAM_ENDED_EARLY (detail = its id's word index) unless an earlier id is bad
        ids = lambda n, bad=(): [nrows + 5 + j if j in bad else (3 * j) % nrows for j in range(n)]  # noqa: E731
        wts = lambda n: torch.from_numpy(rng.standard_normal(n).astype(np.float32))  # noqa: E731

        def gcase(name, lens, bad, weighted=False, drop_last=False, code=S.ROW_OUT_OF_RANGE, detail=None,
                  pos=None):
            idx = ids(sum(lens), bad)
            prog = codec.gather_reduce_program(tb, nrows, dim, idx, np.cumsum([0] + lens[:-1]),
                                               wts(len(idx)) if weighted else None)
            beats = prog.beats_in[:-1] if drop_last else prog.beats_in
            if detail is None:
                detail, pos = idx[min(bad)], min(bad)
            return (name, prog.insn, beats, None, code, detail, pos)

        cases += [
            # one bag, words 1..30: lookups 6 and 9 bad (beat 0, lanes 7 and 10)
            gcase("gather_bad_mid_beat", [30], {6, 9}),
            # bags 3, 0, 40: the third bag's run starts at lane 6; lookups 23, 25 bad (beat 1, lanes 10, 12)
            gcase("gather_bad_mid_beat_later_bag", [3, 0, 40], {23, 25}),
            # bag 0 ends mid-beat (its last lookup 4 at lane 5 bad), bag 1 in the same beat bad too
            gcase("gather_bad_end_of_bag_mid_beat", [5, 4], {4, 6}),
            # bag 0 good up to lane 5, bag 1's lookup 7 (lane 9) bad, lookup 8 too
            gcase("gather_bad_after_bag_end_mid_beat", [5, 4], {7, 8}),
            # bag 0 ends at lane 15 of beat 0 with a bad id there; bag 1 bad too
            gcase("gather_bad_lane15", [15, 2], {14, 16}),
            # weighted, one bag: pairs at odd lanes, lookup 7's id at lane 15 (weight in beat 1) bad, 9 too
            gcase("gather_w_bad_straddling_pair", [12], {7, 9}, weighted=True),
            # weighted, bags 2, 10: the second bag's pairs start at lane 6; lookups 5, 6 bad
            gcase("gather_w_bad_mid_beat", [2, 10], {5, 6}, weighted=True),
            # weighted, bags 3, 6: bag 0 ends mid-beat (last id lane 5 bad)
            gcase("gather_w_bad_end_of_bag_mid_beat", [3, 6], {2, 4}, weighted=True),
            # weighted, one bag of 8 with the beat of lookup 7's weight missing: the stream ends inside
            # that pair (detail = word 15) ...
            gcase("gather_w_ended_in_pair", [8], set(), weighted=True, drop_last=True,
                  code=S.STREAM_ENDED_EARLY, detail=15, pos=1),
            # ... also when that pair's id is bad (the stream check comes first, as one lookup per cycle)
            gcase("gather_w_ended_in_bad_pair", [8], {7}, weighted=True, drop_last=True,
                  code=S.STREAM_ENDED_EARLY, detail=15, pos=1),
            # ... but an earlier bad id in the same beat is reported first
            gcase("gather_w_bad_before_ended_pair", [8], {3, 7}, weighted=True, drop_last=True),
        ]
        for name, insn, beats, lasts, code, detail, *pos in cases:
            data, st = await drv.send(insn, beats, lasts, name=name)
            assert st["status"] is code, f"{name}: status {st['status']!r}, expected {code!r} ({st})"
            if detail is not None:
                assert st["detail"] == detail, f"{name}: detail {st['detail']}, expected {detail}"
            if pos and pos[0] is not None:
                assert st["position"] == pos[0], f"{name}: position {st['position']}, expected {pos[0]}"
            assert st["tag"] == 0 and data == [], f"{name}: {len(data)} beats out"
            assert drv.dev.store == snapshot, f"{name}: memory changed"
            st2 = await drv.status()
            assert st2["status"] is S.OK, f"{name}: error not cleared by STATUS"
        # only the first error is kept; the tag and opcode are reported
        bad1 = codec.read_program(cap, 1, tag=77)
        drv._insn_q.append(bad1.insn)   # queued ahead of the next send: two errors before one STATUS
        _, st = await drv.send(codec.encode(isa.Opcode.READ, addr=cap + 5, beats=1, tag=78), [], name="second")
        assert st["status"] is S.ADDR_OUT_OF_RANGE and st["tag"] == 77 and st["opcode"] == isa.Opcode.READ.value
        # the driver raises PIMStatusError; the good programs still work afterwards
        try:
            await drv.gather_reduce(base, dim * 4, torch.tensor([0, nrows]), torch.tensor([0]), rows=nrows)
        except PIMStatusError as exc:
            assert exc.name == "ROW_OUT_OF_RANGE" and exc.code == S.ROW_OUT_OF_RANGE.value
        else:
            raise AssertionError("gather with a bad row did not raise")
        got = await drv.gather_reduce(base, dim * 4, torch.tensor([1, 2, 3]), torch.tensor([0, 2]), rows=nrows)
        from pimcast.models.tensor_cast import gather_reduce
        _assert_bits(got, gather_reduce(torch.from_numpy(table), torch.tensor([1, 2, 3]), torch.tensor([0, 2])),
                     "gather after errors")
        assert drv.dev.store == snapshot
