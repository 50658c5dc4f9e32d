// xnorflow board simulation on a pseudo-terminal: the board top (hw/board/top.py,
// UartBridgeTop elaborated without a platform: core + UartRx/UartTx with plain pins) under
// Verilator, its UART pins driven bit by bit from a pty, so that any serial-port program
// (pyserial, sw.driver.SerialTransport, a terminal) talks to the simulated board as to a real one.
//
//   uart_pty --divisor N [--idle-cycles N] [--link PATH]
//
// * Opens a pty pair (posix_openpt/grantpt/unlockpt), puts the slave in raw mode, and prints
//   one line "PTY <slave path>" on stdout (then stdout is not used again). With --link, a
//   symlink PATH -> slave path is made too (and removed at exit).
// * Bytes the host writes to the slave are sent to the design's `rx` pin as 8N1 frames of
//   `divisor` clock cycles per bit, back to back; the design's `tx` pin is sampled in the middle
//   of each bit and every complete byte is written back to the host. Baud-rate settings the host
//   makes on the pty are irrelevant: one bit is always `divisor` simulated cycles.
// * The clock runs while there is line activity and for --idle-cycles cycles after it (so a
//   core run started by the last request, or a link timeout on a truncated frame, still makes
//   progress); then the harness sleeps in poll() until the host writes again. Simulated time
//   does not advance while it sleeps.
// * It never outlives its user: it exits when stdin reaches end-of-file (the Python side keeps
//   a pipe open and closes it to stop the harness, or it is closed when that process dies), when
//   the parent process dies (PR_SET_PDEATHSIG and a getppid() check), on SIGTERM/SIGINT, and on
//   any error on the pty master. It holds the slave open itself, so hosts may open and close the
//   port any number of times.
// * Diagnostics go to stderr: the fault LED (UART frame error / receive overrun in the design),
//   stop-bit errors seen on `tx`, and a summary at exit.

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <termios.h>
#include <unistd.h>

#include "Vuart_board.h"
#include "verilated.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "uart_pty: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

struct Options {
    uint32_t divisor = 8;
    uint64_t idle_cycles = 1u << 18;
    std::string link;
};

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "uart_pty: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--divisor") o.divisor = uint32_t(std::strtoul(value(), nullptr, 0));
        else if (a == "--idle-cycles") o.idle_cycles = std::strtoull(value(), nullptr, 0);
        else if (a == "--link") o.link = value();
        else if (a.rfind("+verilator", 0) == 0) continue;
        else {
            std::fprintf(stderr, "uart_pty: unknown argument %s\n", a.c_str());
            std::exit(2);
        }
    }
    if (o.divisor < 4) {
        std::fprintf(stderr, "uart_pty: --divisor must be at least 4\n");
        std::exit(2);
    }
    return o;
}

// Host -> design: shifts queued bytes out on rx, 8N1, LSB first, `divisor` cycles per bit.
struct LineDriver {
    uint32_t divisor;
    uint16_t frame = 0;  // remaining bits, LSB next
    int bits = 0;        // bits left in the current frame (0: idle, line high)
    uint32_t timer = 0;  // cycles left of the current bit

    bool busy() const { return bits != 0; }

    void load(uint8_t byte) {
        frame = uint16_t((1u << 9) | (uint32_t(byte) << 1));  // start 0, data, stop 1
        bits = 10;
        timer = divisor;
    }

    // The line level for this cycle; call once per cycle.
    uint8_t level() {
        if (!bits) return 1;
        uint8_t v = frame & 1;
        if (--timer == 0) {
            frame >>= 1;
            --bits;
            timer = divisor;
        }
        return v;
    }
};

// Design -> host: samples tx in the middle of each bit.
struct LineReceiver {
    uint32_t divisor;
    int state = 0;       // 0 idle; 1 start bit; 2..9 data bits; 10 stop bit
    uint32_t timer = 0;
    uint8_t shift = 0;
    uint64_t stop_errors = 0;

    bool busy() const { return state != 0; }

    // Feed this cycle's tx level; returns 0..255 when a byte completes, -1 otherwise.
    int push(uint8_t tx) {
        if (state == 0) {
            if (!tx) {  // falling edge of the start bit: its middle is divisor/2 away
                state = 1;
                timer = divisor / 2;
            }
            return -1;
        }
        if (--timer) return -1;
        timer = divisor;
        if (state == 1) {
            if (tx) state = 0;  // a glitch, not a start bit
            else state = 2;
            return -1;
        }
        if (state <= 9) {
            shift = uint8_t((shift >> 1) | (tx ? 0x80 : 0));
            ++state;
            return -1;
        }
        state = 0;  // stop bit
        if (!tx) {
            ++stop_errors;
            std::fprintf(stderr, "uart_pty: stop bit low on tx (byte 0x%02x dropped)\n", shift);
            return -1;
        }
        return shift;
    }
};

struct Pty {
    int master = -1;
    int slave = -1;
    std::string path;
    std::string link;

    void open_pair(const std::string& link_path) {
        master = posix_openpt(O_RDWR | O_NOCTTY);
        if (master < 0) die("posix_openpt");
        if (grantpt(master) < 0) die("grantpt");
        if (unlockpt(master) < 0) die("unlockpt");
        const char* name = ptsname(master);
        if (!name) die("ptsname");
        path = name;
        // Keep the slave open ourselves: the master then never sees a hang-up when a host
        // closes the port, and the line settings below persist between hosts.
        slave = ::open(name, O_RDWR | O_NOCTTY);
        if (slave < 0) die("open slave");
        struct termios t;
        if (tcgetattr(slave, &t) < 0) die("tcgetattr");
        cfmakeraw(&t);
        cfsetispeed(&t, B115200);
        cfsetospeed(&t, B115200);
        if (tcsetattr(slave, TCSANOW, &t) < 0) die("tcsetattr");
        int flags = fcntl(master, F_GETFL);
        if (flags < 0 || fcntl(master, F_SETFL, flags | O_NONBLOCK) < 0) die("fcntl");
        if (!link_path.empty()) {
            ::unlink(link_path.c_str());
            if (::symlink(name, link_path.c_str()) < 0) die("symlink");
            link = link_path;
        }
    }

    ~Pty() {
        if (!link.empty()) ::unlink(link.c_str());
        if (slave >= 0) ::close(slave);
        if (master >= 0) ::close(master);
    }
};

struct Board {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vuart_board> top;
    uint64_t cycles = 0;

    Board(int argc, char** argv) {
        ctx = std::make_unique<VerilatedContext>();
        ctx->commandArgs(argc, argv);
        top = std::make_unique<Vuart_board>(ctx.get(), "board");
        top->clk = 0;
        top->rst = 1;
        top->rx = 1;
        top->eval();
        for (int i = 0; i < 4; ++i) tick(1);
        top->rst = 0;
    }

    ~Board() { top->final(); }

    // One cycle: rx set while clk is low, settle, rising edge; returns tx after the edge.
    inline uint8_t tick(uint8_t rx) {
        top->rx = rx;
        top->eval();
        top->clk = 1;
        top->eval();
        top->clk = 0;  // the falling edge is evaluated with the next cycle's inputs
        ++cycles;
        return top->tx;
    }
};

}  // namespace

int main(int argc, char** argv) {
    Options opt = parse(argc, argv);
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) return 0;  // the parent died before prctl took effect
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGHUP, on_signal);
    std::signal(SIGPIPE, SIG_IGN);

    Pty pty;
    pty.open_pair(opt.link);
    Board board(argc, argv);

    std::printf("PTY %s\n", pty.path.c_str());
    std::fflush(stdout);

    LineDriver drv{opt.divisor};
    LineReceiver rcv{opt.divisor};
    std::deque<uint8_t> to_design;
    std::vector<uint8_t> to_host;
    uint64_t bytes_in = 0, bytes_out = 0, idle = 0;
    uint8_t leds = 0;
    uint8_t buf[4096];
    const uint64_t kServiceEvery = 256;  // cycles between non-blocking pty reads while running

    auto drain_to_host = [&]() {
        size_t done = 0;
        while (done < to_host.size()) {
            ssize_t w = ::write(pty.master, to_host.data() + done, to_host.size() - done);
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) break;  // the host is not reading: keep the rest
                die("write to pty");
            }
            done += size_t(w);
        }
        to_host.erase(to_host.begin(), to_host.begin() + long(done));
    };
    auto read_from_host = [&]() {
        for (;;) {
            ssize_t r = ::read(pty.master, buf, sizeof buf);
            if (r > 0) {
                to_design.insert(to_design.end(), buf, buf + r);
                bytes_in += uint64_t(r);
                continue;
            }
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && errno == EAGAIN) return;
            if (r == 0) {
                std::fprintf(stderr, "uart_pty: pty master closed\n");
                g_stop = 1;
                return;
            }
            if (errno == EIO) {  // no slave open: cannot happen while we hold one
                g_stop = 1;
                return;
            }
            die("read from pty");
        }
    };
    // Called only when poll() reports stdin readable or hung up, so the read does not block
    // (stdin stays blocking: it may be a terminal shared with a shell).
    auto stdin_closed = [&]() -> bool {
        char c[64];
        ssize_t r = ::read(0, c, sizeof c);
        return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
    };

    while (!g_stop) {
        bool active = drv.busy() || rcv.busy() || !to_design.empty();
        if (!active && idle >= opt.idle_cycles) {
            // Nothing on the lines for a while: sleep until the host writes (or we must go).
            short events = short(POLLIN | (to_host.empty() ? 0 : POLLOUT));
            struct pollfd fds[2] = {{pty.master, events, 0}, {0, POLLIN, 0}};
            int n = ::poll(fds, 2, 200);
            if (n < 0 && errno != EINTR) die("poll");
            if (getppid() != parent) break;
            if (n > 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) && stdin_closed()) break;
            if (n > 0 && (fds[0].revents & (POLLERR | POLLNVAL))) {
                std::fprintf(stderr, "uart_pty: error on the pty master\n");
                break;
            }
            if (n > 0 && (fds[0].revents & POLLIN)) read_from_host();
            if (n > 0 && (fds[0].revents & POLLOUT)) drain_to_host();
            if (n > 0 && (fds[0].revents & POLLHUP) && !(fds[0].revents & POLLIN)) {
                ::usleep(20000);  // hang-up without data (should not happen): do not spin
            }
            if (!to_design.empty()) idle = 0;
            continue;
        }
        if (board.cycles % kServiceEvery == 0) {
            read_from_host();
            if (!to_host.empty()) drain_to_host();
        }
        if (!drv.busy() && !to_design.empty()) {
            drv.load(to_design.front());
            to_design.pop_front();
        }
        uint8_t tx = board.tick(drv.level());
        int byte = rcv.push(tx);
        if (byte >= 0) {
            to_host.push_back(uint8_t(byte));
            ++bytes_out;
            drain_to_host();  // at once: the host may be waiting for this very byte
        }
        uint8_t now = board.top->led;
        if ((now & 1) && !(leds & 1)) {
            std::fprintf(stderr, "uart_pty: fault LED on (UART frame error or receive overrun) "
                                 "at cycle %llu\n", (unsigned long long)board.cycles);
        }
        leds = now;
        if (drv.busy() || rcv.busy() || !tx) idle = 0;
        else ++idle;
    }
    if (!to_host.empty()) drain_to_host();
    std::fprintf(stderr, "uart_pty: exit after %llu cycles, %llu bytes in, %llu bytes out, "
                         "%llu stop-bit errors\n",
                 (unsigned long long)board.cycles, (unsigned long long)bytes_in,
                 (unsigned long long)bytes_out, (unsigned long long)rcv.stop_errors);
    return 0;
}
