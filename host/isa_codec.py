"""Host-side encoder/decoder for pimcast's instruction set (:mod:`pimcast.hdl.isa`).

Nothing here knows a bit position: every offset and width is read from the Amaranth layouts in
:mod:`pimcast.hdl.isa` *at call time* (iterating the ``StructLayout``), so a change to a layout
changes the hardware decoder and this codec together.

* :func:`encode` / :func:`decode` — an instruction word ⇄ a dict of field values (nested dicts
  for struct fields such as ``flags``; enum fields accept members, names or values and decode
  to members).  Overflowing or unknown fields raise ``ValueError`` naming field and value.
* :func:`pack` / :func:`unpack` — the same for any layout (index-stream words, status words).
* :func:`words_to_beats` / :func:`beats_to_words`, :func:`rows_to_beats` / :func:`beats_to_rows`
  and their ``bytes`` forms — 64-B beats as Python ints (bit ``i`` of the beat = bit ``i % 8``
  of byte ``i // 8``, little endian).
* :func:`gather_index_words`, :func:`sgd_row_words`, and the program builders
  :func:`write_program`, :func:`read_program`, :func:`gather_reduce_program`,
  :func:`scatter_sgd_program` (an instruction word plus its input beats).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from amaranth.lib import data
from amaranth.lib import enum as aenum

from pimcast.hdl import isa

__all__ = [
    "fields", "pack", "unpack", "encode", "decode", "insn_to_bytes", "insn_from_bytes",
    "words_to_beats", "beats_to_words", "beats_to_bytes", "bytes_to_beats",
    "rows_to_beats", "beats_to_rows", "gather_index_words", "decode_gather_index",
    "sgd_row_words", "gather_bag_words", "split_gather_bags", "Program", "write_program",
    "read_program", "gather_reduce_program", "scatter_sgd_program", "decode_status",
]


def _layout(layout) -> data.StructLayout:
    lay = data.Layout.cast(layout)
    if not isinstance(lay, data.StructLayout):
        raise TypeError(f"expected a struct layout, not {lay!r}")
    return lay


def fields(layout) -> list[tuple[str, int, int, Any]]:
    """``(name, offset, width, shape)`` of each field of ``layout`` (a Struct class or layout)."""
    return [(name, f.offset, f.width, f.shape) for name, f in _layout(layout)]


def _is_enum(shape) -> bool:
    return isinstance(shape, type) and issubclass(shape, aenum.Enum)


def _is_struct(shape) -> bool:
    try:
        return isinstance(data.Layout.cast(shape), data.StructLayout)
    except TypeError:
        return False


def _field_int(path: str, shape, width: int, value) -> int:
    if _is_struct(shape):
        if isinstance(value, Mapping):
            return pack(shape, value, _path=path + ".")
        raise ValueError(f"field {path!r}: expected a dict of sub-fields, not {value!r}")
    if _is_enum(shape):
        if isinstance(value, str):
            try:
                value = shape[value]
            except KeyError:
                raise ValueError(f"field {path!r}: {value!r} is not a {shape.__name__}") from None
        if isinstance(value, shape):
            value = value.value
        elif (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
              or int(value) not in {m.value for m in shape}):
            raise ValueError(f"field {path!r}: {value!r} is not a {shape.__name__} value")
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if not isinstance(value, (int, np.integer)):
        raise ValueError(f"field {path!r}: expected an integer, not {value!r}")
    value = int(value)
    if not 0 <= value < (1 << width):
        raise ValueError(f"field {path!r}: value {value} does not fit in {width} bits "
                         f"(0..{(1 << width) - 1})")
    return value


def pack(layout, values: Mapping[str, Any], *, _path: str = "") -> int:
    """The integer whose bits hold ``values`` placed by ``layout``; absent fields are 0.

    Raises ``ValueError`` for an unknown field name or a value that does not fit its width.
    """
    lay = _layout(layout)
    names = {name for name, _ in lay}
    for key in values:
        if key not in names:
            raise ValueError(f"field {_path + str(key)!r}: no such field in {_name(layout)} "
                             f"(fields: {', '.join(sorted(names))})")
    word = 0
    for name, f in lay:
        if name in values:
            word |= _field_int(_path + name, f.shape, f.width, values[name]) << f.offset
    return word


def unpack(layout, word: int) -> dict[str, Any]:
    """Field values of ``word`` under ``layout`` (enums as members, structs as nested dicts)."""
    lay = _layout(layout)
    if not 0 <= int(word) < (1 << lay.size):
        raise ValueError(f"word {word:#x} does not fit in {lay.size} bits of {_name(layout)}")
    out: dict[str, Any] = {}
    for name, f in lay:
        raw = (int(word) >> f.offset) & ((1 << f.width) - 1)
        if _is_struct(f.shape):
            out[name] = unpack(f.shape, raw)
        elif _is_enum(f.shape):
            try:
                out[name] = f.shape(raw)
            except ValueError:
                out[name] = raw
        else:
            out[name] = raw
    return out


def _name(layout) -> str:
    return getattr(layout, "__name__", repr(layout))


def _opcode_field() -> tuple[int, int]:
    for name, off, width, _ in fields(isa.Header):
        if name == "opcode":
            return off, width
    raise AssertionError("isa.Header has no opcode field")


def encode(opcode, **values) -> int:
    """Instruction word of ``opcode`` with ``values`` (``opcode`` is filled in; reserved = 0)."""
    op = _opcode(opcode)
    lay = isa.LAYOUTS[op]
    if "opcode" in values:
        raise ValueError("field 'opcode': given as the first argument, not as a field")
    return pack(lay, {"opcode": op, **values})


def decode(word: int) -> dict[str, Any]:
    """Fields of an instruction word (``opcode`` decides the layout).

    Raises ``ValueError`` for an unknown opcode or a word wider than :data:`isa.INSN_BITS`.
    """
    word = int(word)
    if not 0 <= word < (1 << isa.INSN_BITS):
        raise ValueError(f"instruction word {word:#x} is wider than {isa.INSN_BITS} bits")
    off, width = _opcode_field()
    op = _opcode((word >> off) & ((1 << width) - 1))
    return unpack(isa.LAYOUTS[op], word)


def _opcode(opcode) -> isa.Opcode:
    if isinstance(opcode, str):
        try:
            return isa.Opcode[opcode]
        except KeyError:
            raise ValueError(f"field 'opcode': unknown opcode {opcode!r}") from None
    try:
        return isa.Opcode(opcode)
    except ValueError:
        raise ValueError(f"field 'opcode': unknown opcode {opcode!r}") from None


def insn_to_bytes(word: int) -> bytes:
    """Little-endian bytes of an instruction word (:data:`isa.INSN_BITS` / 8 of them)."""
    return int(word).to_bytes(isa.INSN_BITS // 8, "little")


def insn_from_bytes(raw: bytes) -> int:
    if len(raw) != isa.INSN_BITS // 8:
        raise ValueError(f"an instruction word is {isa.INSN_BITS // 8} bytes, not {len(raw)}")
    return int.from_bytes(raw, "little")


# ------------------------------------------------------------------------------------------------
# beats


def words_to_beats(words) -> list[int]:
    """Pack 32-bit words :data:`isa.WORDS_PER_BEAT` to a beat (word ``k`` at bits ``32k``);
    the last beat is zero-padded."""
    w = np.asarray(words, dtype=np.uint64)
    if w.size and int(w.max()) >> isa.WORD_BITS:
        raise ValueError(f"word {int(w.max()):#x} does not fit in {isa.WORD_BITS} bits")
    per = isa.WORDS_PER_BEAT
    n = -(-w.size // per)
    padded = np.zeros(n * per, dtype=np.uint32)
    padded[:w.size] = w
    return bytes_to_beats(padded.astype("<u4").tobytes())


def beats_to_words(beats: Sequence[int], count: Optional[int] = None) -> np.ndarray:
    """The 32-bit words of ``beats`` (``np.uint32``), the first ``count`` when given."""
    w = np.frombuffer(beats_to_bytes(beats), dtype="<u4").astype(np.uint32)
    return w if count is None else w[:count]


def beats_to_bytes(beats: Sequence[int]) -> bytes:
    return b"".join(int(b).to_bytes(isa.BEAT_BYTES, "little") for b in beats)


def bytes_to_beats(raw: bytes) -> list[int]:
    if len(raw) % isa.BEAT_BYTES:
        raise ValueError(f"{len(raw)} bytes is not a whole number of {isa.BEAT_BYTES}-byte beats")
    return [int.from_bytes(raw[i:i + isa.BEAT_BYTES], "little") for i in range(0, len(raw), isa.BEAT_BYTES)]


def _f32_bits(x) -> np.ndarray:
    try:
        import torch
        if isinstance(x, torch.Tensor):
            if x.dtype != torch.float32:
                raise ValueError(f"expected float32 data, not {x.dtype}")
            x = x.detach().cpu().contiguous().numpy()
    except ImportError:  # pragma: no cover
        pass
    a = np.asarray(x)
    if a.dtype == np.float32:
        return a.view(np.uint32)
    if a.dtype == np.uint32:
        return a
    raise ValueError(f"expected float32 values or uint32 bit patterns, not dtype {a.dtype}")


def rows_to_beats(rows) -> list[int]:
    """Beats of a ``(n, dim)`` float32 array/tensor (or uint32 bits); ``dim * 4`` must be a
    multiple of 64 (a row is ``dim / 16`` beats)."""
    bits = _f32_bits(rows)
    if bits.ndim != 2:
        raise ValueError(f"rows must be 2-D (n, dim), not shape {bits.shape}")
    if (bits.shape[1] * 4) % isa.BEAT_BYTES or bits.shape[1] == 0:
        raise ValueError(f"row size {bits.shape[1] * 4} bytes is not a nonzero multiple of {isa.BEAT_BYTES}")
    return bytes_to_beats(np.ascontiguousarray(bits).astype("<u4").tobytes())


def beats_to_rows(beats: Sequence[int], dim: int) -> np.ndarray:
    """``(n, dim)`` ``np.uint32`` bit patterns from beats (``.view(np.float32)`` for values)."""
    w = beats_to_words(beats)
    if w.size % dim:
        raise ValueError(f"{w.size} words is not a whole number of rows of {dim}")
    return w.reshape(-1, dim)


# ------------------------------------------------------------------------------------------------
# index streams


def _stream_fields(layout) -> list[tuple[str, int]]:
    """(name, word index) of a word-stream layout whose fields are whole words."""
    out = []
    for name, off, width, _ in fields(layout):
        if off % isa.WORD_BITS or width != isa.WORD_BITS:
            raise ValueError(f"{_name(layout)}.{name} is not one whole {isa.WORD_BITS}-bit word")
        out.append((name, off // isa.WORD_BITS))
    return out


def _words_of(layout) -> int:
    return -(-_layout(layout).size // isa.WORD_BITS)


def _lengths(offsets, nnz: int) -> np.ndarray:
    offs = np.asarray(offsets, dtype=np.int64)
    if offs.ndim != 1 or (offs.size and (offs[0] != 0 or np.any(np.diff(offs) < 0) or offs[-1] > nnz)):
        raise ValueError(f"offsets must start at 0 and be non-decreasing up to {nnz}: {offs.tolist()}")
    return np.diff(np.append(offs, nnz))


def gather_index_words(indices, offsets, weights=None) -> np.ndarray:
    """The ``GATHER_REDUCE`` index stream as 32-bit words (PyTorch-style ``offsets``).

    Per bag: a :class:`isa.BagHeader`, then :class:`isa.Lookup` words (or
    :class:`isa.WeightedLookup` pairs when ``weights`` — float32 — is given).
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= 1 << isa.WORD_BITS):
        bad = idx[(idx < 0) | (idx >= 1 << isa.WORD_BITS)][0]
        raise ValueError(f"field 'row': value {int(bad)} does not fit in {isa.WORD_BITS} bits")
    lengths = _lengths(offsets, idx.size)
    if weights is not None:
        wbits = _f32_bits(weights).reshape(-1)
        if wbits.size != idx.size:
            raise ValueError(f"{wbits.size} weights for {idx.size} indices")
        entry = isa.WeightedLookup
    else:
        wbits = None
        entry = isa.Lookup
    head_f, ent_f = _stream_fields(isa.BagHeader), _stream_fields(entry)
    hw, ew = _words_of(isa.BagHeader), _words_of(entry)
    out = np.zeros(lengths.size * hw + idx.size * ew, dtype=np.uint32)
    pos = 0
    j = 0
    for n in lengths.tolist():
        for name, k in head_f:
            if name == "length":
                out[pos + k] = n
        pos += hw
        block = out[pos:pos + n * ew].reshape(n, ew)
        for name, k in ent_f:
            if name == "row":
                block[:, k] = idx[j:j + n]
            elif name == "weight":
                block[:, k] = wbits[j:j + n]
        pos += n * ew
        j += n
    return out


def gather_bag_words(lengths, weighted: bool = False) -> np.ndarray:
    """Index-stream words of each bag of :func:`gather_index_words`: its :class:`isa.BagHeader`
    plus one :class:`isa.Lookup` (or :class:`isa.WeightedLookup`) per lookup."""
    entry = isa.WeightedLookup if weighted else isa.Lookup
    return _words_of(isa.BagHeader) + _words_of(entry) * np.asarray(lengths, dtype=np.int64).reshape(-1)


def split_gather_bags(lengths, weighted: bool, cap_words: int, *, strict: bool = True) -> list[tuple[int, int]]:
    """Bags ``[b0, b1)`` of each ``GATHER_REDUCE`` instruction when the index stream of one
    instruction must fit the core's input buffer of ``cap_words`` words: greedy in bag order, a
    new instruction whenever the next bag would not fit. The one rule used by the RTL driver
    (:meth:`pimcast.sim.core_driver.CoreDriver.gather_reduce`) and by the timing model of its
    setup pass (:func:`pimcast.host.timing.gather_setup_cycles`).

    ``strict``: a bag whose own stream exceeds ``cap_words`` is a ``ValueError`` naming it (the
    core cannot run it); otherwise it gets an instruction of its own (timing estimates)."""
    need = gather_bag_words(lengths, weighted)
    if need.size and int(need.sum()) <= cap_words:
        return [(0, int(need.size))]                    # one instruction (no bag can exceed then)
    groups: list[tuple[int, int]] = []
    b0, words = 0, 0
    for b, n in enumerate(need.tolist()):
        if strict and n > cap_words:
            raise ValueError(f"bag {b} has {int(np.asarray(lengths).reshape(-1)[b])} lookups; its index stream "
                             f"({n} words) exceeds the core's input buffer of {cap_words} words")
        if words + n > cap_words and words:
            groups.append((b0, b))
            b0, words = b, 0
        words += n
    if need.size:
        groups.append((b0, int(need.size)))
    return groups


def decode_gather_index(words, bags: int, weighted: bool):
    """Inverse of :func:`gather_index_words`: ``(indices, offsets, weight_bits or None)``."""
    w = np.asarray(words, dtype=np.uint32)
    entry = isa.WeightedLookup if weighted else isa.Lookup
    head_f, ent_f = dict(_stream_fields(isa.BagHeader)), dict(_stream_fields(entry))
    hw, ew = _words_of(isa.BagHeader), _words_of(entry)
    idx, wts, offs = [], [], []
    pos = 0
    for _ in range(bags):
        if pos + hw > w.size:
            raise ValueError(f"index stream ended early at word {pos}")
        n = int(w[pos + head_f["length"]])
        pos += hw
        offs.append(len(idx))
        if pos + n * ew > w.size:
            raise ValueError(f"index stream ended early in a bag of {n} at word {pos}")
        block = w[pos:pos + n * ew].reshape(n, ew)
        idx.extend(block[:, ent_f["row"]].tolist())
        if weighted:
            wts.extend(block[:, ent_f["weight"]].tolist())
        pos += n * ew
    return (np.array(idx, dtype=np.int64), np.array(offs, dtype=np.int64),
            np.array(wts, dtype=np.uint32) if weighted else None)


def sgd_row_words(rows) -> np.ndarray:
    """``SCATTER_SGD`` row-id words (:class:`isa.Lookup`)."""
    r = np.asarray(rows, dtype=np.int64).reshape(-1)
    (name, k), = _stream_fields(isa.Lookup)
    if r.size and (r.min() < 0 or r.max() >= 1 << isa.WORD_BITS):
        bad = r[(r < 0) | (r >= 1 << isa.WORD_BITS)][0]
        raise ValueError(f"field {name!r}: value {int(bad)} does not fit in {isa.WORD_BITS} bits")
    return r.astype(np.uint32)


def decode_status(beat: int) -> dict[str, Any]:
    """The :class:`isa.StatusWord` in the low bits of the beat ``STATUS`` returns."""
    size = _layout(isa.StatusWord).size
    return unpack(isa.StatusWord, int(beat) & ((1 << size) - 1))


# ------------------------------------------------------------------------------------------------
# programs


@dataclass(frozen=True)
class Program:
    """One instruction with its input beats and the number of beats it returns."""

    insn: int
    beats_in: list[int]
    beats_out: int

    def fields(self) -> dict[str, Any]:
        return decode(self.insn)


def _row_beats(row_bytes: int) -> int:
    return row_bytes // isa.BEAT_BYTES


def write_program(addr: int, beats: Sequence[int], tag: int = 0) -> Program:
    return Program(encode(isa.Opcode.WRITE, addr=addr, beats=len(beats), tag=tag), list(beats), 0)


def read_program(addr: int, beats: int, tag: int = 0) -> Program:
    return Program(encode(isa.Opcode.READ, addr=addr, beats=beats, tag=tag), [], beats)


def gather_reduce_program(table: int, rows: int, dim: int, indices, offsets, weights=None,
                          tag: int = 0) -> Program:
    """``GATHER_REDUCE`` over a table at beat address ``table`` of ``rows`` × ``dim`` fp32."""
    row_bytes = 4 * dim
    words = gather_index_words(indices, offsets, weights)
    bags = int(np.asarray(offsets).size)
    insn = encode(isa.Opcode.GATHER_REDUCE, table=table, rows=rows, row_bytes=row_bytes, bags=bags,
                  flags={"weighted": weights is not None}, tag=tag)
    return Program(insn, words_to_beats(words), bags * _row_beats(row_bytes) if row_bytes % 64 == 0 else 0)


def scatter_sgd_program(table: int, rows: int, ids, grads, lr: float, tag: int = 0) -> Program:
    """``SCATTER_SGD``: ``w[ids[i]] = fma(-lr, grads[i], w[ids[i]])`` (``lr`` rounded to fp32)."""
    g = _f32_bits(grads)
    if g.ndim != 2:
        raise ValueError(f"grads must be 2-D (count, dim), not shape {g.shape}")
    words = sgd_row_words(ids)
    if words.size != g.shape[0]:
        raise ValueError(f"{words.size} row ids for {g.shape[0]} gradient rows")
    lr_bits = int(np.array(lr, dtype=np.float32).view(np.uint32))
    insn = encode(isa.Opcode.SCATTER_SGD, table=table, rows=rows, row_bytes=4 * g.shape[1],
                  count=words.size, lr=lr_bits, tag=tag)
    return Program(insn, words_to_beats(words) + rows_to_beats(g), 0)
