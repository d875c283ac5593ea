"""``pimcast dram replay``: replay a DRAMsim3 / Ramulator trace through a DRAM timing model.

Example::

    pimcast dram replay --trace gather.trace --standard ddr4-3200 --ranks 2 --json out.json

Models: ``--model fast`` (default) is :class:`pimcast.host.dram_model.FastDRAMModel`, a compiled
cycle-level model of the bank controller; ``--model rtl`` replays the trace through the generated
controller RTL under Verilator (:func:`pimcast.host.dram_rtl.replay_rtl`; slow; DDR4 and HBM2).
``--merge-duplicates`` answers a read that hits an older pending read of the same address with
the same burst (DRAMsim3 behaviour; default off, as Ramulator; fast model only).

Errors (unknown standard, malformed trace line, unaligned or out-of-capacity address, bad options)
print one line naming the file, line and value and exit with status 2.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    r = sub.add_parser("replay", help="replay a trace through the fast timing model (or the RTL)")
    r.add_argument("--trace", required=True, help="trace file")
    r.add_argument("--format", default="dramsim3", choices=("dramsim3", "ramulator"),
                   help="dramsim3: '0xADDR READ|WRITE cycle'; ramulator: 'LD|ST 0xADDR'")
    r.add_argument("--standard", default="ddr4-3200",
                   help="DRAM preset name (configs/dram: ddr4-3200, ddr4-2400, hbm2) or a YAML path")
    r.add_argument("--ranks", type=int, default=None, help="ranks (default: the preset's)")
    r.add_argument("--mapping", default="rochrababgco", help="DRAMsim3-style address mapping")
    r.add_argument("--queue", type=int, default=32, help="request-queue depth (default 32)")
    r.add_argument("--data-path", default="channel", choices=("channel", "bankgroup"),
                   help="where read data goes: channel (the DQ bus, default) or bankgroup (bank-group-"
                        "level PIM units: reads of different bank groups / ranks share no data bus, "
                        "so tCCD_S and the read rank switch do not apply)")
    r.add_argument("--model", default="fast", choices=("fast", "rtl"),
                   help="fast: compiled cycle-level controller model; rtl: the controller RTL under Verilator")
    r.add_argument("--merge-duplicates", action="store_true",
                   help="merge a read with an older pending read of the same address (DRAMsim3; fast only)")
    r.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"),
                   help="HDL simulator for --model rtl")
    r.add_argument("--json", metavar="OUT", default=None,
                   help="write the stats as JSON to OUT ('-' for stdout)")
    r.add_argument("--dump-commands", metavar="FILE.csv", default=None,
                   help="write every issued command: cycle,cmd,rank,bankgroup,bank,row,col")


def _err(msg: str) -> int:
    print(f"pimcast dram: error: {msg}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    if args.action != "replay":  # pragma: no cover - argparse enforces
        return _err(f"unknown action {args.action!r}")
    from pimcast.config import ConfigError
    from pimcast.hdl.dram.timing import AddressMapping, load_preset
    from pimcast.host.trace import TraceError, read_trace

    if args.queue < 1:
        return _err(f"--queue must be >= 1, not {args.queue}")
    if args.model == "rtl" and args.merge_duplicates:
        return _err("--merge-duplicates is a fast-model option; the RTL controller does not merge reads")
    try:
        t = load_preset(args.standard, ranks=args.ranks).with_data_path(args.data_path)
        mapping = AddressMapping(args.mapping, t)
    except ConfigError as exc:
        return _err(str(exc))
    try:
        trace = read_trace(args.trace, args.format)
    except TraceError as exc:
        return _err(str(exc))
    try:
        mapping.check(trace.addr)
    except ValueError as exc:
        # name the file and line of the offending request
        import numpy as np

        a = trace.addr
        bad = ((a & np.uint64(63)) != 0) | (a >= np.uint64(mapping.capacity))
        i = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        why = "not aligned to 64 B" if int(a[i]) % 64 else f"beyond the capacity {hex(mapping.capacity)}"
        return _err(f"{trace.where(i)}: address {hex(int(a[i]))} {why} "
                    f"({t.name}, {t.ranks} rank(s), mapping {mapping.scheme})")

    if args.model == "rtl":
        try:
            from pimcast.host.dram_rtl import RTLReplayError, replay_rtl
        except ImportError as exc:  # pragma: no cover - depends on the HDL toolchain
            return _err(f"--model rtl is not available: {exc}")
        try:
            stats = replay_rtl(t, trace.addr, trace.is_write, trace.cycle, mapping=mapping.scheme,
                               queue=args.queue, simulator=args.simulator, dump_commands=args.dump_commands)
        except (RTLReplayError, ValueError, ImportError, OSError) as exc:
            return _err(f"--model rtl: {exc}")
        stats = dict(stats)
        stats.setdefault("merged", 0)
        commands = None
    else:
        from pimcast.host.dram_model import FastDRAMModel

        model = FastDRAMModel(t, mapping, queue=args.queue, merge_duplicates=args.merge_duplicates)
        model.warmup()  # compile / load the kernel outside the timed run
        res = model.run(trace.addr, trace.is_write, trace.cycle, record_commands=bool(args.dump_commands))
        stats = res.stats()
        commands = res.commands
    stats.update(model=args.model, standard=t.name, ranks=t.ranks, data_path=t.data_path,
                 mapping=mapping.scheme, queue=args.queue,
                 merge_duplicates=bool(args.merge_duplicates), trace=str(args.trace))
    text = json.dumps(stats, indent=1)
    if args.json == "-":
        print(text)
    elif args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    if args.json != "-":
        print(f"{len(trace)} requests ({stats['reads']} reads, {stats['writes']} writes): "
              f"{stats['cycles']} cycles, {stats['GBps']:.2f} GB/s, {stats['acts']} ACT, "
              f"{stats['row_hits']} row hits, {stats['refreshes']} REF; "
              f"{stats['requests_per_second']:.0f} requests/s")
    if args.dump_commands and commands is not None:
        out = Path(args.dump_commands)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["cycle", "cmd", "rank", "bankgroup", "bank", "row", "col"])
            w.writerows(commands)
    return 0
