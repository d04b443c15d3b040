#include "base/file_copy.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

namespace fcvm {
namespace {

off_t sizeOf(int fd, const std::string& what) {
  struct stat st {};
  checkSys(::fstat(fd, &st), "stat the source of {}", what);
  return st.st_size;
}

// [offset, end) of `from` into `to` at the same offset. copy_file_range refuses to cross file
// system types (EXDEV, e.g. tmpfs to ext4); sendfile does not.
void copyRange(int from, int to, off_t offset, off_t end, const std::string& what) {
  bool crossFs = false;
  while (offset < end) {
    auto length = static_cast<size_t>(end - offset);
    ssize_t n;
    if (!crossFs) {
      off_t in = offset, out = offset;
      n = retryEintr([&] { return ::copy_file_range(from, &in, to, &out, length, 0); });
      if (n == -1 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP)) {
        crossFs = true;
        continue;
      }
    } else {
      checkSys(::lseek(to, offset, SEEK_SET), "seek in {}", what);
      off_t in = offset;
      n = retryEintr([&] { return ::sendfile(to, from, &in, length); });
    }
    checkSys(n, "copy {}", what);
    if (n == 0) throw Error(fmt::format("copy {}: the source ended early", what));
    offset += n;
  }
}

}  // namespace

bool cloneOrCopy(int from, int to, const std::string& what) {
  if (::ioctl(to, FICLONE, from) == 0) return true;
  int e = errno;
  if (e != EOPNOTSUPP && e != EXDEV && e != EINVAL && e != ENOTTY) {
    throw SysError(e, "reflink " + what);
  }
  copyRange(from, to, 0, sizeOf(from, what), what);
  return false;
}

uint64_t copySparse(int from, int to, const std::string& what) {
  off_t size = sizeOf(from, what);
  uint64_t copied = 0;
  for (off_t offset = 0; offset < size;) {
    off_t data = ::lseek(from, offset, SEEK_DATA);
    if (data == -1 && errno == ENXIO) break;  // only a hole is left
    checkSys(data, "find data in {}", what);
    off_t hole = ::lseek(from, data, SEEK_HOLE);
    checkSys(hole, "find a hole in {}", what);
    copyRange(from, to, data, hole, what);
    copied += static_cast<uint64_t>(hole - data);
    offset = hole;
  }
  checkSys(::ftruncate(to, size), "size {}", what);
  return copied;
}

}  // namespace fcvm
