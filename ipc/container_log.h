// A container's output as its worker keeps it, in <vm dir>/container.log: records of
// [u32 length, little-endian][u8 kind (0 stdout, 1 stderr)][3 zero bytes][length bytes of data].
// `fcvm logs` replays it, through the worker while it runs and through the supervisor after.
// The reader trusts nothing: a bad kind, an oversized length or a record cut short (a writer
// killed mid-record) ends the log there.
//
// Bounded: once the file would pass half the cap it becomes container.log.1 (replacing the one
// before) and a new container.log starts, so a container that prints without end keeps at most
// the cap on disk, and the newest output is always there. Readers read .1, then the current file.
#pragma once

#include <kj/async.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "base/capped_file.h"
#include "base/unique_fd.h"
#include "ipc/common.capnp.h"

namespace fcvm::ipc {

inline constexpr uint32_t kMaxLogRecordBytes = 1 << 20;

struct LogRecord {
  rpc::OutputKind kind = rpc::OutputKind::STDOUT;
  std::string data;
};

// The default cap of a container's log on disk (both files), and the least a cap may be: two
// files of one largest record each.
inline constexpr uint64_t kDefaultContainerLogCap = uint64_t{64} << 20;
inline constexpr uint64_t kMinContainerLogCap = uint64_t{4} << 20;

class ContainerLogWriter {
 public:
  // `cap`: bytes kept on disk at most (at least kMinContainerLogCap).
  explicit ContainerLogWriter(const std::filesystem::path& path,
                              uint64_t cap = kDefaultContainerLogCap);
  // Appends one record (data split into records of at most kMaxLogRecordBytes).
  void append(rpc::OutputKind kind, std::string_view data);
  // The current file's size: what a reader that starts now reads of it.
  uint64_t size() const { return file_.size(); }

 private:
  CappedFile file_;
};

class ContainerLogReader {
 public:
  // Reads the rotated file, then the records of the current one that start before `end`; missing
  // files read as empty. Both are opened now: a rotation later does not change what it reads.
  explicit ContainerLogReader(const std::filesystem::path& path,
                              uint64_t end = std::numeric_limits<uint64_t>::max());
  std::optional<LogRecord> next();

 private:
  struct File {
    UniqueFd fd;
    uint64_t offset = 0;
    uint64_t end = std::numeric_limits<uint64_t>::max();
  };
  static std::optional<LogRecord> nextOf(File& file);

  File previous_, current_;
};

// Writes a plain text log (a console or worker log: its rotated file, then the current one) to
// `sink` as stdout, in 64 KiB chunks.
kj::Promise<void> sendTextFile(const std::filesystem::path& path, rpc::OutputSink::Client sink);

// Writes every record of `reader` to `sink`, one write in flight at a time.
kj::Promise<void> sendContainerLog(kj::Own<ContainerLogReader> reader,
                                   rpc::OutputSink::Client sink);

}  // namespace fcvm::ipc
