"""The instruction set (:mod:`pimcast.hdl.isa`) and its host codec (:mod:`pimcast.host.isa_codec`)."""

import numpy as np
import pytest
import torch
from amaranth.hdl import Const
from amaranth.lib import data
from amaranth.sim import Simulator

from pimcast.hdl import isa
from pimcast.host import isa_codec as codec

EXAMPLES = {
    isa.Opcode.NOP: {"tag": 7},
    isa.Opcode.STATUS: {"tag": 0xFFFF},
    isa.Opcode.WRITE: {"addr": 0x1234_5678, "beats": 0xFFFF_FFFF, "tag": 1},
    isa.Opcode.READ: {"addr": 0, "beats": 3, "tag": 2},
    isa.Opcode.GATHER_REDUCE: {"table": 0xABCD, "rows": 1 << 31, "row_bytes": 0xFFC0, "bags": 4096,
                               "flags": {"weighted": 1}, "tag": 3},
    isa.Opcode.SCATTER_SGD: {"table": 5, "rows": 100, "row_bytes": 64, "count": 17,
                             "lr": 0x3DCCCCCD, "tag": 0x8000},
}


def test_layouts_share_header_and_width():
    header = codec.fields(isa.Header)
    for cls in isa.INSTRUCTIONS:
        assert data.Layout.cast(cls).size == isa.INSN_BITS
        assert codec.fields(cls)[:3] == header
    assert set(isa.LAYOUTS) == set(isa.Opcode)
    assert len({o.value for o in isa.Opcode}) == len(isa.Opcode)
    assert isa.Status.OK.value == 0 and len({s.value for s in isa.Status}) == len(isa.Status)


@pytest.mark.parametrize("opcode", list(isa.Opcode), ids=lambda o: o.name)
def test_roundtrip_every_opcode(opcode):
    values = EXAMPLES[opcode]
    word = codec.encode(opcode, **values)
    assert 0 <= word < 1 << isa.INSN_BITS
    got = codec.decode(word)
    assert got["opcode"] is opcode
    for key, value in values.items():
        if isinstance(value, dict):
            for k, v in value.items():
                assert got[key][k] == v
        else:
            assert got[key] == value
    # untouched fields are zero, reserved bits included
    assert all(v == 0 for k, v in got.items() if k not in values and k != "opcode" and not isinstance(v, dict))
    assert codec.insn_from_bytes(codec.insn_to_bytes(word)) == word
    # the encoder and an Amaranth view of the same word agree (the RTL decoder's view)
    view = data.Const(data.Layout.cast(isa.LAYOUTS[opcode]), word)
    assert view.opcode == opcode
    for key, value in values.items():
        if not isinstance(value, dict):
            assert view[key] == value


def test_decoder_view_in_simulation():
    """The RTL reads fields through the Struct; the codec's word gives the right field values."""
    word = codec.encode(isa.Opcode.GATHER_REDUCE, **EXAMPLES[isa.Opcode.GATHER_REDUCE])
    from amaranth.hdl import Module, Signal
    m = Module()
    insn = Signal(isa.INSN_BITS)
    view = isa.GatherReduce(insn)
    out = {k: Signal(32, name=k) for k in ("table", "rows", "row_bytes", "bags")}
    weighted = Signal()
    m.d.comb += [out[k].eq(view[k]) for k in out] + [weighted.eq(view.flags.weighted)]
    sim = Simulator(m)

    async def tb(ctx):
        ctx.set(insn, word)
        for k, s in out.items():
            assert ctx.get(s) == EXAMPLES[isa.Opcode.GATHER_REDUCE][k]
        assert ctx.get(weighted) == 1

    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("field,value,width", [
    ("addr", 1 << 32, 32), ("beats", -1, 32), ("tag", 1 << 16, 16),
])
def test_field_overflow_names_field_and_value(field, value, width):
    with pytest.raises(ValueError, match=rf"'{field}'.*{value}.*{width} bits"):
        codec.encode(isa.Opcode.WRITE, **{field: value})


def test_bad_fields_and_opcodes():
    with pytest.raises(ValueError, match=r"'flags.weighted'.*value 2 .*1 bits"):
        codec.encode("GATHER_REDUCE", flags={"weighted": 2})
    with pytest.raises(ValueError, match=r"'lr': no such field"):
        codec.encode(isa.Opcode.GATHER_REDUCE, lr=1)
    with pytest.raises(ValueError, match=r"unknown opcode 'FOO'"):
        codec.encode("FOO")
    with pytest.raises(ValueError, match=r"unknown opcode 255"):
        codec.decode(0xFF)
    with pytest.raises(ValueError, match=r"'status'.*not a Status"):
        codec.pack(isa.StatusWord, {"status": 0x99})
    with pytest.raises(ValueError, match="Unknown opcode 153"):
        isa.layout_for(0x99)


def test_codec_is_derived_from_the_layouts(monkeypatch):
    """Changing a field width in the isa layout changes the codec (no hand-written copy)."""
    word = codec.encode(isa.Opcode.READ, addr=5, beats=1 << 20)

    class NarrowRead(data.Struct):
        opcode: isa.Opcode
        flags: isa.Flags
        tag: 16
        addr: 40
        beats: 16
        reserved: isa.INSN_BITS - 104

    monkeypatch.setitem(isa.LAYOUTS, isa.Opcode.READ, NarrowRead)
    with pytest.raises(ValueError, match=r"'beats'.*1048576.*16 bits"):
        codec.encode(isa.Opcode.READ, addr=5, beats=1 << 20)
    new = codec.encode(isa.Opcode.READ, addr=1 << 35, beats=3)
    assert new == isa.Opcode.READ.value | (1 << (32 + 35)) | (3 << 72)
    assert codec.decode(new)["addr"] == 1 << 35
    assert codec.decode(word)["beats"] == 1 << 12  # the old word (beats at bit 64) seen through the new layout
    # stream layouts are read at call time too
    class WideHeader(data.Struct):
        reserved: 32
        length: 32

    monkeypatch.setattr(isa, "BagHeader", WideHeader)
    w = codec.gather_index_words([4], [0])
    assert w.tolist() == [0, 1, 4]


def test_index_stream_roundtrip_and_packing():
    rng = np.random.default_rng(1)
    lengths = [0, 3, 1, 0, 17]
    idx = rng.integers(0, 1 << 32, sum(lengths), dtype=np.uint64).astype(np.int64)
    offs = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    w = rng.standard_normal(idx.size).astype(np.float32)
    for weights in (None, w):
        words = codec.gather_index_words(idx, offs, weights)
        per = 2 if weights is not None else 1
        assert words.size == len(lengths) + per * idx.size
        beats = codec.words_to_beats(words)
        assert len(beats) == -(-words.size // 16)
        back = codec.beats_to_words(beats, words.size)
        assert np.array_equal(back, words)
        assert np.all(codec.beats_to_words(beats)[words.size:] == 0)  # zero padding
        i2, o2, w2 = codec.decode_gather_index(back, len(lengths), weights is not None)
        assert np.array_equal(i2, idx) and np.array_equal(o2, offs)
        if weights is not None:
            assert np.array_equal(w2, w.view(np.uint32))
    # first bag header is word 0 of beat 0, little endian
    assert codec.gather_index_words([9, 8], [0, 1]).tolist() == [1, 9, 1, 8]
    with pytest.raises(ValueError, match=r"'row'.*4294967296"):
        codec.gather_index_words([1 << 32], [0])


def test_rows_beats_and_programs():
    rows = torch.randn(3, 32)
    beats = codec.rows_to_beats(rows)
    assert len(beats) == 6
    assert beats[0] & 0xFFFFFFFF == int(rows[0, 0].view(torch.int32)) & 0xFFFFFFFF
    assert np.array_equal(codec.beats_to_rows(beats, 32), rows.numpy().view(np.uint32))
    assert codec.bytes_to_beats(codec.beats_to_bytes(beats)) == beats
    with pytest.raises(ValueError, match="not a nonzero multiple of 64"):
        codec.rows_to_beats(torch.zeros(2, 8))
    prog = codec.gather_reduce_program(100, 10, 32, [1, 2, 3], [0, 2], weights=torch.ones(3))
    f = prog.fields()
    assert (f["table"], f["rows"], f["row_bytes"], f["bags"], f["flags"]["weighted"]) == (100, 10, 128, 2, 1)
    assert prog.beats_out == 4 and len(prog.beats_in) == 1
    sgd = codec.scatter_sgd_program(0, 10, [4, 2], torch.ones(2, 16), lr=0.1)
    f = sgd.fields()
    assert f["count"] == 2 and f["lr"] == 0x3DCCCCCD and f["row_bytes"] == 64
    assert len(sgd.beats_in) == 1 + 2
    assert codec.beats_to_words(sgd.beats_in[:1], 2).tolist() == [4, 2]
    st = codec.decode_status(codec.pack(isa.StatusWord, {"status": isa.Status.ROW_OUT_OF_RANGE,
                                                         "detail": 12, "tag": 3}))
    assert st["status"] is isa.Status.ROW_OUT_OF_RANGE and st["detail"] == 12 and st["tag"] == 3


def test_split_gather_bags_is_the_index_stream_rule():
    """Instructions of a GATHER_REDUCE whose index stream must fit the input buffer: greedy in
    bag order, each instruction's words (from gather_index_words itself) within the capacity."""
    rng = np.random.default_rng(3)
    for weighted in (False, True):
        lengths = rng.integers(0, 40, 50)
        offs = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        idx = rng.integers(0, 100, int(lengths.sum()))
        w = rng.standard_normal(idx.size).astype(np.float32) if weighted else None
        need = codec.gather_bag_words(lengths, weighted)
        for b in range(lengths.size):           # each bag's words, measured on the real stream
            one = codec.gather_index_words(idx[offs[b]:offs[b] + lengths[b]], [0],
                                           None if w is None else w[offs[b]:offs[b] + lengths[b]])
            assert one.size == need[b]
        cap = 160
        groups = codec.split_gather_bags(lengths, weighted, cap)
        assert groups[0][0] == 0 and groups[-1][1] == lengths.size
        assert all(a[1] == b[0] for a, b in zip(groups, groups[1:]))          # contiguous, in order
        for k, (b0, b1) in enumerate(groups):
            assert need[b0:b1].sum() <= cap
            if k + 1 < len(groups):                                          # greedy: the next bag did not fit
                assert need[b0:b1 + 1].sum() > cap
        assert codec.split_gather_bags(lengths, weighted, int(need.sum())) == [(0, lengths.size)]
    with pytest.raises(ValueError, match=r"bag 1 has 20 lookups; its index stream \(21 words\) exceeds the "
                                         r"core's input buffer of 16 words"):
        codec.split_gather_bags([3, 20], False, 16)
    assert codec.split_gather_bags([3, 20, 2], False, 16, strict=False) == [(0, 1), (1, 2), (2, 3)]
