// A manager served over TCP: one process serves a registered class and a queue on a loopback
// port (Python: BaseManager(address=('', 50000), authkey=b'abc').get_server().serve_forever()),
// and two client processes connect() to it, as they would from other machines.
#include <multiprocessing.hpp>
#include <multiprocessing/managers.hpp>

#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

namespace mp = multiprocessing;

// The shared object: a tally of words.
class Tally {
public:
    int add(const std::string& word) {
        words_.push_back(word);
        return int(words_.size());
    }
    std::vector<std::string> words() const { return words_; }

private:
    std::vector<std::string> words_;
};

const std::string authkey = "not so secret";

// Python: TallyManager.register('get_tally', callable=lambda: tally, exposed=('add', 'words'))
void register_types(std::shared_ptr<Tally> served = nullptr) {
    auto add = mp::method("add", &Tally::add);
    auto words = mp::method("words", &Tally::words);
    if (served)
        mp::BaseManager::register_<Tally>(
            "Tally", [served] { return served; }, add, words);
    else
        mp::BaseManager::register_<Tally>("Tally", add, words);  // clients need only the names
}

void serve(mp::Connection port_out) {
    register_types(std::make_shared<Tally>());
    mp::BaseManager manager({"127.0.0.1", 0}, authkey);  // port 0: any free port
    auto server = manager.get_server();
    port_out.send(server.address().port());
    server.serve_forever();
}

void client(int port, std::string name) {
    register_types();
    mp::BaseManager manager({"127.0.0.1", port}, authkey);
    manager.connect();
    auto tally = manager.create<Tally>();
    for (int i = 0; i < 3; ++i) tally.call(&Tally::add, name + "-" + std::to_string(i));
}

int main() {
    auto [port_in, port_out] = mp::Pipe(false);
    mp::Process server({.name = "server", .daemon = true}, serve, port_out);
    server.start();
    int port = port_in.recv<int>();
    fmt::print("serving on 127.0.0.1:{}\n", port);

    std::vector<mp::Process> clients;
    for (std::string name : {"alice", "bob"}) clients.emplace_back(client, port, name);
    for (auto& c : clients) c.start();
    for (auto& c : clients) c.join();

    register_types();
    mp::BaseManager manager({"127.0.0.1", port}, authkey);
    manager.connect();
    auto words = manager.create<Tally>().call(&Tally::words);
    fmt::print("{} words from {} clients\n", words.size(), clients.size());
    server.terminate();
    server.join();
}
