"""Device backends: ``golden`` (golden model, no timing), ``model`` (exact emulation + timing) and
``rtl`` (the PIM-core Verilog under cocotb).

``register_backend(name, cls)`` adds one (the ``rtl`` backend plugs in here with the same calls).
"""
from __future__ import annotations

from pimcast.host.backends.base import Backend

__all__ = ["Backend", "BACKENDS", "register_backend", "get_backend"]

BACKENDS: dict = {}


def register_backend(name: str, cls) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"backend {name!r} must be a subclass of Backend, got {cls!r}")
    BACKENDS[name] = cls


def get_backend(name: str):
    if name not in BACKENDS:
        raise ValueError(f"unknown device backend {name!r}; available: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name]


def _register_builtin():
    from pimcast.host.backends.golden import GoldenBackend
    from pimcast.host.backends.model import ModelBackend
    register_backend("golden", GoldenBackend)
    register_backend("model", ModelBackend)
    from pimcast.host.backends.rtl import RTLBackend
    register_backend("rtl", RTLBackend)


_register_builtin()
