// A container's output as its worker keeps it, in <vm dir>/container.log: records of
// [u32 length, little-endian][u8 kind (0 stdout, 1 stderr)][3 zero bytes][length bytes of data].
// `fcvm logs` replays it, through the worker while it runs and through the supervisor after.
// The reader trusts nothing: a bad kind, an oversized length or a record cut short (a writer
// killed mid-record) ends the log there.
#pragma once

#include <kj/async.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "base/unique_fd.h"
#include "ipc/common.capnp.h"

namespace fcvm::ipc {

inline constexpr uint32_t kMaxLogRecordBytes = 1 << 20;

struct LogRecord {
  rpc::OutputKind kind = rpc::OutputKind::STDOUT;
  std::string data;
};

class ContainerLogWriter {
 public:
  explicit ContainerLogWriter(const std::filesystem::path& path);
  // Appends one record (data split into records of at most kMaxLogRecordBytes).
  void append(rpc::OutputKind kind, std::string_view data);
  uint64_t size() const { return size_; }

 private:
  std::filesystem::path path_;
  UniqueFd fd_;
  uint64_t size_ = 0;
};

class ContainerLogReader {
 public:
  // Reads records that start before `end`; a missing file reads as empty.
  explicit ContainerLogReader(const std::filesystem::path& path,
                              uint64_t end = std::numeric_limits<uint64_t>::max());
  std::optional<LogRecord> next();

 private:
  UniqueFd fd_;
  uint64_t offset_ = 0;
  uint64_t end_;
};

// Writes a plain text file (a console or worker log) to `sink` as stdout, in 64 KiB chunks.
kj::Promise<void> sendTextFile(const std::filesystem::path& path, rpc::OutputSink::Client sink);

// Writes every record of `reader` to `sink`, one write in flight at a time.
kj::Promise<void> sendContainerLog(kj::Own<ContainerLogReader> reader,
                                   rpc::OutputSink::Client sink);

}  // namespace fcvm::ipc
