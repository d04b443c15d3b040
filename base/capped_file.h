// A log file that cannot grow without bound: once an append would take it past half its cap it
// becomes PATH.1 (replacing the one before) and a new PATH starts. At most the cap stays on disk,
// and the newest bytes are always in PATH (or, just after a rotation, at the end of PATH.1).
// Readers read PATH.1, then PATH (previousLogOf).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string_view>

#include "base/unique_fd.h"

namespace fcvm {

// The rotated file beside `path` (container.log -> container.log.1).
std::filesystem::path previousLogOf(const std::filesystem::path& path);

class CappedFile {
 public:
  // Opens (creating, mode 0600, never through a symlink) `path` for appending. `onRotate` runs
  // with the new file's fd after each rotation (a process log points its stderr there).
  CappedFile(std::filesystem::path path, uint64_t cap,
             std::function<void(int fd)> onRotate = nullptr);

  // Appends the buffers as one write, rotating first if they would pass half the cap. A single
  // append larger than half the cap is written whole into a fresh file: callers bound their pieces.
  void append(std::span<const iovec> pieces);
  void append(std::string_view bytes);

  const std::filesystem::path& path() const { return path_; }
  int fd() const { return fd_.get(); }
  uint64_t cap() const { return cap_; }
  // The current file's size: what a reader that starts now reads of it.
  uint64_t size() const { return size_; }

 private:
  void rotate();

  std::filesystem::path path_;
  uint64_t cap_;
  std::function<void(int)> onRotate_;
  UniqueFd fd_;
  uint64_t size_ = 0;
};

// A byte cap from the environment variable `name` if it is a number of at least `least`, else
// `fallback` (with a warning when it is set but unusable).
uint64_t logCapFromEnvironment(const char* name, uint64_t fallback, uint64_t least);

}  // namespace fcvm
