"""Configuration files: locate a YAML preset by name or path and load it strictly.

Presets live in the repository's ``configs/<kind>/<name>.yaml`` (e.g. ``configs/dram/ddr4-3200.yaml``).
A user may pass either a preset name or a path to their own YAML file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigError", "CONFIG_ROOT", "preset_names", "resolve", "load_yaml"]

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A configuration file or preset is missing or malformed (the message names the bad value)."""


def preset_names(kind: str) -> list[str]:
    """Names of the presets shipped in ``configs/<kind>/``."""
    return sorted(p.stem for p in (CONFIG_ROOT / kind).glob("*.yaml"))


def resolve(kind: str, name_or_path: str | Path) -> Path:
    """Return the YAML file for a preset name (``configs/<kind>/<name>.yaml``) or an existing path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"{kind} config file {str(p)!r} does not exist")
        return p
    cand = CONFIG_ROOT / kind / f"{name_or_path}.yaml"
    if not cand.is_file():
        raise ConfigError(
            f"unknown {kind} preset {str(name_or_path)!r}; known presets: {', '.join(preset_names(kind)) or '(none)'}"
        )
    return cand


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping; a syntax error or a non-mapping document is a ConfigError naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
