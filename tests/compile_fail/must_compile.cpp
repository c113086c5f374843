// The control: a file like the others that must compile, proving the harness can tell.
#include <map>

#include <multiprocessing/serialization.hpp>

struct Node {
    int id;
    std::string label;
    std::map<std::string, std::vector<std::optional<std::pair<int, std::string>>>> data;
};

int main() {
    auto bytes = multiprocessing::detail::pack_message(Node{1, "x", {}});
    return multiprocessing::detail::unpack_message<Node>(bytes).id - 1;
}
