"""Simulate tops that instantiate ECP5 DSP primitives (``dsp="ecp5"``) on Icarus with the
behavioural ``MULT18X18D`` model ``sim/ecp5_mult18x18d.v``.

:func:`pimcast.sim.runner.run_cocotb` builds the generated Verilog alone (no simulator has the
primitive); :func:`run_with_dsp_model` builds the Verilog of a given component together with the
model and runs one of the usual cocotb testbenches (``pimcast.sim.tb_fma``,
``pimcast.sim.tb_reduce``) on it, so the DSP variant is checked bit for bit against the same
golden models as the behavioural one.  ``fault=True`` compiles the model with its test hook
(``PIMCAST_MULT18_FAULT``: one product bit flipped for some operands), which a meaningful run
must detect.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Optional

from pimcast.sim.runner import BUILD_ROOT, TIMESCALE, SimResult, _environ, collect_results

__all__ = ["MULT18X18D_MODEL", "run_with_dsp_model"]

#: The behavioural MULT18X18D model (Verilog).
MULT18X18D_MODEL = Path(__file__).resolve().with_name("ecp5_mult18x18d.v")


def run_with_dsp_model(component: Any, top: str, test_module: str, *, env: Optional[Mapping[str, str]] = None,
                       testcase: Optional[str | list[str]] = None, fault: bool = False,
                       build_dir: Optional[str | Path] = None) -> SimResult:
    """Build ``component`` (a wiring.Component, Verilog module name ``top``) with the
    ``MULT18X18D`` model on Icarus and run ``test_module``; return the counts and stats.

    ``PIMCAST_<TOP>_LATENCY`` is set from ``component.latency``.  The build folder defaults to
    ``build/sim/<top>-icarus-dsp-ecp5[-fault]``.
    """
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    bdir = Path(build_dir) if build_dir is not None else \
        BUILD_ROOT / f"{top}-icarus-dsp-ecp5{'-fault' if fault else ''}"
    bdir = bdir.resolve()
    bdir.mkdir(parents=True, exist_ok=True)
    vpath = bdir / f"{top}.v"
    vpath.write_text(verilog.convert(component, name=top))
    runner = get_runner("icarus")
    # -g2005: see pimcast.sim.runner (time-0 trigger of yosys's `always @*` blocks)
    build_args = ["-g2005"] + (["-DPIMCAST_MULT18_FAULT"] if fault else [])
    runner.build(sources=[vpath, MULT18X18D_MODEL], hdl_toplevel=top, build_dir=bdir,
                 build_args=build_args, timescale=TIMESCALE, always=True, log_file=bdir / "build.log")
    stats_file = bdir / "stats.jsonl"
    stats_file.unlink(missing_ok=True)
    results_xml = bdir / "results.xml"
    results_xml.unlink(missing_ok=True)
    test_env = {**(env or {}), "PIMCAST_STATS": str(stats_file),
                f"PIMCAST_{top.upper()}_LATENCY": str(component.latency)}
    t0 = time.perf_counter()
    error = None
    with _environ(test_env):
        try:
            runner.test(test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                        build_dir=bdir, test_dir=bdir, testcase=testcase, timescale=TIMESCALE,
                        results_xml=str(results_xml), extra_env=test_env)
        except SystemExit as exc:
            error = f"simulator exited with status {exc.code}"
        except RuntimeError as exc:
            error = str(exc)
    return collect_results(bdir, stats_file, results_xml, time.perf_counter() - t0, error)
