"""Verilog export of pimcast's hardware tops (``pimcast verilog``).

Every generated top is registered once in :data:`TOPS`: a name mapped to a factory
``factory(config) -> wiring.Component``. Adding a top is one line, e.g.
``"reduce": _import_factory("pimcast.hdl.reduce", "ReductionUnit")``.

:func:`generate` writes, for a top called ``<top>``:

* ``<out>/<top>.v`` — Verilog from Amaranth's Yosys backend. Interface members become ports
  named by their path (``i__payload``, ``o__ready``, …); the default domain gives ``clk`` and
  ``rst`` (synchronous, active high). No `` `timescale`` is written: the simulators get it from
  the runner (``timescale=("1ns", "1ps")``), which keeps the file usable by synthesis as is.
* ``<out>/<top>.names.json`` — the signal-name map that ``verilog.convert`` throws away:
  ``{"top": ..., "signals": {<Amaranth name>: {"verilog": <path>, "width": <bits>}}}``.
  The Amaranth name is ``<top>.<submodule>…<signal>``; the Verilog path is the instance path
  below the top plus the wire name (escape names containing ``$``/``.`` as ``\\name `` when
  using them in Verilog or as a cocotb handle).
* ``<out>/<top>.meta.json`` — facts testbenches need: ports with widths/directions and the
  component's ``latency`` where it has one.

Files are only rewritten when their content changes, so simulator builds that key on file
times (Icarus) are not redone needlessly.
"""
from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any, Callable

__all__ = ["TOPS", "ExportError", "generate", "generate_all", "elaborate", "config_with_dram", "add_arguments",
           "main"]


class ExportError(ValueError):
    """An unknown top or a top that cannot be elaborated."""


def _import_factory(module: str, cls: str) -> Callable[[Any], Any]:
    """A factory that imports ``module.cls`` on first use (Amaranth modules load lazily)."""

    def factory(config: Any = None) -> Any:
        mod = importlib.import_module(module)
        return getattr(mod, cls)()

    factory.__qualname__ = f"{module}.{cls}"
    return factory


def _bankctl(config: Any = None) -> Any:
    """The ``bankctl`` top: :class:`BankController`'s defaults without a config; for a PIM config,
    the channel controller of its DRAM (preset and ranks), address mapping and ``queue``."""
    from pimcast.hdl.dram.bankctl import BankController

    if config is None:
        return BankController()
    from pimcast.host.pim_config import PIMConfig, load_pim_config

    cfg = config if isinstance(config, PIMConfig) else load_pim_config(config)
    return BankController(cfg.dram_timing(), mapping=cfg.address_mapping, queue=cfg.queue)


def config_with_dram(config: Any, dram: str | None) -> Any:
    """``config`` (a PIM preset name, YAML path or ``None`` for the default) with its DRAM preset
    replaced by ``dram`` (e.g. ``hbm2``; the capacity becomes that DRAM's) — the ``--dram`` option of ``pimcast verilog/lint/synth``.
    Raises :class:`ExportError` naming the preset when the combination is invalid."""
    if dram is None:
        return config
    from pimcast.config import ConfigError
    from pimcast.host.pim_config import load_pim_config

    try:
        return load_pim_config(config, dram=dram, capacity=None)   # the new DRAM's capacity
    except ConfigError as exc:
        raise ExportError(f"--dram {dram!r}: {exc}") from None


#: name -> factory(config) returning the wiring.Component to export. One line per top.
TOPS: dict[str, Callable[[Any], Any]] = {
    "fma": _import_factory("pimcast.hdl.fp", "FMA"),
    "bankctl": _bankctl,
    "reduce": lambda config=None: importlib.import_module("pimcast.hdl.reduce").from_config(config),
    "core": lambda config=None: importlib.import_module("pimcast.hdl.core").from_config(config),
}


def _ports(component: Any) -> dict[str, tuple[Any, Any]]:
    """The port dict ``verilog.convert`` derives from a component's signature."""
    from amaranth.hdl import _ast, _ir
    from amaranth.lib import wiring

    if not isinstance(getattr(component, "signature", None), wiring.Signature):
        raise ExportError(f"{type(component).__name__} is not a wiring.Component; cannot derive its ports")
    ports: dict[str, tuple[Any, Any]] = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, _ast.ValueCastable):
            value = value.as_value()
        if isinstance(value, _ast.Value):
            direction = _ir.PortDirection.Input if member.flow == wiring.In else _ir.PortDirection.Output
            ports["__".join(map(str, path))] = (value, direction)
    return ports


def elaborate(top: str, config: Any = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Build ``top`` and return ``(verilog_text, names, meta)`` without writing anything."""
    from amaranth.back import verilog
    from amaranth.hdl import Fragment

    if top not in TOPS:
        raise ExportError(f"unknown top {top!r}; known tops: {', '.join(TOPS)}")
    try:
        component = TOPS[top](config)
    except (ValueError, TypeError) as exc:     # a config this top cannot be built for
        raise ExportError(f"cannot build top {top!r}: {exc}") from exc
    ports = _ports(component)
    # Prepare the fragment ourselves (as verilog.convert does internally) so that
    # convert_fragment hands back the signal-name map.
    design = Fragment.get(component, None).prepare(ports=ports, hierarchy=(top,))
    text, name_map = verilog.convert_fragment(design, name=top, emit_src=True)

    signals: dict[str, dict[str, Any]] = {}
    for signal, path in name_map.items():
        module_path, wire = tuple(path[:-1]), path[-1]
        amaranth_name = ".".join((*module_path, signal.name))
        verilog_name = ".".join((*module_path[1:], wire))
        signals[amaranth_name] = {"verilog": verilog_name, "width": len(signal)}
    names = {"top": top, "signals": dict(sorted(signals.items()))}

    meta: dict[str, Any] = {
        "top": top,
        "class": f"{type(component).__module__}.{type(component).__qualname__}",
        "ports": {
            name: {"width": len(value), "dir": "in" if str(direction).endswith("Input") else "out"}
            for name, (value, direction) in ports.items()
        },
        "clock": "clk",
        "reset": "rst (synchronous, active high)",
    }
    latency = getattr(component, "latency", None)
    if isinstance(latency, int):
        meta["latency"] = latency
    return text, names, meta


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def generate(top: str, out_dir: str | Path, config: Any = None) -> Path:
    """Write ``<out_dir>/<top>.v``, ``<top>.names.json`` and ``<top>.meta.json``; return the ``.v`` path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text, names, meta = elaborate(top, config)
    vpath = out / f"{top}.v"
    _write_if_changed(vpath, text)
    _write_if_changed(out / f"{top}.names.json", json.dumps(names, indent=1) + "\n")
    _write_if_changed(out / f"{top}.meta.json", json.dumps(meta, indent=1) + "\n")
    return vpath


def read_meta(vpath: str | Path) -> dict[str, Any]:
    """The ``<top>.meta.json`` written next to a generated ``<top>.v``."""
    vpath = Path(vpath)
    return json.loads(vpath.with_name(vpath.stem + ".meta.json").read_text())


def generate_all(out_dir: str | Path, config: Any = None, tops: list[str] | None = None) -> dict[str, Path]:
    """Generate several tops (default: all registered) and return ``{top: path}``."""
    return {top: generate(top, out_dir, config) for top in (tops or list(TOPS))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top", default="all", help=f"which top to emit: {', '.join(TOPS)} or all (default)")
    parser.add_argument("--out", default="build/verilog", help="output folder (default: build/verilog)")
    parser.add_argument("--config", default=None,
                        help="PIM configuration preset name or YAML path, handed to the top's factory")
    parser.add_argument("--dram", default=None,
                        help="DRAM preset (configs/dram, e.g. hbm2) replacing the config's (bankctl, core)")


def main(args: argparse.Namespace) -> int:
    tops = list(TOPS) if args.top == "all" else [args.top]
    for top in tops:
        if top not in TOPS:
            print(f"pimcast verilog: unknown top {top!r}; known tops: {', '.join(TOPS)}, all")
            return 2
    config = config_with_dram(args.config, args.dram)
    for top in tops:
        path = generate(top, args.out, config)
        print(f"{top}: {path} (+ {path.stem}.names.json, {path.stem}.meta.json)")
    return 0
