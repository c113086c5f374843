// Python: multiprocessing.heap. Small shared objects (a Lock, an Event, a Value<int>...) are
// slots of shared arenas, so that a program may hold 100,000 of them with a handful of
// descriptors and mappings; a bigger object gets a region of its own.
//
// An arena is an anonymous memfd of 4096 slots of 64 bytes (slot 0 is its header). Each object
// has a cache line to itself, so two busy locks never share one. The last 8 bytes of a slot
// count the processes that hold it (0: free). A slot is taken by a compare-exchange 0 -> 1, so
// any process that maps the arena may take from it, and freed by whichever process drops the
// last reference. Unlike Python's heap, where the creator frees a block that a child may still
// be using, a slot is reused only when no process holds it. A process counts once per
// reference (block_ref), not per handle copy:
// - made here: the creator's reference;
// - sent in a start record: the sender adds one for the receiver, which adopts it;
// - inherited through fork: before the fork, the parent adds one for each reference it holds;
// - a child of the library releases what it holds when it exits (release_all). A process
//   killed before that, or a raw fork() whose child never calls it, leaves its slots taken
//   forever: never reused (safe), and bounded by what that process held.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <pthread.h>

#include "../errors.hpp"
#include "fd_table.hpp"
#include "posix/shm.hpp"

namespace multiprocessing::detail::heap {

inline constexpr std::size_t slot_size = 64;
inline constexpr std::size_t slot_payload = 56;  // then the holders count
inline constexpr std::size_t arena_slots = 4096;
inline constexpr std::uint64_t arena_magic = 0x314e4552414d504dull;  // "MPMAREN1" in memory

// Whether an object of `size` bytes aligned to `align` lives in an arena slot.
constexpr bool fits(std::size_t size, std::size_t align) noexcept {
    return size <= slot_payload && slot_size % align == 0;
}

// How many processes hold the slot at `offset` of an arena.
inline std::atomic<std::uint32_t>& holders_at(const posix::region& r, std::size_t offset) noexcept {
    return *std::launder(reinterpret_cast<std::atomic<std::uint32_t>*>(
        static_cast<char*>(r.data()) + offset + slot_payload));
}

struct arena_header {
    std::uint64_t magic;
    std::uint32_t slots;
    std::atomic<std::uint32_t> used;  // slots taken; a hint that lets a full arena be skipped
};

class arena {
public:
    // A new arena of ours.
    arena() : region_(arena_slots * slot_size, "multiprocessing-heap") {
        region_.arena = true;
        header_ = ::new (region_.data()) arena_header{arena_magic, std::uint32_t(arena_slots), {1}};
    }
    // Another process's arena, handed to this one (checked: its bytes come from elsewhere).
    explicit arena(posix::unique_fd fd) : region_(std::move(fd)) {
        region_.arena = true;
        const std::size_t bytes = region_.map.size();
        header_ = std::launder(static_cast<arena_header*>(region_.data()));
        if (bytes < slot_size || header_->magic != arena_magic ||
            header_->slots < 2 || header_->slots > bytes / slot_size)
            throw SerializationError("multiprocessing: a corrupt shared arena");
        slots_ = header_->slots;
    }

    posix::region& region() noexcept { return region_; }
    std::uint32_t slots() const noexcept { return slots_; }
    std::atomic<std::uint32_t>& holders(std::uint32_t slot) noexcept {
        return holders_at(region_, std::size_t(slot) * slot_size);
    }

    // Takes a free slot (next fit from the last one taken here); 0 when none is free.
    std::uint32_t take() noexcept {
        if (header_->used.load(std::memory_order_relaxed) >= slots_) return 0;
        for (std::uint32_t n = 1; n < slots_; ++n) {
            std::uint32_t s = cursor_;
            cursor_ = s + 1 < slots_ ? s + 1 : 1;
            std::uint32_t zero = 0;
            if (holders(s).load(std::memory_order_relaxed) == 0 &&
                holders(s).compare_exchange_strong(zero, 1, std::memory_order_acquire,
                                                   std::memory_order_relaxed)) {
                header_->used.fetch_add(1, std::memory_order_relaxed);
                std::memset(static_cast<char*>(region_.data()) + std::size_t(s) * slot_size, 0,
                            slot_payload);
                return s;
            }
        }
        return 0;
    }
    // One holder fewer; the slot is free again when it was the last.
    void drop(std::uint32_t slot) noexcept {
        if (holders(slot).fetch_sub(1, std::memory_order_acq_rel) == 1)
            header_->used.fetch_sub(1, std::memory_order_relaxed);
    }

private:
    posix::region region_;
    arena_header* header_ = nullptr;
    std::uint32_t slots_ = std::uint32_t(arena_slots);
    std::uint32_t cursor_ = 1;  // guarded by the heap's mutex
};

struct block_ref;

// This process's side of the heap.
struct state {
    std::mutex mutex;
    std::vector<std::shared_ptr<arena>> arenas;  // where this process takes slots from
    std::size_t next = 0;                        // the arena tried first
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::weak_ptr<arena>> received;
    block_ref* refs = nullptr;  // every reference this process holds (a list)
};

void register_fork_handlers() noexcept;

// The state, once made (read by a signal handler, which must not make it).
inline std::atomic<state*> made{nullptr};

// Never destroyed: references may be dropped by static destructors after any other would run.
inline state& the() {
    static state* s = [] {
        register_fork_handlers();
        auto* p = new state;
        made.store(p);
        return p;
    }();
    return *s;
}

// This process's reference to one slot: handles in this process share it.
struct block_ref {
    std::shared_ptr<arena> a;
    std::uint32_t slot;
    bool released = false;  // release_all() already dropped it
    block_ref* prev = nullptr;
    block_ref* next = nullptr;

    block_ref(std::shared_ptr<arena> ar, std::uint32_t s) : a(std::move(ar)), slot(s) {
        auto& h = the();  // the caller holds h.mutex
        next = h.refs;
        if (next) next->prev = this;
        h.refs = this;
    }
    ~block_ref() {
        auto& h = the();
        std::lock_guard lock(h.mutex);
        (prev ? prev->next : h.refs) = next;
        if (next) next->prev = prev;
        if (!released) a->drop(slot);
    }
    block_ref(const block_ref&) = delete;
    block_ref& operator=(const block_ref&) = delete;
};

// A place in shared memory: a region (an arena, or an object's own) and an offset in it.
struct block {
    std::shared_ptr<posix::region> region;
    std::size_t offset = 0;
};

inline block make_block(std::shared_ptr<arena> a, std::uint32_t slot) {
    posix::region* r = &a->region();
    auto ref = std::make_shared<block_ref>(std::move(a), slot);
    return {std::shared_ptr<posix::region>(std::move(ref), r), std::size_t(slot) * slot_size};
}

// Room for an object of `size` bytes aligned to `align`, zero-filled.
inline block allocate(std::size_t size, std::size_t align) {
    if (!fits(size, align)) return {std::make_shared<posix::region>(size), 0};
    auto& h = the();
    std::lock_guard lock(h.mutex);
    for (std::size_t n = 0; n < h.arenas.size(); ++n) {
        std::size_t i = (h.next + n) % h.arenas.size();
        if (std::uint32_t s = h.arenas[i]->take()) {
            h.next = i;
            return make_block(h.arenas[i], s);
        }
    }
    auto a = std::make_shared<arena>();
    h.arenas.push_back(a);
    h.next = h.arenas.size() - 1;
    std::uint32_t s = a->take();
    return make_block(std::move(a), s);
}

// The start-record form of a place: whether it is in an arena, the descriptor, the offset.
// Sending a place in an arena slot adds the receiver's reference, which it adopts when it
// reads it. The caller checks that its object fits at the offset (attach()).
template <class Archive>
void serialize_block(Archive& ar, block& b, const char* what) {
    std::uint8_t in_arena = 0;
    std::uint32_t i = 0;
    std::uint64_t off = 0;
    if constexpr (Archive::is_loading) {
        ar(in_arena, i, off);
        if (!in_arena) {
            b = {std::make_shared<posix::region>(import_fd(i, what)), std::size_t(off)};
            return;
        }
        auto& h = the();
        auto id = posix::file_identity(peek_fd(i, what));
        block got;
        {
            std::lock_guard lock(h.mutex);
            auto a = h.received[id].lock();
            if (!a) {
                a = std::make_shared<arena>(import_fd(i, what));
                h.received[id] = a;
            }
            if (off / slot_size == 0 || off / slot_size >= a->slots())
                throw SerializationError(std::string("multiprocessing: a ") + what +
                                         " lies outside its arena");
            got = make_block(std::move(a), std::uint32_t(off / slot_size));
            got.offset = std::size_t(off);
        }
        b = std::move(got);  // outside the lock: what `b` held may be the last reference
    } else {
        in_arena = b.region->arena;
        i = export_fd(b.region->fd.get(), what);
        off = b.offset;
        ar(in_arena, i, off);
        if (in_arena)
            holders_at(*b.region, b.offset - b.offset % slot_size)
                .fetch_add(1, std::memory_order_relaxed);
    }
}

inline void release_all_locked(state& h) noexcept {
    for (block_ref* r = h.refs; r; r = r->next)
        if (!r->released) {
            r->released = true;
            r->a->drop(r->slot);
        }
}

// A library child about to exit: gives back every slot it holds (the handles it still has are
// never used again; their destructors will not drop them twice).
inline void release_all() noexcept {
    auto& h = the();
    std::lock_guard lock(h.mutex);
    release_all_locked(h);
}

// The same from a SIGTERM handler (Pool.terminate(), Process.terminate()): only atomics and a
// list walk; when the signal interrupted this process holding the lock, the slots stay taken.
inline void release_all_on_terminate() noexcept {
    state* h = made.load();
    if (!h || !h->mutex.try_lock()) return;
    release_all_locked(*h);
    h->mutex.unlock();
}

inline void before_fork() noexcept {
    auto& h = the();
    h.mutex.lock();
    // The child will hold what this process holds: count it now, while no slot can be freed.
    for (block_ref* r = h.refs; r; r = r->next)
        if (!r->released) r->a->holders(r->slot).fetch_add(1, std::memory_order_relaxed);
}
inline void after_fork() noexcept { the().mutex.unlock(); }

inline void register_fork_handlers() noexcept {
    ::pthread_atfork(&before_fork, &after_fork, &after_fork);
}

}  // namespace multiprocessing::detail::heap
