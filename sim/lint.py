"""``pimcast lint``: ``verilator --lint-only -Wall`` on every generated top, clean or non-zero exit.

Waivers cover only warnings that come from the *style* of Amaranth's Verilog output, never from
the design. They are written as a Verilator configuration file ``<top>.vlt`` next to the Verilog
(and passed on the command line), one named rule per reason:

* ``PROCASSINIT`` (whole file) — Amaranth gives every register its reset/power-on value as a
  declaration initializer (``reg [31:0] x = 32'd0;``) and then assigns it in an
  ``always @(posedge clk)`` block. That is how Amaranth expresses ``init=`` (FPGA power-on state);
  the synchronous ``rst`` also loads the same value, so the initializer is intended, not a bug.
* ``WIDTHEXPAND`` / ``WIDTHTRUNC`` (whole file) — Yosys' ``write_verilog`` prints Amaranth's
  netlist cells as Verilog expressions that rely on Verilog's context-determined widths
  (``{ 4'h0, x } + y`` with a wider result, ``!x[30:23]`` for a reduce-NOR, a 7-bit constant in a
  9-bit subtraction). Every width change is defined by Amaranth's own shape rules before the
  backend runs, so these are statements about the printer, not the design.
* ``DECLFILENAME`` (whole file) — Amaranth writes a top and every submodule into one file named
  after the top, so submodule names never match the file name.
* ``UNUSEDSIGNAL`` on backend temporaries ``$<n>`` (names starting with ``$``) — Amaranth/Yosys
  name the intermediate result of every cell ``$<n>``; when Amaranth slices a wide result (a
  77-bit shift of which 24 bits are kept) or folds a constant, the rest of the temporary is
  unused. Designer-named signals are not covered by this waiver.
* ``UNUSEDSIGNAL`` for *debug alias wires only*, each listed by exact name — for a named Amaranth
  signal that is a copy, slice or concatenation of other nets (struct fields such as
  ``\\i__payload.a ``, a comb signal whose driver Amaranth inlines into its readers) Amaranth
  emits ``wire x; assign x = <nets>;`` so the name shows up in waveforms and in the name map;
  nothing reads it. The alias list is computed from the Verilog text (a wire assigned once from
  nets/slices/concatenations/constants, with no operator, and referenced nowhere else), so an
  unused named signal that carries its own logic is still reported.

Any other warning fails the lint.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LintResult", "alias_wires", "write_waivers", "lint_file", "lint_tops", "add_arguments", "main"]

_IDENT = r"(?:\\\S+|[A-Za-z_$][A-Za-z0-9_$]*)"
_ASSIGN = re.compile(rf"^\s*assign\s+({_IDENT})\s*=\s*([^;]*);\s*$", re.M)
# operators that make an assignment carry logic (escaped names are stripped before the test)
_OPERATOR = re.compile(r"[-+*/%&|^~!?<>=()]")
_PORT_DECL = re.compile(rf"^\s*(?:input|output|inout)\b[^;]*?({_IDENT})\s*;", re.M)


def _plain(name: str) -> str:
    """Verilog identifier as Verilator prints it (escaped names without backslash/space)."""
    return name[1:] if name.startswith("\\") else name


def _modules(verilog_text: str) -> list[str]:
    """The text of each ``module … endmodule`` in a file (Amaranth writes one per submodule)."""
    mods = re.findall(r"^\s*module\b.*?^\s*endmodule\b", verilog_text, re.S | re.M)
    return mods or [verilog_text]


def _module_alias_wires(text: str) -> list[str]:
    ports = {_plain(m.group(1)) for m in _PORT_DECL.finditer(text)}
    for header in re.finditer(r"\bmodule\s+\S+\s*\((.*?)\)\s*;", text, re.S):
        for item in header.group(1).split(","):
            names = re.findall(_IDENT, item)
            if names:
                ports.add(_plain(names[-1]))
    aliases = []
    for m in _ASSIGN.finditer(text):
        lhs = m.group(1)
        name = _plain(lhs)
        if name in ports:
            continue
        rhs = re.sub(r"\\\S+", "n", m.group(2))
        if _OPERATOR.search(rhs):
            continue
        token = re.escape(lhs) + (r"(?=\s)" if lhs.startswith("\\") else r"\b")
        # declaration + this assignment: exactly two mentions (a named port connection `.x(…)` is
        # not a mention) means nothing in the module reads it
        if len(re.findall(r"(?<![\w$\\.])" + token, text)) == 2:
            aliases.append(name)
    return aliases


def alias_wires(verilog_text: str) -> list[str]:
    """Names of Amaranth's debug alias wires: assigned once from a plain net/slice, never read.

    Checked module by module: a multi-module file (a top with submodules) repeats the same
    names in every instance of a submodule.
    """
    return sorted({name for mod in _modules(verilog_text) for name in _module_alias_wires(mod)})


_ALWAYS_COMB = re.compile(r"^(\s*)always @\* begin\n(.*?)^\1end$", re.S | re.M)
_CASE = re.compile(r"^\s*case[zx]?\s*\(", re.M)
_PROC_ASSIGN = re.compile(r"^\s*(\\\S+ |[\w$]+)(\s*\[[^\]]*\])?\s*=\s*[^=]")


def comb_blocks_have_defaults(verilog_text: str) -> bool:
    """True when every ``always @*`` block that contains a ``case`` not marked ``full_case``
    assigns all the signals it assigns from the case on unconditionally first (Amaranth's style: ``x = init; casez ...``),
    so an incomplete case cannot infer a latch."""
    for m in _ALWAYS_COMB.finditer(verilog_text):
        body = m.group(2)
        cases = [c for c in _CASE.finditer(body)
                 if "full_case" not in body[:c.start()].rstrip().rsplit("\n", 1)[-1]]
        if not cases:       # no case, or only cases Yosys marked full (every value covered)
            continue
        c = cases[0]
        head, rest = body[:c.start()], body[c.start():]
        defaults = set()
        for line in head.splitlines():
            a = _PROC_ASSIGN.match(line)
            if a:
                defaults.add(a.group(1).strip())
        for line in rest.splitlines():
            a = _PROC_ASSIGN.match(line)
            if a and a.group(1).strip() not in defaults:
                return False
    return True


def write_waivers(vpath: Path) -> Path:
    """Write ``<top>.vlt`` (Verilator config) with the Amaranth-style waivers for ``vpath``."""
    text = vpath.read_text()
    pattern = f"*{vpath.name}"
    lines = [
        "`verilator_config",
        "// Waivers for Amaranth's output style only (see pimcast/sim/lint.py for the reasons).",
        "// PROCASSINIT: registers carry their init value as a declaration initializer by design.",
        f'lint_off -rule PROCASSINIT -file "{pattern}"',
        "// WIDTHEXPAND/WIDTHTRUNC: the Verilog printer relies on context-determined widths;",
        "// Amaranth's shape rules fixed every width before export.",
        f'lint_off -rule WIDTHEXPAND -file "{pattern}"',
        f'lint_off -rule WIDTHTRUNC -file "{pattern}"',
        "// DECLFILENAME: Amaranth writes a top and all its submodules into one file named after the top.",
        f'lint_off -rule DECLFILENAME -file "{pattern}"',
        "// UNUSEDSIGNAL on backend temporaries $<n> (partly used or constant-folded cell outputs).",
        f'lint_off -rule UNUSEDSIGNAL -file "{pattern}" -match "Signal is not used: \'$*"',
        f'lint_off -rule UNUSEDSIGNAL -file "{pattern}" -match "Bits of signal are not used: \'$*"',
    ]
    if comb_blocks_have_defaults(text):
        lines += [
            "// CASEINCOMPLETE: Amaranth lowers m.Switch/m.FSM into one `always @*` per signal that first",
            "// assigns the signal's default and then cases only the states that change it (an FSM with a",
            "// non-power-of-two state count also leaves codes unused). No latch can result: checked by",
            "// pimcast.sim.lint.comb_blocks_have_defaults before this waiver is written.",
            f'lint_off -rule CASEINCOMPLETE -file "{pattern}"',
        ]
    lines += [
        "// UNUSEDSIGNAL: debug alias wires (copies/slices of other nets kept for their names).",
    ]
    for name in alias_wires(text):
        if name.startswith("$"):
            continue  # covered by the temporaries rule above
        lines.append(f'lint_off -rule UNUSEDSIGNAL -file "{pattern}" -match "Signal is not used: \'{name}\'"')
    vlt = vpath.with_suffix(".vlt")
    vlt.write_text("\n".join(lines) + "\n")
    return vlt


@dataclass
class LintResult:
    top: str
    verilog: Path
    returncode: int
    warnings: list[str]
    output: str

    @property
    def clean(self) -> bool:
        return self.returncode == 0 and not self.warnings


def lint_file(vpath: Path, top: str) -> LintResult:
    """Run ``verilator --lint-only -Wall`` on one generated file with its waiver file."""
    from pimcast.sim.toolchain import verilator_env

    vlt = write_waivers(vpath)
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top, str(vlt), str(vpath)]
    proc = subprocess.run(cmd, env=verilator_env(), capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    warnings = [line for line in output.splitlines() if line.startswith(("%Warning", "%Error"))]
    return LintResult(top, vpath, proc.returncode, warnings, output)


def lint_tops(tops: list[str], out_dir: str | Path, config=None) -> list[LintResult]:
    from pimcast.hdl.export import generate

    return [lint_file(generate(top, out_dir, config), top) for top in tops]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top", default="all", help="top to lint (default: all registered tops)")
    parser.add_argument("--out", default="build/lint", help="folder for the Verilog and waiver files")
    parser.add_argument("--config", default=None, help="PIM configuration preset or YAML path")
    parser.add_argument("--dram", default=None,
                        help="DRAM preset (configs/dram, e.g. hbm2) replacing the config's (bankctl, core)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print Verilator's full output")


def main(args: argparse.Namespace) -> int:
    from pimcast.hdl.export import TOPS, config_with_dram

    tops = list(TOPS) if args.top == "all" else [args.top]
    unknown = [t for t in tops if t not in TOPS]
    if unknown:
        print(f"pimcast lint: unknown top {unknown[0]!r}; known tops: {', '.join(TOPS)}, all", file=sys.stderr)
        return 2
    failed = 0
    for res in lint_tops(tops, args.out, config_with_dram(args.config, args.dram)):
        if res.clean:
            print(f"{res.top}: clean ({res.verilog})")
        else:
            failed += 1
            print(f"{res.top}: {len(res.warnings)} warning(s)/error(s) (exit {res.returncode}) in {res.verilog}")
            for w in res.warnings:
                print(f"  {w}")
        if args.verbose:
            print(res.output)
    return 1 if failed else 0
