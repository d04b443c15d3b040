// Bounded little-endian binary encoding used for every frame body.
//
// WireWriter appends fixed-width integers and length-prefixed byte strings. WireReader reads them
// back from an untrusted buffer: every read is bounds-checked, a failed read makes the reader
// "failed" (sticky) and returns zero/empty, and finish() tells whether the whole buffer was
// consumed without error. Callers decode all fields first and check finish() before using them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fcvm::fusepipe {

class WireWriter {
 public:
  void u8(uint8_t v) { buffer_.push_back(v); }
  void u16(uint16_t v) { appendLe(v, 2); }
  void u32(uint32_t v) { appendLe(v, 4); }
  void u64(uint64_t v) { appendLe(v, 8); }
  void i32(int32_t v) { u32(static_cast<uint32_t>(v)); }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  // A u32 length followed by the bytes.
  void bytes(std::span<const uint8_t> data);
  void string(std::string_view s);

  const std::vector<uint8_t>& buffer() const { return buffer_; }
  std::vector<uint8_t> take() { return std::move(buffer_); }
  size_t size() const { return buffer_.size(); }

 private:
  void appendLe(uint64_t v, int width);
  std::vector<uint8_t> buffer_;
};

class WireReader {
 public:
  explicit WireReader(std::span<const uint8_t> data) : data_(data) {}

  uint8_t u8() { return static_cast<uint8_t>(readLe(1)); }
  uint16_t u16() { return static_cast<uint16_t>(readLe(2)); }
  uint32_t u32() { return static_cast<uint32_t>(readLe(4)); }
  uint64_t u64() { return readLe(8); }
  int32_t i32() { return static_cast<int32_t>(u32()); }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  // A u32 length (at most maxLength) followed by that many bytes; a view into the buffer.
  std::span<const uint8_t> bytes(uint32_t maxLength);
  std::string_view string(uint32_t maxLength);

  // Marks the reader failed, e.g. when a decoded value is out of its allowed range.
  void fail() { failed_ = true; }
  bool failed() const { return failed_; }
  size_t remaining() const { return failed_ ? 0 : data_.size() - pos_; }
  // True when nothing failed and every byte was consumed.
  bool finish() const { return !failed_ && pos_ == data_.size(); }

 private:
  uint64_t readLe(int width);
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  bool failed_ = false;
};

}  // namespace fcvm::fusepipe
