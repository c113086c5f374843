// A serialize hook that archives a pointer: the hook's ar(...) checks each field too.
// expect: cannot cross a process boundary: a pointer is an address
// expect: Node
#include <multiprocessing/serialization.hpp>

struct Node {
    int value = 0;
    Node* next = nullptr;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(value, next);
    }
};

int main() {
    return int(multiprocessing::serialize(Node{}).size());
}
