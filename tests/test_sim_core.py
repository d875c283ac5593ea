"""cocotb PIM-core benches (Icarus and Verilator) against the golden tensor-casting model:
GATHER_REDUCE forward, tensor-cast backward, SCATTER_SGD, every error case — with the DRAM
device model + protocol checker always on and random pacing on every stream."""
from __future__ import annotations

import pytest

from pimcast.sim.tb_core import run_core
from pimcast.sim.toolchain import have_icarus, have_verilator

pytestmark = pytest.mark.rtl


@pytest.fixture(autouse=True)
def _verilator_o1(monkeypatch):
    """The Verilator runs here simulate ~50k cycles: build the core with g++ -O1 (measured on
    the 2-core host under load: build 3.9 min instead of ~0.5 min at -O0, simulation 2,380
    instead of 360 cycles/s), shared by both Verilator tests of this file (one build folder)."""
    monkeypatch.setenv("PIMCAST_VERILATOR_OPT", "-O1")


#: the rank-level core's benches (test_gather_partial is the bank-group core's)
ALL = ["test_smoke", "test_write_read", "test_gather_forward", "test_tc_backward", "test_scatter_sgd",
       "test_errors"]


def _stat(res, name):
    return next(s for s in res.stats if s["test"] == name)


@pytest.mark.slow   # Verilator build of the core (g++ -O0) ~1-3 min, run ~3 min on 2 cores
@pytest.mark.skipif(not have_verilator(), reason="Verilator missing")
def test_core_verilator_quick():
    """All tests, D in {16, 64}, bags up to 100 lookups (the default-suite run)."""
    res = run_core("verilator", env={"PIMCAST_CORE_DIMS": "16,64", "PIMCAST_CORE_MAXLEN": "100",
                                     "PIMCAST_CORE_BAGS": "6", "PIMCAST_SEED": "3"}, testcase=ALL)
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (len(ALL), 0), res.build_dir
    assert _stat(res, "gather_forward")["lookups"] > 500


@pytest.mark.skipif(not have_icarus(), reason="Icarus missing")
def test_core_icarus_errors_and_smoke():
    """Icarus: reset status, a round trip, and every error case (Icarus runs ~700 cycles/s)."""
    res = run_core("icarus", env={"PIMCAST_SEED": "4", "PIMCAST_CORE_DIMS": "16"},
                   testcase=["test_smoke", "test_errors"])
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (2, 0), res.build_dir


@pytest.mark.slow
@pytest.mark.skipif(not have_verilator(), reason="Verilator missing")
def test_core_verilator_all_dims():
    """D in {32, 128, 256} (16 and 64: the quick run), bag lengths 0..100, another seed (~4-6 min)."""
    res = run_core("verilator", env={"PIMCAST_CORE_DIMS": "32,128,256", "PIMCAST_CORE_MAXLEN": "100",
                                     "PIMCAST_CORE_BAGS": "3", "PIMCAST_SEED": "11"},
                   testcase=["test_gather_forward", "test_tc_backward", "test_scatter_sgd"])
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (3, 0), res.build_dir
    dims = {s["dim"] for s in res.stats if s["test"].startswith("gather_d")}
    assert dims == {32, 128, 256}


@pytest.mark.slow   # Icarus runs the core at ~700 cycles/s; the quick Icarus run is test_core_icarus_errors_and_smoke
@pytest.mark.skipif(not have_icarus(), reason="Icarus missing")
def test_core_icarus_gather_sgd():
    """Icarus: forward, backward and SGD at D = 16 with bags of 20 and 0 lookups (the sweep over
    every D and longer bags runs on Verilator; D in {16, 64} with 2-4 bags per case took 9-13 min
    on a 2-core Zen 1 host)."""
    res = run_core("icarus", env={"PIMCAST_CORE_DIMS": "16", "PIMCAST_CORE_MAXLEN": "20", "PIMCAST_CORE_BAGS": "2",
                                  "PIMCAST_SEED": "5"},
                   testcase=["test_gather_forward", "test_tc_backward", "test_scatter_sgd"])
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (3, 0), res.build_dir
    assert _stat(res, "gather_forward")["lookups"] >= 60


@pytest.mark.slow   # Icarus: ~2 min to compile the two-datapath core, a few min to run (~150-300 cycles/s)
@pytest.mark.skipif(not have_icarus(), reason="Icarus missing")
def test_core_bankgroup_units_icarus():
    """The bank-group core (``trim-ddr4-3200``: 4 units, partial sums, bank-group data path):
    GATHER_REDUCE vs ``gather_reduce_partial`` bit for bit over a table spanning every bank group
    (D 16 and 64, plain / weighted with extreme weights / hot row, empty bags), SCATTER_SGD vs the
    golden SGD, with the DRAM model's protocol checker on the bank-group rules."""
    res = run_core("icarus", config="trim-ddr4-3200",
                   env={"PIMCAST_CORE_DIMS": "16,64", "PIMCAST_CORE_MAXLEN": "16", "PIMCAST_CORE_BAGS": "4",
                        "PIMCAST_SEED": "3"},
                   testcase=["test_smoke", "test_gather_partial", "test_scatter_sgd"])
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (3, 0), res.build_dir
    st = _stat(res, "gather_partial")
    assert st["lookups"] > 120
    # the partial sums are not the sequential bits (the test would not tell them apart otherwise)
    assert st["differ_from_sequential"] > 0
