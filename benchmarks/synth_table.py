"""Area and Fmax per block, and how many reduction lanes keep up with DDR4-3200.

    .venv/bin/python benchmarks/synth_table.py [--target ecp5-85f] [--freq 150]
        [--blocks fma,fma-fast,reduce1,reduce4,reduce16,bankctl,core] [--tool auto] [--reuse]
        [--rerun BLOCKS] [--seeds 1,2,3] [--seed-blocks reduce16]

Runs ``pimcast synth`` (:func:`pimcast.hdl.synth.synthesize`) for each block — Yosys
``synth_ecp5`` and ``nextpnr-ecp5 --out-of-context`` with ``constraints/pim_<freq>mhz.sdc``
by default — prints a Markdown table (LUTs, FFs, DSP, BRAM, Fmax, critical path) and the
bandwidth table: lanes needed at each clock to keep up with one DDR4-3200 rank (one 64-B burst
every tCCD_S = 4 tCK = 2.5 ns: 25.6 GB/s) and with one bank group (one burst every tCCD_L =
8 tCK = 5 ns: 12.8 GB/s), each lane doing one fp32 FMA (4 B) per cycle.  Writes
``build/bench/synth_table.json`` (and ``.md``, and a bar chart ``.png``).  ``--reuse`` takes blocks already in that JSON
instead of running them again (a 16-lane ECP5 place-and-route takes many minutes); ``--rerun
a,b`` runs those blocks again anyway.  ``--seeds`` places and routes the blocks of ``--seed-blocks`` (default: all) once per
nextpnr seed: seed 1 is the block's row, other seeds are rows ``<block>@seed<N>`` (nextpnr's Fmax
varies with the placement seed; the table reports seed 1 as the block).

Needs a full Yosys and nextpnr for FPGA targets: ``pip install pimcast[synth]`` (YoWASP).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: block name -> (top, synthesize() keyword arguments)
BLOCKS = {
    "fma": ("fma", {}),
    "fma-fast": ("fma", {"pipeline": "fast"}),
    "reduce1": ("reduce", {"lanes": 1, "slots": 32, "pipeline": "fast", "decoupled": True}),
    "reduce4": ("reduce", {"lanes": 4, "slots": 32, "pipeline": "fast", "decoupled": True}),
    "reduce16": ("reduce", {"lanes": 16, "slots": 32, "pipeline": "fast", "decoupled": True, "group": 1}),
    "reduce1-stall": ("reduce", {"lanes": 1, "slots": 32, "pipeline": "fast"}),
    "reduce16-default": ("reduce", {"lanes": 16, "slots": 32}),
    "bankctl": ("bankctl", {}),
    "core": ("core", {}),
}

# DDR4-3200 (configs/dram/ddr4-3200.yaml): tCK 0.625 ns, BL8 = 64 B per burst (x64 rank)
TCK_NS = 0.625
BURST_BYTES = 64
STREAMS = {
    "DDR4-3200 rank (64 B / tCCD_S = 2.5 ns)": BURST_BYTES / (4 * TCK_NS),       # GB/s
    "DDR4-3200 bank group (64 B / tCCD_L = 5 ns)": BURST_BYTES / (8 * TCK_NS),
}


def _commit() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes under hdl/): which design a row
    measured."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hdl"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def lanes_needed(gbytes_per_s: float, mhz: float) -> int:
    """fp32 lanes (one 4-B FMA per cycle each) that consume ``gbytes_per_s`` at ``mhz``."""
    return math.ceil(gbytes_per_s * 1e9 / (4 * mhz * 1e6) - 1e-9)


def _fmt(v, nd=1):
    if v is None:
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def block_table(rows: list[dict]) -> str:
    out = ["| block | config | LUT (comb) / cells | FF | DSP | BRAM | Fmax MHz | critical path (start → end) |",
           "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['block']} | {r.get('config', '')} | – | – | – | – | – | **{r['error']}** |")
            continue
        cfg = r["config"]
        desc = ", ".join(f"{k}={v}" for k, v in cfg.items() if k in ("lanes", "slots", "latency", "dsp", "decoupled", "group"))
        cp = r.get("critical_path") or {}
        path = f"{cp.get('from', '-')} → {cp.get('to', '-')} ({cp.get('delay_ns', '-')} ns)" if cp else "-"
        out.append(f"| {r['block']} | {desc} | {_fmt(r.get('luts') if r.get('luts') is not None else r.get('cells'))} | {_fmt(r.get('ffs'))} | {_fmt(r.get('dsp'))} | "
                   f"{_fmt(r.get('bram'))} | {_fmt(r.get('fmax_mhz'))} | {path} |")
    return "\n".join(out)


def keepup_table(clocks: list[tuple[str, float]]) -> str:
    out = ["| clock | " + " | ".join(STREAMS) + " |", "|---|" + "---:|" * len(STREAMS)]
    for label, mhz in clocks:
        cells = []
        for gbs in STREAMS.values():
            n = lanes_needed(gbs, mhz)
            cells.append(f"{n} lanes ({math.ceil(n / 16)}×16-lane unit{'s' if n > 16 else ''})")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def unit_table(rows: list[dict]) -> str:
    """Per measured reduce block: its bandwidth at its own Fmax and how many such units one
    DDR4-3200 rank / bank group needs."""
    out = ["| block | lanes | Fmax MHz | GB/s at Fmax | " + " | ".join(f"units per {k.split(' (')[0]}" for k in STREAMS)
           + " |", "|---|---:|---:|---:|" + "---:|" * len(STREAMS)]
    for r in rows:
        if r.get("top") != "reduce" or not r.get("fmax_mhz"):
            continue
        lanes = r["config"].get("lanes")
        gbs = lanes * 4 * r["fmax_mhz"] * 1e6 / 1e9
        units = [f"{math.ceil(g / gbs - 1e-9)} ({g / gbs:.2f})" for g in STREAMS.values()]
        out.append(f"| {r['block']} | {lanes} | {r['fmax_mhz']:.1f} | {gbs:.2f} | " + " | ".join(units) + " |")
    return "\n".join(out)


def plot(rows: list[dict], path: Path, target: str, freq: float) -> bool:
    """Bar chart of Fmax per block (target clock dashed); False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    done = [r for r in rows if r.get("fmax_mhz")]
    fig, ax = plt.subplots(figsize=(1.2 * max(4, len(done)), 3.6))
    ax.bar([r["block"] for r in done], [r["fmax_mhz"] for r in done], color="tab:blue")
    for i, r in enumerate(done):
        ax.text(i, r["fmax_mhz"], f"{r['fmax_mhz']:.0f}\n{r.get('luts') or r.get('cells')} LUT", ha="center",
                va="bottom", fontsize=7)
    ax.axhline(freq, ls="--", color="tab:red", label=f"target {freq:g} MHz")
    ax.set_ylabel("Fmax (MHz)")
    ax.set_title(f"pimcast blocks on {target} (nextpnr, out of context)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="ecp5-85f")
    p.add_argument("--freq", type=float, default=150.0)
    p.add_argument("--tool", default="auto")
    p.add_argument("--blocks", default="fma,fma-fast,reduce1,reduce4,reduce16,bankctl,core",
                   help=f"comma-separated, from {', '.join(BLOCKS)}")
    p.add_argument("--out", default=str(REPO / "build" / "bench"))
    p.add_argument("--reuse", action="store_true", help="keep blocks already in the output JSON")
    p.add_argument("--rerun", default="", help="with --reuse: comma-separated blocks to run again anyway")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per tool run")
    p.add_argument("--seeds", default="1", help="comma-separated nextpnr seeds (seed 1: the block's row, "
                   "others: <block>@seed<N> rows)")
    p.add_argument("--seed-blocks", default="", help="blocks that --seeds applies to (default: all; the "
                   "others run with seed 1)")
    a = p.parse_args()

    from pimcast.hdl.synth import SynthError, synthesize

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    jpath = out / "synth_table.json"
    old = {}
    if a.reuse and jpath.is_file():
        old = {r["block"]: r for r in json.loads(jpath.read_text()).get("blocks", [])}
        for block in a.rerun.split(","):
            old.pop(block.strip(), None)
    rows = []
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    if not seeds:
        p.error("--seeds needs at least one seed")
    runs = []
    for base in [b.strip() for b in a.blocks.split(",") if b.strip()]:
        if base not in BLOCKS:
            p.error(f"unknown block {base!r}; choose from {', '.join(BLOCKS)}")
        seeded = [b.strip() for b in a.seed_blocks.split(",") if b.strip()]
        for seed in (seeds if not seeded or base in seeded else [1]):
            runs.append((base if seed == 1 else f"{base}@seed{seed}", base, seed))
    if a.reuse:
        for rerun in [b.strip() for b in a.rerun.split(",") if b.strip()]:
            for name in [k for k in old if k.split("@")[0] == rerun]:
                old.pop(name, None)
        named, bases = {name for name, _, _ in runs}, {base for _, base, _ in runs}
        runs += [(name, name.split("@")[0], None) for name in old     # other seeds' rows of these blocks
                 if name not in named and name.split("@")[0] in bases]
    for block, base, seed in runs:
        if block in old and old[block].get("target") == a.target:
            rows.append(old[block])
            continue
        if seed is None:
            continue
        top, kwargs = BLOCKS[base]
        t0 = time.monotonic()
        print(f"[{block}] {top} {kwargs} on {a.target} at {a.freq:g} MHz ...", flush=True)
        try:
            r = synthesize(top, a.target, freq=a.freq, tool=a.tool, out=out / "synth" / block.replace("@", "-"),
                           timeout=a.timeout, seed=seed, **kwargs).as_dict()
        except SynthError as e:
            r = {"top": top, "target": a.target, "error": str(e).splitlines()[0], "config": kwargs}
        r["block"] = block
        r["seed"] = seed
        r["commit"] = _commit()
        r["wall_s"] = round(time.monotonic() - t0, 1)
        rows.append(r)
        print(f"[{block}] {r.get('fmax_mhz')} MHz, {r.get('luts')} LUT, {r.get('ffs')} FF "
              f"({r['wall_s']} s)", flush=True)
        jpath.write_text(json.dumps({"target": a.target, "freq_mhz": a.freq, "blocks": rows,
                                     "streams_gbps": STREAMS}, indent=1) + "\n")

    clocks = [(f"{m:g} MHz", m) for m in (100, 150, 200, 250, 300, 400)]
    for r in rows:
        if r.get("fmax_mhz") and r["top"] == "reduce":
            clocks.append((f"{r['block']} Fmax {r['fmax_mhz']:.0f} MHz ({a.target})", float(r["fmax_mhz"])))
    md = (f"### Synthesis on {a.target} (target {a.freq:g} MHz)\n\n{block_table(rows)}\n\n"
          f"### Reduction lanes that keep up with one DDR4-3200 stream (one fp32 FMA per lane per cycle)\n\n"
          f"{keepup_table(clocks)}\n\n"
          f"### Measured reduction units against one DDR4-3200 stream (units needed; exact ratio)\n\n"
          f"{unit_table(rows)}\n")
    print()
    print(md)
    (out / "synth_table.md").write_text(md)
    jpath.write_text(json.dumps({"target": a.target, "freq_mhz": a.freq, "blocks": rows,
                                 "streams_gbps": STREAMS,
                                 "keep_up": {label: {s: lanes_needed(g, mhz) for s, g in STREAMS.items()}
                                             for label, mhz in clocks}}, indent=1) + "\n")
    png = out / "synth_table.png"
    print(f"saved {jpath}, {out / 'synth_table.md'}" + (f" and {png}" if plot(rows, png, a.target, a.freq) else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
