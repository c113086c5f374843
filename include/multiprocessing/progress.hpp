// A progress bar over any range, for imap's results in particular (what Python users get from
// tqdm): `for (auto r : mp::progress(pool.imap(f, items))) ...` draws count, percentage, rate
// and ETA on stderr when stderr is a terminal, and stays quiet otherwise.
#pragma once

#include <chrono>
#include <cstdio>
#include <iterator>
#include <optional>
#include <ranges>
#include <string>
#include <utility>

#include <unistd.h>

#include <fmt/format.h>

namespace multiprocessing {

struct ProgressOptions {
    std::optional<std::size_t> total = std::nullopt;  // default: the range's size, if known
    std::string desc = {};                            // a label before the bar
    std::FILE* out = stderr;
    bool force = false;  // draw even when `out` is not a terminal
};

template <class Range>
class progress_view {
public:
    progress_view(Range&& r, ProgressOptions o) : range_(std::forward<Range>(r)), o_(std::move(o)) {
        if (!o_.total) {
            if constexpr (std::ranges::sized_range<std::remove_reference_t<Range>>)
                o_.total = std::size_t(std::ranges::size(range_));
            else if constexpr (requires { range_.length_hint(); })
                o_.total = range_.length_hint();
        }
        enabled_ = o_.force || ::isatty(::fileno(o_.out));
    }

    class iterator {
    public:
        using base = std::ranges::iterator_t<std::remove_reference_t<Range>>;
        using value_type = std::iter_value_t<base>;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        iterator(progress_view* v, base it) : v_(v), it_(std::move(it)) {}
        decltype(auto) operator*() const { return *it_; }
        iterator& operator++() {
            ++it_;
            v_->tick();
            return *this;
        }
        void operator++(int) { ++*this; }
        template <class S>
        friend bool operator==(const iterator& i, const S& end) {
            return i.at_end(end);
        }

    private:
        template <class S>
        bool at_end(const S& end) const {
            bool done = it_ == end;
            if (done) v_->finish();  // the bar's last frame, once the range is done
            return done;
        }

        progress_view* v_ = nullptr;
        base it_;
    };

    iterator begin() {
        start_ = clock::now();
        draw();
        return iterator(this, std::ranges::begin(range_));
    }
    auto end() { return std::ranges::end(range_); }

private:
    using clock = std::chrono::steady_clock;

    void tick() {
        ++count_;
        auto now = clock::now();
        if (now - last_draw_ >= std::chrono::milliseconds(100)) draw();
    }
    void finish() {
        if (finished_) return;
        finished_ = true;
        draw();
        if (enabled_) std::fputc('\n', o_.out);
    }
    void draw() {
        if (!enabled_) return;
        last_draw_ = clock::now();
        double elapsed = std::chrono::duration<double>(last_draw_ - start_).count();
        double rate = elapsed > 0 ? double(count_) / elapsed : 0;
        std::string line = o_.desc.empty() ? std::string() : o_.desc + ": ";
        if (o_.total && *o_.total > 0) {
            double frac = std::min(1.0, double(count_) / double(*o_.total));
            int filled = int(frac * 30);
            double eta = rate > 0 ? double(*o_.total - std::min(count_, *o_.total)) / rate : 0;
            line += fmt::format("{:3.0f}% [{}{}] {}/{} [{:.1f}s<{:.1f}s, {:.1f} it/s]", frac * 100,
                                std::string(std::size_t(filled), '#'),
                                std::string(std::size_t(30 - filled), '.'), count_, *o_.total,
                                elapsed, eta, rate);
        } else {
            line += fmt::format("{} [{:.1f}s, {:.1f} it/s]", count_, elapsed, rate);
        }
        fmt::print(o_.out, "\r{}", line);
        std::fflush(o_.out);
    }

    Range range_;
    ProgressOptions o_;
    bool enabled_ = false;
    bool finished_ = false;
    std::size_t count_ = 0;
    clock::time_point start_{}, last_draw_{};
};

// Wraps `range` (a container, a view, or pool.imap(...)'s result) in a progress bar.
template <class Range>
progress_view<Range> progress(Range&& range, ProgressOptions options = {}) {
    return progress_view<Range>(std::forward<Range>(range), std::move(options));
}

}  // namespace multiprocessing
