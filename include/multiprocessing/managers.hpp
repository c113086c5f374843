// Python: multiprocessing.managers (Manager, BaseManager, SyncManager and the proxies).
//
//     auto manager = mp::Manager();             // with mp.Manager() as manager:
//     auto d = manager.dict<int, int>();        //     d = manager.dict()
//     mp::Process p([](mp::DictProxy<int, int> d) { d[1] = 2; }, d);
//
// A manager is a server process that holds objects; proxies are cheap copyable handles to them
// (the server's address and the object's id) that work in any process: passed to a child, sent
// through a Queue or Pipe (they are mp::serializable), or made by connect() on another machine.
// Each operation is one request to the server and is atomic there, as in Python.
//
// Lifetime: Manager() starts the server as a daemonic child (a private address in Linux's
// abstract socket namespace, a random 32-byte authkey that children inherit, as Python's
// current_process().authkey); it ends with shutdown(), when the manager object goes (the RAII
// form of `with Manager() as m:`), or when the owner dies, even by SIGKILL (the parent-death
// signal ties it to the thread that started it). Calls through a proxy of a manager that is
// gone throw mp::ProcessError ("manager process is gone") at once, never hang.
//
// An object lives while a proxy of it lives in any process (Python's reference counting), and
// also when that process dies without a word (see reference counting below).
//
// Differences from Python, on purpose: proxies are typed (dict<K, V>(), list<T>(), Queue<T>());
// BaseManager::register_ (register is a C++ keyword) registers a C++ type with the methods that
// clients may call by member pointer: proxy.call(&Counter::increment, 1).
#pragma once

#include <algorithm>
#include <any>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <csignal>

#include "connection.hpp"
#include "detail/fd_table.hpp"
#include "detail/manager_server.hpp"
#include "detail/runtime.hpp"
#include "detail/timeout.hpp"
#include "errors.hpp"
#include "process.hpp"
#include "serialization.hpp"
#include "shared_memory.hpp"

namespace multiprocessing {

using connection::Address;

namespace detail::mgr {

// Python: current_process().authkey, the default key of every manager.
inline std::string process_authkey() { return current_process().authkey(); }

// Where a manager is and how to get in.
struct endpoint {
    Address address;
    std::string authkey;
    std::string key;             // address.to_string()
    std::string connection_key;  // address and key: a connection made with one key is no
                                 // connection for a handle holding another

    endpoint(Address a, std::string k)
        : address(std::move(a)),
          authkey(std::move(k)),
          key(address.to_string()),
          connection_key(key + '\0' + authkey) {}
};

// The managers this process knows (made, connected to, or inherited from a parent), so that a
// proxy that crossed a process boundary, which carries no key (as in Python), finds its key.
struct endpoint_table {
    std::mutex m;
    std::unordered_map<std::string, std::shared_ptr<const endpoint>> by_address;
};
inline endpoint_table& endpoints() {
    static endpoint_table t;
    return t;
}
inline void remember(const std::shared_ptr<const endpoint>& ep) {
    auto& t = endpoints();
    std::lock_guard g(t.m);
    t.by_address[ep->key] = ep;
}
inline std::shared_ptr<const endpoint> endpoint_for(const Address& a) {
    auto& t = endpoints();
    {
        std::lock_guard g(t.m);
        auto it = t.by_address.find(a.to_string());
        if (it != t.by_address.end()) return it->second;
    }
    return std::make_shared<const endpoint>(a, process_authkey());
}

// One connection per manager per thread (Python's BaseProxy keeps one per thread too), so that
// a call blocking at the server holds up no other thread, and an RLock is owned by a thread.
// A forked child must not talk over its parent's socket: the pid tells.
struct thread_connection {
    Connection conn;
    int pid = 0;
};
inline std::unordered_map<std::string, thread_connection>& thread_connections() {
    thread_local std::unordered_map<std::string, thread_connection> table;
    return table;
}

inline constexpr auto manager_handshake_timeout = std::chrono::seconds(30);

[[noreturn]] inline void manager_gone(const endpoint& ep, const std::string& why) {
    throw ProcessError("manager process is gone (" + ep.address.to_string() + "): " + why);
}

// A new connection to the manager, authenticated (and, to a local manager, moved to pipes).
inline Connection open_connection(const endpoint& ep,
                                  std::chrono::nanoseconds handshake = manager_handshake_timeout) {
    try {
        Connection c = connection::Client(
            connection::ClientOptions{.address = ep.address,
                                      .family = std::nullopt,
                                      .authkey = ep.authkey,
                                      .handshake_timeout = handshake});
        if (ep.address.family() == "AF_UNIX") c = client_upgrade(c, deadline_after(handshake));
        return c;
    } catch (const std::system_error& e) {
        auto err = e.code().value();
        if (err == ECONNREFUSED || err == ENOENT || err == ECONNRESET || err == EPIPE)
            manager_gone(ep, e.what());
        throw;
    } catch (const AuthenticationError& e) {
        // A wrong key is the caller's to know; a server dying mid-handshake is a gone manager.
        std::string_view what = e.what();
        if (what == "digest sent was rejected" || what == "digest received was wrong") throw;
        manager_gone(ep, e.what());
    } catch (const ProcessError& e) {
        manager_gone(ep, e.what());  // no pipes handed over: it died just then
    }
}

inline Connection& connection_for(const endpoint& ep) {
    auto& tc = thread_connections()[ep.connection_key];
    if (tc.pid == self_pid() && !tc.conn.closed()) return tc.conn;
    tc.conn = Connection();  // a parent's connection: let this copy go, say nothing on it
    tc.conn = open_connection(ep);
    tc.pid = self_pid();
    return tc.conn;
}

inline void drop_connection(const endpoint& ep) {
    thread_connections().erase(ep.connection_key);
}

// Proxies inside the arguments of a request to their own manager (a list of dict proxies): the
// object the request is for holds them at the server (request::holds), so no reference of
// ours need travel with them. Set while a proxy encodes an argument for `ep`.
struct nesting {
    const endpoint* ep = nullptr;
    std::string key;  // whose ids these are
    std::vector<std::uint64_t> ids;
};
inline nesting& nested() {
    thread_local nesting n;
    return n;
}
// Runs `f` (which encodes arguments of a request to `ep`) gathering the ids of ep's proxies in
// it; the outermost call starts afresh, so that ids left by an encoding that threw go nowhere.
template <class F>
auto with_nesting(const endpoint& ep, F&& f) {
    auto& n = nested();
    if (!n.ep) {
        n.ids.clear();
        n.key = ep.key;
    }
    struct restore {
        nesting& n;
        const endpoint* saved;
        ~restore() { n.ep = saved; }
    } r{n, std::exchange(n.ep, &ep)};
    return f();
}
template <class T>
blob encode_for(const endpoint& ep, const T& v) {
    return with_nesting(ep, [&] { return encode(v); });
}
// The nested ids gathered for `ep` since the last request (none are left for the next one).
inline std::vector<std::uint64_t> take_nested(const endpoint& ep) {
    auto& n = nested();
    if (n.ids.empty()) return {};
    auto ids = std::move(n.ids);
    n.ids.clear();
    if (n.key != ep.key) return {};
    return ids;
}

// One request, one reply (none for a one-way request): the reply's values, or the server's
// exception rethrown here.
// `out` is the caller's buffer (a thread's, reused; a reference's own, as one may go at exit,
// after the thread's are destroyed); `reply_by` bounds the wait for the reply.
inline std::vector<blob> exchange(Connection& c, const endpoint& ep, const request& rq,
                                  std::vector<std::byte>& out, deadline reply_by = forever) {
    if (out.capacity() > (std::size_t(1) << 20)) std::vector<std::byte>().swap(out);
    out.clear();
    serialize_into(out, rq);
    std::vector<std::byte> in;
    try {
        c.send_bytes(out);
        if (one_way(rq.code)) return {};
        if (!reply_by.is_forever() && !c.poll(std::chrono::nanoseconds(reply_by.remaining_ns()))) {
            c.close();  // a reply may still come: this connection is out of step now
            manager_gone(ep, "no reply in time");
        }
        in = c.recv_bytes();
    } catch (const EOFError& e) {
        c.close();
        manager_gone(ep, e.what());
    } catch (const std::system_error& e) {
        c.close();
        manager_gone(ep, e.what());
    }
    auto rp = deserialize<reply>(in);
    if (!rp.ok) {
        if (rp.values.empty()) throw ProcessError("malformed reply from the manager");
        rethrow_packed_exception(
            std::as_bytes(std::span(rp.values[0].data(), rp.values[0].size())));
    }
    return std::move(rp.values);
}

// A request over this thread's connection (`holder`: see request::holder).
inline std::vector<blob> call(const endpoint& ep, std::uint64_t id, op code,
                              std::vector<blob> args = {}, std::int64_t timeout_ns = -1,
                              std::uint64_t holder = 0) {
    request rq{id, code, timeout_ns, std::move(args), take_nested(ep), holder};
    Connection& c = connection_for(ep);
    thread_local std::vector<std::byte> out;
    try {
        return exchange(c, ep, rq, out);
    } catch (const ProcessError&) {
        if (c.closed()) drop_connection(ep);
        throw;
    }
}

// A timeout argument as the relative nanoseconds a request carries (-1: forever).
template <timeout_like Timeout>
std::int64_t timeout_ns(Timeout t) {
    return remaining_ns(deadline_after(t));
}

// Member function pointers, taken apart: the class, the result, the arguments as they travel.
template <class M>
struct method_traits;
#define MP_DETAIL_METHOD_TRAITS(QUALIFIERS)           \
    template <class C, class R, class... A>           \
    struct method_traits<R (C::*)(A...) QUALIFIERS> { \
        using object = C;                             \
        using result = R;                             \
        using params = std::tuple<A...>;              \
        using args = std::tuple<std::decay_t<A>...>;  \
    };
MP_DETAIL_METHOD_TRAITS()
MP_DETAIL_METHOD_TRAITS(const)
MP_DETAIL_METHOD_TRAITS(noexcept)
MP_DETAIL_METHOD_TRAITS(const noexcept)
#undef MP_DETAIL_METHOD_TRAITS

// The client's half of a registration: T's typeid and its methods by member pointer, per process.
template <class T>
struct type_methods {
    inline static std::mutex m;
    inline static std::string type_id;
    inline static std::vector<std::pair<std::string, std::any>> methods;
};

template <class T, class M>
std::string method_name(M pointer) {
    std::lock_guard g(type_methods<T>::m);
    for (const auto& [name, stored] : type_methods<T>::methods)
        if (const M* p = std::any_cast<M>(&stored); p && *p == pointer) return name;
    throw ValueError("this method of " + std::string(type_name<T>()) +
                     " was not registered with BaseManager::register_");
}

// The registered types of this process (Python: BaseManager._registry), served by managers
// started or served from here.
struct type_registry {
    std::mutex m;
    type_table types;
};
inline type_registry& registry() {
    static type_registry r;
    return r;
}
inline type_table registry_snapshot() {
    auto& r = registry();
    std::lock_guard g(r.m);
    return r.types;
}

// ---- reference counting: the client's half (the server's is in detail/manager_server.hpp) ----
//
// A process holds a manager's object while any proxy of it lives there. All the proxies of one
// object in a process share one `ref`: the first makes the server count this process (incref),
// the last one's going tells it (a one-way decref). References travel over one connection per
// manager per process that nothing else uses: when the process dies, however it dies, that
// connection closes and the server drops what it held. A proxy that crosses into another
// process takes a reference along, so that its object outlives the sender's copy:
// - to a forked child: before the fork, a connection holding everything this process holds is
//   made for the child (Python increfs after the fork, in the child, by which time the parent
//   may have dropped the object);
// - to a spawned or forkserver child: its start record carries such a connection, holding the
//   objects of the proxies in it, among the child's descriptors;
// - in a message (a Queue, a Pipe, a Pool's task or result): a ticket, a reference the server
//   keeps until the receiver takes it over. So a proxy encoded into a message that is never
//   decoded keeps its object until the manager shuts down.

struct ref_state;
struct ref {
    std::shared_ptr<ref_state> st;
    std::uint64_t id = 0;
    ref(std::shared_ptr<ref_state> s, std::uint64_t i) : st(std::move(s)), id(i) {}
    ref(const ref&) = delete;
    ref& operator=(const ref&) = delete;
    ~ref();
};
using ref_ptr = std::shared_ptr<const ref>;

inline request ref_request(op code, std::vector<blob> args) {
    return request{0, code, -1, std::move(args), {}, 0};
}

// How long a fork waits for the manager to take the child's references (a hung manager must
// not hang every fork of the program).
inline constexpr auto fork_reference_timeout = std::chrono::seconds(5);

// An incref's reply: the connection's id at the server, then the ids it no longer has.
struct incref_reply {
    std::uint64_t connection = 0;
    std::vector<std::uint64_t> missing;
};
inline incref_reply decode_incref(const std::vector<blob>& v) {
    if (v.empty()) throw ProcessError("malformed reply from the manager");
    incref_reply r{decode<std::uint64_t>(v[0]), {}};
    for (std::size_t i = 1; i < v.size(); ++i) r.missing.push_back(decode<std::uint64_t>(v[i]));
    return r;
}
[[noreturn]] inline void object_gone(std::uint64_t id) {
    throw ValueError("the manager has no object with id " + std::to_string(id) +
                     " (every proxy of it was dropped, or it never existed)");
}

struct ref_state {
    explicit ref_state(std::shared_ptr<const endpoint> e) : ep(std::move(e)) {}
    const std::shared_ptr<const endpoint> ep;
    std::mutex m;
    Connection conn;                // this process's, once made
    int pid = 0;                    // whose conn it is
    std::uint64_t conn_id = 0;      // its id at the server
    std::vector<std::byte> buffer;  // its requests' (a ref may go at exit, after thread_locals)
    std::unordered_map<std::uint64_t, std::weak_ptr<const ref>> held;
    Connection for_child;  // between the two halves of a fork, and its id
    std::uint64_t for_child_id = 0;

    std::vector<blob> held_ids() const {
        std::vector<blob> ids;
        for (const auto& [id, w] : held)
            if (!w.expired()) ids.push_back(encode(id));
        return ids;
    }

    // The connection, made on first use (and told what we hold, in a child that did not get
    // one from its parent). Under m.
    Connection& connection() {
        if (pid == self_pid() && !conn.closed()) return conn;
        conn = Connection();  // a parent's: our copy goes quietly
        conn = open_connection(*ep);
        pid = self_pid();
        // Some may be gone already (the parent dropped them before we asked): not ours now.
        conn_id = decode_incref(exchange(conn, *ep, ref_request(op::incref, held_ids()), buffer))
                      .connection;
        return conn;
    }

    // The `ref` of `id`, made after `take` (which tells the server) unless one lives. Under m.
    template <class Take>
    ref_ptr get(const std::shared_ptr<ref_state>& self, std::uint64_t id, Take&& take) {
        if (auto it = held.find(id); it != held.end())
            if (auto r = it->second.lock()) return r;
        take();
        auto r = std::make_shared<const ref>(self, id);
        held[id] = r;
        return r;
    }

    // Takes a reference to `id` over the connection (under m); throws when the object is gone.
    void incref(std::uint64_t id) {
        auto r = decode_incref(exchange(connection(), *ep, ref_request(op::incref, {encode(id)}), buffer));
        if (!r.missing.empty()) object_gone(id);
    }
};

struct ref_table {
    std::mutex m;
    std::unordered_map<std::string, std::shared_ptr<ref_state>> by_key;  // connection_key
    std::vector<ref_state*> forking;  // locked across a fork, in address order (one lock order)
};
inline ref_table& refs() {
    static ref_table t;
    return t;
}

// Fork: the child gets a connection of its own that holds what this process holds.
inline void refs_before_fork() noexcept {
    auto& t = refs();
    t.m.lock();
    try {
        t.forking.clear();
        for (auto& [key, st] : t.by_key) t.forking.push_back(st.get());
        std::sort(t.forking.begin(), t.forking.end());
    } catch (...) {
        t.forking.clear();  // no memory: no references travel; the child asks on its own
    }
    for (auto* st : t.forking) {
        st->m.lock();
        if (st->pid != self_pid() || st->conn.closed()) continue;
        try {
            auto ids = st->held_ids();
            if (ids.empty()) continue;
            Connection c = open_connection(*st->ep, fork_reference_timeout);
            auto r = decode_incref(exchange(c, *st->ep, ref_request(op::incref, std::move(ids)),
                                            st->buffer, deadline_after(fork_reference_timeout)));
            st->for_child = std::move(c);
            st->for_child_id = r.connection;
        } catch (...) {
            // The manager is gone or hung: the child connects on its own if it can.
        }
    }
}
inline void refs_after_fork_in_parent() noexcept {
    auto& t = refs();
    for (auto* st : t.forking) {
        st->for_child = Connection();
        st->m.unlock();
    }
    t.m.unlock();
}
inline void refs_after_fork_in_child() noexcept {
    auto& t = refs();
    for (auto* st : t.forking) {
        st->conn = std::move(st->for_child);  // the parent's copy goes quietly
        st->for_child = Connection();
        st->conn_id = st->for_child_id;
        st->pid = st->conn.closed() ? 0 : self_pid();
        st->m.unlock();
    }
    t.m.unlock();
}

inline std::shared_ptr<ref_state> ref_state_for(const std::shared_ptr<const endpoint>& ep) {
    static const bool registered =
        (at_fork(&refs_before_fork, &refs_after_fork_in_parent, &refs_after_fork_in_child), true);
    (void)registered;
    auto& t = refs();
    std::lock_guard g(t.m);
    auto& st = t.by_key[ep->connection_key];
    if (!st) st = std::make_shared<ref_state>(ep);
    return st;
}

// A manager's server process, forked from its owner, holds none of its owner's references
// (else it would keep the objects of every other manager alive for its whole life).
inline void forget_inherited_references() {
    auto& t = refs();
    std::lock_guard g(t.m);
    for (auto& [key, st] : t.by_key) {
        std::lock_guard h(st->m);
        st->conn = Connection();
        st->pid = 0;
        st->held.clear();
    }
}

inline ref::~ref() {
    try {
        std::lock_guard g(st->m);
        auto it = st->held.find(id);
        // A proxy of it made since our last copy went holds it now.
        if (it == st->held.end() || !it->second.expired()) return;
        st->held.erase(it);
        if (st->pid != self_pid() || st->conn.closed()) return;
        exchange(st->conn, *st->ep, ref_request(op::decref, {encode(id)}), st->buffer);
    } catch (...) {
        // The manager is gone: nothing to tell it.
    }
}

// A reference asked for over this process's connection: an incref, or a ticket taken over.
inline ref_ptr take_ref(const std::shared_ptr<const endpoint>& ep, std::uint64_t id,
                        std::optional<std::uint64_t> ticket = std::nullopt) {
    auto st = ref_state_for(ep);
    std::lock_guard g(st->m);
    if (ticket) {
        // Taken over even when we hold the object already: else the ticket would keep it.
        // (Before any ref is made: one destroyed here, under st->m, would deadlock.)
        exchange(st->connection(), *ep, ref_request(op::adopt, {encode(*ticket), encode(id)}),
                 st->buffer);
        return st->get(st, id, [] {});
    }
    return st->get(st, id, [&] { st->incref(id); });
}

// Python: BaseManager._create: a new object, held by this process from the start. The request
// goes over the calling thread's connection (a factory may take its time: the references of
// the process are not held up meanwhile) and names the connection that holds the result.
inline ref_ptr create(const std::shared_ptr<const endpoint>& ep, op code, std::vector<blob> args) {
    auto st = ref_state_for(ep);
    std::uint64_t holder = 0;
    {
        std::lock_guard g(st->m);
        st->connection();
        holder = st->conn_id;
    }
    auto v = call(*ep, 0, code, std::move(args), -1, holder);
    if (v.size() != 1) throw ProcessError("malformed reply from the manager");
    std::lock_guard g(st->m);
    return st->get(st, decode<std::uint64_t>(v[0]), [] {});
}

// A reference in flight: the server keeps it until the receiver of the message takes it over.
inline std::uint64_t make_ticket(const ref& r) {
    std::lock_guard g(r.st->m);
    auto v = exchange(r.st->connection(), *r.st->ep, ref_request(op::ticket, {encode(r.id)}),
                      r.st->buffer);
    if (v.size() != 1) throw ProcessError("malformed reply from the manager");
    return decode<std::uint64_t>(v[0]);
}

// A spawned or forkserver child's connection, made to hold `r`'s object too, and its id: one per
// manager per start record (kept in fd_table::extras, so that ours closes once the child has its
// copy).
struct child_references {
    Connection conn;
    std::uint64_t id = 0;
};
inline const child_references& child_connection(const ref& r) {
    auto& slot = fd_table::current()->extras["manager references " + r.st->ep->connection_key];
    if (!slot) slot = std::make_shared<child_references>(child_references{open_connection(*r.st->ep), 0});
    auto& c = *std::static_pointer_cast<child_references>(slot);
    std::vector<std::byte> out;
    auto reply = decode_incref(exchange(c.conn, *r.st->ep, ref_request(op::incref, {encode(r.id)}), out));
    if (!reply.missing.empty()) object_gone(r.id);
    c.id = reply.connection;
    return c;
}

// In that child: the connection becomes this process's, already holding `id`.
inline ref_ptr adopt_child_connection(const std::shared_ptr<const endpoint>& ep, std::uint64_t id,
                                      Connection c, std::uint64_t conn_id) {
    auto st = ref_state_for(ep);
    std::lock_guard g(st->m);
    if (st->pid != self_pid() || st->conn.closed()) {
        st->conn = std::move(c);
        st->conn_id = conn_id;
        st->pid = self_pid();
        return st->get(st, id, [] {});
    }
    return st->get(st, id, [&] { st->incref(id); });
}

}  // namespace detail::mgr

// What BaseManager::register_ takes for each method a proxy may call: its name on the wire
// (the same in every process) and the member function.
template <class M>
requires std::is_member_function_pointer_v<M>
struct method_spec {
    std::string name;
    M pointer;
};
// Python: the `exposed` names of BaseManager.register; mp::method("increment", &Counter::increment)
template <class M>
requires std::is_member_function_pointer_v<M> method_spec<M> method(std::string name, M pointer) {
    return {std::move(name), pointer};
}

class BaseManager;
template <class T>
class ArrayProxy;

// ---- proxies ----------------------------------------------------------------------------------

// Python: multiprocessing.managers.BaseProxy: which manager, which object. Copies refer to the
// same object, which lives at the server while a proxy of it lives anywhere (see reference
// counting above). Serializable, so a proxy can be sent to another process like any value.
class BaseProxy {
public:
    // An unbound proxy (Python has none); calls throw mp::ValueError.
    BaseProxy() = default;

    // Python: proxy._token.address and proxy._token.id
    const Address& address() const { return endpoint().address; }
    std::uint64_t id() const noexcept { return ref_ ? ref_->id : 0; }

    // The authkey travels only to a child being started by spawn or forkserver (Python's
    // thread_is_spawning()); in a message, the receiver uses the key it knows for the address.
    // A reference travels along (see reference counting above): how, after the id.
    template <class Archive>
    void serialize(Archive& ar) {
        enum : std::uint8_t { by_incref, by_ticket, by_connection };
        if constexpr (Archive::is_loading) {
            Address a;
            std::uint64_t id = 0;
            std::optional<std::string> key;
            std::uint8_t how = by_incref;
            ar(a, id, key, how);
            if (a.empty()) {
                ref_ = nullptr;
                return;
            }
            std::shared_ptr<const detail::mgr::endpoint> ep;
            if (key) {
                ep = std::make_shared<const detail::mgr::endpoint>(a, std::move(*key));
                detail::mgr::remember(ep);
            } else {
                ep = detail::mgr::endpoint_for(a);
            }
            if (how == by_ticket) {
                std::uint64_t ticket = 0;
                ar(ticket);
                ref_ = detail::mgr::take_ref(ep, id, ticket);
            } else if (how == by_connection) {
                Connection c;
                std::uint64_t conn_id = 0;
                ar(c, conn_id);
                ref_ = detail::mgr::adopt_child_connection(ep, id, std::move(c), conn_id);
            } else if (how == by_incref) {
                ref_ = detail::mgr::take_ref(ep, id);
            } else {
                throw SerializationError("malformed manager proxy");
            }
        } else {
            if (!ref_) {
                ar(Address(), std::uint64_t(0), std::optional<std::string>(), by_incref);
                return;
            }
            const auto& ep = *ref_->st->ep;
            auto& n = detail::mgr::nested();
            if (n.ep && n.ep->key == ep.key) {
                // An argument of a request to our own manager: the object it goes to holds it.
                n.ids.push_back(ref_->id);
                ar(ep.address, ref_->id, std::optional<std::string>(), by_incref);
            } else if (n.ep) {
                // The server holds what it stores by id: it cannot hold another manager's object.
                throw ValueError("a proxy of the manager at " + ep.address.to_string() +
                                 " cannot be stored in, or compared by, another manager's objects");
            } else if (detail::fd_table::current()) {
                const auto& c = detail::mgr::child_connection(*ref_);
                ar(ep.address, ref_->id, std::optional<std::string>(ep.authkey), by_connection,
                   c.conn, c.id);
            } else {
                ar(ep.address, ref_->id, std::optional<std::string>(), by_ticket,
                   detail::mgr::make_ticket(*ref_));
            }
        }
    }

    friend bool operator==(const BaseProxy& a, const BaseProxy& b) noexcept {
        if (a.ref_ == b.ref_) return true;
        return a.ref_ && b.ref_ && a.ref_->id == b.ref_->id &&
               a.ref_->st->ep->key == b.ref_->st->ep->key;
    }

protected:
    friend class BaseManager;
    explicit BaseProxy(detail::mgr::ref_ptr r) : ref_(std::move(r)) {}

    const detail::mgr::endpoint& endpoint() const {
        if (!ref_) throw ValueError("the proxy is not bound to a manager object");
        return *ref_->st->ep;
    }

    // An argument of a request, encoded (proxies in it are held by the object, see nesting).
    template <class T>
    detail::mgr::blob pack(const T& v) const {
        return detail::mgr::encode_for(endpoint(), v);
    }

    // Python: BaseProxy._callmethod(methodname, args)
    std::vector<detail::mgr::blob> call(detail::mgr::op code,
                                        std::vector<detail::mgr::blob> args = {},
                                        std::int64_t timeout_ns = -1) const {
        return detail::mgr::call(endpoint(), id(), code, std::move(args), timeout_ns);
    }
    // The one value a call returns.
    template <class R>
    R call_for(detail::mgr::op code, std::vector<detail::mgr::blob> args = {},
               std::int64_t timeout_ns = -1) const {
        auto v = call(code, std::move(args), timeout_ns);
        if (v.size() != 1) throw ProcessError("malformed reply from the manager");
        return detail::mgr::decode<R>(v[0]);
    }
    template <class T>
    static std::vector<T> decode_all(const std::vector<detail::mgr::blob>& v) {
        std::vector<T> out;
        out.reserve(v.size());
        for (const auto& b : v) out.push_back(detail::mgr::decode<T>(b));
        return out;
    }

    detail::mgr::ref_ptr ref_;
};

// Python: multiprocessing.managers.DictProxy (manager.dict()): a dict of K to V at the server.
// Keys compare by their encoding (see detail/manager_server.hpp); items keep insertion order.
template <class K, class V>
class DictProxy : public BaseProxy {
public:
    using key_type = K;
    using mapped_type = V;

    // What d[k] returns: reading it gets the value (std::out_of_range, Python's KeyError, when
    // missing); assigning sets it. Each is one atomic request; d[k] += 1 is not atomic, as in
    // Python.
    class reference {
    public:
        operator V() const { return d_.at(key_); }
        const reference& operator=(const V& v) const {
            d_.set(key_, v);
            return *this;
        }
        const reference& operator=(const reference& r) const { return *this = V(r); }

    private:
        friend class DictProxy;
        reference(const DictProxy& d, const K& key) : d_(d), key_(key) {}
        DictProxy d_;
        K key_;
    };

    DictProxy() = default;

    // Python: d[k] (read or assign)
    reference operator[](const K& key) const { return reference(*this, key); }
    // Python: d[k]; std::out_of_range (KeyError) when missing.
    V at(const K& key) const {
        auto v = get(key);
        if (!v) throw std::out_of_range("KeyError: key not found in the manager's dict");
        return std::move(*v);
    }
    // Python: d.get(k) (nullopt for None) and d.get(k, default)
    std::optional<V> get(const K& key) const {
        auto v = call(op::dict_get, {enc(key)});
        if (v.empty()) return std::nullopt;
        return detail::mgr::decode<V>(v[0]);
    }
    V get(const K& key, const V& default_value) const { return get(key).value_or(default_value); }
    // Python: d[k] = v
    void set(const K& key, const V& value) const { call(op::dict_set, {enc(key), enc(value)}); }
    // Python: k in d
    bool contains(const K& key) const { return call_for<bool>(op::dict_contains, {enc(key)}); }
    // Python: del d[k], without the KeyError: whether the key was there.
    bool erase(const K& key) const { return !call(op::dict_pop, {enc(key)}).empty(); }
    // Python: d.pop(k) (std::out_of_range when missing) and d.pop(k, default)
    V pop(const K& key) const {
        auto v = call(op::dict_pop, {enc(key)});
        if (v.empty()) throw std::out_of_range("KeyError: key not found in the manager's dict");
        return detail::mgr::decode<V>(v[0]);
    }
    V pop(const K& key, const V& default_value) const {
        auto v = call(op::dict_pop, {enc(key)});
        return v.empty() ? default_value : detail::mgr::decode<V>(v[0]);
    }
    // Python: d.setdefault(k, default): the value now stored under k.
    V setdefault(const K& key, const V& default_value) const {
        return call_for<V>(op::dict_setdefault, {enc(key), enc(default_value)});
    }
    // Python: d.popitem(): the last inserted item; std::out_of_range when empty.
    std::pair<K, V> popitem() const {
        auto v = call(op::dict_popitem);
        return {detail::mgr::decode<K>(v.at(0)), detail::mgr::decode<V>(v.at(1))};
    }
    // Python: len(d)
    std::size_t size() const { return std::size_t(call_for<std::uint64_t>(op::len)); }
    bool empty() const { return size() == 0; }
    // Python: d.keys(), d.values(), d.items() (copies, in insertion order)
    std::vector<K> keys() const { return decode_all<K>(call(op::dict_keys)); }
    std::vector<V> values() const { return decode_all<V>(call(op::dict_values)); }
    std::vector<std::pair<K, V>> items() const {
        auto v = call(op::dict_items);
        std::vector<std::pair<K, V>> out;
        out.reserve(v.size() / 2);
        for (std::size_t i = 0; i + 1 < v.size(); i += 2)
            out.emplace_back(detail::mgr::decode<K>(v[i]), detail::mgr::decode<V>(v[i + 1]));
        return out;
    }
    // Python: d.update(other): any range of (key, value) pairs, in one atomic request.
    template <std::ranges::input_range R>
    void update(const R& pairs) const {
        std::vector<detail::mgr::blob> args;
        for (const auto& [k, v] : pairs) {
            args.push_back(enc(static_cast<const K&>(k)));
            args.push_back(enc(static_cast<const V&>(v)));
        }
        call(op::dict_update, std::move(args));
    }
    void update(std::initializer_list<std::pair<K, V>> pairs) const {
        update(std::vector<std::pair<K, V>>(pairs));
    }
    // Python: d |= other (3.9; on the proxy 3.13): update.
    template <std::ranges::input_range R>
    const DictProxy& operator|=(const R& pairs) const {
        update(pairs);
        return *this;
    }
    // Python: d.clear()
    void clear() const { call(op::clear); }
    // Python: d.copy(): a plain dict; here any map built from the items (std::map<K, V>, in key
    // order, unless told; items() keeps insertion order).
    template <class Map = std::map<K, V>>
    Map copy() const {
        auto all = items();
        return Map(std::make_move_iterator(all.begin()), std::make_move_iterator(all.end()));
    }

private:
    friend class SyncManager;
    using op = detail::mgr::op;
    DictProxy(detail::mgr::ref_ptr r) : BaseProxy(std::move(r)) {}
    template <class T>
    detail::mgr::blob enc(const T& v) const {
        return pack(v);
    }
};

// Python: multiprocessing.managers.ListProxy (manager.list()). Indexes may be negative, counted
// from the end, as in Python; out of range throws std::out_of_range (IndexError).
template <class T>
class ListProxy : public BaseProxy {
public:
    using value_type = T;

    // What l[i] returns: reading it gets the item, assigning sets it.
    class reference {
    public:
        operator T() const { return l_.get(i_); }
        const reference& operator=(const T& v) const {
            l_.set(i_, v);
            return *this;
        }
        const reference& operator=(const reference& r) const { return *this = T(r); }

    private:
        friend class ListProxy;
        reference(const ListProxy& l, std::ptrdiff_t i) : l_(l), i_(i) {}
        ListProxy l_;
        std::ptrdiff_t i_;
    };

    ListProxy() = default;

    // Python: l[i]
    reference operator[](std::ptrdiff_t i) const { return reference(*this, i); }
    T get(std::ptrdiff_t i) const { return call_for<T>(op::list_get, {idx(i)}); }
    // Python: l[i] = v
    void set(std::ptrdiff_t i, const T& v) const { call(op::list_set, {idx(i), enc(v)}); }
    // Python: l.append(v)
    void append(const T& v) const { call(op::list_append, {enc(v)}); }
    // Python: l.extend(iterable): one atomic request.
    template <std::ranges::input_range R>
    void extend(const R& values) const {
        std::vector<detail::mgr::blob> args;
        for (const auto& v : values) args.push_back(enc(static_cast<const T&>(v)));
        call(op::list_extend, std::move(args));
    }
    void extend(std::initializer_list<T> values) const { extend(std::vector<T>(values)); }
    // Python: l.insert(i, v)
    void insert(std::ptrdiff_t i, const T& v) const { call(op::list_insert, {idx(i), enc(v)}); }
    // Python: l.pop(i=-1)
    T pop(std::ptrdiff_t i = -1) const { return call_for<T>(op::list_pop, {idx(i)}); }
    // Python: l.remove(v); mp::ValueError when absent.
    void remove(const T& v) const { call(op::list_remove, {enc(v)}); }
    // Python: l.index(v); mp::ValueError when absent.
    std::size_t index(const T& v) const {
        return std::size_t(call_for<std::uint64_t>(op::list_index, {enc(v)}));
    }
    // Python: l.count(v)
    std::size_t count(const T& v) const {
        return std::size_t(call_for<std::uint64_t>(op::list_count, {enc(v)}));
    }
    // Python: v in l
    bool contains(const T& v) const { return count(v) > 0; }
    // Python: len(l)
    std::size_t size() const { return std::size_t(call_for<std::uint64_t>(op::len)); }
    bool empty() const { return size() == 0; }
    // Python: l.clear()
    void clear() const { call(op::clear); }
    // Python: l[:] (a copy)
    std::vector<T> to_vector() const { return decode_all<T>(call(op::list_items)); }
    // Python: l.copy() (3.13): a plain list, here a std::vector.
    std::vector<T> copy() const { return to_vector(); }
    // Python: l.reverse()
    void reverse() const { call(op::list_reverse); }
    // Python: l.sort(key=..., reverse=...): sort() by <, sort(std::ranges::greater{}) for
    // reverse=True, sort(comp, projection) for a key. Stable, as Python's. The comparison runs
    // here, not at the server (it is C++ code of this process); the sorted order replaces the
    // list only if nobody changed it meanwhile, else it is read and sorted again: atomic, as
    // Python's sort at the server is.
    template <class Compare = std::ranges::less, class Proj = std::identity>
    requires std::indirect_strict_weak_order<Compare,
                                             std::projected<const T*, Proj>>
    void sort(Compare comp = {}, Proj proj = {}) const {
        for (;;) {
            auto before = call(op::list_items);
            auto values = decode_all<T>(before);
            std::vector<std::size_t> order(values.size());
            for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
            std::ranges::stable_sort(order, [&](std::size_t a, std::size_t b) {
                return std::invoke(comp, std::invoke(proj, values[a]),
                                   std::invoke(proj, values[b]));
            });
            std::vector<detail::mgr::blob> args;
            args.reserve(1 + 2 * before.size());
            args.push_back(detail::mgr::encode<std::uint64_t>(before.size()));
            args.insert(args.end(), before.begin(), before.end());
            for (auto i : order) args.push_back(before[i]);
            if (call_for<bool>(op::list_replace_if, std::move(args))) return;
        }
    }
    // Python: l += iterable (extend) and l *= n
    template <std::ranges::input_range R>
    const ListProxy& operator+=(const R& values) const {
        extend(values);
        return *this;
    }
    const ListProxy& operator*=(std::ptrdiff_t n) const {
        call(op::list_repeat, {detail::mgr::encode<std::int64_t>(n)});
        return *this;
    }

private:
    friend class SyncManager;
    friend class ArrayProxy<T>;
    using op = detail::mgr::op;
    ListProxy(detail::mgr::ref_ptr r) : BaseProxy(std::move(r)) {}
    static detail::mgr::blob idx(std::ptrdiff_t i) { return detail::mgr::encode<std::int64_t>(i); }
    detail::mgr::blob enc(const T& v) const { return pack(v); }
};

// Python: multiprocessing.managers.SetProxy (manager.set(), 3.14). Elements compare by their
// encoding, as dict keys do. What Python returns as a new plain set (union, copy, ...) comes back
// as a std::vector of the elements, in no particular order.
template <class T>
class SetProxy : public BaseProxy {
public:
    using value_type = T;

    SetProxy() = default;

    // Python: s.add(x), s.discard(x) (whether it was there), s.remove(x) (std::out_of_range,
    // Python's KeyError, when absent), s.pop() (any element; std::out_of_range when empty)
    void add(const T& v) const { call(op::set_add, {pack(v)}); }
    bool discard(const T& v) const { return call_for<bool>(op::set_discard, {pack(v)}); }
    void remove(const T& v) const { call(op::set_remove, {pack(v)}); }
    T pop() const { return call_for<T>(op::set_pop); }
    // Python: x in s, len(s), s.clear(), s.copy()
    bool contains(const T& v) const { return call_for<bool>(op::set_contains, {pack(v)}); }
    std::size_t size() const { return std::size_t(call_for<std::uint64_t>(op::len)); }
    bool empty() const { return size() == 0; }
    void clear() const { call(op::clear); }
    std::vector<T> copy() const { return decode_all<T>(call(op::set_items)); }
    std::vector<T> to_vector() const { return copy(); }

    // Python: s.update(...), s.intersection_update(...), s.difference_update(...),
    // s.symmetric_difference_update(...) and |=, &=, -=, ^=: each one atomic request.
    template <std::ranges::input_range R>
    void update(const R& values) const { call(op::set_update, all(values)); }
    template <std::ranges::input_range R>
    void intersection_update(const R& values) const {
        call(op::set_intersection_update, all(values));
    }
    template <std::ranges::input_range R>
    void difference_update(const R& values) const {
        call(op::set_difference_update, all(values));
    }
    template <std::ranges::input_range R>
    void symmetric_difference_update(const R& values) const {
        call(op::set_symmetric_difference_update, all(values));
    }
    template <std::ranges::input_range R>
    const SetProxy& operator|=(const R& v) const { return update(v), *this; }
    template <std::ranges::input_range R>
    const SetProxy& operator&=(const R& v) const { return intersection_update(v), *this; }
    template <std::ranges::input_range R>
    const SetProxy& operator-=(const R& v) const { return difference_update(v), *this; }
    template <std::ranges::input_range R>
    const SetProxy& operator^=(const R& v) const { return symmetric_difference_update(v), *this; }

    // Python: s.union(...) (union_: `union` is a C++ keyword), s.intersection(...),
    // s.difference(...), s.symmetric_difference(...): new sets, as vectors.
    template <std::ranges::input_range R>
    std::vector<T> union_(const R& values) const { return query(op::set_union, values); }
    template <std::ranges::input_range R>
    std::vector<T> intersection(const R& values) const {
        return query(op::set_intersection, values);
    }
    template <std::ranges::input_range R>
    std::vector<T> difference(const R& values) const { return query(op::set_difference, values); }
    template <std::ranges::input_range R>
    std::vector<T> symmetric_difference(const R& values) const {
        return query(op::set_symmetric_difference, values);
    }
    // Python: s.isdisjoint(...), s.issubset(...), s.issuperset(...)
    template <std::ranges::input_range R>
    bool isdisjoint(const R& values) const { return call_for<bool>(op::set_isdisjoint, all(values)); }
    template <std::ranges::input_range R>
    bool issubset(const R& values) const { return call_for<bool>(op::set_issubset, all(values)); }
    template <std::ranges::input_range R>
    bool issuperset(const R& values) const { return call_for<bool>(op::set_issuperset, all(values)); }

private:
    friend class SyncManager;
    using op = detail::mgr::op;
    SetProxy(detail::mgr::ref_ptr r) : BaseProxy(std::move(r)) {}
    template <class R>
    std::vector<detail::mgr::blob> all(const R& values) const {
        std::vector<detail::mgr::blob> out;
        for (const auto& v : values) out.push_back(pack(static_cast<const T&>(v)));
        return out;
    }
    template <class R>
    std::vector<T> query(op code, const R& values) const {
        return decode_all<T>(call(code, all(values)));
    }
};

// Python: the proxy of manager.Array(typecode, sequence): fixed length; get, set, size.
template <class T>
class ArrayProxy : public BaseProxy {
public:
    using value_type = T;
    using reference = typename ListProxy<T>::reference;

    ArrayProxy() = default;

    // Python: a[i] and a[i] = v
    typename ListProxy<T>::reference operator[](std::ptrdiff_t i) const { return as_list()[i]; }
    T get(std::ptrdiff_t i) const { return as_list().get(i); }
    void set(std::ptrdiff_t i, const T& v) const { as_list().set(i, v); }
    // Python: len(a)
    std::size_t size() const { return as_list().size(); }
    // Python: a[:]
    std::vector<T> to_vector() const { return as_list().to_vector(); }

private:
    friend class SyncManager;
    ArrayProxy(detail::mgr::ref_ptr r) : BaseProxy(std::move(r)) {}
    // The server serves an Array as a list that refuses to change length.
    ListProxy<T> as_list() const { return ListProxy<T>(ref_); }
};

// Python: multiprocessing.managers.ValueProxy (manager.Value(typecode, value)): get() and set(),
// and value()/value(v) for Python's .value attribute.
template <class T>
class ValueProxy : public BaseProxy {
public:
    ValueProxy() = default;
    T get() const { return call_for<T>(detail::mgr::op::list_get, {zero()}); }
    void set(const T& v) const {
        call(detail::mgr::op::list_set, {zero(), pack(v)});
    }
    T value() const { return get(); }
    void value(const T& v) const { set(v); }

private:
    friend class SyncManager;
    ValueProxy(detail::mgr::ref_ptr r) : BaseProxy(std::move(r)) {}
    static detail::mgr::blob zero() { return detail::mgr::encode<std::int64_t>(0); }
};

// Python: multiprocessing.managers.NamespaceProxy (manager.Namespace()): attributes by name,
// each of any serializable type; reading one as another type throws mp::SerializationError
// naming both, a missing one std::out_of_range (Python's AttributeError).
class NamespaceProxy : public BaseProxy {
public:
    NamespaceProxy() = default;

    // Python: ns.name = value
    template <class T>
    void set(const std::string& name, const T& value) const {
        auto packed = detail::mgr::with_nesting(endpoint(), [&] { return detail::pack_message(value); });
        call(
            detail::mgr::op::ns_set,
            {name, detail::mgr::blob(reinterpret_cast<const char*>(packed.data()), packed.size())});
    }
    // Python: ns.name
    template <class T>
    T get(const std::string& name) const {
        auto v = call(detail::mgr::op::ns_get, {name});
        if (v.empty())
            throw std::out_of_range("AttributeError: 'Namespace' object has no attribute '" + name +
                                    "'");
        return detail::unpack_message<T>(std::as_bytes(std::span(v[0].data(), v[0].size())));
    }
    // Python: hasattr(ns, name)
    bool contains(const std::string& name) const {
        return !call(detail::mgr::op::ns_get, {name}).empty();
    }
    // Python: del ns.name, without the AttributeError: whether it was there.
    bool erase(const std::string& name) const {
        return call_for<bool>(detail::mgr::op::ns_del, {name});
    }
    // Python: vars(ns).keys(), sorted.
    std::vector<std::string> names() const { return call(detail::mgr::op::ns_names); }

private:
    friend class SyncManager;
    NamespaceProxy(detail::mgr::ref_ptr r) : BaseProxy(std::move(r)) {}
};

// Python: the proxy of manager.Queue(maxsize) and manager.JoinableQueue(maxsize) (a queue.Queue
// at the server): put/get block, with timeouts throwing mp::Full / mp::Empty.
template <class T>
class QueueProxy : public BaseProxy {
public:
    QueueProxy() = default;

    // Python: q.put(obj), q.put(obj, timeout=t), q.put(obj, block, timeout), q.put_nowait(obj)
    void put(const T& obj) const { put_for(obj, -1); }
    template <detail::timeout_like Timeout>
    void put(const T& obj, Timeout timeout) const {
        put_for(obj, detail::mgr::timeout_ns(timeout));
    }
    template <detail::timeout_like Timeout>
    void put(const T& obj, bool block, Timeout timeout) const {
        put_for(obj, block ? detail::mgr::timeout_ns(timeout) : 0);
    }
    void put_nowait(const T& obj) const { put_for(obj, 0); }

    // Python: q.get(), q.get(timeout=t), q.get(block, timeout), q.get_nowait()
    T get() const { return get_for(-1); }
    template <detail::timeout_like Timeout>
    T get(Timeout timeout) const {
        return get_for(detail::mgr::timeout_ns(timeout));
    }
    template <detail::timeout_like Timeout>
    T get(bool block, Timeout timeout) const {
        return get_for(block ? detail::mgr::timeout_ns(timeout) : 0);
    }
    T get_nowait() const { return get_for(0); }

    // Python: q.qsize(), q.empty(), q.full()
    std::size_t qsize() const { return std::size_t(call_for<std::uint64_t>(detail::mgr::op::len)); }
    bool empty() const { return call_for<bool>(detail::mgr::op::queue_empty); }
    bool full() const { return call_for<bool>(detail::mgr::op::queue_full); }

    // Python: q.task_done() (mp::ValueError when called too often) and q.join(); join(timeout)
    // is beyond Python and returns false when it passed.
    void task_done() const { call(detail::mgr::op::queue_task_done); }
    void join() const { call(detail::mgr::op::queue_join); }
    template <detail::timeout_like Timeout>
    bool join(Timeout timeout) const {
        return call_for<bool>(detail::mgr::op::queue_join, {}, detail::mgr::timeout_ns(timeout));
    }

private:
    friend class SyncManager;
    QueueProxy(detail::mgr::ref_ptr r) : BaseProxy(std::move(r)) {}
    void put_for(const T& obj, std::int64_t ns) const {
        call(detail::mgr::op::queue_put, {pack(obj)}, ns);
    }
    T get_for(std::int64_t ns) const { return call_for<T>(detail::mgr::op::queue_get, {}, ns); }
};

// Python: multiprocessing.managers.AcquirerProxy (manager.Lock(), RLock(), Semaphore(),
// BoundedSemaphore()). Lockable, so std::scoped_lock works (Python's `with lock:`). An RLock is
// owned by one thread of one process.
class AcquirerProxy : public BaseProxy {
public:
    AcquirerProxy() = default;

    // Python: acquire(blocking=True, timeout=None); true when acquired.
    bool acquire(bool block = true) const { return acquire_for(block ? -1 : 0); }
    template <detail::timeout_like Timeout>
    bool acquire(bool block, Timeout timeout) const {
        return acquire_for(block ? detail::mgr::timeout_ns(timeout) : 0);
    }
    template <class Rep, class Period>
    bool acquire(std::chrono::duration<Rep, Period> timeout) const {
        return acquire_for(detail::mgr::timeout_ns(timeout));
    }
    // Python: release(); a Lock not held, an RLock or Condition not owned by this thread, a
    // BoundedSemaphore above its value: mp::ValueError, as the library's own objects.
    void release() const { call(detail::mgr::op::release); }
    // Python 3.14: locked(); whether the object is held now (a Semaphore: its value is 0).
    bool locked() const { return call_for<bool>(detail::mgr::op::locked); }

    // Lockable and TimedLockable.
    void lock() const { acquire(); }
    bool try_lock() const { return acquire(false); }
    void unlock() const { release(); }
    template <class Rep, class Period>
    bool try_lock_for(std::chrono::duration<Rep, Period> timeout) const {
        return acquire(timeout);
    }
    template <class Clock, class Duration>
    bool try_lock_until(std::chrono::time_point<Clock, Duration> tp) const {
        return acquire(tp - Clock::now());
    }

private:
    friend class SyncManager;
    friend class ConditionProxy;
    AcquirerProxy(detail::mgr::ref_ptr r) : BaseProxy(std::move(r)) {}
    bool acquire_for(std::int64_t ns) const {
        return call_for<bool>(detail::mgr::op::acquire, {}, ns);
    }
};

// Python: multiprocessing.managers.ConditionProxy (manager.Condition()), with its own RLock.
class ConditionProxy : public AcquirerProxy {
public:
    ConditionProxy() = default;

    // Python: wait(timeout=None): releases the lock, waits for a notify, takes the lock back;
    // false when the timeout passed.
    bool wait() const { return wait_for_ns(-1); }
    template <detail::timeout_like Timeout>
    bool wait(Timeout timeout) const {
        return wait_for_ns(detail::mgr::timeout_ns(timeout));
    }
    // Python: wait_for(predicate, timeout=None): the predicate's last value.
    template <std::predicate P>
    bool wait_for(P predicate) const {
        bool result = predicate();
        while (!result) {
            wait();
            result = predicate();
        }
        return result;
    }
    template <std::predicate P, detail::timeout_like Timeout>
    bool wait_for(P predicate, Timeout timeout) const {
        detail::deadline deadline = detail::deadline_after(timeout);
        bool result = predicate();
        while (!result) {
            std::int64_t left = detail::remaining_ns(deadline);
            if (left == 0) break;
            wait_for_ns(left);
            result = predicate();
        }
        return result;
    }
    // Python: notify(n=1) and notify_all(); mp::ValueError unless this thread holds the lock.
    void notify(int n = 1) const {
        call(detail::mgr::op::condition_notify, {detail::mgr::encode<std::int64_t>(n)});
    }
    void notify_all() const { notify(std::numeric_limits<int>::max()); }

private:
    friend class SyncManager;
    ConditionProxy(detail::mgr::ref_ptr r) : AcquirerProxy(std::move(r)) {}
    bool wait_for_ns(std::int64_t ns) const {
        return call_for<bool>(detail::mgr::op::condition_wait, {}, ns);
    }
};

// Python: multiprocessing.managers.EventProxy (manager.Event()).
class EventProxy : public BaseProxy {
public:
    EventProxy() = default;
    // Python: is_set(), set(), clear()
    bool is_set() const { return call_for<bool>(detail::mgr::op::event_is_set); }
    void set() const { call(detail::mgr::op::event_set); }
    void clear() const { call(detail::mgr::op::event_clear); }
    // Python: wait(timeout=None): the flag, false when the timeout passed first.
    bool wait() const { return call_for<bool>(detail::mgr::op::event_wait); }
    template <detail::timeout_like Timeout>
    bool wait(Timeout timeout) const {
        return call_for<bool>(detail::mgr::op::event_wait, {}, detail::mgr::timeout_ns(timeout));
    }

private:
    friend class SyncManager;
    EventProxy(detail::mgr::ref_ptr r) : BaseProxy(std::move(r)) {}
};

// Python: multiprocessing.managers.BarrierProxy (manager.Barrier(parties, timeout=None)).
class BarrierProxy : public BaseProxy {
public:
    BarrierProxy() = default;
    // Python: wait(timeout=None): this party's arrival index; mp::BrokenBarrierError when the
    // barrier is or becomes broken (a timeout breaks it, as in Python).
    int wait() const { return int(call_for<std::int64_t>(detail::mgr::op::barrier_wait)); }
    template <detail::timeout_like Timeout>
    int wait(Timeout timeout) const {
        return int(call_for<std::int64_t>(detail::mgr::op::barrier_wait, {},
                                          detail::mgr::timeout_ns(timeout)));
    }
    // Python: abort(), reset(), and the attributes parties, n_waiting, broken.
    void abort() const { call(detail::mgr::op::barrier_abort); }
    void reset() const { call(detail::mgr::op::barrier_reset); }
    int parties() const { return int(call_for<std::int64_t>(detail::mgr::op::barrier_parties)); }
    int n_waiting() const {
        return int(call_for<std::int64_t>(detail::mgr::op::barrier_n_waiting));
    }
    bool broken() const { return call_for<bool>(detail::mgr::op::barrier_broken); }

private:
    friend class SyncManager;
    BarrierProxy(detail::mgr::ref_ptr r) : BaseProxy(std::move(r)) {}
};

// Python: the AutoProxy of an object of a registered type: its methods, called by member pointer
// (each registered with BaseManager::register_ in this process): c.call(&Counter::increment, 1).
template <class T>
class AutoProxy : public BaseProxy {
public:
    AutoProxy() = default;

    // Python: proxy.method(args...): runs the method at the server, under the object's mutex,
    // and returns its result; an exception it throws is rethrown here.
    template <class M, class... A>
    requires std::is_member_function_pointer_v<M>
    auto call(M method, A&&... a) const {
        using traits = detail::mgr::method_traits<M>;
        using R = std::decay_t<typename traits::result>;
        static_assert(std::is_base_of_v<typename traits::object, T>,
                      "mp::AutoProxy<T>::call: the method is not a member of T");
        typename traits::args args{std::forward<A>(a)...};
        auto v = BaseProxy::call(detail::mgr::op::callmethod,
                                 {detail::mgr::method_name<T>(method), pack(args)});
        if constexpr (!std::is_void_v<R>) {
            if (v.size() != 1) throw ProcessError("malformed reply from the manager");
            return detail::mgr::decode<R>(v[0]);
        }
    }

private:
    friend class BaseManager;
    AutoProxy(detail::mgr::ref_ptr r) : BaseProxy(std::move(r)) {}
};

// ---- managers ---------------------------------------------------------------------------------

// Python: multiprocessing.managers.Server, from BaseManager.get_server(): serve_forever() serves
// the manager's objects from this process (over TCP, to other machines too) until a client asks
// it to shut down, and then ends the process, as Python's does.
class Server {
public:
    // Python: Server.address (the real port when bound to port 0)
    const Address& address() const noexcept { return address_; }

    // Python: Server.serve_forever()
    [[noreturn]] void serve_forever() {
        detail::mgr::remember(std::make_shared<const detail::mgr::endpoint>(address_, authkey_));
        detail::mgr::server s(authkey_, std::move(types_));
        s.serve_forever(std::move(listener_));
    }

private:
    friend class BaseManager;
    Server(detail::posix::unique_fd listener, Address address, std::string authkey,
           detail::mgr::type_table types)
        : listener_(std::move(listener)),
          address_(std::move(address)),
          authkey_(std::move(authkey)),
          types_(std::move(types)) {}

    detail::posix::unique_fd listener_;
    Address address_;
    std::string authkey_;
    detail::mgr::type_table types_;
};

// Python: multiprocessing.managers.BaseManager(address=None, authkey=None). Move-only; the
// destructor shuts down a server this object started (Python's `with` block).
class BaseManager {
public:
    // Python: BaseManager(): a fresh private address, the process's authkey.
    BaseManager() : BaseManager(Address()) {}
    // Python: BaseManager(address, authkey): ("127.0.0.1", 0) serves TCP on a free port.
    explicit BaseManager(Address address, std::optional<std::string> authkey = std::nullopt)
        : s_(std::make_unique<state>()) {
        s_->address = std::move(address);
        s_->authkey = authkey ? std::move(*authkey) : detail::mgr::process_authkey();
    }
    BaseManager(BaseManager&&) noexcept = default;
    BaseManager& operator=(BaseManager&& o) noexcept {
        if (this != &o) {
            stop_quietly();
            s_ = std::move(o.s_);
        }
        return *this;
    }
    virtual ~BaseManager() { stop_quietly(); }

    // Python: BaseManager.register(typeid, callable=None, exposed=...): registers T, in this
    // process, under `type_id` (the same string in every process that serves or uses it), with
    // the methods proxies may call. create<T>() then makes a T at the server: default-constructed,
    // or a copy of a serializable value. Register in the server's process (or before start(),
    // whose server inherits it) and in every client that calls methods.
    template <class T, class... M>
    static void register_(std::string type_id, method_spec<M>... methods) {
        auto t = std::make_shared<detail::mgr::registered_type>();
        t->create = [](const detail::mgr::blob* init) -> std::shared_ptr<void> {
            if (init) {
                if constexpr (serializable<T>) {
                    return std::make_shared<T>(detail::mgr::decode<T>(*init));
                } else {
                    throw ValueError(std::string(type_name<T>()) + " is not serializable");
                }
            }
            if constexpr (std::default_initializable<T>) {
                return std::make_shared<T>();
            } else {
                throw ValueError(std::string(type_name<T>()) + " needs an initial value");
            }
        };
        add_type<T>(std::move(type_id), std::move(t), std::move(methods)...);
    }
    // Python: BaseManager.register(typeid, callable): the server calls `factory` (returning a
    // std::shared_ptr<T>) for each create<T>(); returning the same object again gives the same
    // proxy id, so that every client shares it (Python's `callable=lambda: queue`).
    template <class T, class F, class... M>
    requires std::invocable<F&> && std::convertible_to<std::invoke_result_t<F&>, std::shared_ptr<T>>
    static void register_(std::string type_id, F factory, method_spec<M>... methods) {
        auto t = std::make_shared<detail::mgr::registered_type>();
        t->shared = true;
        t->create = [factory = std::move(factory)](
                        const detail::mgr::blob*) mutable -> std::shared_ptr<void> {
            return std::shared_ptr<T>(factory());
        };
        add_type<T>(std::move(type_id), std::move(t), std::move(methods)...);
    }

    // Python: BaseManager.start(initializer=None, initargs=()): starts the server process.
    void start() {
        start(+[] {});
    }
    template <class F>
    requires std::invocable<F&>
    void start(F initializer) {
        check_initial("start");
        auto [fd, address] = bind();
        std::string authkey = s_->authkey;
        auto types = detail::mgr::registry_snapshot();
        int listen_fd = fd.get();
        Address server_address = address;
        s_->process = std::make_unique<Process>(
            ProcessOptions{.name = std::string(server_name()) + "-" + std::to_string(++counter()),
                           .daemon = true},
            [listen_fd, authkey, types, initializer, server_address]() mutable {
                // Python: the server ignores SIGINT, so Ctrl-C leaves shutdown to its owner.
                std::signal(SIGINT, SIG_IGN);
                detail::mgr::forget_inherited_references();
                // A proxy of its own that the server decodes (an argument of a registered
                // method) uses this manager's key, whatever the process's key is.
                detail::mgr::remember(
                    std::make_shared<const detail::mgr::endpoint>(server_address, authkey));
                std::invoke(initializer);
                detail::mgr::server s(authkey, std::move(types));
                s.serve_forever(detail::posix::unique_fd(listen_fd));
            });
        // The server inherits the listening socket and the registered types: fork, whatever the
        // default start method.
        s_->process->start_method("fork");
        s_->process->start();
        // Only the server may hold the socket: once it is gone, connecting must fail at once.
        fd.reset();
        set_started(std::move(address), true);
    }

    // Python: BaseManager.connect(): uses a server started elsewhere (serve_forever, or another
    // process's start()).
    void connect() {
        check_initial("connect");
        auto ep = std::make_shared<const detail::mgr::endpoint>(s_->address, s_->authkey);
        detail::mgr::call(*ep, 0, detail::mgr::op::dummy);
        s_->ep = std::move(ep);
        detail::mgr::remember(s_->ep);
        s_->st = status::connected;
    }

    // Python: BaseManager.get_server(): a Server bound to the address, to serve from this process.
    Server get_server() {
        check_initial("get_server");
        auto [fd, address] = bind();
        s_->address = address;
        return Server(std::move(fd), std::move(address), s_->authkey,
                      detail::mgr::registry_snapshot());
    }

    // Python: BaseManager.shutdown(): stops the server this object started (a second call does
    // nothing): asks it to exit, then terminates and kills it if it lingers.
    virtual void shutdown() {
        if (!s_ || s_->st != status::started || !s_->process ||
            s_->creator_pid != detail::self_pid())
            return;
        try {
            detail::mgr::call(*s_->ep, 0, detail::mgr::op::shutdown);
        } catch (const std::exception&) {
            // Already gone: nothing to ask.
        }
        detail::mgr::drop_connection(*s_->ep);
        using namespace std::chrono_literals;
        if (!s_->process->join(1s)) {
            s_->process->terminate();
            if (!s_->process->join(1s)) {
                s_->process->kill();
                s_->process->join();
            }
        }
        s_->st = status::shut_down;
    }

    // Python: BaseManager.join(timeout=None): waits for the server process to end.
    void join() {
        if (s_->process) s_->process->join();
    }
    template <detail::timeout_like Timeout>
    bool join(Timeout timeout) {
        return !s_->process || s_->process->join(timeout);
    }

    // Python: BaseManager.address (the real port when bound to port 0)
    const Address& address() const noexcept { return s_->address; }
    // The server process's pid (Python: manager._process.pid); nullopt unless started here.
    std::optional<int> pid() const { return s_->process ? s_->process->pid() : std::nullopt; }

    // Python: BaseManager._number_of_objects(): how many objects the server holds. An object
    // goes when the last proxy of it, in whichever process, is gone.
    std::size_t number_of_objects() {
        auto v = detail::mgr::call(*endpoint(), 0, detail::mgr::op::number_of_objects);
        if (v.size() != 1) throw ProcessError("malformed reply from the manager");
        return std::size_t(detail::mgr::decode<std::uint64_t>(v[0]));
    }

    // Python: manager.<typeid>(...) of a registered type: a new T at the server (or the
    // factory's object) and its proxy.
    template <class T>
    AutoProxy<T> create() {
        return AutoProxy<T>(create_registered<T>({}));
    }
    template <class T>
    requires serializable<T> AutoProxy<T> create(const T& initial) {
        return AutoProxy<T>(create_registered<T>({detail::mgr::encode_for(*endpoint(), initial)}));
    }

protected:
    enum class status : std::uint8_t { initial, started, connected, shut_down };

    struct state {
        Address address;
        std::string authkey;
        status st = status::initial;
        std::shared_ptr<const detail::mgr::endpoint> ep;
        std::unique_ptr<Process> process;
        int creator_pid = 0;
    };

    virtual const char* server_name() const noexcept { return "BaseManager"; }

    const std::shared_ptr<const detail::mgr::endpoint>& endpoint() const {
        if (!s_) throw ValueError("the manager was moved from");
        if (s_->st == status::initial) throw ValueError("server not yet started");
        if (s_->st == status::shut_down) throw ValueError("the manager has shut down");
        return s_->ep;
    }

    // Python: BaseManager._create(typeid, *args): a builtin object at the server; its id.
    detail::mgr::ref_ptr create_builtin(detail::mgr::kind k,
                                        std::vector<detail::mgr::blob> args = {}) {
        args.insert(args.begin(), detail::mgr::encode(k));
        return detail::mgr::create(endpoint(), detail::mgr::op::create, std::move(args));
    }

    std::unique_ptr<state> s_;

private:
    template <class T, class... M>
    static void add_type(std::string type_id, std::shared_ptr<detail::mgr::registered_type> t,
                         method_spec<M>... methods) {
        t->type_id = type_id;
        (add_method<T>(*t, methods), ...);
        {
            std::lock_guard g(detail::mgr::type_methods<T>::m);
            detail::mgr::type_methods<T>::type_id = type_id;
            auto& table = detail::mgr::type_methods<T>::methods;
            table.clear();
            (table.emplace_back(methods.name, std::any(methods.pointer)), ...);
        }
        auto& r = detail::mgr::registry();
        std::lock_guard g(r.m);
        r.types[type_id] = std::move(t);
    }

    // The server's half: decode the arguments, call, encode the result.
    template <class T, class M>
    static void add_method(detail::mgr::registered_type& t, const method_spec<M>& spec) {
        using traits = detail::mgr::method_traits<M>;
        using R = std::decay_t<typename traits::result>;
        using params = typename traits::params;
        using args = typename traits::args;
        static_assert(std::is_base_of_v<typename traits::object, T>,
                      "mp::method: the method is not a member of the registered type");
        detail::require_serializable<args>();
        if constexpr (!std::is_void_v<R>) detail::require_serializable<R>();
        M pointer = spec.pointer;
        t.methods[spec.name] = [pointer](void* object, const detail::mgr::blob& encoded) {
            auto a = detail::mgr::decode<args>(encoded);
            T& obj = *static_cast<T*>(object);
            auto invoke = [&]<std::size_t... I>(std::index_sequence<I...>)->decltype(auto) {
                // Each argument as the method takes it: moved into values and rvalue references,
                // an lvalue for lvalue references.
                return (obj.*
                        pointer)(static_cast<std::tuple_element_t<I, params>&&>(std::get<I>(a))...);
            };
            constexpr auto indexes = std::make_index_sequence<std::tuple_size_v<args>>{};
            if constexpr (std::is_void_v<R>) {
                invoke(indexes);
                return detail::mgr::blob();
            } else {
                return detail::mgr::encode<R>(invoke(indexes));
            }
        };
    }

    template <class T>
    detail::mgr::ref_ptr create_registered(std::vector<detail::mgr::blob> init) {
        std::string type_id;
        {
            std::lock_guard g(detail::mgr::type_methods<T>::m);
            type_id = detail::mgr::type_methods<T>::type_id;
        }
        if (type_id.empty())
            throw ValueError(std::string(type_name<T>()) +
                             " was not registered with BaseManager::register_");
        init.insert(init.begin(), type_id);
        return detail::mgr::create(endpoint(), detail::mgr::op::create_registered, std::move(init));
    }

    void check_initial(const char* what) const {
        if (!s_) throw ValueError("the manager was moved from");
        if (s_->st == status::started) throw ProcessError("Already started server");
        if (s_->st != status::initial)
            throw ProcessError(std::string("cannot ") + what + ": the manager is not new");
    }

    // The listening socket, bound here so that the address (and a TCP port 0) is known at once.
    std::pair<detail::posix::unique_fd, Address> bind() {
        Address address = connection::detail::resolve_address(s_->address, std::nullopt);
        auto fd = detail::posix::listen_on(connection::detail::to_socket_address(address), 128);
        if (address.family() == "AF_INET")
            address = connection::detail::to_address(detail::posix::local_address(fd.get()));
        return {std::move(fd), std::move(address)};
    }

    void set_started(Address address, bool own) {
        s_->address = std::move(address);
        s_->ep = std::make_shared<const detail::mgr::endpoint>(s_->address, s_->authkey);
        detail::mgr::remember(s_->ep);
        s_->st = own ? status::started : status::connected;
        s_->creator_pid = detail::self_pid();
    }

    void stop_quietly() noexcept {
        try {
            shutdown();
        } catch (...) {
            // A destructor must not throw; the server dies with us anyway.
        }
    }

    // Python: the ident of the manager's process name (SyncManager-1, ...).
    static std::atomic<int>& counter() {
        static std::atomic<int> n{0};
        return n;
    }
};

// Python: multiprocessing.managers.SyncManager: a BaseManager serving Python's shared types.
class SyncManager : public BaseManager {
public:
    using BaseManager::BaseManager;

    // Python: manager.dict() and manager.dict(mapping): any range of (key, value) pairs.
    template <class K, class V>
    DictProxy<K, V> dict() {
        detail::require_serializable<K>();
        detail::require_serializable<V>();
        return {create_builtin(detail::mgr::kind::dict)};
    }
    template <class K, class V, std::ranges::input_range R>
    DictProxy<K, V> dict(const R& pairs) {
        std::vector<detail::mgr::blob> args;
        for (const auto& [k, v] : pairs) {
            args.push_back(detail::mgr::encode_for(*endpoint(), static_cast<const K&>(k)));
            args.push_back(detail::mgr::encode_for(*endpoint(), static_cast<const V&>(v)));
        }
        return {create_builtin(detail::mgr::kind::dict, std::move(args))};
    }
    // Python: manager.list() and manager.list(sequence)
    template <class T>
    ListProxy<T> list() {
        detail::require_serializable<T>();
        return {create_builtin(detail::mgr::kind::list)};
    }
    template <class T, std::ranges::input_range R>
    ListProxy<T> list(const R& values) {
        return {create_builtin(detail::mgr::kind::list, encode_all<T>(values))};
    }
    template <class T>
    ListProxy<T> list(std::initializer_list<T> values) {
        return list<T>(std::vector<T>(values));
    }
    // Python: manager.set() and manager.set(iterable) (3.14)
    template <class T>
    SetProxy<T> set() {
        detail::require_serializable<T>();
        return {create_builtin(detail::mgr::kind::set)};
    }
    template <class T, std::ranges::input_range R>
    SetProxy<T> set(const R& values) {
        return {create_builtin(detail::mgr::kind::set, encode_all<T>(values))};
    }
    template <class T>
    SetProxy<T> set(std::initializer_list<T> values) {
        return set<T>(std::vector<T>(values));
    }
    // Python: manager.Namespace()
    NamespaceProxy Namespace() {
        return {create_builtin(detail::mgr::kind::namespace_)};
    }
    // Python: manager.Value(typecode, value)
    template <class T>
    ValueProxy<T> Value(const T& value) {
        return {create_builtin(detail::mgr::kind::value, {detail::mgr::encode_for(*endpoint(), value)})};
    }
    // Python: manager.Array(typecode, sequence); Array<T>(n) holds n value-initialized items.
    template <class T, std::ranges::input_range R>
    ArrayProxy<T> Array(const R& values) {
        return {create_builtin(detail::mgr::kind::array, encode_all<T>(values))};
    }
    template <class T>
    ArrayProxy<T> Array(std::initializer_list<T> values) {
        return Array<T>(std::vector<T>(values));
    }
    template <class T>
    ArrayProxy<T> Array(std::size_t n) {
        return {create_builtin(detail::mgr::kind::array,
                               std::vector<detail::mgr::blob>(n, detail::mgr::encode(T{})))};
    }
    // Python: manager.Queue(maxsize=0) and manager.JoinableQueue(maxsize=0)
    template <class T>
    QueueProxy<T> Queue(int maxsize = 0) {
        detail::require_serializable<T>();
        return {create_builtin(detail::mgr::kind::queue,
                                           {detail::mgr::encode<std::int64_t>(maxsize)})};
    }
    template <class T>
    QueueProxy<T> JoinableQueue(int maxsize = 0) {
        return Queue<T>(maxsize);
    }
    // Python: manager.Lock(), RLock(), Semaphore(value=1), BoundedSemaphore(value=1)
    AcquirerProxy Lock() { return {create_builtin(detail::mgr::kind::lock)}; }
    AcquirerProxy RLock() { return {create_builtin(detail::mgr::kind::rlock)}; }
    AcquirerProxy Semaphore(int value = 1) {
        return {create_builtin(detail::mgr::kind::semaphore,
                                           {detail::mgr::encode<std::int64_t>(value)})};
    }
    AcquirerProxy BoundedSemaphore(int value = 1) {
        return {create_builtin(detail::mgr::kind::bounded_semaphore,
                                           {detail::mgr::encode<std::int64_t>(value)})};
    }
    // Python: manager.Condition() (with its own RLock)
    ConditionProxy Condition() {
        return {create_builtin(detail::mgr::kind::condition)};
    }
    // Python: manager.Event()
    EventProxy Event() { return {create_builtin(detail::mgr::kind::event)}; }
    // Python: manager.Barrier(parties, action=None, timeout=None) (no action: it would have to
    // run in the server)
    BarrierProxy Barrier(int parties) { return barrier(parties, -1); }
    template <detail::timeout_like Timeout>
    BarrierProxy Barrier(int parties, Timeout timeout) {
        return barrier(parties, detail::mgr::timeout_ns(timeout));
    }

protected:
    const char* server_name() const noexcept override { return "SyncManager"; }

private:
    template <class T, class R>
    std::vector<detail::mgr::blob> encode_all(const R& values) {
        std::vector<detail::mgr::blob> out;
        for (const auto& v : values)
            out.push_back(detail::mgr::encode_for(*endpoint(), static_cast<const T&>(v)));
        return out;
    }
    BarrierProxy barrier(int parties, std::int64_t timeout_ns) {
        return {create_builtin(detail::mgr::kind::barrier,
                                           {detail::mgr::encode<std::int64_t>(parties),
                                            detail::mgr::encode<std::int64_t>(timeout_ns)})};
    }
};

// Python: multiprocessing.managers.SharedMemoryManager: a manager whose SharedMemory and
// ShareableList segments, made by any of its clients, are unlinked when it shuts down (or goes:
// the RAII form of `with SharedMemoryManager() as smm:`). Each segment is registered with the
// resource tracker as well, so one whose manager was killed is still unlinked at the program's end.
class SharedMemoryManager : public BaseManager {
public:
    using BaseManager::BaseManager;
    SharedMemoryManager(SharedMemoryManager&&) noexcept = default;
    SharedMemoryManager& operator=(SharedMemoryManager&& o) noexcept {
        if (this != &o) {
            unlink_quietly();
            BaseManager::operator=(std::move(o));
        }
        return *this;
    }
    ~SharedMemoryManager() override { unlink_quietly(); }

    // Python: smm.SharedMemory(size): a new segment of `size` bytes.
    shared_memory::SharedMemory SharedMemory(std::size_t size) {
        shared_memory::SharedMemory shm(std::nullopt, true, std::ptrdiff_t(size));
        track(shm.name());
        return shm;
    }
    // Python: smm.ShareableList(sequence)
    template <class T, std::ranges::input_range R>
    shared_memory::ShareableList<T> ShareableList(const R& sequence) {
        shared_memory::ShareableList<T> list(sequence);
        track(list.shm().name());
        return list;
    }
    template <class T>
    shared_memory::ShareableList<T> ShareableList(std::initializer_list<T> sequence) {
        return ShareableList<T>(std::vector<T>(sequence));
    }

    // Python: SharedMemoryManager.shutdown(): unlinks every segment made through it, then stops
    // the server (a server that is gone already leaves them to the resource tracker).
    void shutdown() override {
        unlink_quietly();
        BaseManager::shutdown();
    }

protected:
    const char* server_name() const noexcept override { return "SharedMemoryManager"; }

private:
    void track(const std::string& name) {
        detail::mgr::call(*endpoint(), 0, detail::mgr::op::track_segment, {name});
    }
    void unlink_quietly() noexcept {
        try {
            unlink_segments();
        } catch (...) {
            // The server is gone: the resource tracker unlinks what is left.
        }
    }
    void unlink_segments() {
        if (!s_ || s_->st != status::started || s_->creator_pid != detail::self_pid()) return;
        for (const auto& name : detail::mgr::call(*s_->ep, 0, detail::mgr::op::segment_names)) {
            try {
                shared_memory::SharedMemory(name).unlink();
            } catch (const std::exception&) {
                // Already unlinked by its user.
            }
        }
    }
};

// Python: multiprocessing.Manager(): a started SyncManager (`with Manager() as m:` is
// `auto m = mp::Manager();` in a scope).
inline SyncManager Manager() {
    SyncManager m;
    m.start();
    return m;
}

// Python: the module multiprocessing.managers.
namespace managers {
using multiprocessing::AcquirerProxy;
using multiprocessing::ArrayProxy;
using multiprocessing::AutoProxy;
using multiprocessing::BarrierProxy;
using multiprocessing::BaseManager;
using multiprocessing::BaseProxy;
using multiprocessing::ConditionProxy;
using multiprocessing::DictProxy;
using multiprocessing::EventProxy;
using multiprocessing::ListProxy;
using multiprocessing::NamespaceProxy;
using multiprocessing::QueueProxy;
using multiprocessing::Server;
using multiprocessing::SetProxy;
using multiprocessing::SharedMemoryManager;
using multiprocessing::SyncManager;
using multiprocessing::ValueProxy;
}  // namespace managers

}  // namespace multiprocessing
