// A Unix stream socket bound at a path and listening; the path is removed again on destruction.
#pragma once

#include <sys/types.h>

#include <filesystem>

#include "base/unique_fd.h"

namespace fcvm::ipc {

class ListeningSocket {
 public:
  // Replaces a leftover socket file at `path` (the caller must hold the lock that makes it the
  // only owner of that path) and gives the new one `mode`.
  ListeningSocket(std::filesystem::path path, mode_t mode);
  ~ListeningSocket();
  ListeningSocket(const ListeningSocket&) = delete;
  ListeningSocket& operator=(const ListeningSocket&) = delete;

  // The non-blocking, close-on-exec listening fd, for the event loop to own.
  int releaseFd() { return fd_.release(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  UniqueFd fd_;
};

}  // namespace fcvm::ipc
