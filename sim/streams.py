"""Shared cocotb stream driver / monitor for the ``i`` → DUT → ``o`` testbenches.

Used by ``pimcast.sim.tb_fma`` (FMA) and ``pimcast.sim.tb_reduce`` (reduction unit): both tops
have one Amaranth stream in (``i__valid``/``i__ready``/``i__payload``), one stream out
(``o__valid``/``o__ready``/``o__payload``), a clock ``clk`` and a synchronous reset ``rst``.

:func:`run_stream` is the Driver and the Monitor in one clocked loop (two triggers per cycle:
``RisingEdge`` to drive, ``ReadOnly`` to sample), so the per-cycle Python work is a few integer
reads/writes:

* Driver: offers the payloads in order; before each new offer it idles with probability
  ``idle`` (a pre-drawn pattern); once ``i__valid`` is high it stays high with the same
  payload until the transfer happens (the stream rule);
* back-pressure: ``o__ready`` is low with probability ``backpressure`` (pre-drawn pattern)
  until the expected number of outputs has been seen, then high for ``drain_cycles`` more
  cycles, which catches duplicated or extra outputs;
* Monitor: records every transfer on both streams (``valid & ready`` sampled in
  ``ReadOnly``) with its cycle number.

A run with no transfer for ``stall_limit`` cycles (before the draining phase) raises
``AssertionError`` (deadlock).  The random patterns come from ``numpy.random.default_rng(seed ^
salt)``; each testbench keeps its own ``salt`` so that its stimulus is what it always was.

Importing this module needs cocotb (it is only imported inside a simulation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["Monitor", "reset", "start_clock", "run_stream", "pattern"]


@dataclass
class Monitor:
    """Transfers seen on both streams: payloads and the cycle of each transfer.

    ``cycles``: cycles the run took; ``i_ready_low_while_o_ready``: cycles in which ``o__ready``
    was high but ``i__ready`` low (a full-rate unit never has one).
    """

    inputs: list[int] = field(default_factory=list)
    in_cycles: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    out_cycles: list[int] = field(default_factory=list)
    cycles: int = 0
    i_ready_low_while_o_ready: int = 0


def pattern(rng: np.random.Generator, p_low: float, n: int) -> Optional[list[bool]]:
    """A pre-drawn on/off pattern of at least 1024 entries, each low with probability
    ``p_low``; ``None`` (always high) when ``p_low <= 0``."""
    if not 0 <= p_low < 1:
        raise ValueError(f"Probability of a low cycle must be in [0, 1), not {p_low!r}")
    return (rng.random(max(1024, n)) >= p_low).tolist() if p_low > 0 else None


async def reset(dut, cycles: int = 3) -> None:
    """Both streams idle, ``rst`` high for ``cycles`` clock edges, then one more edge."""
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    dut.i__payload.value = 0
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def start_clock(dut, period_ns: int = 10) -> None:
    """Start ``clk`` (Icarus: the GPI clock implementation, which is much faster there)."""
    if "icarus" in cocotb.SIM_NAME.lower():
        Clock(dut.clk, period_ns, unit="ns", impl="gpi").start()
    else:
        Clock(dut.clk, period_ns, unit="ns").start()


async def run_stream(dut, payloads: list[int], n_out: Optional[int] = None, *, idle: float,
                     backpressure: float, seed: int, salt: int = 0, drain_cycles: int = 64,
                     stall_limit: int = 2000) -> Monitor:
    """Drive ``payloads`` through the DUT with random idle/back-pressure; return what was seen.

    ``n_out``: the number of outputs to expect (default ``len(payloads)``); after it, ``o__ready``
    stays high for ``drain_cycles`` cycles.  Fails if no transfer happens for ``stall_limit``
    cycles before that (deadlock).
    """
    rng = np.random.default_rng(seed ^ salt)
    n = len(payloads)
    n_out = n if n_out is None else n_out
    vpat, rpat = pattern(rng, idle, 4 * n), pattern(rng, backpressure, 4 * n)
    vk = rk = 0
    mon = Monitor()
    i_payload, i_valid, i_ready = dut.i__payload, dut.i__valid, dut.i__ready
    o_payload, o_valid, o_ready = dut.o__payload, dut.o__valid, dut.o__ready
    edge, ro = RisingEdge(dut.clk), ReadOnly()
    pos, offered, cycle, idle_since, drained = 0, False, 0, 0, 0
    last_v = last_r = None
    cur = None
    while True:
        # -- drive (just after the edge)
        v = pos < n and (offered or vpat is None or vpat[(vk := vk + 1) % len(vpat)])
        offered = v
        if v and payloads[pos] is not cur:
            cur = payloads[pos]
            i_payload.value = cur
        if v != last_v:
            i_valid.value = int(v)
            last_v = v
        if len(mon.outputs) >= n_out:
            r = True
            drained += 1
        else:
            r = rpat is None or rpat[(rk := rk + 1) % len(rpat)]
        if r != last_r:
            o_ready.value = int(r)
            last_r = r
        # -- sample (settled values of this cycle)
        await ro
        moved = False
        ir = i_ready.value == 1
        if v and ir:
            mon.inputs.append(cur)
            mon.in_cycles.append(cycle)
            pos += 1
            offered = False
            moved = True
        if r and not ir:
            mon.i_ready_low_while_o_ready += 1
        if r and o_valid.value == 1:
            mon.outputs.append(o_payload.value.to_unsigned())
            mon.out_cycles.append(cycle)
            moved = True
        if drained > drain_cycles:
            break
        if moved:
            idle_since = cycle
        elif cycle - idle_since > stall_limit and drained == 0:
            raise AssertionError(f"no transfer for {stall_limit} cycles at cycle {cycle}: {pos}/{n} inputs "
                                 f"accepted, {len(mon.outputs)}/{n_out} outputs")
        await edge
        cycle += 1
    await edge
    i_valid.value = 0
    mon.cycles = cycle
    return mon
