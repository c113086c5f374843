// A class with private state and no serialize hook: decoding could not fill it in.
// expect: cannot cross a process boundary: it is neither a supported standard type
// expect: Account
#include <multiprocessing/serialization.hpp>

class Account {
public:
    explicit Account(double balance = 0) : balance_(balance) {}
    double balance() const { return balance_; }

private:
    double balance_;
};

int main() {
    auto bytes = multiprocessing::serialize(1.5);
    return int(multiprocessing::deserialize<std::vector<Account>>(bytes).size());
}
