# PIM logic clock 150 MHz (period 6.667 ns) on the Amaranth default domain's clock port `clk`.
# Used by `pimcast synth --freq 150` (nextpnr --sdc). See README.md.
create_clock -period 6.667 -name clk [get_ports clk]
