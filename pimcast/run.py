"""``pimcast run`` — the end-to-end main job on the embedded default.

Each *step* exercises one layer of the toolkit on small, fixed inputs and returns a dict of
figures; the job prints a table, and writes ``report.json`` and ``report.md`` into the run folder
(``runs/<timestamp>/`` by default). A failing step makes the job exit non-zero, but the other
steps still run so the report shows everything at once.

Steps (in order):

``verilog``   generate the Verilog of every registered top and lint it with ``verilator -Wall``
``golden``    the golden tensor-casting model on FACTS.md's worked example, and bit-exactness
              against PyTorch (``F.embedding_bag`` forward, ``optim.SGD``) on a random workload
``fma-cosim`` the FP32 FMA RTL under Verilator (cocotb) against the numerics reference, bit for bit
``core-cosim`` the PIM core RTL (Icarus by default, ``--core-simulator verilator``) as the ``rtl`` device backend against the ``golden``
              backend, bit for bit: GATHER_REDUCE (sum and weighted, duplicates, an empty bag), the
              tensor-cast backward (GATHER_REDUCE over dY with the casted index) and SCATTER_SGD,
              plus the RTL's cycle counts
``train``     ``pimcast train`` on ``configs/train/default.yaml`` (synthetic data, SASRec with its item
              table on the ``model`` device, A-LLMRec stages 1-2 with SmolLM2-135M) into ``<run>/train``;
              fails on non-finite losses or when SASRec does not beat random Hit@1 (0.05)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent


class StepFailed(RuntimeError):
    """A step ran but its check did not hold."""


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# ---------------------------------------------------------------------------------------------
# steps




def step_verilog(ctx: dict[str, Any]) -> dict[str, Any]:
    from pimcast.hdl.export import TOPS, generate_all
    from pimcast.sim.lint import lint_tops

    out = ctx["out"] / "verilog"
    paths = generate_all(out)
    results = lint_tops(list(TOPS), ctx["out"] / "lint")
    dirty = [r.top for r in results if not r.clean]
    figures = {
        "tops": {t: {"verilog": str(p.relative_to(ctx["out"])), "lines": len(p.read_text().splitlines())}
                 for t, p in paths.items()},
        "lint_clean": not dirty,
        "lint_warnings": {r.top: len(r.warnings) for r in results},
    }
    if dirty:
        raise StepFailed(f"verilator lint reported warnings for: {', '.join(dirty)}")
    return figures


def step_golden(ctx: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from pimcast.models import tensor_cast as tc

    # FACTS.md §1 worked example
    indices = torch.tensor([1, 3, 6, 3, 5, 1, 3, 7])
    offsets = torch.tensor([0, 3, 5])
    casted = tc.cast(indices, offsets)
    dy = torch.tensor([[1.0, 10.0], [100.0, 1000.0], [10000.0, 100000.0]])
    g = tc.tc_backward(dy, casted)
    w = torch.arange(16, dtype=torch.float32).reshape(8, 2)
    w_new = tc.sgd(w, casted.unique, g, 0.1)
    expect_g = torch.tensor([[10001, 100010], [10101, 101010], [100, 1000], [1, 10], [10000, 100000]],
                            dtype=torch.float32)
    worked = (casted.casted_index.tolist() == [0, 2, 0, 1, 2, 1, 0, 2]
              and casted.casted_offsets.tolist()[:5] == [0, 2, 5, 6, 7]
              and casted.unique.tolist() == [1, 3, 5, 6, 7]
              and torch.equal(g, expect_g)
              # FACTS.md gives decimals; fma(-0.1, g, w) rounds once, one fp32 ulp from fp32(-998.1)
              and torch.allclose(w_new[1], torch.tensor([-998.1, -9998.0]), rtol=0, atol=1e-3)
              and torch.allclose(w_new[3], torch.tensor([-1004.1, -10094.0]), rtol=0, atol=1e-3))
    if not worked:
        raise StepFailed("the golden model does not reproduce FACTS.md's worked example")

    # bit-exactness against PyTorch on a random workload
    gen = torch.Generator().manual_seed(0)
    rows, dim, bags, pool = 10_000, 64, 512, 20
    table = torch.randn(rows, dim, generator=gen)
    lengths = torch.randint(0, 2 * pool, (bags,), generator=gen)
    offs = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    idx = torch.randint(0, rows, (int(lengths.sum()),), generator=gen)
    psw = torch.rand(idx.numel(), generator=gen)
    ours = tc.gather_reduce(table, idx, offs)
    ref = F.embedding_bag(idx, table, offs, mode="sum")
    ours_w = tc.gather_reduce(table, idx, offs, per_sample_weights=psw)
    ref_w = F.embedding_bag(idx, table, offs, mode="sum", per_sample_weights=psw)
    fwd_bits = torch.equal(ours.view(torch.int32), ref.view(torch.int32))
    fwdw_bits = torch.equal(ours_w.view(torch.int32), ref_w.view(torch.int32))
    dy = torch.randn(bags, dim, generator=gen)
    t0 = time.perf_counter()
    c = tc.cast(idx, offs)
    t_cast = time.perf_counter() - t0
    t0 = time.perf_counter()
    grad = tc.tc_backward(dy, c)
    t_tc = time.perf_counter() - t0
    uniq_ec, grad_ec = tc.expand_coalesce_backward(dy, idx, offs)
    tc_eq_ec = torch.equal(c.unique, uniq_ec) and torch.equal(grad.view(torch.int32), grad_ec.view(torch.int32))
    p = torch.nn.Parameter(table.clone())
    dense = torch.zeros_like(table)
    dense[c.unique] = grad
    p.grad = dense
    torch.optim.SGD([p], lr=0.05).step()
    sgd_bits = torch.equal(tc.sgd(table, c.unique, grad, 0.05).view(torch.int32), p.detach().view(torch.int32))
    figures = {
        "worked_example": worked,
        "forward_sum_bit_exact_vs_torch": fwd_bits,
        "forward_weighted_bit_exact_vs_torch": fwdw_bits,
        "tc_backward_bit_exact_vs_expand_coalesce": tc_eq_ec,
        "sgd_bit_exact_vs_torch": sgd_bits,
        "lookups": int(idx.numel()),
        "unique_rows": int(c.unique.numel()),
        "cast_ms": round(t_cast * 1e3, 3),
        "tc_backward_ms": round(t_tc * 1e3, 3),
    }
    bad = [k for k in ("forward_sum_bit_exact_vs_torch", "forward_weighted_bit_exact_vs_torch",
                       "tc_backward_bit_exact_vs_expand_coalesce", "sgd_bit_exact_vs_torch") if not figures[k]]
    if bad:
        raise StepFailed(f"golden model not bit-exact: {', '.join(bad)}")
    return figures


def step_fma_cosim(ctx: dict[str, Any]) -> dict[str, Any]:
    from pimcast.sim.runner import run_cocotb

    count = ctx["fma_vectors"]
    res = run_cocotb("fma", simulator="verilator", env={"PIMCAST_FMA_COUNT": str(count), "PIMCAST_SEED": "1"},
                     testcase="test_random")
    figures: dict[str, Any] = {"simulator": "verilator", "tests": res.tests, "failures": res.failures,
                               "seconds": round(res.seconds, 2)}
    for s in res.stats:
        if s.get("test") == "random":
            figures["vectors"] = s.get("vectors")
            figures["vectors_per_s"] = round(s.get("vectors_per_s") or 0.0)
    if not res.ok:
        raise StepFailed(f"FMA co-simulation: {res.failures} of {res.tests} tests failed ({res.error or ''})")
    return figures


def step_core_cosim(ctx: dict[str, Any]) -> dict[str, Any]:
    import os

    import torch

    from pimcast.host import open_device
    from pimcast.models import tensor_cast as tc

    rows, dim, bags = 48, ctx.get("core_dim", 32), 12
    gen = torch.Generator().manual_seed(7)
    table = torch.randn(rows, dim, generator=gen)
    lengths = torch.randint(0, 7, (bags,), generator=gen)
    lengths[3] = 0                                      # an empty bag
    idx = torch.randint(0, rows, (int(lengths.sum()),), generator=gen)
    idx[:4] = 5                                         # a hot row, duplicates inside a bag
    offs = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    psw = torch.rand(idx.numel(), generator=gen)
    dy = torch.randn(bags, dim, generator=gen)
    c = tc.cast(idx, offs)
    simulator = ctx.get("core_simulator", "icarus")
    os.environ["PIMCAST_RTL_SIMULATOR"] = simulator
    devs = {b: open_device(b, "small-test") for b in ("rtl", "golden")}
    out: dict[str, dict[str, torch.Tensor]] = {}
    cycles: dict[str, int] = {}
    t0 = time.perf_counter()
    for b, dev in devs.items():
        r: dict[str, torch.Tensor] = {}
        dev.alloc("emb", rows, dim)
        dev.write("emb", table)
        dev.reset_stats()
        r["forward"] = dev.gather_reduce("emb", idx, offs)
        r["forward_weighted"] = dev.gather_reduce("emb", idx, offs, per_sample_weights=psw)
        if b == "rtl":
            cycles["gather_reduce"] = dev.stats()["cycles"]
        dev.alloc("dy", bags, dim)
        dev.write("dy", dy)
        dev.reset_stats()
        r["tc_backward"] = dev.gather_reduce("dy", c.casted_index, c.casted_offsets[:c.unique.numel()])
        if b == "rtl":
            cycles["tc_backward"] = dev.stats()["cycles"]
        dev.reset_stats()
        dev.scatter_sgd("emb", c.unique, r["tc_backward"], 0.05)
        if b == "rtl":
            cycles["scatter_sgd"] = dev.stats()["cycles"]
        r["sgd_table"] = dev.read("emb")
        out[b] = r
    seconds = time.perf_counter() - t0
    devs["rtl"].backend.close()
    same = {k: torch.equal(out["rtl"][k].view(torch.int32), out["golden"][k].view(torch.int32)) for k in out["rtl"]}
    ref_bwd = tc.tc_backward(dy, c)
    same["tc_backward_vs_tensor_cast"] = torch.equal(out["rtl"]["tc_backward"].view(torch.int32),
                                                     ref_bwd.view(torch.int32))
    figures = {"simulator": simulator, "config": "small-test", "rows": rows, "dim": dim, "bags": bags,
               "lookups": int(idx.numel()), "bit_exact": same, "rtl_cycles": cycles,
               "seconds": round(seconds, 1)}
    bad = [k for k, v in same.items() if not v]
    if bad:
        raise StepFailed(f"PIM core RTL differs from the golden model in: {', '.join(bad)}")
    return figures


def step_train(ctx: dict[str, Any]) -> dict[str, Any]:
    from pimcast.models.train import load_config, run_training

    cfg = load_config(ctx.get("train_config", "default"))
    m = run_training(cfg, ctx["out"] / "train", progress=True)
    s = m["summary"]
    figures = {
        "dataset": f"{s['dataset']} ({s['users']} users, {s['items']} items)",
        "llm": m["stage2"]["llm"],
        "sasrec_hit@1": round(s["sasrec_hit@1"], 4),
        "sasrec_ndcg@10": round(s["sasrec_ndcg@10"], 4),
        "allmrec_hit@1_generate": s["allmrec_hit@1_generate"],
        "allmrec_hit@1_likelihood": s["allmrec_hit@1_likelihood"],
        "allmrec_test_users": s["allmrec_test_users"],
        "device_cycles": s["device_cycles_total"],
        "device_cycles_sasrec_train": s["device_cycles_sasrec_train"],
        "speedup_vs_cpu": s.get("speedup_vs_cpu"),
        "speedup_vs_gpu": s.get("speedup_vs_gpu"),
        "seconds": s["seconds"],
        "report": str((ctx["out"] / "train" / "report.md").relative_to(ctx["out"])),
    }
    if s["nan_losses"]:
        raise StepFailed("training produced non-finite losses")
    if not s["sasrec_hit@1"] > 0.05:
        raise StepFailed(f"SASRec Hit@1 {s['sasrec_hit@1']:.3f} does not beat random (0.05)")
    return figures


STEPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "verilog": step_verilog,
    "golden": step_golden,
    "fma-cosim": step_fma_cosim,
    "core-cosim": step_core_cosim,
    "train": step_train,
}

#: core-cosim runs on Icarus by default: its build takes seconds, while the Verilator build of the
#: 16-lane core takes ~11 min on 2 cores (faster to simulate, slower to build)
DEFAULT_STEPS = ("verilog", "golden", "fma-cosim", "core-cosim", "train")


# ---------------------------------------------------------------------------------------------
# driver


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def write_report(results: list[StepResult], out: Path) -> tuple[Path, Path]:
    data = {"pimcast_run": datetime.now().isoformat(timespec="seconds"),
            "ok": all(r.ok for r in results),
            "steps": [r.__dict__ for r in results]}
    jpath = out / "report.json"
    jpath.write_text(json.dumps(data, indent=1, default=str))
    lines = ["# pimcast run report", "", f"Run folder: `{out}`", "",
             "| step | result | seconds |", "|---|---|---|"]
    lines += [f"| {r.name} | {'ok' if r.ok else 'FAILED'} | {r.seconds:.1f} |" for r in results]
    for r in results:
        lines += ["", f"## {r.name}", ""]
        if r.error:
            lines += ["```", r.error.strip(), "```", ""]
        lines += [f"- `{k}`: {v}" for k, v in _flatten(r.figures)]
    mpath = out / "report.md"
    mpath.write_text("\n".join(lines) + "\n")
    return jpath, mpath


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="run folder (default: runs/<timestamp>)")
    parser.add_argument("--steps", default=",".join(DEFAULT_STEPS),
                        help=f"comma-separated steps to run (default: {', '.join(DEFAULT_STEPS)}; "
                             f"also: {', '.join(s for s in STEPS if s not in DEFAULT_STEPS)})")
    parser.add_argument("--fma-vectors", type=int, default=20_000,
                        help="random FMA vectors in the RTL co-simulation (default 20000)")
    parser.add_argument("--core-simulator", default="icarus", choices=("icarus", "verilator"),
                        help="simulator of the core-cosim step (default icarus: quick to build)")
    parser.add_argument("--train-config", default="default",
                        help="configs/train preset or YAML of the train step (default: default)")


def main(args: argparse.Namespace) -> int:
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        print(f"pimcast run: unknown step(s) {', '.join(map(repr, unknown))}; choose from {', '.join(STEPS)}",
              file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else REPO / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    ctx = {"out": out, "fma_vectors": args.fma_vectors, "train_config": getattr(args, "train_config", "default"),
           "core_simulator": getattr(args, "core_simulator", "icarus")}
    results: list[StepResult] = []
    for name in steps:
        print(f"[pimcast run] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            figures = STEPS[name](ctx)
            results.append(StepResult(name, True, time.perf_counter() - t0, figures))
        except StepFailed as exc:
            results.append(StepResult(name, False, time.perf_counter() - t0, {}, str(exc)))
        except Exception:  # noqa: BLE001 - report every step, then fail the job
            results.append(StepResult(name, False, time.perf_counter() - t0, {}, traceback.format_exc()))
        r = results[-1]
        print(f"[pimcast run] {name}: {'ok' if r.ok else 'FAILED'} ({r.seconds:.1f} s)", flush=True)
        if r.error:
            print(r.error, file=sys.stderr)
    jpath, mpath = write_report(results, out)
    width = max(len(r.name) for r in results)
    print()
    print(f"{'step':<{width}}  result  seconds  figures")
    for r in results:
        figs = ", ".join(f"{k}={v}" for k, v in _flatten(r.figures) if not isinstance(v, (list, dict)))
        print(f"{r.name:<{width}}  {'ok    ' if r.ok else 'FAILED'}  {r.seconds:7.1f}  {figs[:160]}")
    print(f"\nreport: {mpath}\n        {jpath}")
    return 0 if all(r.ok for r in results) else 1
