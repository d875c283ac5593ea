"""The ``pimcast`` command line.

Each subcommand lives in the module that owns the work; this file only maps names to modules so
that ``pimcast <cmd>`` imports just what it needs (Amaranth, torch and cocotb are slow to import).
A subcommand module exposes ``add_arguments(parser)`` and ``main(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "verilog": ("pimcast.hdl.export", "emit Verilog (+ JSON signal-name map) for a hardware top"),
    "lint": ("pimcast.sim.lint", "run `verilator --lint-only -Wall` on every generated top"),
    "sim": ("pimcast.sim.runner", "run a cocotb testbench on Icarus or Verilator"),
    "verify-fp": ("pimcast.sim.verify_fp", "run Berkeley TestFloat vectors through the FP units"),
    "dram": ("pimcast.host.dram_cli", "DRAM tools: `pimcast dram replay` a DRAMsim3/Ramulator trace"),
    "run": ("pimcast.run", "the end-to-end main job on the embedded default"),
    "bench": ("pimcast.host.bench", "PIM vs CPU-centric vs GPU embedding-training sweeps: table, JSON, plots"),
    "synth": ("pimcast.hdl.synth", "synthesis estimates: Yosys (+ nextpnr) area, Fmax, critical path of a top"),
    "train": ("pimcast.models.train", "train SASRec (item table on the PIM device) + A-LLMRec stages 1-2: metrics, plots, report"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: pimcast <command> [options]", "", "commands:"]
    lines += [f"  {n:<{width}}  {h}" for n, (_, h) in COMMANDS.items()]
    lines += ["", "`pimcast <command> --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from pimcast import __version__

        print(f"pimcast {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"pimcast: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"pimcast {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    from pimcast.hdl.export import ExportError

    try:
        return int(module.main(args) or 0)
    except ExportError as exc:       # a top that cannot be built for the given config
        print(f"pimcast {name}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
