"""cocotb FMA testbench on Icarus and Verilator (directed + random + back-pressure)."""
from __future__ import annotations

import pytest

from pimcast.cli import main as cli
from pimcast.sim.runner import run_cocotb
from pimcast.sim.toolchain import have_icarus, have_verilator

pytestmark = pytest.mark.rtl

SIMS = [
    pytest.param("icarus", marks=pytest.mark.skipif(not have_icarus(), reason="Icarus missing")),
    pytest.param("verilator", marks=pytest.mark.skipif(not have_verilator(), reason="Verilator missing")),
]


def _stats(res, name):
    return next(s for s in res.stats if s["test"] == name)


@pytest.mark.parametrize("simulator", SIMS)
def test_fma_directed_random_backpressure(simulator):
    res = run_cocotb("fma", simulator=simulator, env={"PIMCAST_FMA_COUNT": "5000", "PIMCAST_SEED": "11"})
    assert res.error is None
    # test_vectors_file is skipped outside vectors-file mode but still counted
    assert (res.tests, res.failures) == (4, 0), res.build_dir
    assert _stats(res, "random")["vectors"] == 5000
    assert _stats(res, "full-rate")["vectors"] == 512


@pytest.mark.slow
@pytest.mark.skipif(not have_verilator(), reason="Verilator missing")
def test_fma_verilator_regression_100k():
    res = run_cocotb("fma", simulator="verilator", testcase="test_random",
                     env={"PIMCAST_FMA_COUNT": "100000", "PIMCAST_SEED": "2024"})
    assert (res.tests, res.failures) == (1, 0), res.build_dir
    assert _stats(res, "random")["vectors"] == 100000


@pytest.mark.skipif(not have_icarus(), reason="Icarus missing")
def test_corrupted_model_fails_the_run(monkeypatch, capsys):
    # the checker must catch a wrong model (bit 0 flipped in every 97th expected result), and
    # `pimcast sim` must turn the failure into a non-zero exit status (the runner copies os.environ)
    monkeypatch.setenv("PIMCAST_FMA_CORRUPT", "1")
    assert cli(["sim", "--top", "fma", "--simulator", "icarus", "--testcase", "test_directed"]) == 1
    out = capsys.readouterr().out
    assert "1 tests, 1 failures" in out
