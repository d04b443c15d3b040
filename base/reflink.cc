#include "base/reflink.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/error.h"
#include "base/unique_fd.h"

namespace fcvm {

std::optional<std::string> whyNoReflink(const std::filesystem::path& dir) {
  // Unnamed temporary files: nothing is left behind, whatever happens.
  UniqueFd source(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  UniqueFd clone(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!source || !clone) return "cannot create a test file: " + errnoText(errno);
  char block[4096] = {1};
  if (::write(source.get(), block, sizeof block) != sizeof block) {
    return "cannot write a test file: " + errnoText(errno);
  }
  if (::ioctl(clone.get(), FICLONE, source.get()) != 0) return errnoText(errno);
  return std::nullopt;
}

}  // namespace fcvm
