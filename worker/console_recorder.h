// The guest's serial console as its worker keeps it. QEMU writes ttyS0 into a socket; the worker
// reads the other end and appends to <vm dir>/console.log, capped and rotated as a process log is
// (base/capped_file.h). So a guest that prints to its console without end cannot fill the host's
// disk, and the newest output is kept. QEMU's file backend would write without a bound.
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <filesystem>

#include "base/capped_file.h"
#include "base/unique_fd.h"

namespace fcvm::worker {

class ConsoleRecorder {
 public:
  // `socket`: the worker's end of the console's socket pair. Records until QEMU closes its end.
  ConsoleRecorder(kj::AsyncIoContext& io, UniqueFd socket, const std::filesystem::path& path,
                  uint64_t cap);

 private:
  kj::Promise<void> pump();

  kj::Own<kj::AsyncIoStream> stream_;
  CappedFile file_;
  kj::Array<char> buffer_;
  bool failed_ = false;  // a write failed (disk full): said once, then output is dropped
  kj::Promise<void> pumping_;
};

}  // namespace fcvm::worker
