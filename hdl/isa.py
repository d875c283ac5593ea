"""pimcast's instruction set: instruction words, stream formats and status codes, defined once.

Every layout here is an Amaranth :class:`~amaranth.lib.data.Struct`.  The RTL decoder views its
instruction register through them (``GatherReduce(insn_word)``), and the host encoder
(:mod:`pimcast.host.isa_codec`) derives every bit offset and width by iterating the same
layouts — there is no second, hand-written copy of a field position anywhere.

Units and conventions
---------------------
* A **beat** is 64 bytes (:data:`BEAT_BYTES`, :data:`BEAT_BITS` = 512), the device's memory
  and stream granularity (one DDR4 burst of a x64 rank; one beat of the reduction unit's 16
  fp32 lanes).  Device addresses are **beat addresses** (byte address / 64), so every address
  is aligned by construction.  Inside a beat, byte ``k`` is bits ``8k .. 8k+7`` (little endian);
  32-bit word ``k`` is bits ``32k .. 32k+31``.
* An **instruction word** is :data:`INSN_BITS` = 256 bits.  Bits 0..31 are the same in every
  instruction (:class:`Header`): ``opcode`` (8), ``flags`` (8, :class:`Flags`), ``tag`` (16, a
  host-chosen number copied into the status word).  Fields named ``reserved*`` must be zero.
* fp32 values (weights, the learning rate, table and gradient data) are raw IEEE-754 binary32
  bit patterns.  Numerics: ``shared/design/ARCHITECTURE.md`` "Numerics".
* The core has three streams: instruction words in, data beats in (:class:`InBeat`, ``last``
  on the final beat of each instruction's data), data beats out.  A transport may multiplex
  them; the formats below are per instruction.

Instructions (:class:`Opcode`) and their streams
------------------------------------------------
``NOP``            no operation; no data.
``STATUS``         one beat out whose low bits are a :class:`StatusWord` (the first error since
                   the previous ``STATUS``, or ``OK``), then the error is cleared.
``WRITE``          :class:`MemAccess`: ``beats`` data beats in, written from beat address
                   ``addr`` upward.
``READ``           :class:`MemAccess`: ``beats`` data beats out, read from ``addr`` upward.
``GATHER_REDUCE``  :class:`GatherReduce`: in, the *index stream* of 32-bit words packed 16 to a
                   beat (continuous across bags, the last beat zero-padded): for each of the
                   ``bags`` bags a :class:`BagHeader` word (its length ``n``, 0 allowed) followed
                   by ``n`` :class:`Lookup` words (``n`` :class:`WeightedLookup` word pairs when
                   ``flags.weighted``).  Out: ``bags`` pooled rows of ``row_bytes`` each, in bag
                   order: ``out[b] = fold(acc = fma(w_j, table[row_j], acc), acc = +0.0)`` over
                   the bag's lookups in order (``w_j = 1.0`` unweighted); an empty bag gives +0.0.
``SCATTER_SGD``    :class:`ScatterSGD`: in, ``count`` :class:`Lookup` words (row ids, packed 16
                   to a beat, last beat zero-padded), then ``count`` gradient rows
                   (``row_bytes`` each) in the same order.  Effect, per listed row ``r`` (rows
                   must be unique): ``table[r] = fma(-lr, g, table[r])`` lane by lane
                   (``-lr`` is ``lr`` with bit 31 flipped: exact, a wire in hardware).
                   No data out.

Data-stream presence: ``WRITE`` with ``beats > 0``, ``GATHER_REDUCE`` with ``bags > 0`` and
``SCATTER_SGD`` with ``count > 0`` have an input data stream (ended by ``last``); every other
instruction has none (an unknown opcode has none either: the core consumes no data for it).

Errors (:class:`Status`)
------------------------
An instruction that fails validation changes no memory, consumes its input data up to the
``last`` beat, produces no output data, and latches its code in the status word (only the first
error is kept until ``STATUS`` reads it).  The core (:class:`pimcast.hdl.core.PIMCore`) buffers
an instruction's whole input stream and validates it before it issues any memory access, so a
failure is never partial.  Checks, in this order: unknown opcode; ``row_bytes`` zero, not a
multiple of 64 or above the core's maximum (``BAD_ROW_BYTES``); the addressed range beyond
device memory (``ADDR_OUT_OF_RANGE``: ``addr + beats``, or ``table + rows × row_bytes/64``);
the data not fitting the core's input buffer / ``count`` above its row limit
(``COUNT_TOO_LARGE``); then, once the stream is in: ``last`` before the expected number of
beats (``STREAM_ENDED_EARLY``, also an index stream that ends inside its bags) or after it
(``STREAM_TOO_LONG``; the beats up to ``last`` are dropped); then the contents: a row id
``>= rows`` (``ROW_OUT_OF_RANGE``), a repeated ``SCATTER_SGD`` row id (``DUPLICATE_ROW``).
Reserved fields are ignored.
"""

from amaranth.lib import data, enum

__all__ = [
    "INSN_BITS", "BEAT_BYTES", "BEAT_BITS", "WORD_BITS", "WORDS_PER_BEAT",
    "Opcode", "Status", "Flags", "Header",
    "Nop", "StatusRead", "MemAccess", "GatherReduce", "ScatterSGD",
    "BagHeader", "Lookup", "WeightedLookup", "InBeat", "OutBeat", "StatusWord",
    "LAYOUTS", "INSTRUCTIONS", "layout_for",
]

#: Width of one instruction word in bits.
INSN_BITS = 256
#: Bytes in one beat (memory and stream granularity).
BEAT_BYTES = 64
#: Bits in one beat.
BEAT_BITS = 8 * BEAT_BYTES
#: Width of one index-stream word (row id, bag length, weight).
WORD_BITS = 32
#: Index-stream words per beat.
WORDS_PER_BEAT = BEAT_BITS // WORD_BITS

class Opcode(enum.Enum, shape=8):
    """Instruction opcodes (bits 7:0 of every instruction word)."""

    NOP = 0x00
    STATUS = 0x01
    WRITE = 0x10
    READ = 0x11
    GATHER_REDUCE = 0x20
    SCATTER_SGD = 0x21

class Status(enum.Enum, shape=8):
    """Status / error codes (:class:`StatusWord` ``status``)."""

    #: no error since the last ``STATUS``
    OK = 0x00
    #: the opcode is none of :class:`Opcode`
    UNKNOWN_OPCODE = 0x01
    #: a row id ``>= rows`` of the instruction (``detail`` = the id, ``position`` = its index)
    ROW_OUT_OF_RANGE = 0x02
    #: ``row_bytes`` is zero, not a multiple of 64, or above the core's maximum (``detail``)
    BAD_ROW_BYTES = 0x03
    #: the addressed range reaches beyond device memory (``detail`` = end beat address)
    ADDR_OUT_OF_RANGE = 0x04
    #: the data stream's ``last`` came before the expected beat count (``position`` = beats seen)
    STREAM_ENDED_EARLY = 0x05
    #: the data stream had no ``last`` on the expected final beat (extra beats dropped)
    STREAM_TOO_LONG = 0x06
    #: the instruction's data does not fit the core's input buffer, or ``SCATTER_SGD`` ``count``
    #: is above the core's row limit (``detail`` = count or beats)
    COUNT_TOO_LARGE = 0x07
    #: ``SCATTER_SGD`` lists a row id twice (``detail`` = the id, ``position`` = its second index);
    #: like the golden ``models.tensor_cast.sgd``, which rejects non-unique rows
    DUPLICATE_ROW = 0x08

class Flags(data.Struct):
    """Instruction flags (bits 15:8)."""

    #: ``GATHER_REDUCE``: lookups carry a per-sample fp32 weight (:class:`WeightedLookup`)
    weighted: 1
    reserved: 7

class Header(data.Struct):
    """Bits 31:0 of every instruction word."""

    #: operation (8 bits)
    opcode: Opcode
    #: flags (8 bits)
    flags: Flags
    #: host-chosen id, copied into the :class:`StatusWord` of an error (16 bits)
    tag: 16

class Nop(data.Struct):
    """``NOP`` — does nothing."""

    opcode: Opcode
    flags: Flags
    tag: 16
    reserved: INSN_BITS - 32

class StatusRead(data.Struct):
    """``STATUS`` — one beat out, a :class:`StatusWord` in its low bits; clears the error."""

    opcode: Opcode
    flags: Flags
    tag: 16
    reserved: INSN_BITS - 32

class MemAccess(data.Struct):
    """``WRITE`` / ``READ`` — bulk transfer of ``beats`` beats starting at beat address ``addr``."""

    opcode: Opcode
    flags: Flags
    tag: 16
    #: first beat address (byte address / 64), 32 bits: up to 256 GiB
    addr: 32
    #: number of 64-B beats, 32 bits
    beats: 32
    reserved: INSN_BITS - 96

class GatherReduce(data.Struct):
    """``GATHER_REDUCE`` — pooled rows of ``bags`` bags (embedding-bag forward)."""

    opcode: Opcode
    #: ``flags.weighted``: lookups carry weights
    flags: Flags
    tag: 16
    #: beat address of table row 0, 32 bits; row ``r`` is at ``table + r * row_bytes / 64``
    table: 32
    #: number of rows in the table, 32 bits (a row id ``>= rows`` is ``ROW_OUT_OF_RANGE``)
    rows: 32
    #: bytes per row, 16 bits: a nonzero multiple of 64 (``dim = row_bytes / 4`` fp32 values)
    row_bytes: 16
    reserved0: 16
    #: number of bags, 32 bits (0 allowed)
    bags: 32
    reserved: INSN_BITS - 160

class ScatterSGD(data.Struct):
    """``SCATTER_SGD`` — in-memory SGD ``w = fma(-lr, g, w)`` of ``count`` unique rows."""

    opcode: Opcode
    flags: Flags
    tag: 16
    #: beat address of table row 0, 32 bits
    table: 32
    #: number of rows in the table, 32 bits
    rows: 32
    #: bytes per row, 16 bits: a nonzero multiple of 64
    row_bytes: 16
    reserved0: 16
    #: number of rows updated (row ids and gradient rows streamed in), 32 bits
    count: 32
    #: learning rate as binary32 bits, 32 bits (the core uses ``-lr``: bit 31 flipped)
    lr: 32
    reserved: INSN_BITS - 192

class BagHeader(data.Struct):
    """Index stream, ``GATHER_REDUCE``: the word that opens a bag."""

    #: number of lookups in the bag, 32 bits (0 = empty bag, pooled row +0.0)
    length: 32

class Lookup(data.Struct):
    """Index stream: one lookup (``GATHER_REDUCE`` unweighted, ``SCATTER_SGD`` row ids)."""

    #: row id, 32 bits
    row: 32

class WeightedLookup(data.Struct):
    """Index stream, weighted ``GATHER_REDUCE``: one lookup, two words."""

    #: row id, 32 bits (first word)
    row: 32
    #: per-sample weight, binary32 bits (second word)
    weight: 32

class InBeat(data.Struct):
    """Payload of the core's data input stream."""

    #: 64 bytes of data
    data: BEAT_BITS
    #: the final beat of the current instruction's data
    last: 1

class OutBeat(data.Struct):
    """Payload of the core's data output stream."""

    #: 64 bytes of data (a READ beat, a pooled-row beat, or a :class:`StatusWord` in the low bits)
    data: BEAT_BITS
    #: 1 on the beat a ``STATUS`` returns, 0 on data beats (so a host can tell them apart even
    #: when a failed instruction produced none of its data)
    status: 1

class StatusWord(data.Struct):
    """Low 128 bits of the beat ``STATUS`` returns."""

    #: :class:`Status` code (8 bits)
    status: Status
    #: opcode of the failing instruction (8 bits; 0 when ``OK``)
    opcode: 8
    #: tag of the failing instruction (16 bits)
    tag: 16
    #: the offending value (row id, end address, row_bytes, count), 32 bits
    detail: 32
    #: index of the offending lookup / beat in its stream, 32 bits
    position: 32
    #: instructions completed since reset (wraps), 32 bits
    retired: 32

#: Instruction layout of each opcode (the single source the decoder and the codec use).
LAYOUTS: dict[Opcode, type[data.Struct]] = {
    Opcode.NOP: Nop,
    Opcode.STATUS: StatusRead,
    Opcode.WRITE: MemAccess,
    Opcode.READ: MemAccess,
    Opcode.GATHER_REDUCE: GatherReduce,
    Opcode.SCATTER_SGD: ScatterSGD,
}

#: Every instruction layout class (each :data:`INSN_BITS` wide, :class:`Header` in bits 31:0).
INSTRUCTIONS = (Nop, StatusRead, MemAccess, GatherReduce, ScatterSGD)

def layout_for(opcode) -> data.StructLayout:
    """The :class:`~amaranth.lib.data.StructLayout` of ``opcode`` (an :class:`Opcode` or its value).

    Raises
    ------
    ValueError
        If ``opcode`` is not an :class:`Opcode`.
    """
    try:
        op = Opcode(opcode)
    except ValueError:
        raise ValueError(f"Unknown opcode {opcode!r}; known: "
                         f"{', '.join(f'{o.name}=0x{o.value:02x}' for o in Opcode)}") from None
    return data.Layout.cast(LAYOUTS[op])

def _check_layouts() -> None:
    header = list(data.Layout.cast(Header))
    for cls in INSTRUCTIONS:
        layout = data.Layout.cast(cls)
        if layout.size != INSN_BITS:
            raise AssertionError(f"{cls.__name__} is {layout.size} bits, not {INSN_BITS}")
        fields = list(layout)
        for (hn, hf), (n, f) in zip(header, fields):
            if (hn, hf.offset, hf.width) != (n, f.offset, f.width):
                raise AssertionError(f"{cls.__name__}: field {n!r} breaks the common Header")

_check_layouts()
