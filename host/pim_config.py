"""PIM configurations: where the near-memory units sit and what DRAM they drive.

A :class:`PIMConfig` names a DRAM preset (``configs/dram/<name>.yaml``), the number of ranks per
channel and of channels (one channel = one DIMM slot / memory channel with its own controller),
the placement of the reduction units (``"rank"``: one unit per rank, TensorDIMM/RecNMP-style, or
``"bankgroup"``: one unit per bank group, TRiM-style), the unit width (``lanes`` fp32 FMAs per
cycle; 16 lanes = one 64 B beat per cycle), the device capacity, the device address mapping and
the timing model used by the ``model`` backend.

Presets live in ``configs/pim/<name>.yaml``; :func:`load_pim_config` accepts a preset name, a path
or a :class:`PIMConfig`.  Unknown fields, wrong types and impossible values raise
:class:`pimcast.config.ConfigError` naming the field.

Device address mapping
----------------------
The device image is a flat byte address space (``0 .. capacity``) decoded with a DRAMsim3-style
mapping string over ``ch ra bg ba ro co`` (most significant field first, see
:class:`pimcast.hdl.dram.timing.AddressMapping`).  The defaults put the *unit* fields lowest, so
consecutive 64 B beats of a row are striped over the units (TensorDIMM's vector striping): every
unit reduces its own column slice of every bag in index order, which is what keeps the hardware
result equal to the sequential golden numerics without partial-sum merging:

* rank placement:      ``robabgcorach`` (channel, then rank, then the column inside a DRAM row);
* bankgroup placement: ``robacobgrach`` (channel, rank, bank group, then column).

Partial sums (``accumulate: partial``, TRiM-style)
--------------------------------------------------
Striping keeps the golden numerics but costs one row activation per unit per lookup (tFAW
binds: the bank-group placement then stays near 1x).  With ``accumulate: partial`` a table row
lives whole in one unit (the mapping must keep every row inside one unit: the column field
directly above the 64 B offset, e.g. ``robachrabgco``; :meth:`Device.alloc` rejects a table
whose rows would straddle units), each unit reduces the rows it holds, the rank's buffer device
adds its bank-group units' partial sums and the host adds the ranks' (the numerics of
:func:`pimcast.models.tensor_cast.gather_reduce_partial`: reassociated, so not PyTorch's bits
unless a bag's rows sit in one unit).  Partial rows cross the rank's data bus (bank-group units
to the buffer device) and the channel (ranks to the host); the timing counts both.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from pimcast.config import ConfigError, load_yaml, preset_names, resolve

__all__ = ["PIMConfig", "load_pim_config", "PLACEMENTS", "ACCUMULATE", "TIMING_MODELS", "DEFAULT_CONFIG"]

PLACEMENTS = ("rank", "bankgroup")
#: how a bag is summed over the units: ``sequential`` (every unit reduces its column slice of the
#: bag in index order: the golden / PyTorch numerics) or ``partial`` (TRiM-style: every unit
#: reduces the whole rows it holds, partial sums are combined; ``models.tensor_cast.gather_reduce_partial``)
ACCUMULATE = ("sequential", "partial")
TIMING_MODELS = ("fast", "analytic", "off")
DEFAULT_CONFIG = "rank-ddr4-3200"
_DEFAULT_MAPPING = {"rank": "robabgcorach", "bankgroup": "robacobgrach"}
#: largest controller queue of the RTL core (``BankController`` ``queue`` 1..32)
RTL_MAX_QUEUE = 32
#: largest reorder buffer of the RTL core (``PIMCore`` ``tag_bits`` 1..8)
RTL_MAX_ROB_TAGS = 256
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _parse_bytes(v, where: str) -> int:
    """``123``, ``"64MiB"``, ``"16 GiB"``, ``"1KiB"`` -> bytes."""
    if isinstance(v, bool):
        raise ConfigError(f"{where}: capacity must be a byte count or a string like '16GiB', not {v!r}")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str):
        s = v.strip().lower().replace(" ", "")
        for suf in ("ib", "b"):
            if s.endswith(suf):
                s = s[: -len(suf)]
                break
        mult = 1
        if s and s[-1] in _UNITS:
            mult = _UNITS[s[-1]]
            s = s[:-1]
        try:
            n = int(float(s) * mult)
        except ValueError:
            raise ConfigError(f"{where}: capacity {v!r} is not a byte count (e.g. 1073741824 or '1GiB')") from None
    else:
        raise ConfigError(f"{where}: capacity must be a byte count or a string like '16GiB', not {v!r}")
    if n <= 0:
        raise ConfigError(f"{where}: capacity must be positive, not {v!r}")
    return n


@dataclass(frozen=True)
class PIMConfig:
    """One PIM device configuration (immutable; validated by :meth:`validate`).

    Attributes
    ----------
    name: preset name (free text for user configs).
    placement: ``"rank"`` or ``"bankgroup"``.
    accumulate: ``"sequential"`` (default; golden/PyTorch numerics, rows striped over the units)
        or ``"partial"`` (TRiM-style partial sums, rows whole per unit, see the module doc).
        Every placement / accumulate pair has an RTL core (:attr:`core_units`,
        :attr:`core_data_path`, :func:`pimcast.hdl.core.from_config`).
    lanes: fp32 FMA lanes per unit (1..16, a divisor of 16); a 64 B beat takes ``16 // lanes`` cycles.
    dram: DRAM preset name or path (``configs/dram``).
    ranks: ranks per channel (overrides the preset's default).
    channels: channels (DIMMs), a power of two; each has its own controller and units.
    capacity: device capacity in bytes (``None`` = the DRAM's capacity); allocations beyond it fail.
    mapping: device address mapping string (``None`` = the placement's default, see module doc).
    timing: ``"fast"`` (:mod:`pimcast.host.dram_model`), ``"analytic"`` (resource-bound model) or ``"off"``.
    queue: request-queue depth of each unit's memory controller (the FR-FCFS window; the RTL
        core's ``BankController`` ``queue`` and the fast model's).  Every config has an RTL core,
        whose controller takes 1..32, so ``queue`` must be 1..32 (a ConfigError otherwise: a
        config must mean the same thing on the ``rtl`` and ``model`` backends, so it is rejected
        rather than clamped).
    rob_tags: reads in flight per unit: the RTL core's reorder buffer (``2**tag_bits`` entries,
        a power of two 2..256).  A read holds an entry from its issue to the controller until
        its data leaves the ROB in request order; the ``fast`` timing model applies the same cap
        (:mod:`pimcast.host.timing`).  Default 128: with ~100+ tCK read latency under row misses
        32 entries bound a random gather to 58-79 % of the rank-level ceiling, 128 reach
        88-97 % at pooling 20 (README, "PIM core speedup"), for +17 % FF and +11 % memory bits.
    fma_latency: FMA pipeline latency in cycles (pipeline drain added once per operation; with
        ``timing: fast`` also the recurrence of one accumulator slot).  Default 5: the RTL core's
        :class:`~pimcast.hdl.reduce.ReductionUnit` with the default FMA pipeline.
    max_timed_requests: per unit and operation, the fast model times at most this many requests
        and scales the rest linearly (``stats()["timing_sampled"]`` says when it did).
    power: optional overrides of the DRAM power figures (see :mod:`pimcast.host.timing`).
    description: free text.
    """
    name: str = DEFAULT_CONFIG
    placement: str = "rank"
    accumulate: str = "sequential"
    lanes: int = 16
    dram: str = "ddr4-3200"
    ranks: int = 2
    channels: int = 1
    capacity: Optional[int] = None
    mapping: Optional[str] = None
    timing: str = "fast"
    queue: int = 32
    rob_tags: int = 128
    fma_latency: int = 5
    max_timed_requests: int = 16384
    power: dict = field(default_factory=dict, compare=False, hash=False)
    description: str = ""

    # ------------------------------------------------------------------ derived
    def dram_timing(self):
        """The :class:`pimcast.hdl.dram.timing.DRAMTiming` of one channel (with ``ranks``)."""
        from pimcast.hdl.dram.timing import load_preset
        return load_preset(self.dram, ranks=self.ranks)

    @property
    def address_mapping(self) -> str:
        return self.mapping or _DEFAULT_MAPPING[self.placement]

    def dram_capacity(self) -> int:
        return self.channels * self.dram_timing().capacity_bytes

    @property
    def capacity_bytes(self) -> int:
        """Usable device capacity in bytes."""
        return self.capacity if self.capacity is not None else self.dram_capacity()

    @property
    def core_units(self) -> int:
        """Accumulator files (units) of one rank's RTL core: the preset's bank groups for the
        bank-group core (``placement: bankgroup``, ``accumulate: partial``: every unit sums the
        whole rows it holds), else 1 (every beat of a bag's column slice goes to one accumulator
        in index order)."""
        if self.placement == "bankgroup" and self.accumulate == "partial":
            return self.dram_timing().bankgroups
        return 1

    @property
    def core_data_path(self) -> str:
        """The read data path of the core's bank controller: ``"bankgroup"`` (read data stays in
        its bank group: the bank-group placement, either numerics) or ``"channel"`` (rank)."""
        return "bankgroup" if self.placement == "bankgroup" else "channel"

    @property
    def per_rank_cores(self) -> bool:
        """``True`` when every rank's core holds whole rows and the host adds the ranks' sums
        (``accumulate: partial``): the ``rtl`` backend then runs one core per rank and the
        model times one core per rank on its share of the lookups."""
        return self.accumulate == "partial"

    def num_units(self) -> int:
        per_rank = 1 if self.placement == "rank" else self.dram_timing().bankgroups
        return self.channels * self.ranks * per_rank

    def unit_of_fields(self, f: dict, t=None) -> np.ndarray:
        """The unit of decoded addresses (``AddressMapping.decode`` fields): units are numbered
        channel-major, then rank, then (bankgroup placement) bank group."""
        t = t if t is not None else self.dram_timing()
        rank = f["ch"] * t.ranks + f["ra"]
        return rank if self.placement == "rank" else rank * t.bankgroups + f["bg"]

    def unit_group(self, t=None) -> np.ndarray:
        """The combiner of each unit for ``accumulate: partial``: its rank (non-decreasing)."""
        t = t if t is not None else self.dram_timing()
        per_rank = 1 if self.placement == "rank" else t.bankgroups
        return np.arange(self.channels * t.ranks * per_rank, dtype=np.int64) // per_rank

    def lowest_unit_bit(self, mapping=None) -> Optional[int]:
        """The lowest address bit of the unit fields (channel, rank, and bank group for the
        bank-group placement) under the device mapping (``mapping``: that mapping's
        :class:`AddressMapping`, if the caller has one); ``None`` for a one-unit device."""
        from pimcast.hdl.dram.timing import AddressMapping
        m = mapping if mapping is not None else AddressMapping(self.address_mapping, self.dram_timing(),
                                                               channels=self.channels)
        fields = ("ch", "ra") if self.placement == "rank" else ("ch", "ra", "bg")
        low = [m.shifts[k] for k in fields if m.bits[k] > 0]
        return min(low) if low else None

    def straddling(self, row_addr, row_bytes: int, mapping=None) -> Optional[int]:
        """Index of the first row (byte addresses ``row_addr``, ``row_bytes`` each) whose bytes lie
        in more than one unit, or ``None``.  A unit field's bit ``p`` is constant over ``[a, e]``
        iff ``a >> p == e >> p``, so the lowest unit bit decides."""
        p = self.lowest_unit_bit(mapping)
        a = np.asarray(row_addr, dtype=np.uint64)
        if p is None or a.size == 0:
            return None
        p = np.uint64(p)
        bad = np.flatnonzero((a >> p) != ((a + np.uint64(row_bytes - 1)) >> p))
        return int(bad[0]) if bad.size else None

    def straddling_row(self, base: int, rows: int, row_bytes: int) -> Optional[int]:
        """:meth:`straddling` for ``rows`` consecutive rows from byte ``base`` (a table)."""
        a = np.uint64(base) + np.arange(max(rows, 0), dtype=np.uint64) * np.uint64(row_bytes)
        return self.straddling(a, row_bytes)

    def with_(self, **changes) -> "PIMConfig":
        """A validated copy with some fields changed (e.g. ``cfg.with_(ranks=1)``)."""
        return replace(self, **changes).validate()

    def as_dict(self) -> dict:
        return asdict(self)

    def validate(self, where: str = "PIMConfig") -> "PIMConfig":
        def bad(f, msg):
            raise ConfigError(f"{where}: field {f}: {msg}")

        if self.placement not in PLACEMENTS:
            bad("placement", f"must be one of {', '.join(PLACEMENTS)}, not {self.placement!r}")
        if self.accumulate not in ACCUMULATE:
            bad("accumulate", f"must be one of {', '.join(ACCUMULATE)}, not {self.accumulate!r}")
        if self.timing not in TIMING_MODELS:
            bad("timing", f"must be one of {', '.join(TIMING_MODELS)}, not {self.timing!r}")
        for f, lo in (("lanes", 1), ("ranks", 1), ("channels", 1), ("queue", 1), ("rob_tags", 2),
                      ("fma_latency", 0), ("max_timed_requests", 1)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                bad(f, f"must be an integer >= {lo}, not {v!r}")
        if 16 % self.lanes:
            bad("lanes", f"must divide 16 (one 64 B beat = 16 fp32), not {self.lanes}")
        if self.rob_tags > RTL_MAX_ROB_TAGS or self.rob_tags & (self.rob_tags - 1):
            bad("rob_tags", f"must be a power of two in 2..{RTL_MAX_ROB_TAGS} (the core's ROB has "
                            f"2**tag_bits entries, tag_bits 1..8), not {self.rob_tags}")
        if self.queue > RTL_MAX_QUEUE:
            bad("queue", f"must be in 1..{RTL_MAX_QUEUE} (the RTL core's bank controller queue; placement "
                         f"{self.placement!r}, accumulate {self.accumulate!r}), not {self.queue}")
        if self.channels & (self.channels - 1):
            bad("channels", f"must be a power of two, not {self.channels}")
        try:
            t = self.dram_timing()
        except ConfigError as exc:
            raise ConfigError(f"{where}: field dram/ranks: {exc}") from None
        from pimcast.hdl.dram.timing import AddressMapping
        try:
            AddressMapping(self.address_mapping, t, channels=self.channels)
        except ConfigError as exc:
            raise ConfigError(f"{where}: field mapping: {exc}") from None
        if self.capacity is not None:
            if isinstance(self.capacity, bool) or not isinstance(self.capacity, int) or self.capacity <= 0:
                bad("capacity", f"must be a positive byte count, not {self.capacity!r}")
            if self.capacity % 64:
                bad("capacity", f"must be a multiple of 64 B, not {self.capacity}")
            if self.capacity > self.channels * t.capacity_bytes:
                bad("capacity", f"{self.capacity} B exceeds the DRAM's {self.channels * t.capacity_bytes} B "
                                f"({self.channels} channel(s) x {t.ranks} rank(s) of {t.name})")
        if not isinstance(self.power, dict):
            bad("power", f"must be a mapping, not {type(self.power).__name__}")
        return self


_FIELDS = {f for f in PIMConfig.__dataclass_fields__}


def load_pim_config(config: Union[str, Path, PIMConfig, None] = None, **overrides: Any) -> PIMConfig:
    """Load a PIM configuration: a :class:`PIMConfig`, a preset name (``configs/pim``) or a YAML path.

    ``overrides`` replace fields after loading (validated).  ``None`` gives :data:`DEFAULT_CONFIG`.
    """
    if config is None:
        config = DEFAULT_CONFIG
    if isinstance(config, PIMConfig):
        cfg = config
        where = f"PIMConfig {cfg.name!r}"
    elif isinstance(config, (str, Path)):
        path = resolve("pim", config)
        where = str(path)
        data = load_yaml(path)
        for k in data:
            if k not in _FIELDS:
                raise ConfigError(f"{where}: unknown field {k!r} (allowed: {', '.join(sorted(_FIELDS))})")
        data = dict(data)
        data.setdefault("name", Path(path).stem)
        if "capacity" in data and data["capacity"] is not None:
            data["capacity"] = _parse_bytes(data["capacity"], f"{where}: field capacity")
        if data.get("power") is None:
            data["power"] = {}
        cfg = PIMConfig(**data)
    else:
        raise ConfigError(f"config must be a PIM preset name, a YAML path or a PIMConfig, not {type(config).__name__}")
    if overrides:
        for k in overrides:
            if k not in _FIELDS:
                raise ConfigError(f"{where}: unknown field {k!r} in overrides")
        if "capacity" in overrides and overrides["capacity"] is not None:
            overrides["capacity"] = _parse_bytes(overrides["capacity"], f"{where}: field capacity")
        cfg = replace(cfg, **overrides)
    return cfg.validate(where)


def pim_presets() -> list[str]:
    return preset_names("pim")
