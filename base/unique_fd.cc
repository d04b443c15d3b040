#include "base/unique_fd.h"

#include <unistd.h>

namespace fcvm {

void UniqueFd::reset(int fd) {
  // close() is never retried on EINTR: on Linux the fd is released either way.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace fcvm
