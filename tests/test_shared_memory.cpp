// SharedMemory, ShareableList and the resource tracker, with real processes and /dev/shm.
// Children's targets are free functions taking handles as arguments, so every test runs under
// each start method (tests/CMakeLists.txt).
#include <catch2/catch.hpp>

#include "helpers.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include <multiprocessing/process.hpp>
#include <multiprocessing/shared_memory.hpp>
#include <multiprocessing/sharedctypes.hpp>
#include <multiprocessing/synchronize.hpp>

namespace mp = multiprocessing;
using test::check;
using test::finish;
using test::start;
using mp::shared_memory::ShareableList;
using mp::shared_memory::SharedMemory;
using namespace std::chrono_literals;

namespace {

bool in_dev_shm(const std::string& name) {
    return std::filesystem::exists("/dev/shm/" + name);
}

// Polls /dev/shm every 10 ms until `name` is gone or the deadline passes.
bool gone_within(const std::string& name, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (in_dev_shm(name)) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

// A name handed from a child to its parent.
struct name_box {
    mp::RawArray<char> chars = mp::RawArray<char>(256);
    void put(const std::string& s) const { std::memcpy(chars.data(), s.c_str(), s.size() + 1); }
    std::string get() const { return chars.data(); }
};

// The inode of a descriptor (a duplicate of a socket end has the same one).
long inode_of(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 ? long(st.st_ino) : -1;
}

// ---- the children's targets ---------------------------------------------------------------

void attach_and_write(std::string name) {
    SharedMemory child(name, false, 1);  // the size is ignored when attaching
    check(child.size() == 4096, "size");
    check(child.buf()[0] == std::byte{42}, "parent's byte");
    std::memcpy(child.buf().data() + 100, "hello", 5);
    child.close();
}

void use_handed_segment(SharedMemory shm, SharedMemory closed) {
    check(shm.size() == 4096, "size");
    check(shm.buf()[0] == std::byte{42}, "parent's byte");
    std::memcpy(shm.buf().data() + 200, "handle", 6);
    check(closed.buf().empty() && closed.name() == shm.name(), "a closed handle arrives closed");
}

void create_and_wait(name_box box, mp::Event made, mp::Event done) {
    SharedMemory shm({.create = true, .size = 64});
    std::memcpy(shm.buf().data(), "from child", 11);
    box.put(shm.name());
    made.set();
    check(done.wait(5.0), "done");
}

void create_and_exit(name_box box) {
    SharedMemory shm({.create = true, .size = 64});
    box.put(shm.name());
}

void same_tracker(long parent_inode) {
    int fd = mp::detail::resource_tracker::instance().fd();
    check(fd >= 0, "the child has a tracker");
    check(inode_of(fd) == parent_inode, "the parent's tracker");
}

void create_own_and_hang(name_box box, mp::Event made) {
    // A tracker of this child's own, as a separate program would have.
    mp::detail::resource_tracker::instance().detach();
    SharedMemory shm({.create = true, .size = 1 << 16});
    box.put(shm.name());
    made.set();
    for (;;) ::pause();
}

void check_size_100(SharedMemory kept) { check(kept.size() == 100, "size"); }

void leave_segments(name_box box) {
    mp::detail::resource_tracker::instance().detach();
    SharedMemory kept({.create = true, .size = 100});
    SharedMemory unlinked({.create = true, .size = 100});
    box.put(kept.name());
    unlinked.unlink();  // unregistered: the tracker must not trip over it
    // And a grandchild keeps the tracker alive as long as it runs.
    mp::Process grandchild(check_size_100, kept);
    grandchild.start();
    grandchild.join();
}

void times_ten(std::string name) {
    ShareableList<int> other(std::nullopt, name);
    check(other.size() == 4, "size");
    for (auto& x : other) x *= 10;
}

void plus_one(ShareableList<int> list) {
    check(list.size() == 4, "size");
    for (auto& x : list) x += 1;
}

}  // namespace

TEST_CASE("SharedMemory: a new segment is private (0600), exclusive and randomly named") {
    SharedMemory shm(std::nullopt, true, 1000);
    const std::string name = shm.name();
    REQUIRE(name.starts_with("mp-"));
    REQUIRE(name.size() >= 3 + 16);
    REQUIRE(name.find_first_not_of("0123456789abcdef", 3) == std::string::npos);
    REQUIRE(shm.size() == 1000);
    REQUIRE(shm.buf().size() == 1000);
    REQUIRE(std::all_of(shm.buf().begin(), shm.buf().end(), [](std::byte b) { return b == std::byte{0}; }));

    struct stat st;
    REQUIRE(::stat(("/dev/shm/" + name).c_str(), &st) == 0);
    REQUIRE((st.st_mode & 07777) == 0600);
    REQUIRE(st.st_uid == ::getuid());

    std::set<std::string> names{name};
    for (int i = 0; i < 20; ++i) {
        SharedMemory other({.create = true, .size = 16});
        REQUIRE(names.insert(other.name()).second);
        other.unlink();
    }

    // The same name again is refused (O_EXCL), with or without the slash.
    try {
        SharedMemory dup(name, true, 10);
        FAIL("created a segment over an existing one");
    } catch (const std::system_error& e) {
        REQUIRE(e.code() == std::errc::file_exists);
    }
    REQUIRE_THROWS_AS(SharedMemory("/" + name, true, 10), std::system_error);

    shm.unlink();
    REQUIRE_FALSE(in_dev_shm(name));
    REQUIRE(shm.buf().size() == 1000);  // still mapped until close()
    shm.close();
    REQUIRE(shm.buf().empty());
    REQUIRE_THROWS_AS(shm.unlink(), std::system_error);  // already gone
}

TEST_CASE("SharedMemory: bad arguments") {
    REQUIRE_THROWS_AS(SharedMemory(std::nullopt, true, 0), mp::ValueError);
    REQUIRE_THROWS_AS(SharedMemory(std::nullopt, true, -5), mp::ValueError);
    REQUIRE_THROWS_AS(SharedMemory("x", false, -1), mp::ValueError);
    REQUIRE_THROWS_AS(SharedMemory(std::nullopt), mp::ValueError);  // no name and create=false
    SharedMemory empty;  // what a task's result starts as: closed, no name
    CHECK(empty.buf().empty());
    CHECK(empty.name().empty());
    CHECK(empty.size() == 0);
    const std::string missing = "mp-does-not-exist-" + std::to_string(::getpid());
    try {
        SharedMemory nope(missing);
        FAIL("attached to a segment that does not exist");
    } catch (const std::system_error& e) {
        REQUIRE(e.code() == std::errc::no_such_file_or_directory);
    }
    REQUIRE_FALSE(in_dev_shm(missing));
}

TEST_CASE("SharedMemory: attach by name, with or without the slash, from a child") {
    const std::string name = "mp-test-" + mp::detail::posix::random_hex(8);
    SharedMemory shm(name, true, 4096);
    REQUIRE(shm.name() == name);
    SharedMemory same("/" + name);
    REQUIRE(same.size() == 4096);
    same.buf()[0] = std::byte{42};
    REQUIRE(shm.buf()[0] == std::byte{42});

    auto p = start(attach_and_write, name);
    REQUIRE(finish(p) == 0);
    REQUIRE(std::memcmp(shm.buf().data() + 100, "hello", 5) == 0);

    // The handle itself, given to a child (under spawn it travels by name and attaches).
    SharedMemory closed("/" + name);
    closed.close();
    auto q = start(use_handed_segment, shm, closed);
    REQUIRE(finish(q) == 0);
    REQUIRE(std::memcmp(shm.buf().data() + 200, "handle", 6) == 0);
    shm.unlink();
    REQUIRE_FALSE(in_dev_shm(name));
}

TEST_CASE("SharedMemory: a segment a child created is attached and unlinked by the parent") {
    // The tracker runs for the tree that started it: started here, the child's segment
    // outlives the child (as in Python, where it must be running before the child starts).
    mp::detail::resource_tracker::instance().ensure_running();
    name_box box;
    mp::Event made, done;
    auto p = start(create_and_wait, box, made, done);
    REQUIRE(made.wait(5.0));
    SharedMemory shm(box.get());
    REQUIRE(std::strcmp(reinterpret_cast<const char*>(shm.buf().data()), "from child") == 0);
    done.set();
    REQUIRE(finish(p) == 0);
    REQUIRE(in_dev_shm(box.get()));  // the child's end does not end the program: still there
    shm.unlink();
    REQUIRE_FALSE(in_dev_shm(box.get()));

    // Gone with its creator: still there, whatever the start method.
    auto q = start(create_and_exit, box);
    REQUIRE(finish(q) == 0);
    REQUIRE(in_dev_shm(box.get()));
    SharedMemory(box.get()).unlink();
}

TEST_CASE("Resource tracker: a child uses its parent's tracker, under every start method") {
    auto& tracker = mp::detail::resource_tracker::instance();
    tracker.ensure_running();
    auto p = start(same_tracker, inode_of(tracker.fd()));
    REQUIRE(finish(p) == 0);
}

TEST_CASE("Resource tracker: a creator killed with SIGKILL leaks nothing") {
    name_box box;
    mp::Event made;
    auto p = start(create_own_and_hang, box, made);
    REQUIRE(made.wait(5.0));
    const std::string name = box.get();
    REQUIRE(in_dev_shm(name));
    p.kill();
    REQUIRE(finish(p) == -SIGKILL);
    REQUIRE(gone_within(name, 2000ms));
}

TEST_CASE("Resource tracker: segments not unlinked are removed when their program ends") {
    name_box box;
    auto p = start(leave_segments, box);
    REQUIRE(finish(p) == 0);
    REQUIRE(gone_within(box.get(), 2000ms));
}

TEST_CASE("ShareableList: shared by name across processes") {
    ShareableList<int> sl{1, 2, 3, 2};
    REQUIRE(sl.size() == 4);
    REQUIRE(sl.count(2) == 2);
    REQUIRE(sl.index(3) == 2);
    REQUIRE_THROWS_AS(sl.index(9), mp::ValueError);
    REQUIRE(sl.at(-1) == 2);
    REQUIRE_THROWS_AS(sl.at(4), std::out_of_range);
    const std::string name = sl.shm().name();
    REQUIRE(name.starts_with("mp-"));

    auto p = start(times_ten, name);
    REQUIRE(finish(p) == 0);
    REQUIRE(std::vector<int>(sl.begin(), sl.end()) == std::vector<int>{10, 20, 30, 20});
    auto q = start(plus_one, sl);  // the list itself (under spawn: by name)
    REQUIRE(finish(q) == 0);
    REQUIRE(std::vector<int>(sl.begin(), sl.end()) == std::vector<int>{11, 21, 31, 21});

    REQUIRE_THROWS_AS(ShareableList<double>(std::nullopt, name), mp::ValueError);  // wrong type
    SharedMemory plain({.create = true, .size = 8});
    REQUIRE_THROWS_AS(ShareableList<int>(std::nullopt, plain.name()), mp::ValueError);
    plain.unlink();

    ShareableList<double> from_range(std::vector<double>{0.5, 1.5}, "mp-list-" + mp::detail::posix::random_hex(8));
    REQUIRE(from_range[1] == 1.5);
    ShareableList<char> empty(std::string{});
    REQUIRE(empty.size() == 0);
    ShareableList<int> python_empty;  // Python: ShareableList(), a new empty list
    REQUIRE(python_empty.size() == 0);
    REQUIRE(python_empty.shm().name().starts_with("mp-"));
    python_empty.shm().unlink();
    from_range.shm().unlink();
    empty.shm().unlink();
    sl.shm().unlink();
    REQUIRE_FALSE(in_dev_shm(name));
}
