// The manager server (Python: multiprocessing.managers.Server) and the wire protocol its proxies
// speak. The server is type-agnostic: the builtin objects (dict, list, Queue, ...) hold values
// as their encodings, which the proxies decode with their own T; dict keys compare by encoding,
// which is exact for the codec (equal values encode identically, except floating-point -0.0 and
// NaN, and unordered containers whose iteration order differs). Registered user types are held
// as real objects and called through a table of method names built by BaseManager::register_.
//
// One thread per client connection (Python's Server does the same). Every object has its own
// mutex, so each operation is atomic, as it is in Python under the GIL. A client must pass the
// handshake within handshake_timeout and every handshake message is at most 256 bytes, so a
// silent or hostile peer costs one thread for a bounded time; requests are decoded with the
// bounds-checked codec, so garbage from an authenticated peer gets an error reply.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../connection.hpp"
#include "../errors.hpp"
#include "../serialization.hpp"
#include "heap.hpp"
#include "posix/net.hpp"

namespace multiprocessing::detail::mgr {

// ---- the protocol ---------------------------------------------------------------------------

// Encodings travel and are stored as std::string (hashable, cheap when short).
using blob = std::string;

// What a request asks; one code space for every object kind, so that a server object rejects
// what it does not support.
// clang-format off
enum class op : std::uint8_t {
    // The server itself (object id 0).
    create, create_registered, shutdown, dummy,
    // Shared by several kinds.
    len, clear, acquire, release,
    // dict
    dict_get, dict_set, dict_contains, dict_pop, dict_setdefault, dict_keys, dict_values,
    dict_items, dict_update, dict_popitem,
    // list, Array and Value
    list_get, list_set, list_append, list_extend, list_insert, list_pop, list_remove, list_index,
    list_count, list_items,
    // Namespace
    ns_get, ns_set, ns_del, ns_names,
    // Queue
    queue_put, queue_get, queue_empty, queue_full, queue_task_done, queue_join,
    // Condition
    condition_wait, condition_notify,
    // Event
    event_is_set, event_set, event_clear, event_wait,
    // Barrier
    barrier_wait, barrier_abort, barrier_reset, barrier_parties, barrier_n_waiting, barrier_broken,
    // A registered user type.
    callmethod,
    // Added later, kept last so that the codes above do not move: Lock, RLock, Semaphore.
    locked,
    // Reference counting (the server, id 0): see `server` below.
    incref, decref, ticket, adopt, number_of_objects,
    // list, added later
    list_reverse, list_repeat, list_replace_if,
    // set (Python 3.14's SyncManager.set())
    set_add, set_discard, set_remove, set_pop, set_contains, set_items, set_update,
    set_intersection_update, set_difference_update, set_symmetric_difference_update, set_union,
    set_intersection, set_difference, set_symmetric_difference, set_isdisjoint, set_issubset,
    set_issuperset,
    // SharedMemoryManager (the server, id 0): segments to unlink when it shuts down.
    track_segment, segment_names,
};
// clang-format on

// The builtin object kinds (Python: the typeids SyncManager registers).
// clang-format off
enum class kind : std::uint8_t {
    dict, list, array, value, namespace_, queue, lock, rlock, semaphore, bounded_semaphore,
    condition, event, barrier, set,
};
// clang-format on

// One frame each way. The encoding is the library's own codec, so the server decodes a request
// with the same bounds checks as any message and needs no parser of its own.
struct request {
    std::uint64_t id = 0;  // the object; 0 is the server
    op code = op::dummy;
    std::int64_t timeout_ns = -1;  // for calls that block: -1 waits forever
    std::vector<blob> args;
    // Objects of this manager whose proxies are inside `args` (a list of dict proxies): the
    // object the request stores them in (or creates) holds them while it lives.
    std::vector<std::uint64_t> holds;
    // Of a create: the connection that holds the new object (0: the one asking).
    std::uint64_t holder = 0;
};

// The requests that store their arguments in the object (so that it holds the proxies in them);
// a query (contains, index, count, ...) holds nothing.
inline bool stores(op code) noexcept {
    switch (code) {
        case op::dict_set: case op::dict_setdefault: case op::dict_update: case op::list_set:
        case op::list_append: case op::list_extend: case op::list_insert: case op::queue_put:
        case op::ns_set: case op::set_add: case op::set_update:
        case op::set_symmetric_difference_update: case op::callmethod:
            return true;
        default:
            return false;
    }
}

// The requests that get no reply (a proxy's last copy in a process going away need not wait).
inline bool one_way(op code) noexcept { return code == op::decref; }

struct reply {
    bool ok = true;
    std::vector<blob> values;  // when !ok, values[0] is an exception from pack_exception
};

// What crosses inside a request: values encoded by the proxy's T, opaque to the server.
template <class T>
blob encode(const T& v) {
    auto b = serialize(v);
    return blob(reinterpret_cast<const char*>(b.data()), b.size());
}

template <class T>
T decode(const blob& b) {
    return deserialize<T>(std::as_bytes(std::span(b.data(), b.size())));
}

// Python: multiprocessing.managers.Server's registry entry for a typeid registered by the user.
struct registered_type {
    std::string type_id;
    // Makes an object: from an encoded T when `init` is given, else default-constructed or
    // from the registered factory.
    std::function<std::shared_ptr<void>(const blob* init)> create;
    // The factory may hand out the same object again: then it keeps one id.
    bool shared = false;
    // Method name -> call on the object with encoded arguments, returning the encoded result.
    std::unordered_map<std::string, std::function<blob(void*, const blob&)>> methods;
};

using type_table = std::map<std::string, std::shared_ptr<const registered_type>>;

// Local clients talk over a pair of pipes instead of the socket, as a pipe round trip costs half
// as much (see posix/socket.hpp): after the handshake the server hands the client its ends.
// Either side then sees the other's death as end of file, as on the socket.
inline bool is_local(const Connection& c) {
    return posix::local_address(c.fileno()).family() == AF_UNIX;
}

inline Connection server_upgrade(Connection& sock) {
    posix::unique_fd c2s_r, c2s_w, s2c_r, s2c_w;
    posix::make_pipe(c2s_r, c2s_w);
    posix::make_pipe(s2c_r, s2c_w);
    int theirs[2] = {s2c_r.get(), c2s_w.get()};
    posix::send_fds(sock.fileno(), theirs, 2);
    sock.close();
    int r = c2s_r.release(), w = s2c_w.release();
    return Connection(r, w);
}

inline Connection client_upgrade(Connection& sock, detail::deadline deadline) {
    posix::unique_fd ours[2];
    if (!posix::recv_fds(sock.fileno(), ours, 2, deadline))
        throw ProcessError("the manager did not hand over its pipes");
    sock.close();
    int r = ours[0].release(), w = ours[1].release();
    return Connection(r, w);
}

// ---- server objects -------------------------------------------------------------------------

// Thrown inside the server when the client of a waiting call hung up: the call is abandoned
// (and its connection closed) instead of taking an item or a lock nobody will receive.
struct client_gone {};

struct client_context {
    std::uint64_t id = 0;  // identifies the connection: the owner of an RLock or Condition
    int fd = -1;           // the client's socket, to notice a hang-up while waiting
    bool shutdown = false;
    bool holds_refs = false;  // objects were created or increfed on this connection
};

inline bool client_hung_up(int fd) noexcept {
    if (fd < 0) return false;
    pollfd p{fd, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

// Waits on `cv` until pred() holds or the timeout (-1: none) passes; in slices, so that a waiter
// whose client hung up gives up, and never takes what it waited for (an item, a lock) on behalf
// of a dead client. Returns pred().
template <class Pred>
bool wait_for(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
              const client_context& ctx, std::int64_t timeout_ns, Pred pred) {
    using clock = std::chrono::steady_clock;
    if (pred()) return true;
    const auto start = clock::now();
    const auto slice = std::chrono::milliseconds(200);
    for (;;) {
        auto now = clock::now();
        auto until = now + slice;
        if (timeout_ns >= 0) {
            auto deadline = start + std::chrono::nanoseconds(timeout_ns);
            if (now >= deadline) return false;
            until = std::min(until, deadline);
        }
        cv.wait_until(lock, until);
        bool ready = pred();
        if (client_hung_up(ctx.fd)) throw client_gone{};
        if (ready) return true;
    }
}

inline const blob& arg(const request& r, std::size_t i) {
    if (i >= r.args.size())
        throw ValueError("malformed request: missing argument " + std::to_string(i));
    return r.args[i];
}

[[noreturn]] inline void unsupported(const request& r, const char* what) {
    throw ValueError(std::string("'") + what + "' object does not support operation " +
                     std::to_string(int(r.code)));
}

// An object at the server. call() does one operation, atomically: it holds the object's mutex
// throughout, except while a blocking call waits on its condition variable.
struct server_object {
    virtual ~server_object() = default;
    virtual std::vector<blob> call(client_context& ctx, request& r) = 0;
};

// Python's dict: insertion-ordered, keyed by encoding.
class ordered_map {
public:
    std::size_t size() const noexcept { return index_.size(); }

    blob* find(const blob& key) {
        auto it = index_.find(key);
        return it == index_.end() ? nullptr : &slots_[it->second]->second;
    }

    void assign(const blob& key, blob value) {
        auto [it, inserted] = index_.try_emplace(key, slots_.size());
        if (inserted)
            slots_.emplace_back(std::pair{key, std::move(value)});
        else
            slots_[it->second]->second = std::move(value);
    }

    std::optional<blob> erase(const blob& key) {
        auto it = index_.find(key);
        if (it == index_.end()) return std::nullopt;
        std::size_t i = it->second;
        blob v = std::move(slots_[i]->second);
        slots_[i].reset();
        index_.erase(it);
        compact();
        return v;
    }

    // Python: dict.popitem(): the last inserted item.
    std::optional<std::pair<blob, blob>> pop_last() {
        while (!slots_.empty() && !slots_.back()) slots_.pop_back();
        if (slots_.empty()) return std::nullopt;
        auto kv = std::move(*slots_.back());
        slots_.pop_back();
        index_.erase(kv.first);
        return kv;
    }

    template <class F>
    void for_each(F f) const {
        for (const auto& s : slots_)
            if (s) f(s->first, s->second);
    }

    void clear() noexcept {
        slots_.clear();
        index_.clear();
    }

private:
    // Erased slots are holes; squeeze them out once they are the majority.
    void compact() {
        if (slots_.size() < 32 || index_.size() * 2 > slots_.size()) return;
        std::vector<std::optional<std::pair<blob, blob>>> kept;
        kept.reserve(index_.size());
        for (auto& s : slots_)
            if (s) {
                index_[s->first] = kept.size();
                kept.push_back(std::move(s));
            }
        slots_ = std::move(kept);
    }

    std::vector<std::optional<std::pair<blob, blob>>> slots_;
    std::unordered_map<blob, std::size_t> index_;
};

struct dict_object final : server_object {
    std::mutex m;
    ordered_map d;

    std::vector<blob> call(client_context&, request& r) override {
        std::lock_guard g(m);
        switch (r.code) {
            case op::len: return {encode<std::uint64_t>(d.size())};
            case op::clear: d.clear(); return {};
            case op::dict_get:
                if (auto* v = d.find(arg(r, 0))) return {*v};
                return {};
            case op::dict_set: d.assign(arg(r, 0), arg(r, 1)); return {};
            case op::dict_contains: return {encode(d.find(arg(r, 0)) != nullptr)};
            case op::dict_pop:
                if (auto v = d.erase(arg(r, 0))) return {std::move(*v)};
                return {};
            case op::dict_setdefault: {
                if (auto* v = d.find(arg(r, 0))) return {*v};
                d.assign(arg(r, 0), arg(r, 1));
                return {arg(r, 1)};
            }
            case op::dict_keys:
            case op::dict_values:
            case op::dict_items: {
                std::vector<blob> out;
                out.reserve(d.size() * (r.code == op::dict_items ? 2 : 1));
                d.for_each([&](const blob& k, const blob& v) {
                    if (r.code != op::dict_values) out.push_back(k);
                    if (r.code != op::dict_keys) out.push_back(v);
                });
                return out;
            }
            case op::dict_update:
                if (r.args.size() % 2) throw ValueError("malformed request: odd update");
                for (std::size_t i = 0; i < r.args.size(); i += 2)
                    d.assign(r.args[i], r.args[i + 1]);
                return {};
            case op::dict_popitem:
                if (auto kv = d.pop_last()) return {std::move(kv->first), std::move(kv->second)};
                throw std::out_of_range("popitem(): dictionary is empty");
            default: unsupported(r, "dict");
        }
    }
};

// The most a list *= n may make at the server.
inline constexpr std::uint64_t max_repeat_bytes = std::uint64_t(1) << 32;

// Python's list; also Array (fixed length) and Value (one fixed slot).
struct list_object final : server_object {
    std::mutex m;
    std::vector<blob> items;
    bool fixed = false;
    const char* name = "list";

    std::size_t index(const blob& b, bool clamp = false) const {
        auto i = decode<std::int64_t>(b);
        auto n = std::int64_t(items.size());
        if (i < 0) i += n;
        if (clamp) return std::size_t(std::clamp<std::int64_t>(i, 0, n));
        if (i < 0 || i >= n) throw std::out_of_range(std::string(name) + " index out of range");
        return std::size_t(i);
    }
    void check_resizable(const request& r) const {
        if (fixed) unsupported(r, name);
    }

    std::vector<blob> call(client_context&, request& r) override {
        std::lock_guard g(m);
        switch (r.code) {
            case op::len: return {encode<std::uint64_t>(items.size())};
            case op::list_get: return {items[index(arg(r, 0))]};
            case op::list_set: items[index(arg(r, 0))] = arg(r, 1); return {};
            case op::list_items: return items;
            case op::list_count:
                return {encode<std::uint64_t>(
                    std::uint64_t(std::count(items.begin(), items.end(), arg(r, 0))))};
            case op::list_index: {
                auto it = std::find(items.begin(), items.end(), arg(r, 0));
                if (it == items.end()) throw ValueError("list.index(x): x not in list");
                return {encode<std::uint64_t>(std::uint64_t(it - items.begin()))};
            }
            default: break;
        }
        check_resizable(r);
        switch (r.code) {
            case op::clear: items.clear(); return {};
            case op::list_append: items.push_back(arg(r, 0)); return {};
            case op::list_extend:
                items.insert(items.end(), r.args.begin(), r.args.end());
                return {};
            case op::list_insert:
                items.insert(items.begin() + std::ptrdiff_t(index(arg(r, 0), true)), arg(r, 1));
                return {};
            case op::list_pop: {
                if (items.empty()) throw std::out_of_range("pop from empty list");
                std::size_t i = index(arg(r, 0));
                blob v = std::move(items[i]);
                items.erase(items.begin() + std::ptrdiff_t(i));
                return {std::move(v)};
            }
            case op::list_remove: {
                auto it = std::find(items.begin(), items.end(), arg(r, 0));
                if (it == items.end()) throw ValueError("list.remove(x): x not in list");
                items.erase(it);
                return {};
            }
            case op::list_reverse: std::reverse(items.begin(), items.end()); return {};
            case op::list_repeat: {  // Python: l *= n
                auto n = decode<std::int64_t>(arg(r, 0));
                if (n <= 0) {
                    items.clear();
                    return {};
                }
                if (items.empty() || n == 1) return {};
                // Items are copies here (Python copies references): bound what that costs, so
                // that one request cannot take the server, and every object in it, down.
                std::uint64_t bytes = 0;
                for (const auto& b : items) bytes += b.size() + sizeof(blob);
                if (std::uint64_t(n) > max_repeat_bytes / bytes)
                    throw std::length_error("list *= n: the list would take over 4 GiB at the manager");
                auto once = items;
                items.reserve(once.size() * std::size_t(n));  // fails at once if it cannot fit
                for (std::int64_t k = 1; k < n; ++k)
                    items.insert(items.end(), once.begin(), once.end());
                return {};
            }
            case op::list_replace_if: {
                // args: n, the n items the client read, then what replaces them if they are
                // still what the list holds (a sort done at the client, atomically).
                auto n = decode<std::uint64_t>(arg(r, 0));
                if (n > r.args.size() - 1) throw ValueError("malformed request: list_replace_if");
                auto old_first = r.args.begin() + 1, new_first = old_first + std::ptrdiff_t(n);
                if (!std::equal(items.begin(), items.end(), old_first, new_first))
                    return {encode(false)};
                items.assign(new_first, r.args.end());
                return {encode(true)};
            }
            default: unsupported(r, name);
        }
    }
};

// Python's set (SyncManager.set(), 3.14): elements by encoding, as dict keys are.
struct set_object final : server_object {
    std::mutex m;
    std::unordered_set<blob> s;

    std::vector<blob> call(client_context&, request& r) override {
        std::lock_guard g(m);
        auto others = [&] { return std::unordered_set<blob>(r.args.begin(), r.args.end()); };
        auto elements = [](auto&& range) { return std::vector<blob>(range.begin(), range.end()); };
        switch (r.code) {
            case op::len: return {encode<std::uint64_t>(s.size())};
            case op::clear: s.clear(); return {};
            case op::set_add: s.insert(arg(r, 0)); return {};
            case op::set_discard: return {encode(s.erase(arg(r, 0)) > 0)};
            case op::set_remove:
                if (!s.erase(arg(r, 0))) throw std::out_of_range("KeyError: not in the set");
                return {};
            case op::set_pop: {
                if (s.empty()) throw std::out_of_range("KeyError: pop from an empty set");
                return {std::move(s.extract(s.begin()).value())};
            }
            case op::set_contains: return {encode(s.contains(arg(r, 0)))};
            case op::set_items: return elements(s);
            case op::set_update: s.insert(r.args.begin(), r.args.end()); return {};
            case op::set_intersection_update: {
                auto o = others();
                std::erase_if(s, [&](const blob& b) { return !o.contains(b); });
                return {};
            }
            case op::set_difference_update:
                for (const auto& b : r.args) s.erase(b);
                return {};
            case op::set_symmetric_difference_update:
                for (const auto& b : others())
                    if (!s.erase(b)) s.insert(b);
                return {};
            case op::set_union: {
                auto u = s;
                u.insert(r.args.begin(), r.args.end());
                return elements(u);
            }
            case op::set_intersection: {
                auto o = others();
                std::vector<blob> out;
                for (const auto& b : s)
                    if (o.contains(b)) out.push_back(b);
                return out;
            }
            case op::set_difference: {
                auto o = others();
                std::vector<blob> out;
                for (const auto& b : s)
                    if (!o.contains(b)) out.push_back(b);
                return out;
            }
            case op::set_symmetric_difference: {
                auto o = others();
                std::vector<blob> out;
                for (const auto& b : s)
                    if (!o.contains(b)) out.push_back(b);
                for (const auto& b : o)
                    if (!s.contains(b)) out.push_back(b);
                return out;
            }
            case op::set_isdisjoint:
                return {encode(std::none_of(r.args.begin(), r.args.end(),
                                            [&](const blob& b) { return s.contains(b); }))};
            case op::set_issubset: {
                auto o = others();
                return {encode(std::all_of(s.begin(), s.end(),
                                           [&](const blob& b) { return o.contains(b); }))};
            }
            case op::set_issuperset:
                return {encode(std::all_of(r.args.begin(), r.args.end(),
                                           [&](const blob& b) { return s.contains(b); }))};
            default: unsupported(r, "set");
        }
    }
};

// Python's Namespace: attributes by name, each value with its type (a packed message), so that
// reading it as another type says so.
struct namespace_object final : server_object {
    std::mutex m;
    std::map<std::string, blob> attrs;

    std::vector<blob> call(client_context&, request& r) override {
        std::lock_guard g(m);
        switch (r.code) {
            case op::ns_get: {
                auto it = attrs.find(arg(r, 0));
                if (it == attrs.end()) return {};
                return {it->second};
            }
            case op::ns_set: attrs[arg(r, 0)] = arg(r, 1); return {};
            case op::ns_del: return {encode(attrs.erase(arg(r, 0)) > 0)};
            case op::ns_names: {
                std::vector<blob> out;
                for (const auto& [k, v] : attrs) out.push_back(k);
                return out;
            }
            default: unsupported(r, "Namespace");
        }
    }
};

// Python's queue.Queue (what manager.Queue() and manager.JoinableQueue() serve).
struct queue_object final : server_object {
    std::mutex m;
    std::condition_variable cv;
    std::deque<blob> items;
    std::int64_t maxsize = 0;
    std::uint64_t unfinished = 0;

    bool full() const noexcept { return maxsize > 0 && std::int64_t(items.size()) >= maxsize; }

    std::vector<blob> call(client_context& ctx, request& r) override {
        std::unique_lock lock(m);
        switch (r.code) {
            case op::len: return {encode<std::uint64_t>(items.size())};
            case op::queue_empty: return {encode(items.empty())};
            case op::queue_full: return {encode(full())};
            case op::queue_put:
                if (!wait_for(lock, cv, ctx, r.timeout_ns, [&] { return !full(); })) throw Full();
                items.push_back(arg(r, 0));
                ++unfinished;
                cv.notify_all();
                return {};
            case op::queue_get: {
                if (!wait_for(lock, cv, ctx, r.timeout_ns, [&] { return !items.empty(); }))
                    throw Empty();
                blob v = std::move(items.front());
                items.pop_front();
                cv.notify_all();
                return {std::move(v)};
            }
            case op::queue_task_done:
                if (unfinished == 0) throw ValueError("task_done() called too many times");
                if (--unfinished == 0) cv.notify_all();
                return {};
            case op::queue_join:
                return {
                    encode(wait_for(lock, cv, ctx, r.timeout_ns, [&] { return unfinished == 0; }))};
            default: unsupported(r, "Queue");
        }
    }
};

// The lock of threading.RLock, owned by a connection (one client thread of one process).
struct rlock_core {
    std::uint64_t owner = 0;
    std::uint64_t depth = 0;

    bool acquire(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 const client_context& ctx, std::int64_t timeout_ns) {
        if (depth && owner == ctx.id) {
            ++depth;
            return true;
        }
        if (!wait_for(lock, cv, ctx, timeout_ns, [&] { return depth == 0; })) return false;
        owner = ctx.id;
        depth = 1;
        return true;
    }
    void release(std::condition_variable& cv, const client_context& ctx) {
        if (!depth || owner != ctx.id) throw ValueError("cannot release un-acquired lock");
        if (--depth == 0) {
            owner = 0;
            cv.notify_all();
        }
    }
};

// Python's threading.Lock, threading.RLock, threading.Semaphore and BoundedSemaphore: what
// AcquirerProxy drives.
struct acquirer_object final : server_object {
    std::mutex m;
    std::condition_variable cv;
    kind k = kind::lock;
    bool locked = false;                // Lock
    rlock_core rlock;                   // RLock
    std::int64_t value = 0, bound = 0;  // Semaphore; bound 0 = unbounded

    std::vector<blob> call(client_context& ctx, request& r) override {
        std::unique_lock lock(m);
        switch (r.code) {
            case op::acquire: {
                bool got = false;
                if (k == kind::lock) {
                    got = wait_for(lock, cv, ctx, r.timeout_ns, [&] { return !locked; });
                    if (got) locked = true;
                } else if (k == kind::rlock) {
                    got = rlock.acquire(lock, cv, ctx, r.timeout_ns);
                } else {
                    got = wait_for(lock, cv, ctx, r.timeout_ns, [&] { return value > 0; });
                    if (got) --value;
                }
                return {encode(got)};
            }
            case op::release:
                if (k == kind::lock) {
                    if (!locked) throw ValueError("release unlocked lock");
                    locked = false;
                } else if (k == kind::rlock) {
                    rlock.release(cv, ctx);
                    return {};
                } else {
                    if (bound > 0 && value >= bound)
                        throw ValueError("Semaphore released too many times");
                    ++value;
                }
                cv.notify_all();
                return {};
            case op::locked:  // Python 3.14: whether acquire() would block (for a Semaphore: value 0)
                return {encode(k == kind::lock    ? locked
                               : k == kind::rlock ? rlock.depth > 0
                                                  : value == 0)};
            default: unsupported(r, "lock");
        }
    }
};

// Python's threading.Condition (with its default RLock). Notified waiters are woken oldest
// first, as in Python.
struct condition_object final : server_object {
    std::mutex m;
    std::condition_variable cv;
    rlock_core rlock;
    std::list<bool*> waiters;  // the `notified` flag of each waiting call, oldest first

    std::vector<blob> call(client_context& ctx, request& r) override {
        std::unique_lock lock(m);
        switch (r.code) {
            case op::acquire: return {encode(rlock.acquire(lock, cv, ctx, r.timeout_ns))};
            case op::release: rlock.release(cv, ctx); return {};
            case op::locked: return {encode(rlock.depth > 0)};
            case op::condition_wait: {
                if (!rlock.depth || rlock.owner != ctx.id)
                    throw ValueError("cannot wait on un-acquired lock");
                std::uint64_t depth = std::exchange(rlock.depth, 0);
                rlock.owner = 0;
                bool notified = false;
                auto me = waiters.insert(waiters.end(), &notified);
                cv.notify_all();
                bool ok = false;
                try {
                    ok = wait_for(lock, cv, ctx, r.timeout_ns, [&] { return notified; });
                } catch (...) {
                    if (!notified) waiters.erase(me);
                    throw;
                }
                if (!ok) waiters.erase(me);
                // Take the lock back at its old depth, however long that takes.
                wait_for(lock, cv, ctx, -1, [&] { return rlock.depth == 0; });
                rlock.owner = ctx.id;
                rlock.depth = depth;
                return {encode(ok)};
            }
            case op::condition_notify: {
                if (!rlock.depth || rlock.owner != ctx.id)
                    throw ValueError("cannot notify on un-acquired lock");
                auto n = decode<std::int64_t>(arg(r, 0));
                while (n-- > 0 && !waiters.empty()) {
                    *waiters.front() = true;
                    waiters.pop_front();
                }
                cv.notify_all();
                return {};
            }
            default: unsupported(r, "Condition");
        }
    }
};

// Python's threading.Event
struct event_object final : server_object {
    std::mutex m;
    std::condition_variable cv;
    bool flag = false;

    std::vector<blob> call(client_context& ctx, request& r) override {
        std::unique_lock lock(m);
        switch (r.code) {
            case op::event_is_set: return {encode(flag)};
            case op::event_set:
                flag = true;
                cv.notify_all();
                return {};
            case op::event_clear: flag = false; return {};
            case op::event_wait:
                return {encode(wait_for(lock, cv, ctx, r.timeout_ns, [&] { return flag; }))};
            default: unsupported(r, "Event");
        }
    }
};

// Python's threading.Barrier(parties, timeout=None) (an action cannot cross to the server).
struct barrier_object final : server_object {
    struct round {
        bool released = false, broken = false;
    };
    std::mutex m;
    std::condition_variable cv;
    std::int64_t parties = 1;
    std::int64_t default_timeout_ns = -1;
    std::int64_t count = 0;
    bool broken = false;
    std::shared_ptr<round> current = std::make_shared<round>();

    // Ends the current round as broken: its waiters throw BrokenBarrierError.
    void break_round() {
        current->broken = true;
        current = std::make_shared<round>();
        count = 0;
        cv.notify_all();
    }

    std::vector<blob> call(client_context& ctx, request& r) override {
        std::unique_lock lock(m);
        switch (r.code) {
            case op::barrier_wait: {
                if (broken) throw BrokenBarrierError();
                auto mine = current;
                std::int64_t index = count++;
                if (count == parties) {
                    mine->released = true;
                    current = std::make_shared<round>();
                    count = 0;
                    cv.notify_all();
                    return {encode(index)};
                }
                std::int64_t timeout = r.timeout_ns >= 0 ? r.timeout_ns : default_timeout_ns;
                bool done = false;
                try {
                    done = wait_for(lock, cv, ctx, timeout,
                                    [&] { return mine->released || mine->broken; });
                } catch (const client_gone&) {
                    // A party that left breaks the barrier for the others, as a timeout does.
                    if (!mine->released && !mine->broken) {
                        broken = true;
                        break_round();
                    }
                    throw;
                }
                if (!done) {  // Python: a timeout breaks the barrier
                    broken = true;
                    break_round();
                    throw BrokenBarrierError();
                }
                if (!mine->released) throw BrokenBarrierError();
                return {encode(index)};
            }
            case op::barrier_abort:
                broken = true;
                break_round();
                return {};
            case op::barrier_reset:
                if (count > 0) break_round();
                broken = false;
                return {};
            case op::barrier_parties: return {encode(parties)};
            case op::barrier_n_waiting: return {encode<std::int64_t>(broken ? 0 : count)};
            case op::barrier_broken: return {encode(broken)};
            default: unsupported(r, "Barrier");
        }
    }
};

// An object of a registered user type; each method call runs under the object's mutex.
struct user_object final : server_object {
    std::mutex m;
    std::shared_ptr<void> object;
    std::shared_ptr<const registered_type> type;

    std::vector<blob> call(client_context&, request& r) override {
        if (r.code != op::callmethod) unsupported(r, type->type_id.c_str());
        const blob& name = arg(r, 0);
        auto it = type->methods.find(name);
        if (it == type->methods.end())
            throw ValueError("method '" + name + "' is not exposed by '" + type->type_id + "'");
        std::lock_guard g(m);
        return {it->second(object.get(), arg(r, 1))};
    }
};

inline std::shared_ptr<server_object> make_builtin(request& r) {
    auto k = decode<kind>(arg(r, 0));
    auto int_arg = [&](std::size_t i) { return decode<std::int64_t>(arg(r, i)); };
    auto rest = [&] { return std::vector<blob>(r.args.begin() + 1, r.args.end()); };
    switch (k) {
        case kind::dict: {
            auto o = std::make_shared<dict_object>();
            if (r.args.size() % 2 == 0) throw ValueError("malformed request: odd dict items");
            for (std::size_t i = 1; i + 1 < r.args.size(); i += 2)
                o->d.assign(r.args[i], r.args[i + 1]);
            return o;
        }
        case kind::list:
        case kind::array:
        case kind::value: {
            auto o = std::make_shared<list_object>();
            o->items = rest();
            o->fixed = k != kind::list;
            o->name = k == kind::list ? "list" : k == kind::array ? "Array" : "Value";
            if (k == kind::value && o->items.size() != 1)
                throw ValueError("malformed request: a Value holds one value");
            return o;
        }
        case kind::namespace_: return std::make_shared<namespace_object>();
        case kind::set: {
            auto o = std::make_shared<set_object>();
            o->s.insert(r.args.begin() + 1, r.args.end());
            return o;
        }
        case kind::queue: {
            auto o = std::make_shared<queue_object>();
            o->maxsize = int_arg(1);
            return o;
        }
        case kind::lock:
        case kind::rlock:
        case kind::semaphore:
        case kind::bounded_semaphore: {
            auto o = std::make_shared<acquirer_object>();
            o->k = k;
            if (k == kind::semaphore || k == kind::bounded_semaphore) {
                o->value = int_arg(1);
                if (o->value < 0) throw ValueError("semaphore initial value must be >= 0");
                if (k == kind::bounded_semaphore) o->bound = o->value;
            }
            return o;
        }
        case kind::condition: return std::make_shared<condition_object>();
        case kind::event: return std::make_shared<event_object>();
        case kind::barrier: {
            auto o = std::make_shared<barrier_object>();
            o->parties = int_arg(1);
            o->default_timeout_ns = int_arg(2);
            if (o->parties < 1) throw ValueError("parties must be >= 1");
            return o;
        }
    }
    throw ValueError("malformed request: unknown object kind " + std::to_string(int(k)));
}

// ---- the server -----------------------------------------------------------------------------

// Python: multiprocessing.managers.Server: the object table and the request loop.
//
// Reference counting (Python's Server.incref/decref, with the holder being a connection): an
// object lives while a connection holds it, a ticket is outstanding for it, or another object
// holds it. Each client process keeps one connection per manager for its references, so that
// its death, even by SIGKILL, closes that connection and drops them. References per connection
// are a set (incref twice, decref once: gone), so a client never has to count what it holds;
// a ticket is a reference in flight in a message, taken over by whoever decodes it.
class server {
public:
    server(std::string authkey, type_table types,
           std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(10))
        : authkey_(std::move(authkey)),
          types_(std::move(types)),
          handshake_timeout_(handshake_timeout) {}

    // Python: Server.serve_forever(): accepts clients until a shutdown request, then ends the
    // process (Python calls sys.exit(0) there too). Each client gets its own thread.
    [[noreturn]] void serve_forever(posix::unique_fd listener) {
        for (;;) {
            posix::socket_address peer;
            posix::unique_fd fd;
            try {
                fd = posix::accept_on(listener.get(), peer);
            } catch (const std::system_error& e) {
                if (e.code().value() == EINVAL || e.code().value() == EBADF) end_process();
                std::this_thread::sleep_for(std::chrono::milliseconds(10));  // EMFILE and such
                continue;
            }
            std::uint64_t id = next_connection_.fetch_add(1, std::memory_order_relaxed);
            try {
                std::thread([this, fd = std::move(fd), id]() mutable {
                    serve_client(std::move(fd), id);
                }).detach();
            } catch (const std::system_error&) {
                // No thread to spare: this client is dropped, the others are served.
            }
        }
    }

    // One request in, one reply out (none for a one-way request). Never throws, but
    // client_gone (and bad_alloc).
    std::vector<std::byte> handle(client_context& ctx, std::span<const std::byte> in) {
        reply rp;
        bool answer = true;
        try {
            request rq = deserialize<request>(in);
            answer = !one_way(rq.code);
            rp.values = dispatch(ctx, rq);
        } catch (const client_gone&) {
            throw;
        } catch (...) {
            rp.ok = false;
            auto packed = pack_exception(std::current_exception());
            rp.values.assign(1, blob(reinterpret_cast<const char*>(packed.data()), packed.size()));
        }
        if (!answer) return {};
        return serialize(rp);
    }

    // What a connection that goes away held: dropped.
    void release_connection(std::uint64_t conn) {
        std::vector<std::shared_ptr<server_object>> freed;
        {
            std::lock_guard g(m_);
            auto it = held_by_.find(conn);
            if (it == held_by_.end()) return;
            auto ids = std::move(it->second);
            held_by_.erase(it);
            for (auto id : ids) release(id, freed);
        }
    }

    [[noreturn]] static void end_process() {
        heap::release_all();  // what the server inherited when it was forked
        std::fflush(nullptr);
        ::_exit(0);
    }

private:
    struct entry {
        std::shared_ptr<server_object> object;
        std::uint64_t refs = 0;
        std::unordered_set<std::uint64_t> holds;  // objects this one holds (proxies stored in it)
        const void* shared_key = nullptr;  // a registered factory's shared object
    };

    void serve_client(posix::unique_fd fd, std::uint64_t id) {
        client_context ctx{id, -1, false};
        try {
            Connection c = connection::detail::adopt_socket(std::move(fd));
            connection::detail::server_handshake(c, authkey_,
                                                 detail::deadline_after(handshake_timeout_));
            if (is_local(c)) c = server_upgrade(c);
            ctx.fd = c.fileno();
            for (;;) {
                auto in = c.recv_bytes();
                auto out = handle(ctx, in);
                if (!out.empty()) c.send_bytes(out);
                if (ctx.shutdown) end_process();
            }
        } catch (...) {
            // The client hung up, failed the handshake or broke the framing: drop it.
        }
        if (ctx.holds_refs) release_connection(id);
    }

    std::vector<blob> dispatch(client_context& ctx, request& r) {
        if (r.id != 0) {
            auto v = find(r.id)->call(ctx, r);
            if (!r.holds.empty() && stores(r.code)) {
                std::lock_guard g(m_);
                hold(r.id, r.holds);
            }
            return v;
        }
        switch (r.code) {
            case op::dummy: return {};
            case op::shutdown: ctx.shutdown = true; return {};
            case op::create: return {encode(add(ctx, r, make_builtin(r), nullptr))};
            case op::create_registered: return {encode(create_registered(ctx, r))};
            case op::incref: return incref(ctx, r);
            case op::decref: decref(ctx, r); return {};
            case op::ticket: return {encode(ticket(decode<std::uint64_t>(arg(r, 0))))};
            case op::adopt: return adopt(ctx, r);
            case op::number_of_objects: {
                std::lock_guard g(m_);
                return {encode<std::uint64_t>(objects_.size())};
            }
            case op::track_segment: {
                std::lock_guard g(m_);
                segments_.push_back(arg(r, 0));
                return {};
            }
            case op::segment_names: {
                std::lock_guard g(m_);
                return segments_;
            }
            default: throw ValueError("malformed request: unknown server operation");
        }
    }

    // A new object (or a registered factory's shared one, made again): held by the connection
    // the request names, holding what it was made of; in one step, so that no decref between
    // can free it first.
    std::uint64_t add(client_context& ctx, const request& r, std::shared_ptr<server_object> o,
                      const void* shared_key) {
        const std::uint64_t holder = r.holder ? r.holder : ctx.id;
        std::lock_guard g(m_);
        auto h = held_by_.find(holder);
        if (h == held_by_.end()) {
            if (holder != ctx.id) throw ValueError("the connection holding references is gone");
            ctx.holds_refs = true;
            h = held_by_.emplace(holder, std::unordered_set<std::uint64_t>{}).first;
        }
        std::uint64_t id = next_id_;
        if (shared_key) {
            auto [pos, fresh] = shared_ids_.try_emplace(shared_key, next_id_);
            id = pos->second;
        }
        auto it = objects_.find(id);
        if (it == objects_.end()) {
            it = objects_.emplace(id, entry{std::move(o), 0, {}, shared_key}).first;
            ++next_id_;
        }
        if (h->second.insert(id).second) ++it->second.refs;
        hold(id, r.holds);
        return id;
    }

    [[noreturn]] static void gone(std::uint64_t id) {
        throw ValueError("the manager has no object with id " + std::to_string(id) +
                         " (every proxy of it was dropped, or it never existed)");
    }

    // Python: Server.incref(c, ident), for several objects: the connection holds each. The
    // reply: the connection's id (what a create names as the holder), then the ids it no longer
    // has (some may go between a parent's last look and its child's incref: not an error).
    std::vector<blob> incref(client_context& ctx, request& r) {
        ctx.holds_refs = true;
        std::vector<blob> out{encode(ctx.id)};
        std::lock_guard g(m_);
        auto& mine = held_by_[ctx.id];
        for (const auto& a : r.args) {
            auto id = decode<std::uint64_t>(a);
            auto it = objects_.find(id);
            if (it == objects_.end())
                out.push_back(a);
            else if (mine.insert(id).second)
                ++it->second.refs;
        }
        return out;
    }

    // Python: Server.decref(c, ident), for several objects.
    void decref(client_context& ctx, request& r) {
        std::vector<std::shared_ptr<server_object>> freed;  // destroyed after the lock
        std::lock_guard g(m_);
        auto it = held_by_.find(ctx.id);
        if (it == held_by_.end()) return;
        for (const auto& a : r.args) {
            auto id = decode<std::uint64_t>(a);
            if (it->second.erase(id)) release(id, freed);
        }
    }

    // A reference for a proxy about to travel in a message.
    std::uint64_t ticket(std::uint64_t id) {
        std::lock_guard g(m_);
        auto it = objects_.find(id);
        if (it == objects_.end()) gone(id);
        ++it->second.refs;
        tickets_.emplace(next_ticket_, id);
        return next_ticket_++;
    }

    // The decoder of such a message takes the ticket's reference over (a ticket already taken,
    // by an earlier decoding of the same bytes, is a plain incref).
    std::vector<blob> adopt(client_context& ctx, request& r) {
        ctx.holds_refs = true;
        auto t = decode<std::uint64_t>(arg(r, 0));
        auto id = decode<std::uint64_t>(arg(r, 1));
        std::vector<std::shared_ptr<server_object>> freed;
        std::lock_guard g(m_);
        auto it = objects_.find(id);
        if (it == objects_.end()) gone(id);
        if (held_by_[ctx.id].insert(id).second) ++it->second.refs;
        if (auto tk = tickets_.find(t); tk != tickets_.end() && tk->second == id) {
            tickets_.erase(tk);
            release(id, freed);
        }
        return {};
    }

    // Object `id` holds `held` (those that exist and it does not hold yet). Under m_.
    void hold(std::uint64_t id, const std::vector<std::uint64_t>& held) {
        auto it = objects_.find(id);
        if (it == objects_.end()) return;
        for (auto h : held) {
            auto target = objects_.find(h);
            if (h == id || target == objects_.end()) continue;
            if (it->second.holds.insert(h).second) ++target->second.refs;
        }
    }

    // One reference fewer; an object that had its last goes, and so do its holds. Under m_;
    // the objects are destroyed by the caller once m_ is released.
    void release(std::uint64_t id, std::vector<std::shared_ptr<server_object>>& freed) {
        std::vector<std::uint64_t> work{id};
        while (!work.empty()) {
            auto it = objects_.find(work.back());
            work.pop_back();
            if (it == objects_.end() || --it->second.refs > 0) continue;
            work.insert(work.end(), it->second.holds.begin(), it->second.holds.end());
            if (it->second.shared_key) shared_ids_.erase(it->second.shared_key);
            freed.push_back(std::move(it->second.object));
            objects_.erase(it);
        }
    }

    std::uint64_t create_registered(client_context& ctx, request& r) {
        const blob& type_id = arg(r, 0);
        auto it = types_.find(type_id);
        if (it == types_.end())
            throw ValueError("typeid '" + type_id + "' is not registered with the manager server");
        auto o = std::make_shared<user_object>();
        o->type = it->second;
        o->object = it->second->create(r.args.size() > 1 ? &r.args[1] : nullptr);
        if (!o->object) throw ValueError("the factory of '" + type_id + "' returned nothing");
        // A factory handing out one shared object: one id, hence one mutex, per object.
        const void* key = it->second->shared ? o->object.get() : nullptr;
        return add(ctx, r, std::move(o), key);
    }

    std::shared_ptr<server_object> find(std::uint64_t id) {
        std::lock_guard g(m_);
        auto it = objects_.find(id);
        if (it == objects_.end()) gone(id);
        return it->second.object;
    }

    std::string authkey_;
    type_table types_;
    std::chrono::nanoseconds handshake_timeout_;
    std::mutex m_;
    std::unordered_map<std::uint64_t, entry> objects_;
    std::unordered_map<std::uint64_t, std::unordered_set<std::uint64_t>> held_by_;  // connection
    std::unordered_map<std::uint64_t, std::uint64_t> tickets_;                      // -> object
    std::map<const void*, std::uint64_t> shared_ids_;
    std::vector<std::string> segments_;  // SharedMemoryManager's
    std::uint64_t next_id_ = 1;
    std::uint64_t next_ticket_ = 1;
    std::atomic<std::uint64_t> next_connection_{1};
};

}  // namespace multiprocessing::detail::mgr
