// Seed example 12: Pipe, a duplex pair and a one-way pair (the first end receives, the second
// sends).
#include <multiprocessing.hpp>

#include <fmt/ranges.h>

#include <string>
#include <variant>
#include <vector>

namespace mp = multiprocessing;

// Python's conn.recv() returns any object; the echo end receives either a number or "stop".
using Message = std::variant<int, std::string>;

void echo(mp::Connection conn) {
    while (true) {
        auto msg = conn.recv<Message>();
        if (msg == Message("stop")) break;
        conn.send(std::get<int>(msg) * 2);
    }
    conn.close();
}

void send_three(mp::Connection conn) {
    for (int i = 0; i < 3; ++i) conn.send(i);
    conn.close();
}

int main() {
    auto [a, b] = mp::Pipe();
    mp::Process p(echo, b);
    p.start();
    for (int x : {1, 21, 50}) {
        a.send(Message(x));
        fmt::print("{}\n", a.recv<int>());
    }
    a.send(Message("stop"));
    p.join();

    auto [reader, writer] = mp::Pipe(false);
    p = mp::Process(send_three, writer);
    p.start();
    writer.close();
    std::vector<int> received;
    for (int i = 0; i < 3; ++i) received.push_back(reader.recv<int>());
    fmt::print("{} {}\n", received, reader.poll(0.1) ? "True" : "False");
    p.join();
}
