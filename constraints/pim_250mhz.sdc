# PIM logic clock 250 MHz (period 4.000 ns) on the Amaranth default domain's clock port `clk`.
# Used by `pimcast synth --freq 250` (nextpnr --sdc). See README.md.
create_clock -period 4.000 -name clk [get_ports clk]
