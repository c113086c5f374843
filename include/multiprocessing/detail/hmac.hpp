// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for the challenge-response handshake of
// Listener and Client (Python: hmac.new(authkey, message, 'sha256').digest()). Self-contained so
// that the library needs no crypto library; it hashes a few dozen bytes per connection, so it is
// written for clarity, not speed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace multiprocessing::detail {

class sha256 {
public:
    static constexpr std::size_t digest_size = 32;
    static constexpr std::size_t block_size = 64;
    using digest = std::array<std::byte, digest_size>;

    sha256() noexcept { reset(); }

    void reset() noexcept {
        h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
              0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
        length_ = 0;
        used_ = 0;
    }

    // Buffers input into 64-byte blocks; each full block is compressed at once.
    void update(std::span<const std::byte> data) noexcept {
        length_ += data.size();
        for (std::byte b : data) {
            block_[used_++] = b;
            if (used_ == block_size) {
                compress();
                used_ = 0;
            }
        }
    }
    void update(std::string_view s) noexcept {
        update(std::as_bytes(std::span(s.data(), s.size())));
    }

    // FIPS 180-4 padding: a 1 bit, zeros, and the message length in bits (big-endian) to fill
    // the last block; then the state, big-endian, is the digest. Resets for reuse.
    digest finish() noexcept {
        std::uint64_t bits = length_ * 8;
        block_[used_++] = std::byte{0x80};
        if (used_ > block_size - 8) {
            while (used_ < block_size) block_[used_++] = std::byte{0};
            compress();
            used_ = 0;
        }
        while (used_ < block_size - 8) block_[used_++] = std::byte{0};
        for (int i = 7; i >= 0; --i) block_[used_++] = std::byte(bits >> (8 * i));
        compress();
        digest out;
        for (std::size_t i = 0; i < 8; ++i)
            for (std::size_t j = 0; j < 4; ++j) out[4 * i + j] = std::byte(h_[i] >> (24 - 8 * j));
        reset();
        return out;
    }

private:
    static constexpr std::uint32_t rotr(std::uint32_t x, int n) noexcept {
        return (x >> n) | (x << (32 - n));
    }

    // One block into the state: the message schedule w, then 64 rounds (FIPS 180-4, 6.2.2).
    void compress() noexcept {
        static constexpr std::uint32_t k[64] = {
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
            0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
            0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
            0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
            0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
            0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
            0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
            0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
            0xc67178f2};
        std::uint32_t w[64];
        for (int i = 0; i < 16; ++i)
            w[i] = std::uint32_t(block_[4 * i]) << 24 | std::uint32_t(block_[4 * i + 1]) << 16 |
                   std::uint32_t(block_[4 * i + 2]) << 8 | std::uint32_t(block_[4 * i + 3]);
        for (int i = 16; i < 64; ++i) {
            std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        auto [a, b, c, d, e, f, g, h] = h_;
        for (int i = 0; i < 64; ++i) {
            std::uint32_t t1 =
                h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
            std::uint32_t t2 =
                (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        std::array<std::uint32_t, 8> add{a, b, c, d, e, f, g, h};
        for (int i = 0; i < 8; ++i) h_[i] += add[i];
    }

    std::array<std::uint32_t, 8> h_;
    std::array<std::byte, block_size> block_{};
    std::uint64_t length_ = 0;
    std::size_t used_ = 0;
};

// Python: hmac.new(key, message, 'sha256').digest()
inline sha256::digest hmac_sha256(std::span<const std::byte> key,
                                  std::span<const std::byte> message) noexcept {
    // RFC 2104: a key longer than a block is hashed first; shorter ones are zero-padded.
    std::array<std::byte, sha256::block_size> k{};
    if (key.size() > sha256::block_size) {
        sha256 h;
        h.update(key);
        auto d = h.finish();
        std::memcpy(k.data(), d.data(), d.size());
    } else if (!key.empty()) {
        std::memcpy(k.data(), key.data(), key.size());
    }
    // H((K ^ opad) || H((K ^ ipad) || message))
    std::array<std::byte, sha256::block_size> pad;
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = k[i] ^ std::byte{0x36};
    sha256 inner;
    inner.update(pad);
    inner.update(message);
    auto inner_digest = inner.finish();
    for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = k[i] ^ std::byte{0x5c};
    sha256 outer;
    outer.update(pad);
    outer.update(inner_digest);
    return outer.finish();
}

// Python: hmac.compare_digest(a, b): the time taken depends on the lengths only, never on where
// the contents differ, so a peer cannot learn the expected digest byte by byte.
inline bool compare_digest(std::span<const std::byte> a, std::span<const std::byte> b) noexcept {
    if (a.size() != b.size()) return false;
    volatile std::uint8_t diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        diff = diff | std::uint8_t(std::to_integer<std::uint8_t>(a[i]) ^
                                   std::to_integer<std::uint8_t>(b[i]));
    return diff == 0;
}

}  // namespace multiprocessing::detail
