// xnorflow fast Verilator harness: drives the top's byte streams from C++ and talks to Python
// over stdin/stdout, so Python is touched once per transaction instead of once per clock.
//
// The pipe protocol (all integers little-endian) is specified in docs/simulation.md and
// implemented on the Python side by sim/verilator_transport.py. In short, every request is one
// op byte plus fixed fields, every op except 'Q' gets exactly one reply:
//
//   'X' exchange: u8 mode, u32 n_in, u32 n_frames, u64 max_cycles, n_in bytes
//        feed the bytes into i (valid/ready, random idle gaps as configured) while taking
//        bytes from o, until all bytes are in and n_frames complete response frames are out
//        (mode 0), or for exactly max_cycles cycles (mode 1). Never more than max_cycles.
//   'R' reset: u32 cycles          rst high for that many cycles (streams idle)
//   'G' gaps:  u16 in_permille, u16 out_permille, u64 seed
//        probability of an idle cycle on i.valid after each accepted byte, of o.ready low
//   'Q' quit (no reply)
//
//   reply to 'X' and 'R': u8 status (0 done, 1 cycle limit reached), u64 cycles of this op,
//        u64 total cycles since start, u32 input bytes consumed, u32 frames completed,
//        u32 n_out, (u32 start, u32 end)[frames completed], n_out output bytes
//        (frame i is out[start:end]; bytes outside frames, e.g. the tail of a frame that began
//        in an earlier op, are passed through uncounted)
//
// A "complete response frame" is counted with the minimum of framing knowledge: a sync byte
// 0x5A, a 4-byte header whose bytes 2..3 are the little-endian payload length, then
// length + 2 CRC bytes. Bytes outside frames are passed through (and not counted); decoding and
// CRC checking are Python's job (sw/protocol.py, the one decoder).
//
// Timing of one clock cycle: the inputs are set while clk is low, eval() settles the
// combinational outputs (ready/valid may depend combinationally on the inputs), both
// handshakes are sampled, then the rising edge is evaluated. So a byte is transferred in a cycle
// iff valid and ready are both high before that cycle's rising edge, as in amaranth.lib.stream.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>
#include <unistd.h>

#include "Vxnf_harness.h"
#include "verilated.h"
#ifdef XNF_TRACE
// FST when the machine has lz4's headers (the wheel's FST writer needs them), else VCD.
#ifdef XNF_TRACE_FST
#include "verilated_fst_c.h"
using TraceFile = VerilatedFstC;
#else
#include "verilated_vcd_c.h"
using TraceFile = VerilatedVcdC;
#endif
#endif

namespace {

const uint8_t RSP_SYNC = 0x5A;

bool read_all(void* buf, size_t n) {
    uint8_t* p = static_cast<uint8_t*>(buf);
    while (n) {
        ssize_t r = ::read(0, p, n);
        if (r <= 0) return false;  // EOF: Python went away; exit quietly
        p += r;
        n -= size_t(r);
    }
    return true;
}

void write_all(const void* buf, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(buf);
    while (n) {
        ssize_t r = ::write(1, p, n);
        if (r <= 0) std::exit(3);  // broken pipe: nobody listens any more
        p += r;
        n -= size_t(r);
    }
}

template <typename T> T get() {
    T v{};
    if (!read_all(&v, sizeof v)) std::exit(0);
    return v;  // x86-64 and aarch64 are little-endian, as the protocol
}

template <typename T> void put(std::vector<uint8_t>& out, T v) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof v);
}

// Counts complete response frames in the output byte stream; state persists across ops.
struct FrameCounter {
    int state = 0;        // 0 hunting; 1..3 header bytes after sync; 4 body
    uint32_t length = 0;  // payload length (from the header)
    uint32_t remaining = 0;

    // Returns true when this byte completes a frame.
    bool push(uint8_t b) {
        switch (state) {
        case 0:
            if (b == RSP_SYNC) state = 1;
            return false;
        case 1:  // status
            state = 2;
            return false;
        case 2:
            length = b;
            state = 3;
            return false;
        case 3:
            length |= uint32_t(b) << 8;
            remaining = length + 2;  // payload + CRC
            state = 4;
            return false;
        default:
            if (--remaining == 0) {
                state = 0;
                return true;
            }
            return false;
        }
    }
};

struct Rng {  // xorshift64*: cheap, deterministic per seed
    uint64_t s = 0x9E3779B97F4A7C15ull;
    uint32_t permille() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return uint32_t((s * 0x2545F4914F6CDD1Dull) >> 32) % 1000u;
    }
};

struct Harness {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vxnf_harness> top;
#ifdef XNF_TRACE
    std::unique_ptr<TraceFile> tfp;
#endif
    uint64_t total_cycles = 0;
    FrameCounter frames;
    Rng rng;
    uint32_t in_gap = 0, out_gap = 0;  // per mille
    bool holding = false;             // valid is up with an unaccepted byte: keep it up

    explicit Harness(int argc, char** argv, const char* trace_path) {
        ctx = std::make_unique<VerilatedContext>();
        ctx->commandArgs(argc, argv);
        top = std::make_unique<Vxnf_harness>(ctx.get(), "xnf");
#ifdef XNF_TRACE
        if (trace_path) {
            ctx->traceEverOn(true);
            tfp = std::make_unique<TraceFile>();
            top->trace(tfp.get(), 99);
            tfp->open(trace_path);
        }
#else
        (void)trace_path;
#endif
        top->clk = 0;
        top->rst = 0;
        top->in_valid = 0;
        top->in_data = 0;
        top->out_ready = 0;
        top->eval();
    }

    ~Harness() {
#ifdef XNF_TRACE
        if (tfp) tfp->close();
#endif
        top->final();
    }

    // One clock cycle with the inputs already set: settle, sample, rising edge.
    inline void edge() {
        top->clk = 1;
        top->eval();
#ifdef XNF_TRACE
        if (tfp) tfp->dump(2 * total_cycles + 1);
#endif
        top->clk = 0;
        ++total_cycles;
    }

    inline void settle() {
        top->eval();
#ifdef XNF_TRACE
        if (tfp) tfp->dump(2 * total_cycles);
#endif
    }

    void reset(uint32_t cycles) {
        top->rst = 1;
        top->in_valid = 0;
        top->out_ready = 0;
        holding = false;
        for (uint32_t c = 0; c < cycles; ++c) {
            settle();
            edge();
        }
        top->rst = 0;
        frames = FrameCounter();
    }

    void exchange() {
        uint8_t mode = get<uint8_t>();
        uint32_t n_in = get<uint32_t>();
        uint32_t want_frames = get<uint32_t>();
        uint64_t max_cycles = get<uint64_t>();
        std::vector<uint8_t> in(n_in);
        if (n_in && !read_all(in.data(), n_in)) std::exit(0);

        std::vector<uint8_t> out;
        std::vector<uint32_t> ends;  // (start, end) pairs
        uint32_t start = 0;
        out.reserve(256);
        uint32_t pos = 0;
        uint64_t cycles = 0;
        uint8_t status = 0;
        for (;;) {
            if (mode == 0 && pos == n_in && ends.size() / 2 >= want_frames) break;
            if (cycles >= max_cycles) {
                status = mode == 0 ? 1 : 0;
                break;
            }
            // Drive: a new byte is offered unless an idle gap is drawn; an offered byte stays
            // offered until taken (stream rule: valid may not drop before ready).
            bool offer = false;
            if (pos < n_in) {
                offer = holding || in_gap == 0 || rng.permille() >= in_gap;
            }
            top->in_valid = offer;
            top->in_data = offer ? in[pos] : 0;
            bool ready = out_gap == 0 || rng.permille() >= out_gap;
            top->out_ready = ready;
            settle();
            bool in_fire = offer && top->in_ready;
            bool out_fire = ready && top->out_valid;
            uint8_t ob = top->out_data;
            edge();
            ++cycles;
            holding = offer && !in_fire;
            if (in_fire) ++pos;
            if (out_fire) {
                if (frames.state == 0 && ob == RSP_SYNC) start = uint32_t(out.size());
                out.push_back(ob);
                if (frames.push(ob)) {
                    ends.push_back(start);
                    ends.push_back(uint32_t(out.size()));
                }
            }
        }
        // Streams idle between ops: the DUT must not see a stale valid while Python thinks.
        top->in_valid = 0;
        top->out_ready = 0;
        holding = false;

        std::vector<uint8_t> reply;
        reply.reserve(29 + 4 * ends.size() + out.size());
        put<uint8_t>(reply, status);
        put<uint64_t>(reply, cycles);
        put<uint64_t>(reply, total_cycles);
        put<uint32_t>(reply, pos);
        put<uint32_t>(reply, uint32_t(ends.size() / 2));
        put<uint32_t>(reply, uint32_t(out.size()));
        for (uint32_t e : ends) put<uint32_t>(reply, e);
        reply.insert(reply.end(), out.begin(), out.end());
        write_all(reply.data(), reply.size());
    }

    void reset_op() {
        uint32_t cycles = get<uint32_t>();
        uint64_t before = total_cycles;
        reset(cycles);
        std::vector<uint8_t> reply;
        put<uint8_t>(reply, 0);
        put<uint64_t>(reply, total_cycles - before);
        put<uint64_t>(reply, total_cycles);
        put<uint32_t>(reply, 0);
        put<uint32_t>(reply, 0);
        put<uint32_t>(reply, 0);
        write_all(reply.data(), reply.size());
    }

    void gaps_op() {
        in_gap = get<uint16_t>();
        out_gap = get<uint16_t>();
        rng.s = get<uint64_t>() | 1;  // xorshift state must not be 0
        if (in_gap > 999) in_gap = 999;  // i.valid must come up eventually
        if (out_gap > 999) out_gap = 999;  // o.ready must come up eventually
    }
};

}  // namespace

int main(int argc, char** argv) {
    const char* trace_path = nullptr;
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], "--trace") == 0) trace_path = argv[i + 1];
    }
#ifndef XNF_TRACE
    if (trace_path) {
        std::fprintf(stderr, "xnf_harness: built without tracing; rebuild with XNORFLOW_WAVES=1\n");
        return 2;
    }
#endif
    Harness h(argc, argv, trace_path);
    h.reset(4);
    for (;;) {
        uint8_t op;
        if (!read_all(&op, 1)) break;
        switch (op) {
        case 'X': h.exchange(); break;
        case 'R': h.reset_op(); break;
        case 'G': h.gaps_op(); break;
        case 'Q': return 0;
        default:
            std::fprintf(stderr, "xnf_harness: unknown op 0x%02x\n", op);
            return 2;
        }
    }
    return 0;
}
