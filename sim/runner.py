"""``pimcast sim``: run a cocotb testbench on Icarus or Verilator through ``cocotb_tools.runner``.

:func:`run_cocotb` generates the top's Verilog (:mod:`pimcast.hdl.export`), builds it in one
build folder per (top, simulator, parameter set) under ``build/sim/``, runs the test module and
reads the results XML. ``runner.test()`` does not fail by itself outside pytest (and calls
``sys.exit`` inside pytest), so this layer hides pytest's marker from it and always returns the
counts; the CLI exits non-zero on any failure.

Settings reach the test module as environment variables (``PIMCAST_SEED``,
``PIMCAST_FMA_COUNT``, ``PIMCAST_VECTORS``, …); ``PIMCAST_<TOP>_LATENCY`` is set from the
component's ``latency`` attribute. Testbenches append JSON lines with throughput figures to
``PIMCAST_STATS`` (``<build dir>/stats.jsonl``), which the CLI prints.

Verilator builds are skipped when the Verilog and build options are unchanged (a stamp file
in the build folder); Icarus rebuilds only when the Verilog file changed (the export layer
rewrites files only on change).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = ["TESTBENCHES", "SIMULATORS", "SimResult", "SimError", "build_dir_for", "run_cocotb",
           "add_arguments", "main"]

REPO = Path(__file__).resolve().parent.parent
#: Simulator build folders: ``build/sim``; each pytest-xdist worker gets its own
#: (``build/sim-gw1``), so parallel test workers never build or run in the same folder (the
#: worker id is inherited by the child processes of the ``rtl`` backend).
BUILD_ROOT = REPO / "build" / ("sim-" + os.environ["PYTEST_XDIST_WORKER"]
                               if os.environ.get("PYTEST_XDIST_WORKER") else "sim")
TIMESCALE = ("1ns", "1ps")
SIMULATORS = ("icarus", "verilator")

#: top -> default cocotb test module
TESTBENCHES: dict[str, str] = {
    "fma": "pimcast.sim.tb_fma",
    "reduce": "pimcast.sim.tb_reduce",
    "core": "pimcast.sim.tb_core",
}


class SimError(RuntimeError):
    """The simulator could not be built or run."""


@dataclass
class SimResult:
    """Outcome of one run. Unpacks as ``tests, failures = result``."""

    tests: int
    failures: int
    results_xml: Path | None
    build_dir: Path
    seconds: float
    stats: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def __iter__(self) -> Iterator[int]:
        return iter((self.tests, self.failures))

    @property
    def ok(self) -> bool:
        return self.error is None and self.failures == 0 and self.tests > 0


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def build_dir_for(top: str, simulator: str, parameters: Mapping[str, Any] | None = None,
                  config: Any = None, waves: bool = False) -> Path:
    """``build/sim/<top>-<simulator>[-<hash of parameters/config>][-waves]``."""
    name = f"{top}-{simulator}"
    if parameters or config is not None:
        name += "-" + _key({"parameters": dict(parameters or {}), "config": config})
    if waves:
        name += "-waves"
    return BUILD_ROOT / name


@contextlib.contextmanager
def _environ(extra: Mapping[str, str]) -> Iterator[None]:
    """Set ``extra`` in os.environ (the runner copies os.environ *over* its extra_env) and hide
    pytest's marker so that ``runner.test`` returns instead of calling ``sys.exit``."""
    saved = {k: os.environ.get(k) for k in (*extra, "PYTEST_CURRENT_TEST")}
    try:
        os.environ.pop("PYTEST_CURRENT_TEST", None)
        os.environ.update({k: str(v) for k, v in extra.items()})
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def verilator_opt(verilog_bytes: int = 0) -> str:
    """The C++ optimisation level of Verilator builds: ``PIMCAST_VERILATOR_OPT``, else ``-O0`` for
    large designs (Verilog over 1 MB, e.g. the PIM core) and Verilator's own ``-Os`` otherwise.

    Applies to Verilator's fast-path code (``OPT_FAST``/``OPT_GLOBAL``); the slow path (constructors,
    symbol tables) is always ``-O0``. Measured on the 16-lane PIM core (2 cores): g++ ``-Os``
    (Verilator's default) builds in ~11 min, ``-O1`` in ~3.5 min, ``-O0`` in ~0.5 min; the
    simulation is slower at ``-O0`` (see README), which the short test runs do not notice.
    Benchmarks that simulate long may set ``-O1``.
    """
    opt = os.environ.get("PIMCAST_VERILATOR_OPT", "").strip() or ("-O0" if verilog_bytes > 1_000_000 else "-Os")
    if opt not in ("-O0", "-O1", "-O2", "-O3", "-Os", "-Og"):
        raise SimError(f"PIMCAST_VERILATOR_OPT must be one of -O0 -O1 -O2 -O3 -Os -Og, not {opt!r}")
    return opt


def run_cocotb(top: str, test_module: str | None = None, simulator: str = "verilator",
               build_dir: str | Path | None = None, parameters: Mapping[str, Any] | None = None,
               env: Mapping[str, str] | None = None, waves: bool = False,
               testcase: str | list[str] | None = None, extra_env: Mapping[str, str] | None = None,
               config: Any = None, verbose: bool = False, run_dir: str | Path | None = None) -> SimResult:
    """Generate, build and run ``test_module`` against ``top``; return the results.

    ``run_dir``: where the run writes (working directory, ``results.xml``, stats); default the
    build folder.  Simulations that run at the same time on one build (the ``rtl`` backend's
    rank cores) each need their own.

    ``env`` and ``extra_env`` are merged (``extra_env`` wins) and passed to the test process.
    Raises :class:`SimError` when the build fails; a simulator crash is reported as a failed
    result with ``error`` set.
    """
    from cocotb_tools.runner import get_runner

    from pimcast.hdl.export import generate, read_meta

    if simulator not in SIMULATORS:
        raise SimError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    test_module = test_module or TESTBENCHES.get(top)
    if test_module is None:
        raise SimError(f"no testbench registered for top {top!r}; pass test_module")
    bdir = Path(build_dir) if build_dir is not None else build_dir_for(top, simulator, parameters, config, waves)
    bdir = bdir.resolve()
    bdir.mkdir(parents=True, exist_ok=True)

    vpath = generate(top, bdir / "hdl", config)
    meta = read_meta(vpath)
    opt = ""
    if simulator == "verilator":
        from pimcast.sim.toolchain import apply_verilator_env

        apply_verilator_env()
        # the slow path (constructors, symbol tables: megabytes of C++) never needs optimising
        level = verilator_opt(vpath.stat().st_size)
        opt = f"OPT_FAST={level} OPT_SLOW=-O0 OPT_GLOBAL={level}"

    runner = get_runner(simulator)
    # Icarus: -g2005 after the runner's -g2012. Under -g2012 a variable's declaration initialiser
    # is applied before time 0 and makes no event, so yosys's time-0 trigger for `always @*`
    # (`reg \$auto$...dump_module$1 = 0`) never fires: a combinational block whose inputs keep
    # their reset values (e.g. an open-row lookup for bank 0 / row 0) stays X forever.
    build_args = ["-Wno-fatal"] if simulator == "verilator" else ["-g2005"]
    stamp = bdir / ".pimcast-build"
    stamp_text = _key({"v": vpath.read_text(), "waves": waves, "args": build_args,
                       "parameters": dict(parameters or {}), "sim": simulator, "opt": opt})
    exe = bdir / top
    need_build = simulator != "verilator" or not (exe.exists() and stamp.is_file()
                                                   and stamp.read_text() == stamp_text)
    if need_build:
        log = bdir / "build.log"
        if simulator == "verilator" and stamp.is_file():
            # a stale build (other Verilog, flags or -O level): make would keep objects that look
            # up to date, so remove them and let Verilator regenerate everything
            for pattern in ("*.o", "*.a", "*.d", "*.gch", "*.cpp", "*.h", "*.mk"):
                for f in bdir.glob(pattern):
                    f.unlink()
            (bdir / top).unlink(missing_ok=True)
            stamp.unlink()
        saved_flags = os.environ.get("MAKEFLAGS")
        if opt:
            os.environ["MAKEFLAGS"] = f"{saved_flags or ''} {opt}".strip()
        try:
            runner.build(sources=[vpath], hdl_toplevel=top, build_dir=bdir, parameters=dict(parameters or {}),
                         build_args=build_args, timescale=TIMESCALE, waves=waves,
                         # Icarus: rebuild when the stamp (Verilog, arguments) changed
                         always=simulator == "icarus" and not (stamp.is_file() and stamp.read_text() == stamp_text),
                         log_file=None if verbose else log)
        except (RuntimeError, SystemExit) as exc:
            tail = log.read_text()[-4000:] if log.is_file() else ""
            raise SimError(f"{simulator} build of {top} failed ({exc}); log {log}:\n{tail}") from exc
        finally:
            if saved_flags is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = saved_flags
        stamp.write_text(stamp_text)
    else:
        # the runner needs its build-time attributes even when the build is skipped
        runner.build_dir = bdir
        runner.hdl_toplevel = top
        runner.parameters = dict(parameters or {})

    rdir = Path(run_dir).resolve() if run_dir is not None else bdir
    rdir.mkdir(parents=True, exist_ok=True)
    stats_file = rdir / "stats.jsonl"
    stats_file.unlink(missing_ok=True)
    results_xml = rdir / "results.xml"
    test_env = {**(env or {}), **(extra_env or {}), "PIMCAST_STATS": str(stats_file)}
    if "latency" in meta:
        test_env[f"PIMCAST_{top.upper()}_LATENCY"] = str(meta["latency"])
    t0 = time.perf_counter()
    error = None
    with _environ(test_env):
        try:
            runner.test(test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                        build_dir=bdir, test_dir=rdir,
                        testcase=testcase, waves=waves, timescale=TIMESCALE,
                        results_xml=str(results_xml), extra_env=test_env)
        except SystemExit as exc:  # the runner exits when the simulator returns non-zero
            error = f"simulator exited with status {exc.code}"
        except RuntimeError as exc:
            error = str(exc)
    return collect_results(bdir, stats_file, results_xml, time.perf_counter() - t0, error)


def collect_results(bdir: Path, stats_file: Path, results_xml: Path, seconds: float,
                    error: str | None) -> SimResult:
    """The :class:`SimResult` of a finished cocotb run (its stats lines and results XML)."""
    from cocotb_tools.check_results import get_results

    stats = []
    if stats_file.is_file():
        stats = [json.loads(line) for line in stats_file.read_text().splitlines() if line.strip()]
    try:
        tests, failures = get_results(results_xml)
    except (RuntimeError, OSError) as exc:
        return SimResult(0, 1, None, bdir, seconds, stats, error or f"no results: {exc}")
    return SimResult(tests, failures, results_xml, bdir, seconds, stats, error)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top", default="fma", help=f"top to simulate ({', '.join(TESTBENCHES)})")
    parser.add_argument("--simulator", default="verilator", choices=SIMULATORS)
    parser.add_argument("--waves", action="store_true", help="record waves (Icarus: FST, Verilator: dump.vcd)")
    parser.add_argument("--count", type=int, default=None, help="random vectors (PIMCAST_<TOP>_COUNT)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (PIMCAST_SEED)")
    parser.add_argument("--testcase", default=None, help="run only these tests (comma-separated)")
    parser.add_argument("--test-module", default=None, help="cocotb test module (default: the top's testbench)")
    parser.add_argument("--config", default=None, help="PIM configuration preset or YAML path")
    parser.add_argument("--build-dir", default=None, help="build folder (default: build/sim/<top>-<simulator>…)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the simulator build output")


def main(args: argparse.Namespace) -> int:
    env: dict[str, str] = {}
    if args.count is not None:
        env[f"PIMCAST_{args.top.upper()}_COUNT"] = str(args.count)
    if args.seed is not None:
        env["PIMCAST_SEED"] = str(args.seed)
    if args.config is not None:
        env["PIMCAST_CONFIG"] = str(args.config)
    try:
        res = run_cocotb(args.top, args.test_module, args.simulator, args.build_dir, env=env, waves=args.waves,
                         testcase=args.testcase, config=args.config, verbose=args.verbose)
    except SimError as exc:
        print(f"pimcast sim: {exc}", file=sys.stderr)
        return 2
    print(f"{args.top} on {args.simulator}: {res.tests} tests, {res.failures} failures "
          f"({res.seconds:.1f} s, build dir {res.build_dir})")
    for s in res.stats:
        rate = s.get("vectors_per_s")
        print(f"  {s['test']:<20} {s['vectors']:>8} vectors {s['cycles']:>9} cycles "
              f"{s['seconds']:>8.2f} s  {rate if rate is not None else float('nan'):>10.0f} vectors/s")
    if res.error:
        print(f"pimcast sim: {res.error}", file=sys.stderr)
    return 0 if res.ok else 1
