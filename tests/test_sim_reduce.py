# amaranth: UnusedElaboratable=no
"""cocotb reduction-unit testbench (``pimcast.sim.tb_reduce``) on Icarus and Verilator.

The fast default runs a 4-lane, 64-slot unit (the lane datapath is the 16-lane one; a 16-lane
Verilator build takes minutes of C++ compilation); the ``slow`` regression runs the default
16-lane top on Verilator with more bags.
"""
from __future__ import annotations

import pytest

from pimcast.hdl.fp import FAST_PIPELINE
from pimcast.hdl.reduce import ReductionUnit
from pimcast.sim.runner import run_cocotb
from pimcast.sim.toolchain import have_icarus, have_verilator

pytestmark = pytest.mark.rtl

SIMS = [
    pytest.param("icarus", marks=pytest.mark.skipif(not have_icarus(), reason="Icarus missing")),
    pytest.param("verilator", marks=pytest.mark.skipif(not have_verilator(), reason="Verilator missing")),
]

SMALL = {"lanes": 4, "slots": 64}


def _stat(res, name):
    return next(s for s in res.stats if s["test"] == name)


@pytest.mark.parametrize("simulator", SIMS)
def test_reduce_sizes_hazard_throughput(simulator):
    env = {"PIMCAST_SEED": "3", "PIMCAST_REDUCE_BAGS": "4", "PIMCAST_REDUCE_MAXLEN": "40",
           "PIMCAST_REDUCE_DIMS": "16,32,64,128" if simulator == "icarus" else "16,32,64,128,256"}
    res = run_cocotb("reduce", simulator=simulator, config=SMALL, env=env)
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (3, 0), res.build_dir
    rec = ReductionUnit(**SMALL).recurrence       # = latency: forwarding
    assert _stat(res, f"rate-1beat-{rec}ctx")["beats_per_cycle"] >= 0.97
    assert _stat(res, "rate-4beat-2ctx")["beats_per_cycle"] >= 0.97
    assert _stat(res, "rate-4beat-1ctx")["beats_per_cycle"] == pytest.approx(min(1, 4 / rec), abs=0.03)


@pytest.mark.parametrize("simulator", SIMS)
def test_reduce_fast_decoupled(simulator):
    """The 150-MHz configuration: FAST_PIPELINE (latency 20), decoupled lanes, no forwarding
    (dependent beats 21 cycles apart), in two control groups of 2 lanes (lockstep)."""
    config = {**SMALL, "pipeline": "fast", "decoupled": True, "group": 2}
    rec = ReductionUnit(lanes=4, slots=64, pipeline=FAST_PIPELINE, decoupled=True, group=2).recurrence
    assert rec == 21
    env = {"PIMCAST_SEED": "5", "PIMCAST_REDUCE_BAGS": "3", "PIMCAST_REDUCE_MAXLEN": "30",
           "PIMCAST_REDUCE_DIMS": "16,64", "PIMCAST_REDUCE_RECURRENCE": str(rec)}
    res = run_cocotb("reduce", simulator=simulator, config=config, env=env)
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (3, 0), res.build_dir
    assert _stat(res, f"rate-1beat-{rec}ctx")["beats_per_cycle"] >= 0.97
    assert _stat(res, "rate-4beat-1ctx")["beats_per_cycle"] == pytest.approx(4 / rec, abs=0.01)


@pytest.mark.slow
@pytest.mark.skipif(not have_verilator(), reason="Verilator missing")
def test_reduce_verilator_regression_16_lanes():
    """The default 16-lane, 32-slot unit: D = 16..256, 12 bags per size and weighting (empty bags,
    up to 100 lookups, a hot row, extreme values), random idle and back-pressure; the hazard and
    throughput checks. (40 bags per size took >11 min on a 2-core Zen 1 host: CI's time.)"""
    env = {"PIMCAST_SEED": "2024", "PIMCAST_REDUCE_BAGS": "12", "PIMCAST_REDUCE_MAXLEN": "100"}
    res = run_cocotb("reduce", simulator="verilator", env=env)
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (3, 0), res.build_dir


@pytest.mark.skipif(not have_icarus(), reason="Icarus missing")
def test_reduce_ecp5_dsp_variant_with_mult18x18d_model():
    """The synthesized 150-MHz unit as it is (FAST_PIPELINE, decoupled, ``dsp="ecp5"``: four
    MULT18X18D per lane, lanes in control groups: one lane each here) on Icarus with the
    behavioural model ``sim/ecp5_mult18x18d.v``: row sizes, empty bags, extreme values, idle and
    back-pressure, bit-exact."""
    from pimcast.sim.dsp_sim import run_with_dsp_model

    dut = ReductionUnit(lanes=2, slots=16, pipeline=FAST_PIPELINE, dsp="ecp5", decoupled=True, group=1)
    env = {"PIMCAST_SEED": "9", "PIMCAST_REDUCE_BAGS": "3", "PIMCAST_REDUCE_MAXLEN": "20",
           "PIMCAST_REDUCE_DIMS": "2,8", "PIMCAST_REDUCE_RECURRENCE": str(dut.recurrence)}
    res = run_with_dsp_model(dut, "reduce", "pimcast.sim.tb_reduce", env=env, testcase=["test_sizes"])
    assert res.error is None, res.error
    assert (res.tests, res.failures) == (1, 0), res.build_dir
    assert (res.build_dir / "reduce.v").read_text().count("MULT18X18D") == 2 * 4
