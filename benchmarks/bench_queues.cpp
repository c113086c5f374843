// Queue throughput between processes: one producer and one consumer of 8-byte items, four of
// each, and 1 MiB items. Against Boost.Interprocess's message_queue (a bounded queue in shared
// memory with a process-shared mutex and condition variables) and the floor: a bare
// single-producer single-consumer ring in shared memory that only spins (no lock, no sleeping,
// no growth, no crash safety), which is as fast as moving items between two cores gets.
// Each iteration runs a whole transfer: fork the workers, move the items, join them.
#include <multiprocessing.hpp>
#include <multiprocessing/detail/posix/futex.hpp>
#include <multiprocessing/detail/posix/shm.hpp>
#include <multiprocessing/queues.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/interprocess/ipc/message_queue.hpp>

#include <benchmark/benchmark.h>

namespace mp = multiprocessing;
namespace posix = mp::detail::posix;
namespace bip = boost::interprocess;

namespace {

constexpr std::int64_t small_items = 1'000'000;  // per iteration, 8 bytes each
constexpr std::int64_t big_items = 200;          // per iteration, 1 MiB each
constexpr std::size_t mib = 1 << 20;

template <class F>
pid_t fork_child(F&& f) {
    pid_t pid = ::fork();
    if (pid == 0) {
        f();
        ::_exit(0);
    }
    return pid;
}

void wait_all(const std::vector<pid_t>& pids) {
    for (pid_t p : pids) ::waitpid(p, nullptr, 0);
}

// ---- this library ----------------------------------------------------------------------------

template <class Q>
void queue_1p1c(benchmark::State& state) {
    Q q;
    std::uint64_t sum = 0;
    for (auto _ : state) {
        mp::Process producer(
            [](Q q) {
                for (std::int64_t i = 0; i < small_items; ++i) q.put(std::uint64_t(i));
            },
            q);
        producer.start();
        for (std::int64_t i = 0; i < small_items; ++i) sum += q.get();
        producer.join();
    }
    benchmark::DoNotOptimize(sum);
    state.counters["items"] = double(small_items);
}

void queue_4p4c_mp(benchmark::State& state) {
    mp::Queue<std::uint64_t> q;
    constexpr std::int64_t per = small_items / 4;
    for (auto _ : state) {
        std::vector<std::unique_ptr<mp::Process>> ps;
        for (int k = 0; k < 4; ++k) {
            ps.push_back(std::make_unique<mp::Process>(
                [](mp::Queue<std::uint64_t> q) {
                    for (std::int64_t i = 0; i < per; ++i) q.put(std::uint64_t(i));
                },
                q));
            ps.push_back(std::make_unique<mp::Process>(
                [](mp::Queue<std::uint64_t> q) {
                    std::uint64_t sum = 0;
                    for (std::int64_t i = 0; i < per; ++i) sum += q.get();
                    benchmark::DoNotOptimize(sum);
                },
                q));
        }
        for (auto& p : ps) p->start();
        for (auto& p : ps) p->join();
    }
    state.counters["items"] = double(small_items);
}

void queue_1mib_mp(benchmark::State& state) {
    using item = std::vector<std::byte>;
    mp::Queue<item> q;
    for (auto _ : state) {
        mp::Process producer(
            [](mp::Queue<item> q) {
                item v(mib, std::byte{1});
                for (std::int64_t i = 0; i < big_items; ++i) q.put(v);
            },
            q);
        producer.start();
        std::size_t total = 0;
        for (std::int64_t i = 0; i < big_items; ++i) total += q.get().size();
        producer.join();
        if (total != big_items * mib) state.SkipWithError("lost bytes");
    }
    state.counters["items"] = double(big_items);
}

// ---- Boost.Interprocess message_queue --------------------------------------------------------

struct boost_queue {
    std::string name = "mp-bench-mq-" + std::to_string(::getpid());
    std::unique_ptr<bip::message_queue> mq;
    boost_queue(std::size_t max_msgs, std::size_t msg_size) {
        bip::message_queue::remove(name.c_str());
        mq = std::make_unique<bip::message_queue>(bip::create_only, name.c_str(), max_msgs,
                                                  msg_size);
    }
    ~boost_queue() {
        mq.reset();
        bip::message_queue::remove(name.c_str());
    }
};

void queue_boost(benchmark::State& state, int producers, int consumers) {
    boost_queue b(4096, sizeof(std::uint64_t));
    const std::int64_t per_p = small_items / producers, per_c = small_items / consumers;
    for (auto _ : state) {
        std::vector<pid_t> pids;
        for (int k = 0; k < producers; ++k)
            pids.push_back(fork_child([&] {
                for (std::int64_t i = 0; i < per_p; ++i) {
                    std::uint64_t v = std::uint64_t(i);
                    b.mq->send(&v, sizeof v, 0);
                }
            }));
        for (int k = 0; k < consumers; ++k)
            pids.push_back(fork_child([&] {
                std::uint64_t v, sum = 0;
                bip::message_queue::size_type got;
                unsigned prio;
                for (std::int64_t i = 0; i < per_c; ++i) {
                    b.mq->receive(&v, sizeof v, got, prio);
                    sum += v;
                }
                benchmark::DoNotOptimize(sum);
            }));
        wait_all(pids);
    }
    state.counters["items"] = double(small_items);
}

// ---- the floor: a bare SPSC ring in shared memory --------------------------------------------

template <std::size_t SlotSize, std::size_t Slots>
struct spsc_ring {
    alignas(64) std::atomic<std::uint64_t> head{0};  // next slot to read (consumer)
    alignas(64) std::atomic<std::uint64_t> tail{0};  // next slot to write (producer)
    alignas(64) std::byte data[Slots][SlotSize];

    // Each side's last view of the other's index (per process: the fields are only ever
    // touched by one side).
    alignas(64) std::uint64_t cached_head = 0;  // producer's
    alignas(64) std::uint64_t cached_tail = 0;  // consumer's

    // Spins; on a busy machine yields now and then, or a descheduled peer stalls it for a
    // whole time slice.
    static void relax(unsigned spins) noexcept {
        if (spins % 4096 == 4095) ::sched_yield();
        else posix::cpu_relax();
    }

    void put(const void* p) {
        const std::uint64_t t = tail.load(std::memory_order_relaxed);
        for (unsigned spins = 0; t - cached_head >= Slots; ++spins) {
            relax(spins);
            cached_head = head.load(std::memory_order_acquire);
        }
        std::memcpy(data[t % Slots], p, SlotSize);
        tail.store(t + 1, std::memory_order_release);
    }
    void get(void* p) {
        const std::uint64_t h = head.load(std::memory_order_relaxed);
        for (unsigned spins = 0; cached_tail <= h; ++spins) {
            relax(spins);
            cached_tail = tail.load(std::memory_order_acquire);
        }
        std::memcpy(p, data[h % Slots], SlotSize);
        head.store(h + 1, std::memory_order_release);
    }
};

template <std::size_t SlotSize, std::size_t Slots>
void queue_spsc(benchmark::State& state, std::int64_t items) {
    using ring = spsc_ring<SlotSize, Slots>;
    posix::region shm(sizeof(ring));
    auto* r = ::new (shm.data()) ring;
    std::vector<std::byte> buf(SlotSize, std::byte{1});
    for (auto _ : state) {
        pid_t pid = fork_child([&] {
            for (std::int64_t i = 0; i < items; ++i) {
                std::memcpy(buf.data(), &i, sizeof i);
                r->put(buf.data());
            }
        });
        std::uint64_t sum = 0;
        for (std::int64_t i = 0; i < items; ++i) {
            r->get(buf.data());
            std::uint64_t v;
            std::memcpy(&v, buf.data(), sizeof v);
            sum += v;
        }
        ::waitpid(pid, nullptr, 0);
        if (sum != std::uint64_t(items) * std::uint64_t(items - 1) / 2)
            state.SkipWithError("lost an item");
    }
    state.counters["items"] = double(items);
}

void queue_1p1c_spsc(benchmark::State& state) { queue_spsc<8, 65536>(state, small_items); }
void queue_1mib_spsc(benchmark::State& state) { queue_spsc<mib, 8>(state, big_items); }

}  // namespace

BENCHMARK(queue_1p1c<mp::Queue<std::uint64_t>>)
    ->Name("queue_1p1c/mp")->UseRealTime()->MinTime(0.5);
BENCHMARK(queue_1p1c<mp::SimpleQueue<std::uint64_t>>)
    ->Name("queue_1p1c/other:mp.SimpleQueue")->UseRealTime()->MinTime(0.5);
BENCHMARK_CAPTURE(queue_boost, 1, 1, 1)
    ->Name("queue_1p1c/other:boost message_queue")->UseRealTime()->MinTime(0.5);
BENCHMARK(queue_1p1c_spsc)
    ->Name("queue_1p1c/floor:spsc ring")->UseRealTime()->MinTime(0.5);

BENCHMARK(queue_4p4c_mp)->Name("queue_4p4c/mp")->UseRealTime()->MinTime(0.5);
BENCHMARK_CAPTURE(queue_boost, 4, 4, 4)
    ->Name("queue_4p4c/other:boost message_queue")->UseRealTime()->MinTime(0.5);

BENCHMARK(queue_1mib_mp)->Name("queue_1mib/mp")->UseRealTime()->MinTime(0.5);
BENCHMARK(queue_1mib_spsc)
    ->Name("queue_1mib/floor:spsc ring+memcpy")->UseRealTime()->MinTime(0.5);
