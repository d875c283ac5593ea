"""Forward gather-reduce on the PIM core RTL vs the host-side gather, per workload (issue 4 §5).

For each workload (D in {16, 64, 128, 256}; uniform or Zipf(0.9) row ids over a 1 M-row table;
pooling 1, 20 and 100 lookups per bag) on a 2-rank DDR4-3200 DIMM:

* ``rtl_rank`` — **measured on the generated Verilog**: the rank-level placement puts one core
  per rank; with the rank mapping ``robabgcorach`` consecutive 64 B beats alternate ranks, so
  each rank's core gathers, for every lookup, the beats of the row its rank holds (half a row when
  a row has >= 2 beats, the whole row on one rank for D = 16). Both ranks' shares run on the core
  RTL (:mod:`pimcast.sim.bench_core`: cocotb, DRAM device model + protocol checker, no stalls on
  the host streams); the DIMM's time is the slower rank.
* ``host`` — the host-side baseline on the same preset: the controller alone reading every row to
  the host over the shared channel (both ranks, CPU mapping ``rorabacobgch``), timed by the fast
  DRAM model (:class:`pimcast.host.baselines.ChannelTimer`, ``timing="fast"``; within 5 % of the
  controller RTL per issue 3).
* ``link`` — the pooled results cross the DIMM's channel to the host: ``bags x row beats x BL/2``
  cycles (one 64 B burst per BL/2 tCK); the rank-level DIMM time is ``max(slower rank, link)``
  (results stream out while the cores work), which is what ``speedup_rtl_rank`` uses — with
  pooling 1 the results are as large as the gathered rows, so no placement can win there.
* ``model_rank`` / ``model_bankgroup`` — the ``model`` backend's cycles (``open_device("model")``)
  for the rank and (striped) bank-group placements with the **same window** as the RTL core.  ``model_rank / rtl_rank`` is the model backend's error against the RTL.
* ``rtl_striped`` (``--striped-rtl``) — **measured on the generated Verilog** of the striped
  bank-group core (``from_config("bankgroup-ddr4-3200")``: sequential numerics, one controller per
  rank on the bank-group data path): its mapping stripes beats over the ranks as the rank
  placement does, so every rank core gets the rank-level share; ``model_bankgroup / rtl_striped``
  is the model backend's error against it.
* ``model_trim`` — the ``model`` backend on ``trim-ddr4-3200``: bank-group units with TRiM-style
  partial sums (rows whole per bank group, ``accumulate: partial``).
* ``rtl_trim`` — **measured on the generated Verilog** of the bank-group core (``from_config
  ("trim-ddr4-3200")``: 4 units per rank, the bank-group data path, partial sums): rows are whole
  per rank, so each rank's core gathers the lookups of its rows (:func:`trim_share`; only the
  bags it holds rows of, as the ``rtl`` backend does); the DIMM's time is ``max(slower rank,
  link)`` with one sum per (bag, rank holding rows of it) crossing the channel (the host adds
  them).  ``--no-trim-rtl`` skips it; ``--simulate-trim`` simulates it even with ``--rtl-json``.
* ``unit_model`` — the model calibrated to one core: each rank's core-local stream through the
  unit timing (:class:`pimcast.host.timing.PIMTimer`: fast DRAM model, ``rob_tags`` reads in
  flight, FMA drain) plus the core's serial index-stream and validation pass
  (:func:`pimcast.host.timing.gather_setup_cycles`, which the model backend does not add);
  ``unit_model_dimm = max(slower rank, link)``, compared with ``rtl_rank``.
* ``REF`` — refreshes the RTL run issued during each rank's workload (r0/r1).  The workloads run
  back to back in one simulation, so each starts at another refresh phase; the fast models (unit,
  model backend, host gather) start every stream a full ``tREFI`` (12,480 tCK) before the first
  refresh, so a workload shorter than that never pays one there.  A REF costs the core
  ~500-700 tCK (tRFC = 560 plus the reopened rows): every model/RTL gap above ~3 % below D = 256
  is such a workload.
* ceilings — FACTS.md §3 bounds (:func:`pimcast.host.baselines.gather_ceilings`).

Prints a table, saves ``build/bench/core_speedup[_rob<N>_q<M>].json`` and ``.png``.

The window (reads in flight ``rob_tags``, controller ``queue``) comes from the PIM config
``configs/pim/rank-ddr4-3200-1rank.yaml`` (RTL core, one per rank; input buffer 1,024 beats) and
``rank-ddr4-3200.yaml`` (model backend): 128 / 32 by default; ``--rob-tags`` / ``--queue``
override both (e.g. ``--rob-tags 32 --queue 16``: the core constructor's small window).

Usage: ``PIMCAST_VERILATOR_OPT=-O1 python benchmarks/core_speedup.py [--simulator icarus|verilator] [--lookups N] [--dims 16,64,128,256]
[--pooling 1,20,100] [--rob-tags N] [--queue N] [--out build/bench]``  (Verilator -O1: ~13 min for
the default grid on the shared 2-core host, most of it the core build.)
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TABLE_ROWS = 1 << 20
ZIPF_ALPHA = 0.9


def make_indices(rng, dist: str, n: int, rows: int) -> np.ndarray:
    from pimcast.host.workloads import zipf_indices

    return zipf_indices(rng, n, rows, 0.0 if dist == "uniform" else ZIPF_ALPHA)


def rank_share(idx: np.ndarray, off: np.ndarray, dim: int, rank: int, ranks: int = 2):
    """The core-local GATHER_REDUCE of ``rank`` for a device-level gather (rank = beat mod ranks).

    Returns ``(local idx, local offsets, local row bytes, local table rows)``."""
    beats = -(-dim * 4 // 64)
    if beats % ranks == 0:                 # every row splits evenly: all lookups, 1/ranks of a row
        return idx, off, beats // ranks * 64, TABLE_ROWS
    if beats != 1:
        raise ValueError(f"rows of {beats} beats do not split over {ranks} ranks")
    keep = (idx % ranks) == rank           # one-beat rows alternate ranks
    bag = np.searchsorted(off, np.arange(idx.size), side="right") - 1
    lengths = np.bincount(bag[keep], minlength=off.size)
    loff = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return idx[keep] // ranks, loff, 64, TABLE_ROWS // ranks


@functools.lru_cache(maxsize=None)
def _trim_layout(dim: int, config: str):
    from pimcast.host.backends.rtl import RankLayout
    from pimcast.host.pim_config import load_pim_config

    return RankLayout(load_pim_config(config), 0, TABLE_ROWS, -(-dim * 4 // 64) * 64)


def trim_share(idx: np.ndarray, off: np.ndarray, dim: int, rank: int, config: str = "trim-ddr4-3200"):
    """The core-local GATHER_REDUCE of ``rank`` on the bank-group (partial-sum) device, as the
    ``rtl`` backend splits it (:class:`pimcast.host.backends.rtl.RankLayout`, the table at byte 0):
    rows are whole per rank (the config's mapping), so the rank's core gets the lookups of its
    rows, only for the bags it holds rows of, each row id re-numbered in the core's one-rank
    address space.

    Returns ``(local idx, local offsets, row bytes, local table rows)``."""
    lay = _trim_layout(dim, config)
    keep = lay.rank[idx] == rank
    bag = np.searchsorted(off, np.arange(idx.size), side="right") - 1
    _, lengths = np.unique(bag[keep], return_counts=True)      # only the bags the rank holds rows of
    loff = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return lay.local[idx[keep]], loff, lay.row_bytes, int(lay.counts[rank])


def host_cycles(idx: np.ndarray, dim: int) -> int:
    from pimcast.host.baselines import ChannelTimer

    beats = -(-dim * 4 // 64)
    addr = (idx[:, None] * beats + np.arange(beats)[None, :]).reshape(-1) * 64
    return int(ChannelTimer("ddr4-3200", ranks=2, timing="fast", max_timed=1 << 20).time(addr))


def link_cycles(bags: int, dim: int) -> int:
    """Cycles to move ``bags`` pooled rows to the host over one DDR4-3200 channel (64 B per BL/2)."""
    from pimcast.hdl.dram.timing import load_preset

    return bags * -(-dim * 4 // 64) * load_preset("ddr4-3200", ranks=2).BL2


def model_cycles(config: str, idx: np.ndarray, off: np.ndarray, dim: int, mapping=None, **window) -> int:
    import torch

    from pimcast.host import open_device
    from pimcast.host.pim_config import load_pim_config

    cfg = load_pim_config(config, **({"mapping": mapping} if mapping else {}), **window)
    dev = open_device("model", cfg, timing="fast")
    dev.alloc("t", TABLE_ROWS, dim)
    dev.reset_stats()
    dev.gather_reduce("t", torch.from_numpy(idx), torch.from_numpy(off))
    return int(dev.stats()["cycles"])


def unit_config(mapping=None, **window):
    """The PIM config of one rank's core (8 GiB, the RTL top), with the window overrides."""
    from pimcast.host.pim_config import load_pim_config

    return load_pim_config("rank-ddr4-3200-1rank", **({"mapping": mapping} if mapping else {}), **window)


def unit_model_cycles(timer, job: dict) -> dict:
    """One core's GATHER_REDUCE (a ``jobs`` entry: core-local ids, offsets, row bytes) on the
    calibrated unit model: fast DRAM model with the config's window + the core's setup pass."""
    from pimcast.host.timing import gather_setup_cycles

    r = int(job["row_bytes"]) // 64
    idx = np.asarray(job["idx"], np.int64)
    beats = (int(job["base"]) + idx[:, None] * r + np.arange(r)[None, :]).reshape(-1)
    bag = np.searchsorted(np.asarray(job["off"]), np.arange(idx.size), side="right") - 1
    groups = (bag[:, None] * r + np.arange(r)[None, :]).reshape(-1)     # one accumulator slot each
    lengths = np.diff(np.asarray(job["off"], np.int64), append=idx.size)     # per bag (exact run count)
    setup = gather_setup_cycles(int(idx.size), int(len(job["off"])), lengths=lengths)
    res = timer.time_stream(beats.astype(np.uint64) * np.uint64(64), groups=groups, fmas=int(idx.size) * 16 * r,
                            setup_cycles=setup)
    return {"cycles": int(res["cycles"]), "setup": setup, "dram": int(res["busy"]["dram_max"]),
            "sampled": bool(res["sampled"])}


def run_rtl(workloads: list[dict], simulator: str, mapping=None, config=None, **window) -> list[dict]:
    from pimcast.sim.runner import run_cocotb
    from pimcast.sim.tb_core import register_top

    # the core of one rank (8 GiB) as the config builds it (window from the config), optionally
    # with another device mapping; ``config``: another PIM config's core (the bank-group one)
    if config is not None:
        from pimcast.host.pim_config import load_pim_config

        cfg = load_pim_config(config, **window)
    else:
        cfg = unit_config(mapping, **window)
    top, env = register_top(cfg)
    arrays = {"meta": json.dumps([{k: w[k] for k in ("name", "row_bytes", "rows", "base")} for w in workloads])}
    for k, w in enumerate(workloads):
        arrays[f"idx_{k}"], arrays[f"off_{k}"] = w["idx"], w["off"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "workloads.npz"
        np.savez(path, **arrays)
        res = run_cocotb(top, "pimcast.sim.bench_core", simulator=simulator,
                         env={**env, "PIMCAST_CORE_WORKLOADS": str(path)})
    if not res.ok:
        raise RuntimeError(f"core measurement failed: {res.error or res.failures} (see {res.build_dir})")
    return [s for s in res.stats if s.get("test") == "measure"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulator", default="icarus", choices=("icarus", "verilator"))
    ap.add_argument("--lookups", type=int, default=400, help="lookups per workload (default 400)")
    ap.add_argument("--dims", default="16,64,128,256")
    ap.add_argument("--pooling", default="1,20,100")
    ap.add_argument("--dists", default="uniform,zipf")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rob-tags", type=int, default=None,
                    help="reads in flight per unit (PIM config rob_tags; default the config's, 128)")
    ap.add_argument("--queue", type=int, default=None,
                    help="controller queue depth per unit (PIM config queue; default the config's, 32)")
    ap.add_argument("--mapping", default=None,
                    help="device address mapping of the rank configs (default: theirs, robabgcorach); the rank "
                         "field must stay lowest (above ch) for the per-rank split")
    ap.add_argument("--rtl-json", default=None,
                    help="take the RTL cycles from an earlier run's JSON (same workloads, seed and window) "
                         "instead of simulating: recomputes the model columns only")
    ap.add_argument("--simulate-trim", action="store_true",
                    help="simulate the bank-group core even with --rtl-json (the rank-level RTL cycles from the JSON)")
    ap.add_argument("--no-trim-rtl", action="store_true",
                    help="skip the bank-group (trim-ddr4-3200, partial sums) core RTL runs")
    ap.add_argument("--striped-rtl", action="store_true",
                    help="also simulate the striped bank-group core (bankgroup-ddr4-3200, sequential numerics; "
                         "the rank-level split: beats alternate ranks), also with --rtl-json")
    ap.add_argument("--out", default=str(REPO / "build" / "bench"))
    args = ap.parse_args(argv)
    from pimcast.host.baselines import gather_ceilings

    rng = np.random.default_rng(args.seed)
    cases, jobs, tjobs = [], [], []
    for dim in [int(x) for x in args.dims.split(",")]:
        for dist in args.dists.split(","):
            for pool in [int(x) for x in args.pooling.split(",")]:
                bags = max(1, args.lookups // pool)
                idx = make_indices(rng, dist, bags * pool, TABLE_ROWS)
                off = np.arange(bags, dtype=np.int64) * pool
                case = {"dim": dim, "dist": dist, "pooling": pool, "bags": bags, "lookups": int(idx.size),
                        "idx": idx, "off": off}
                for r in range(2):
                    li, lo, rb, rows = rank_share(idx, off, dim, r)
                    jobs.append({"name": f"d{dim}-{dist}-p{pool}-r{r}", "idx": li, "off": lo, "row_bytes": rb,
                                 "rows": rows, "base": 0})
                    li, lo, rb, rows = trim_share(idx, off, dim, r)
                    tjobs.append({"name": f"d{dim}-{dist}-p{pool}-r{r}", "idx": li, "off": lo, "row_bytes": rb,
                                  "rows": rows, "base": 0})
                    case.setdefault("trim_bags_per_rank", []).append(int(lo.size))
                cases.append(case)
    t0 = time.perf_counter()
    if args.mapping and not args.mapping.endswith("rach"):
        ap.error(f"--mapping {args.mapping!r}: the per-rank split needs 'ra' then 'ch' as the lowest fields")
    window = {k: v for k, v in (("rob_tags", args.rob_tags), ("queue", args.queue)) if v is not None}
    ucfg = unit_config(args.mapping, **window)     # validates the window before the long run
    print(f"window: rob_tags {ucfg.rob_tags} reads in flight, queue {ucfg.queue}", flush=True)
    from pimcast.host.timing import PIMTimer

    timer = PIMTimer(ucfg)
    unit = {j["name"]: unit_model_cycles(timer, j) for j in jobs}
    tmeas_prev: dict = {}
    if args.rtl_json:
        meas = {}
        prev = {(c["dim"], c["dist"], c["pooling"], c["lookups"]): c for c in json.loads(Path(args.rtl_json).read_text())["cases"]}
        for c in cases:
            p = prev.get((c["dim"], c["dist"], c["pooling"], c["lookups"]))
            if p is None:
                ap.error(f"--rtl-json {args.rtl_json}: no case D={c['dim']} {c['dist']} pooling {c['pooling']}")
            name = f"d{c['dim']}-{c['dist']}-p{c['pooling']}"
            for r in range(2):
                meas[f"{name}-r{r}"] = {"cycles": p["rtl_rank_cycles_per_rank"][r], "acts": p["rtl_acts"] // 2,
                                        "refreshes": (p.get("rtl_refreshes_per_rank") or [None, None])[r],
                                        "seconds": 0.0, "lookups": 0}
                # the bank-group core's too, if measured with the same split (only the bags a rank holds)
                if ("rtl_trim_cycles_per_rank" in p and p.get("trim_bags_per_rank") == c["trim_bags_per_rank"]
                        and not args.no_trim_rtl and not args.simulate_trim):
                    tmeas_prev[f"{name}-r{r}"] = {
                        "cycles": p["rtl_trim_cycles_per_rank"][r], "acts": p["rtl_trim_acts"] // 2,
                        "refreshes": (p.get("rtl_trim_refreshes_per_rank") or [None, None])[r]}
    else:
        meas = {m["name"]: m for m in run_rtl(jobs, args.simulator, args.mapping, **window)}
    rtl_seconds = time.perf_counter() - t0
    tmeas = tmeas_prev
    if not args.no_trim_rtl and (args.simulate_trim or not args.rtl_json):
        t1 = time.perf_counter()
        tmeas = {m["name"]: m for m in run_rtl(tjobs, args.simulator, config="trim-ddr4-3200", **window)}
        print(f"bank-group core RTL: build + run {time.perf_counter() - t1:.0f} s", flush=True)
    smeas: dict = {}
    if args.striped_rtl:
        # the striped device stripes beats over the ranks as the rank placement does (ra lowest):
        # every rank core gets the same share as a rank-level core, on the bank-group data path
        t1 = time.perf_counter()
        smeas = {m["name"]: m for m in run_rtl(jobs, args.simulator, config="bankgroup-ddr4-3200", **window)}
        print(f"striped bank-group core RTL: build + run {time.perf_counter() - t1:.0f} s", flush=True)
    rows_out = []
    print(f"{'D':>4} {'dist':>7} {'pool':>4} {'lookups':>7} {'host':>8} {'rtl rank':>9} {'model rank':>10} "
          f"{'mdl/rtl':>7} {'unit mdl':>8} {'u/rtl':>6} {'rtl x':>6} {'model x':>7} {'ceil':>5} {'%ceil':>6} "
          f"{'mdl %ceil':>9} {'REF':>4} {'model bg x':>10} {'bg rtl x':>8} {'bg m/r':>6} {'trim x':>7} {'trim rtl x':>10} "
          f"{'bg ceil':>7} {'trim m/r':>8}")
    for c in cases:
        name = f"d{c['dim']}-{c['dist']}-p{c['pooling']}"
        r0, r1 = meas[name + "-r0"], meas[name + "-r1"]
        core = max(r0["cycles"], r1["cycles"])
        link = link_cycles(c["bags"], c["dim"])
        rtl = max(core, link)
        host = host_cycles(c["idx"], c["dim"])
        mr = model_cycles("rank-ddr4-3200", c["idx"], c["off"], c["dim"], args.mapping, **window)
        mb = model_cycles("bankgroup-ddr4-3200", c["idx"], c["off"], c["dim"], **window)
        mt = model_cycles("trim-ddr4-3200", c["idx"], c["off"], c["dim"], **window)
        u0, u1 = unit[name + "-r0"], unit[name + "-r1"]
        um = max(u0["cycles"], u1["cycles"], link)
        ceil = gather_ceilings(c["dim"])
        rec = {k: c[k] for k in ("dim", "dist", "pooling", "bags", "lookups")}
        rec.update({"host_cycles": host, "rtl_rank_cycles": rtl, "rtl_core_cycles": core, "link_cycles": link, "rtl_rank_cycles_per_rank": [r0["cycles"], r1["cycles"]],
                    "rtl_acts": r0["acts"] + r1["acts"], "model_rank_cycles": mr, "model_bankgroup_cycles": mb,
                    "model_trim_cycles": mt, "speedup_model_trim": host / mt,
                    "speedup_rtl_rank": host / rtl, "speedup_model_rank": host / mr,
                    "speedup_model_bankgroup": host / mb, "ceiling_rank": ceil["speedup_rank"],
                    "ceiling_bankgroup": ceil["speedup_bankgroup_per_rank_ca"],
                    "rob_tags": ucfg.rob_tags, "queue": ucfg.queue,
                    "rtl_refreshes_per_rank": [r0.get("refreshes"), r1.get("refreshes")],
                    "model_over_rtl": mr / rtl, "unit_model_cycles_per_rank": [u0["cycles"], u1["cycles"]],
                    "unit_model_setup_cycles": [u0["setup"], u1["setup"]], "unit_model_dimm_cycles": um,
                    "unit_model_over_rtl": um / rtl, "rtl_core_over_unit_model_per_rank":
                    [r0["cycles"] / u0["cycles"], r1["cycles"] / u1["cycles"]]})
        if tmeas:
            t0r, t1r = tmeas[name + "-r0"], tmeas[name + "-r1"]
            # each rank's sums of the bags it holds rows of cross the channel (the host adds them)
            tl = link_cycles(sum(c["trim_bags_per_rank"]), c["dim"])
            rec.update({"rtl_trim_cycles_per_rank": [t0r["cycles"], t1r["cycles"]], "rtl_trim_link_cycles": tl,
                        "rtl_trim_cycles": max(t0r["cycles"], t1r["cycles"], tl),
                        "rtl_trim_acts": t0r["acts"] + t1r["acts"], "trim_bags_per_rank": c["trim_bags_per_rank"],
                        "rtl_trim_refreshes_per_rank": [t0r.get("refreshes"), t1r.get("refreshes")]})
            rec["speedup_rtl_trim"] = host / rec["rtl_trim_cycles"]
            rec["rtl_trim_pct_of_ceiling"] = 100 * rec["speedup_rtl_trim"] / rec["ceiling_bankgroup"]
            rec["model_trim_over_rtl"] = mt / rec["rtl_trim_cycles"]
        if smeas:
            s0, s1 = smeas[name + "-r0"], smeas[name + "-r1"]
            rec.update({"rtl_striped_cycles_per_rank": [s0["cycles"], s1["cycles"]],
                        "rtl_striped_cycles": max(s0["cycles"], s1["cycles"], link),
                        "rtl_striped_acts": s0["acts"] + s1["acts"],
                        "rtl_striped_refreshes_per_rank": [s0.get("refreshes"), s1.get("refreshes")]})
            rec["speedup_rtl_striped"] = host / rec["rtl_striped_cycles"]
            rec["model_bankgroup_over_rtl"] = mb / rec["rtl_striped_cycles"]
        rec["rtl_rank_pct_of_ceiling"] = 100 * rec["speedup_rtl_rank"] / rec["ceiling_rank"]
        rec["model_rank_pct_of_ceiling"] = 100 * rec["speedup_model_rank"] / rec["ceiling_rank"]
        rows_out.append(rec)
        print(f"{c['dim']:>4} {c['dist']:>7} {c['pooling']:>4} {c['lookups']:>7} {host:>8} {rtl:>9} {mr:>10} "
              f"{mr / rtl:>7.3f} {um:>8} {um / rtl:>6.3f} "
              f"{rec['speedup_rtl_rank']:>6.2f} {rec['speedup_model_rank']:>7.2f} {rec['ceiling_rank']:>5.2f} "
              f"{rec['rtl_rank_pct_of_ceiling']:>5.0f}% {rec['model_rank_pct_of_ceiling']:>8.0f}% "
              f"{'/'.join('-' if x is None else str(x) for x in rec['rtl_refreshes_per_rank']):>4} "
              f"{rec['speedup_model_bankgroup']:>10.2f} {rec.get('speedup_rtl_striped', float('nan')):>8.2f} "
              f"{rec.get('model_bankgroup_over_rtl', float('nan')):>6.3f} {rec['speedup_model_trim']:>7.2f} "
              f"{rec.get('speedup_rtl_trim', float('nan')):>10.2f} {rec['ceiling_bankgroup']:>7.2f} "
              f"{rec.get('model_trim_over_rtl', float('nan')):>8.3f}")
    if smeas:
        sc, ss = sum(m["cycles"] for m in smeas.values()), sum(m["seconds"] for m in smeas.values())
        print(f"striped bank-group core RTL simulation speed ({args.simulator}): {sc / max(ss, 1e-9):.0f} cycles/s")
    if tmeas and (args.simulate_trim or not args.rtl_json):
        tc, ts = sum(m["cycles"] for m in tmeas.values()), sum(m["seconds"] for m in tmeas.values())
        print(f"bank-group core RTL simulation speed ({args.simulator}): {tc / max(ts, 1e-9):.0f} cycles/s, "
              f"{sum(m['lookups'] for m in tmeas.values()) / max(ts, 1e-9):.0f} lookups/s")
    sim_cycles = sum(m["cycles"] for m in meas.values())
    sim_secs = sum(m["seconds"] for m in meas.values())
    lookups = sum(m["lookups"] for m in meas.values())
    speed = {"simulator": args.simulator, "cycles": sim_cycles, "seconds": round(sim_secs, 2),
             "cycles_per_s": sim_cycles / max(sim_secs, 1e-9), "lookups_per_s": lookups / max(sim_secs, 1e-9),
             "wall_with_build_s": round(rtl_seconds, 1), "rtl_from": args.rtl_json}
    if args.rtl_json:
        print(f"RTL cycles taken from {args.rtl_json} (no simulation)")
    else:
        print(f"RTL simulation speed ({args.simulator}): {speed['cycles_per_s']:.0f} cycles/s, "
              f"{speed['lookups_per_s']:.0f} lookups/s (core-local lookups; build + run {rtl_seconds:.0f} s)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "core_speedup" + (f"_{args.mapping}" if args.mapping else "") + (
        f"_rob{ucfg.rob_tags}_q{ucfg.queue}" if window else "")
    (out / f"{stem}.json").write_text(json.dumps({"cases": rows_out, "sim_speed": speed, "mapping": args.mapping,
                                                  "window": {"rob_tags": ucfg.rob_tags, "queue": ucfg.queue},
                                                       "table_rows": TABLE_ROWS, "zipf_alpha": ZIPF_ALPHA}, indent=1))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(args.dists.split(",")), figsize=(11, 4), sharey=True, squeeze=False)
        for ax, dist in zip(axes[0], args.dists.split(",")):
            for pool in sorted({r["pooling"] for r in rows_out}):
                rs = [r for r in rows_out if r["dist"] == dist and r["pooling"] == pool]
                ax.plot([r["dim"] for r in rs], [r["speedup_rtl_rank"] for r in rs], "o-", label=f"RTL rank, pool {pool}")
                ax.plot([r["dim"] for r in rs], [r["speedup_model_rank"] for r in rs], "x:", alpha=0.6,
                        label=f"model rank, pool {pool}")
            rs = [r for r in rows_out if r["dist"] == dist and r["pooling"] == max(r2["pooling"] for r2 in rows_out)]
            ax.plot([r["dim"] for r in rs], [r["speedup_model_bankgroup"] for r in rs], "s--", label="model bank-group")
            if "speedup_rtl_striped" in rs[0]:
                ax.plot([r["dim"] for r in rs], [r["speedup_rtl_striped"] for r in rs], "P-",
                        label="RTL bank-group, striped")
            ax.plot([r["dim"] for r in rs], [r["speedup_model_trim"] for r in rs], "d--", label="model bank-group, partial sums")
            if "speedup_rtl_trim" in rs[0]:
                ax.plot([r["dim"] for r in rs], [r["speedup_rtl_trim"] for r in rs], "D-",
                        label="RTL bank-group, partial sums")
            ax.plot([r["dim"] for r in rs], [r["ceiling_rank"] for r in rs], "k:", label="rank ceiling")
            ax.plot([r["dim"] for r in rs], [r["ceiling_bankgroup"] for r in rs], "k-.", label="bank-group ceiling")
            ax.set_xscale("log", base=2)
            ax.set_title(f"{dist} indices, {ucfg.rob_tags} reads in flight, queue {ucfg.queue}")
            ax.set_xlabel("D (fp32 per row)")
        axes[0][0].set_ylabel("speedup vs host gather")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"{stem}.png", dpi=120)
    except ImportError:  # pragma: no cover
        pass
    print(f"saved {out / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
