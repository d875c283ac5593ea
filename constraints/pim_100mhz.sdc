# PIM logic clock 100 MHz (period 10.000 ns) on the Amaranth default domain's clock port `clk`.
# Used by `pimcast synth --freq 100` (nextpnr --sdc). See README.md.
create_clock -period 10.000 -name clk [get_ports clk]
