"""pimcast bench: replayed PIM streams equal a real Device run; a tiny sweep writes JSON + plots."""
import json

import pytest

from pimcast.cli import main as cli_main
from pimcast.host.bench import SWEEPS, BenchError, pim_step_time, run_bench
from pimcast.host.workloads import WorkloadConfig, dlrm_workload


@pytest.mark.parametrize("cfg", ["rank-ddr4-3200", "bankgroup-ddr4-3200"])
def test_replay_equals_device(cfg):
    w = dlrm_workload(batch=32, pooling=4, dim=50, num_tables=2, rows=3000, dist="zipf", alpha=1.0)
    a = pim_step_time(w, cfg, timing="analytic")
    b = pim_step_time(w, cfg, timing="analytic", functional=True)
    for k in ("ns", "forward_ns", "backward_ns", "update_ns", "dram_bytes", "acts"):
        assert a[k] == pytest.approx(b[k]), k
    assert not a["sampled"]
    s = pim_step_time(w, cfg, timing="analytic", max_requests=128)   # sampled: close to the full run
    assert s["sampled"] and s["ns"] == pytest.approx(a["ns"], rel=0.25)


def test_bench_tiny_sweep(tmp_path):
    base = WorkloadConfig(batch=64, pooling=4, dim=16, num_tables=1, rows=4000)
    doc = run_bench(["dim", "pooling"], quick=True, out=tmp_path, base=base, measure="base",
                    max_requests=4096, progress=False)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"bench.json", "speedup_dim.png", "speedup_pooling.png", "breakdown.png", "utilization.png"} <= files
    d = json.loads((tmp_path / "bench.json").read_text())
    assert d["paper_speedup_range"] == [1.9, 21.0]
    assert {"results", "ceilings", "measured", "gpu", "systems"} <= set(d)
    pts = d["results"]["dim"]
    assert [p["x"] for p in pts] == ["16", "64", "256"]
    for p in pts + d["results"]["pooling"]:
        assert set(p["speedup"]) == {"rank@dimm", "bankgroup@dimm", "rank@pool", "bankgroup@pool"}
        assert all(v > 0 for v in p["speedup"].values())
        assert all(v > 0 for v in p["speedup_vs_gpu"].values())
        for n, q in p["pim"].items():
            assert q["ns"] == pytest.approx(q["forward_ns"] + q["backward_ns"] + q["update_ns"])
            assert p["utilization"][n]["pim_forward_util"] > 0   # > 1 possible: tiny tables hit open rows
    assert d["measured"]["base"]["torch_step"]["ns"] > 0
    assert doc["plots"]


def test_bad_args(capsys, tmp_path):
    assert cli_main(["bench", "--sweep", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown sweep" in capsys.readouterr().err
    assert cli_main(["bench", "--batch", "0", "--quick", "--out", str(tmp_path)]) == 2
    assert "batch" in capsys.readouterr().err
    assert cli_main(["bench", "--cpu-channels", "3", "--quick", "--out", str(tmp_path)]) == 2
    with pytest.raises(BenchError, match="unknown sweep"):
        run_bench(["batchsize"], out=tmp_path)
    assert "sasrec" in SWEEPS
