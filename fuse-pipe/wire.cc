#include "fuse-pipe/wire.h"

namespace fcvm::fusepipe {

void WireWriter::appendLe(uint64_t v, int width) {
  for (int i = 0; i < width; ++i) buffer_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void WireWriter::bytes(std::span<const uint8_t> data) {
  u32(static_cast<uint32_t>(data.size()));
  buffer_.insert(buffer_.end(), data.begin(), data.end());
}

void WireWriter::string(std::string_view s) {
  bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

uint64_t WireReader::readLe(int width) {
  if (failed_ || data_.size() - pos_ < static_cast<size_t>(width)) {
    failed_ = true;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= static_cast<uint64_t>(data_[pos_ + i]) << (8 * i);
  pos_ += width;
  return v;
}

std::span<const uint8_t> WireReader::bytes(uint32_t maxLength) {
  uint32_t length = u32();
  if (failed_ || length > maxLength || length > data_.size() - pos_) {
    failed_ = true;
    return {};
  }
  auto out = data_.subspan(pos_, length);
  pos_ += length;
  return out;
}

std::string_view WireReader::string(uint32_t maxLength) {
  auto b = bytes(maxLength);
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace fcvm::fusepipe
