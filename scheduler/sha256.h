#pragma once
// SHA-256 (FIPS 180-4), written here so that scheduler/ depends on nothing but the
// standard library. The prefix cache keys KV blocks by a hash chain; a collision
// would let one request attend to another request's (or tenant's) KV, so the key
// must be collision resistant, not merely well distributed.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace ember {

using Sha256Digest = std::array<uint8_t, 32>;

// Incremental hasher: update() any number of times, then finish() once.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  Sha256Digest finish();

  static Sha256Digest hash(std::string_view s) {
    Sha256 h;
    h.update(s);
    return h.finish();
  }

 private:
  void compress(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

}  // namespace ember
