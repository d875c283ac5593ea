"""Fast checks of the PIM core (no RTL simulation): parameter and config validation,
elaboration without warnings, export registration, driver helpers."""
from __future__ import annotations

import warnings

import pytest

from pimcast.hdl import isa
from pimcast.hdl.core import PIMCore, from_config
from pimcast.hdl.dram.timing import load_preset
from pimcast.host.pim_config import load_pim_config


def _silence(core):
    core._MustUse__silence = True
    return core


@pytest.mark.parametrize("kw, exc, match", [
    (dict(lanes=8), ValueError, "lanes must be 16.*not 8"),
    (dict(tag_bits=0), ValueError, "tag_bits must be in 1..8, not 0"),
    (dict(tag_bits=1.5), TypeError, "tag_bits must be an integer, not 1.5"),
    (dict(buf_beats=100), ValueError, "buf_beats must be a power of two, not 100"),
    (dict(buf_beats=8), ValueError, "buf_beats must be in 16..65536, not 8"),
    (dict(max_row_bytes=100), ValueError, "max_row_bytes must be a multiple of 64, not 100"),
    (dict(sgd_rows=0), ValueError, "sgd_rows must be in 1..65536, not 0"),
    (dict(capacity_beats=0), ValueError, "capacity_beats must be in 1"),
    (dict(queue=0), ValueError, "queue depth must be an integer in 1..32, not 0"),
    (dict(mapping="robabgcoraXX"), Exception, "unknown field 'xx'"),
    (dict(pipeline=("unpack",)), ValueError, "Pipeline must include 'round'"),
])
def test_bad_parameters_name_the_value(kw, exc, match):
    with pytest.raises(exc, match=match):
        PIMCore(**kw)


def test_core_is_one_rank():
    with pytest.raises(ValueError, match="2 ranks; a PIM core is one rank-level unit"):
        PIMCore(load_preset("ddr4-3200", ranks=2))
    with pytest.raises(TypeError, match="timing must be a DRAMTiming"):
        PIMCore(3)


def test_from_config_rank_and_bankgroup():
    core = _silence(from_config("rank-ddr4-3200"))
    assert core.timing.ranks == 1 and core.mapping == "robabgcorach"
    assert core.capacity_beats == load_preset("ddr4-3200", ranks=1).capacity_bytes // 64
    assert core.data_path == "channel" and core.params()["data_path"] == "channel"
    # the striped bank-group core: one accumulator file, the bank-group data path
    striped = _silence(from_config("bankgroup-ddr4-3200"))
    assert (striped.units, striped.data_path, striped.timing.data_path) == (1, "bankgroup", "bankgroup")
    assert striped.mapping == "robacobgrach" and striped.slots == core.slots
    assert striped.params()["bankctl"]["read_buffer"] >= 29 > core.params()["bankctl"]["read_buffer"]
    # rank-level partial sums: the rank-level core, one per rank (the host adds the ranks' sums)
    rp = _silence(from_config(load_pim_config("rank-ddr4-3200", accumulate="partial", mapping="robabgrachco")))
    assert (rp.units, rp.data_path) == (1, "channel")
    with pytest.raises(ValueError, match="units=4 .*needs data_path 'bankgroup', not 'channel'"):
        PIMCore(units=4)
    with pytest.raises(ValueError, match="data_path must be 'channel' or 'bankgroup', not 'bus'"):
        PIMCore(data_path="bus")
    # bank-group units with partial sums: one unit per bank group, bank-group data path
    trim = _silence(from_config("trim-ddr4-3200", rows=1024))
    p = trim.params()
    assert p["units"] == 4 and p["slots"] == 4 * trim.unit_slots and trim.timing.data_path == "bankgroup"
    assert p["bg_field"] == [7, 2]          # robachrabgco: 128 beats (8 KB) per bank-group row
    assert p["bankctl"]["read_buffer"] >= 29 and "units" not in core.params()
    with pytest.raises(ValueError, match="units must be 1 .rank-level. or the preset's 4 bank groups"):
        PIMCore(units=2)


def test_params_and_sgd_limit():
    core = _silence(PIMCore(rows=1024, buf_beats=256, sgd_rows=32))
    p = core.params()
    assert p["capacity_beats"] == 16 * 1024 * 8192 // 64
    assert p["rob_depth"] == 32 and p["slots"] == 16 and p["latency"] == core.latency
    from pimcast.sim.core_driver import max_sgd_count
    for rb in (64, 128, 512, 1024):
        n = core.max_sgd_count(rb)
        assert n == max_sgd_count(p, rb)
        r = rb // 64
        assert -(-n // 16) + n * r <= 256 and n <= 32
        assert n == 32 or -(-(n + 1) // 16) + (n + 1) * r > 256


def test_elaborates_without_warnings():
    from amaranth.back import rtlil

    core = PIMCore(rows=1024, buf_beats=16, tag_bits=2, max_row_bytes=128)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = rtlil.convert(core)
    assert "ctl" in text and "ru" in text


def test_export_registers_core():
    from pimcast.hdl.export import TOPS
    assert "core" in TOPS


def test_isa_status_and_outbeat():
    from amaranth.lib import data
    assert isa.Status.DUPLICATE_ROW.value == 0x08
    assert data.Layout.cast(isa.OutBeat).size == isa.BEAT_BITS + 1


def test_status_error_message():
    from pimcast.sim.core_driver import PIMStatusError
    e = PIMStatusError(2, "ROW_OUT_OF_RANGE", {"detail": 99, "position": 3})
    assert e.code == 2 and e.name == "ROW_OUT_OF_RANGE"
    assert "ROW_OUT_OF_RANGE (0x02)" in str(e) and "detail=99" in str(e)
