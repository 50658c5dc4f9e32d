// Behavioural model of the Lattice ECP5 DP16KD (18 Kbit true dual-port block RAM) for netlist
// simulation (sim/netlist.py). Yosys 0.70 ships only an empty blackbox of this cell, so a
// netlist from synth_ecp5 cannot be simulated without one. What is modelled, and what is not, is
// listed in docs/verification.md ("Netlist simulation"); in short:
//
//  * widths 1, 2, 4, 9, 18 on either port, 36 as the pseudo dual port (A writes 36 bits from
//    DIA/DIB, B reads 36 bits onto DOA/DOB), mixed widths on the two ports;
//  * the bit layout across widths follows Yosys's memory library (share/lattice/brams_16kd.txt
//    and memlib.md): an 18-bit row is two 9-bit bytes, a 9-bit byte is one parity bit (bit 8)
//    above two 4-bit nibbles, a nibble two 2-bit pairs, a pair two bits; the lower address is
//    the lower half. A narrow port never reaches the parity bits;
//  * address bits below the port's word (AD[3:0] at 18 bits ...) are ignored, except that
//    AD[1:0] are the byte enables of an 18-bit write and AD[3:0] those of a 36-bit write;
//  * CE gates reads and writes, CS[2:0] must equal CSDECODE, WRITEMODE NORMAL (the output keeps
//    its value during a write), WRITETHROUGH (shows the new data) and READBEFOREWRITE (the old);
//  * RST clears the output (RESETMODE SYNC: at the clock edge, before CE; ASYNC: at once);
//    the output is 0 after configuration; the contents come from INITVAL_00..3F (16 rows of 20
//    bits each, 18 used), as the bitstream loads them;
//  * CLKAMUX/CLKBMUX "INV" (a falling-edge port);
//  * REGMODE OUTREG: the port's output register after its read (OCE its clock enable, cleared
//    by RST as the read is, 0 after configuration), so the data comes a cycle later; in the
//    36-bit form both halves are the read port's (B's clock, OCEB) and both REGMODEs must
//    agree (sw/bram_output_registers.py sets them and OCEA = OCEB = 1 together).
//
// Not modelled, refused at elaboration with an error: inverted control or data pins (the other *MUX parameters are not even declared, so a
// netlist setting one fails to build). A read of a row the other port writes at the same edge
// returns the old row; the silicon's result is undefined there, and Yosys adds bypass logic
// wherever a design depends on it.
`timescale 1ps / 1ps
module DP16KD (
    input  DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
    input  ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
    input  CEA, OCEA, CLKA, WEA, RSTA,
    input  CSA2, CSA1, CSA0,
    output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,

    input  DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
    input  ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
    input  CEB, OCEB, CLKB, WEB, RSTB,
    input  CSB2, CSB1, CSB0,
    output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
    parameter DATA_WIDTH_A = 18;
    parameter DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter CLKAMUX = "CLKA";
    parameter CLKBMUX = "CLKB";
    parameter GSR = "ENABLED";
    parameter INIT_DATA = "STATIC";
    parameter WID = 0;
    parameter INITVAL_00 = 320'h0;
    parameter INITVAL_01 = 320'h0;
    parameter INITVAL_02 = 320'h0;
    parameter INITVAL_03 = 320'h0;
    parameter INITVAL_04 = 320'h0;
    parameter INITVAL_05 = 320'h0;
    parameter INITVAL_06 = 320'h0;
    parameter INITVAL_07 = 320'h0;
    parameter INITVAL_08 = 320'h0;
    parameter INITVAL_09 = 320'h0;
    parameter INITVAL_0A = 320'h0;
    parameter INITVAL_0B = 320'h0;
    parameter INITVAL_0C = 320'h0;
    parameter INITVAL_0D = 320'h0;
    parameter INITVAL_0E = 320'h0;
    parameter INITVAL_0F = 320'h0;
    parameter INITVAL_10 = 320'h0;
    parameter INITVAL_11 = 320'h0;
    parameter INITVAL_12 = 320'h0;
    parameter INITVAL_13 = 320'h0;
    parameter INITVAL_14 = 320'h0;
    parameter INITVAL_15 = 320'h0;
    parameter INITVAL_16 = 320'h0;
    parameter INITVAL_17 = 320'h0;
    parameter INITVAL_18 = 320'h0;
    parameter INITVAL_19 = 320'h0;
    parameter INITVAL_1A = 320'h0;
    parameter INITVAL_1B = 320'h0;
    parameter INITVAL_1C = 320'h0;
    parameter INITVAL_1D = 320'h0;
    parameter INITVAL_1E = 320'h0;
    parameter INITVAL_1F = 320'h0;
    parameter INITVAL_20 = 320'h0;
    parameter INITVAL_21 = 320'h0;
    parameter INITVAL_22 = 320'h0;
    parameter INITVAL_23 = 320'h0;
    parameter INITVAL_24 = 320'h0;
    parameter INITVAL_25 = 320'h0;
    parameter INITVAL_26 = 320'h0;
    parameter INITVAL_27 = 320'h0;
    parameter INITVAL_28 = 320'h0;
    parameter INITVAL_29 = 320'h0;
    parameter INITVAL_2A = 320'h0;
    parameter INITVAL_2B = 320'h0;
    parameter INITVAL_2C = 320'h0;
    parameter INITVAL_2D = 320'h0;
    parameter INITVAL_2E = 320'h0;
    parameter INITVAL_2F = 320'h0;
    parameter INITVAL_30 = 320'h0;
    parameter INITVAL_31 = 320'h0;
    parameter INITVAL_32 = 320'h0;
    parameter INITVAL_33 = 320'h0;
    parameter INITVAL_34 = 320'h0;
    parameter INITVAL_35 = 320'h0;
    parameter INITVAL_36 = 320'h0;
    parameter INITVAL_37 = 320'h0;
    parameter INITVAL_38 = 320'h0;
    parameter INITVAL_39 = 320'h0;
    parameter INITVAL_3A = 320'h0;
    parameter INITVAL_3B = 320'h0;
    parameter INITVAL_3C = 320'h0;
    parameter INITVAL_3D = 320'h0;
    parameter INITVAL_3E = 320'h0;
    parameter INITVAL_3F = 320'h0;

    // -- what is not modelled stops the build (Verilator: -Werror-USERFATAL) ----------------
    generate
        if (!valid_width(DATA_WIDTH_A) || !valid_width(DATA_WIDTH_B)) begin : bad_width
            $fatal(1, "DP16KD: data widths %0d/%0d: 1, 2, 4, 9, 18 or 36", DATA_WIDTH_A, DATA_WIDTH_B);
        end
        if (DATA_WIDTH_B == 36 && DATA_WIDTH_A != 36) begin : bad_pdp
            $fatal(1, "DP16KD: a 36-bit read on B needs the 36-bit write on A (pseudo dual port)");
        end
        if (!valid_regmode(REGMODE_A) || !valid_regmode(REGMODE_B)
            || DATA_WIDTH_B == 36 && REGMODE_A != REGMODE_B) begin : bad_regmode
            $fatal(1, "DP16KD: REGMODE %s/%s: NOREG or OUTREG, the same on both in the 36-bit form",
                   REGMODE_A, REGMODE_B);
        end
        if (RESETMODE != "SYNC" && RESETMODE != "ASYNC") begin : bad_resetmode
            $fatal(1, "DP16KD: RESETMODE %s: SYNC or ASYNC", RESETMODE);
        end
        if (!valid_writemode(WRITEMODE_A) || !valid_writemode(WRITEMODE_B)) begin : bad_writemode
            $fatal(1, "DP16KD: WRITEMODE %s/%s: NORMAL, WRITETHROUGH or READBEFOREWRITE",
                   WRITEMODE_A, WRITEMODE_B);
        end
    endgenerate

    function automatic valid_regmode(input [8*6-1:0] mode);
        valid_regmode = mode == "NOREG" || mode == "OUTREG";
    endfunction

    function automatic valid_width(input integer w);
        valid_width = w == 1 || w == 2 || w == 4 || w == 9 || w == 18 || w == 36;
    endfunction

    function automatic valid_writemode(input [8*15-1:0] mode);
        valid_writemode = mode == "NORMAL" || mode == "WRITETHROUGH" || mode == "READBEFOREWRITE";
    endfunction

    // "0bXYZ" -> 3'bXYZ (the last bit of each ASCII digit)
    function automatic [2:0] cs_value(input [8*5-1:0] text);
        cs_value = {text[16], text[8], text[0]};
    endfunction

    // First bit, in its 18-bit row, of the word a port of width w (< 18) addresses at ad.
    function automatic [4:0] lane(input integer w, input [13:0] ad);
        case (w)
            1: lane = 5'd9 * ad[3] + 5'd4 * ad[2] + 5'd2 * ad[1] + {4'd0, ad[0]};
            2: lane = 5'd9 * ad[3] + 5'd4 * ad[2] + 5'd2 * ad[1];
            4: lane = 5'd9 * ad[3] + 5'd4 * ad[2];
            9: lane = 5'd9 * ad[3];
            default: lane = 5'd0;
        endcase
    endfunction

    // The bits of the row a write of width w (<= 18) at ad changes (byte enables at 18).
    function automatic [17:0] write_mask(input integer w, input [13:0] ad);
        if (w == 18) write_mask = {{9{ad[1]}}, {9{ad[0]}}};
        else write_mask = ((18'h1 << w) - 18'h1) << lane(w, ad);
    endfunction

    // Data of width w (<= 18) placed where it goes in its row.
    function automatic [17:0] placed(input integer w, input [13:0] ad, input [17:0] data);
        if (w == 18) placed = data;
        else placed = (data & ((18'h1 << w) - 18'h1)) << lane(w, ad);
    endfunction

    // The word of width w (<= 18) at ad, read out of its row (upper output bits 0).
    function automatic [17:0] picked(input integer w, input [13:0] ad, input [17:0] row);
        if (w == 18) picked = row;
        else picked = (row >> lane(w, ad)) & ((18'h1 << w) - 18'h1);
    endfunction

    localparam [20479:0] INITVALS = {
        INITVAL_3F, INITVAL_3E, INITVAL_3D, INITVAL_3C, INITVAL_3B, INITVAL_3A, INITVAL_39, INITVAL_38,
        INITVAL_37, INITVAL_36, INITVAL_35, INITVAL_34, INITVAL_33, INITVAL_32, INITVAL_31, INITVAL_30,
        INITVAL_2F, INITVAL_2E, INITVAL_2D, INITVAL_2C, INITVAL_2B, INITVAL_2A, INITVAL_29, INITVAL_28,
        INITVAL_27, INITVAL_26, INITVAL_25, INITVAL_24, INITVAL_23, INITVAL_22, INITVAL_21, INITVAL_20,
        INITVAL_1F, INITVAL_1E, INITVAL_1D, INITVAL_1C, INITVAL_1B, INITVAL_1A, INITVAL_19, INITVAL_18,
        INITVAL_17, INITVAL_16, INITVAL_15, INITVAL_14, INITVAL_13, INITVAL_12, INITVAL_11, INITVAL_10,
        INITVAL_0F, INITVAL_0E, INITVAL_0D, INITVAL_0C, INITVAL_0B, INITVAL_0A, INITVAL_09, INITVAL_08,
        INITVAL_07, INITVAL_06, INITVAL_05, INITVAL_04, INITVAL_03, INITVAL_02, INITVAL_01, INITVAL_00};

    reg [17:0] mem [0:1023];
    integer i;
    initial begin
        for (i = 0; i < 1024; i = i + 1)
            mem[i] = INITVALS[i * 20 +: 18];
    end

    wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
    wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
    wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
    wire clka = CLKAMUX == "INV" ? ~CLKA : CLKA;
    wire clkb = CLKBMUX == "INV" ? ~CLKB : CLKB;
    wire ena = CEA && {CSA2, CSA1, CSA0} == cs_value(CSDECODE_A);
    wire enb = CEB && {CSB2, CSB1, CSB0} == cs_value(CSDECODE_B);
    // Resets: ASYNC ones through the sensitivity lists (a constant 0 never fires), SYNC ones
    // at the clock edge, before the clock enable.
    wire arsta = RESETMODE == "ASYNC" && RSTA;
    wire arstb = RESETMODE == "ASYNC" && RSTB;
    wire srsta = RESETMODE == "SYNC" && RSTA;
    wire srstb = RESETMODE == "SYNC" && RSTB;

    reg [17:0] qa = 18'd0;
    reg [17:0] qb = 18'd0;
    // OUTREG: the output registers (in the 36-bit form both on the read port B)
    reg [17:0] oa = 18'd0;
    reg [17:0] ob = 18'd0;
    wire pdp = DATA_WIDTH_B == 36;
    wire oclka = pdp ? clkb : clka;
    wire ocea = pdp ? OCEB : OCEA;
    wire oarsta = pdp ? arstb : arsta;
    wire osrsta = pdp ? srstb : srsta;
    always @(posedge oclka or posedge oarsta) begin
        if (oarsta || osrsta) oa <= 18'd0;
        else if (ocea) oa <= qa;
    end
    always @(posedge clkb or posedge arstb) begin
        if (arstb || srstb) ob <= 18'd0;
        else if (OCEB) ob <= qb;
    end
    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = REGMODE_A == "OUTREG" ? oa : qa;
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = REGMODE_B == "OUTREG" ? ob : qb;

    generate
        // ---- port A ------------------------------------------------------------------------
        if (DATA_WIDTH_A == 36) begin : a_write36
            // pseudo dual port: 36 bits from DIA (low row) and DIB (high row), AD[3:0] = byte enables
            wire [9:0] row0 = {ada[13:5], 1'b0};
            wire [9:0] row1 = {ada[13:5], 1'b1};
            always @(posedge clka) begin
                if (ena && WEA) begin
                    if (ada[0]) mem[row0][8:0] <= dia[8:0];
                    if (ada[1]) mem[row0][17:9] <= dia[17:9];
                    if (ada[2]) mem[row1][8:0] <= dib[8:0];
                    if (ada[3]) mem[row1][17:9] <= dib[17:9];
                end
            end
        end else begin : a_port
            wire [9:0] row = ada[13:4];
            wire [17:0] mask = write_mask(DATA_WIDTH_A, ada);
            wire [17:0] merged = (mem[row] & ~mask) | (placed(DATA_WIDTH_A, ada, dia) & mask);
            always @(posedge clka) begin
                if (ena && WEA) mem[row] <= merged;
            end
            always @(posedge clka or posedge arsta) begin
                if (arsta || srsta) qa <= 18'd0;
                else if (ena) begin
                    if (!WEA) qa <= picked(DATA_WIDTH_A, ada, mem[row]);
                    else if (WRITEMODE_A == "WRITETHROUGH") qa <= picked(DATA_WIDTH_A, ada, merged);
                    else if (WRITEMODE_A == "READBEFOREWRITE") qa <= picked(DATA_WIDTH_A, ada, mem[row]);
                    // NORMAL: the output keeps its value during a write
                end
            end
        end

        // ---- port B ------------------------------------------------------------------------
        if (DATA_WIDTH_B == 36) begin : b_read36
            // pseudo dual port: 36 bits onto DOA (low row) and DOB (high row); B never writes
            wire [9:0] row0 = {adb[13:5], 1'b0};
            wire [9:0] row1 = {adb[13:5], 1'b1};
            always @(posedge clkb or posedge arstb) begin
                if (arstb || srstb) begin
                    qa <= 18'd0;
                    qb <= 18'd0;
                end else if (enb) begin
                    qa <= mem[row0];
                    qb <= mem[row1];
                end
            end
        end else begin : b_port
            wire [9:0] row = adb[13:4];
            wire [17:0] mask = write_mask(DATA_WIDTH_B, adb);
            wire [17:0] merged = (mem[row] & ~mask) | (placed(DATA_WIDTH_B, adb, dib) & mask);
            always @(posedge clkb) begin
                if (enb && WEB) mem[row] <= merged;
            end
            always @(posedge clkb or posedge arstb) begin
                if (arstb || srstb) qb <= 18'd0;
                else if (enb) begin
                    if (!WEB) qb <= picked(DATA_WIDTH_B, adb, mem[row]);
                    else if (WRITEMODE_B == "WRITETHROUGH") qb <= picked(DATA_WIDTH_B, adb, merged);
                    else if (WRITEMODE_B == "READBEFOREWRITE") qb <= picked(DATA_WIDTH_B, adb, mem[row]);
                end
            end
        end
    endgenerate
endmodule
