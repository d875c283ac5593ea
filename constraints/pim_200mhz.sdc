# PIM logic clock 200 MHz (period 5.000 ns) on the Amaranth default domain's clock port `clk`.
# Used by `pimcast synth --freq 200` (nextpnr --sdc). See README.md.
create_clock -period 5.000 -name clk [get_ports clk]
