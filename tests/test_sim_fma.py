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


@pytest.mark.skipif(not have_icarus(), reason="Icarus missing")
def test_fma_ecp5_dsp_variant_with_mult18x18d_model():
    """``FMA(dsp="ecp5")`` (four registered MULT18X18D instances, the synthesized variant) on
    Icarus with the behavioural model ``sim/ecp5_mult18x18d.v``: bit-exact against the golden
    model, with back-pressure (the DSP registers' clock enable) and the documented latency; the
    same run with the model's fault hook (one product bit flipped for some operands) fails, so
    the DSP instances really carry the products."""
    from pimcast.hdl.fp import FAST_PIPELINE, FMA
    from pimcast.sim.dsp_sim import run_with_dsp_model

    cases = ["test_directed", "test_random", "test_backpressure"]
    env = {"PIMCAST_FMA_COUNT": "3000", "PIMCAST_SEED": "13"}
    dut = FMA(pipeline=FAST_PIPELINE, dsp="ecp5")
    res = run_with_dsp_model(dut, "fma", "pimcast.sim.tb_fma", env=env, testcase=cases)
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (3, 0), res.build_dir
    assert (res.build_dir / "fma.v").read_text().count("MULT18X18D") == 4
    assert _stats(res, "random")["vectors"] == 3000
    bad = run_with_dsp_model(FMA(pipeline=FAST_PIPELINE, dsp="ecp5"), "fma", "pimcast.sim.tb_fma", env=env,
                             testcase=["test_random"], fault=True)
    assert (bad.tests, bad.failures) == (1, 1), bad.build_dir
