"""DRAM: the one timing definition (:mod:`.timing`) shared by the RTL controller, the fast model
and the protocol checker."""
from .timing import (AddressMapping, Cmd, ConfigError, DRAMTiming, Rule, Scope, Violation,
                     WindowRule, check_sequence, load_preset, rule_gap_table, timing_rules,
                     window_rules)

__all__ = ["AddressMapping", "Cmd", "ConfigError", "DRAMTiming", "Rule", "Scope", "Violation",
           "WindowRule", "check_sequence", "load_preset", "rule_gap_table", "timing_rules",
           "window_rules"]
