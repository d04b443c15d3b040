// One record in shared memory with a single writer and any number of lock-free readers.
//
// The slot keeps two copies. The writer always fills the copy that is NOT published, then
// publishes it by bumping `published`; each copy also carries its own sequence number (odd
// while being written). Readers copy the published copy out and retry if its sequence moved.
// So a writer killed at any instruction leaves the published copy intact: readers still get the
// last complete record and never block, and a new writer simply carries on.
//
// Every shared word is accessed through std::atomic_ref, so concurrent reads of a copy being
// rewritten are well-defined (and then discarded) rather than a data race.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <optional>
#include <type_traits>

namespace fcvm::ipc {

template <typename T>
struct PublishedSlot {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % 8 == 0);
  static constexpr size_t kWords = sizeof(T) / 8;
  // Enough for any reader to find a stable copy unless the writer republishes this very slot
  // continuously for the whole time; then the reader reports the slot as unreadable.
  static constexpr int kMaxReadAttempts = 1 << 16;

  struct Copy {
    uint64_t seq;
    std::array<uint64_t, kWords> words;
  };
  uint64_t published;  // generation; copies[published & 1] is the current record
  Copy copies[2];

  // Writer only.
  void publish(const T& value) {
    auto words = std::bit_cast<std::array<uint64_t, kWords>>(value);

    uint64_t generation = load(published, std::memory_order_relaxed);
    Copy& copy = copies[(generation + 1) & 1];
    uint64_t begin = (load(copy.seq, std::memory_order_relaxed) + 1) | 1;  // odd: writing
    store(copy.seq, begin, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    for (size_t i = 0; i < kWords; ++i) store(copy.words[i], words[i], std::memory_order_relaxed);
    store(copy.seq, begin + 1, std::memory_order_release);
    store(published, generation + 1, std::memory_order_release);
  }

  // Any process. nullopt only if the slot changed under every attempt.
  std::optional<T> read() const {
    std::array<uint64_t, kWords> words;
    for (int attempt = 0; attempt < kMaxReadAttempts; ++attempt) {
      uint64_t generation = load(published, std::memory_order_acquire);
      const Copy& copy = copies[generation & 1];
      uint64_t before = load(copy.seq, std::memory_order_acquire);
      if (before & 1) continue;
      for (size_t i = 0; i < kWords; ++i) words[i] = load(copy.words[i], std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (load(copy.seq, std::memory_order_relaxed) != before) continue;
      return std::bit_cast<T>(words);
    }
    return std::nullopt;
  }

 private:
  static uint64_t load(const uint64_t& word, std::memory_order order) {
    return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(word)).load(order);
  }
  static void store(uint64_t& word, uint64_t value, std::memory_order order) {
    std::atomic_ref<uint64_t>(word).store(value, order);
  }
};

static_assert(std::atomic_ref<uint64_t>::is_always_lock_free,
              "shared-memory words must be lock-free across processes");

}  // namespace fcvm::ipc
