"""The PIM unit's in-flight window (``PIMConfig.rob_tags`` / ``queue``): one config field used by
the RTL core (:func:`pimcast.hdl.core.from_config`) and by the ``model`` backend's timing
(:class:`pimcast.host.dram_model.FastDRAMModel` ``max_reads_in_flight``)."""
from __future__ import annotations

import pytest

from pimcast.config import ConfigError
from pimcast.hdl.core import from_config
from pimcast.host.pim_config import PIMConfig, load_pim_config


def _silence(core):
    core._MustUse__silence = True
    return core


@pytest.mark.parametrize("v, match", [
    (1, "field rob_tags: must be an integer >= 2, not 1"),
    (0, "field rob_tags: must be an integer >= 2, not 0"),
    (96, "field rob_tags: must be a power of two in 2..256 .*not 96"),
    (512, "field rob_tags: must be a power of two in 2..256 .*not 512"),
    (64.0, "field rob_tags: must be an integer >= 2, not 64.0"),
    (True, "field rob_tags: must be an integer >= 2, not True"),
])
def test_rob_tags_validated(v, match):
    with pytest.raises(ConfigError, match=match):
        load_pim_config("rank-ddr4-3200", rob_tags=v)
    with pytest.raises(ConfigError, match=match):
        PIMConfig(rob_tags=v).validate()


def test_queue_range_follows_the_rtl_for_rank_placement():
    with pytest.raises(ConfigError, match="field queue: must be in 1..32 for placement 'rank'.*not 33"):
        load_pim_config("rank-ddr4-3200", queue=33)
    assert load_pim_config("rank-ddr4-3200", queue=32).queue == 32
    # the bank-group placement has no RTL core: deeper model queues stay allowed
    assert load_pim_config("bankgroup-ddr4-3200", queue=64).queue == 64


def test_yaml_field_and_unknown_field(tmp_path):
    p = tmp_path / "w.yaml"
    p.write_text("placement: rank\nranks: 1\nrob_tags: 64\nqueue: 24\n")
    cfg = load_pim_config(p)
    assert (cfg.rob_tags, cfg.queue) == (64, 24)
    p.write_text("placement: rank\nrob_tag: 64\n")
    with pytest.raises(ConfigError, match="unknown field 'rob_tag'"):
        load_pim_config(p)


def test_presets_window():
    assert (load_pim_config().rob_tags, load_pim_config().queue) == (128, 32)
    assert (load_pim_config("rank-ddr4-3200-1rank").rob_tags, load_pim_config("rank-ddr4-3200-1rank").queue) == (128, 32)
    # the RTL test device keeps the core's small defaults (fast cocotb builds)
    st = load_pim_config("small-test")
    assert (st.rob_tags, st.queue) == (32, 16)


@pytest.mark.parametrize("rob, queue", [(128, 32), (32, 16), (2, 1), (256, 8)])
def test_from_config_takes_the_window(rob, queue):
    core = _silence(from_config(load_pim_config("rank-ddr4-3200", rob_tags=rob, queue=queue)))
    p = core.params()
    assert p["rob_depth"] == rob and p["tag_bits"] == rob.bit_length() - 1 and p["queue"] == queue
    assert p["bankctl"]["queue"] == queue
    # explicit overrides still win over the config
    core = _silence(from_config(load_pim_config("rank-ddr4-3200", rob_tags=rob, queue=queue), tag_bits=3, queue=4))
    assert core.params()["rob_depth"] == 8 and core.params()["queue"] == 4
