#include "base/small_file.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/error.h"
#include "base/unique_fd.h"

namespace fcvm {

std::string readSmallFile(const std::filesystem::path& path, size_t maxBytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw SysError(errno, "open " + path.string());
  std::string text;
  char buffer[16384];
  for (;;) {
    auto n = retryEintr([&] { return ::read(fd.get(), buffer, sizeof buffer); });
    if (n < 0) throw SysError(errno, "read " + path.string());
    if (n == 0) return text;
    if (text.size() + static_cast<size_t>(n) > maxBytes) {
      throw Error(fmt::format("{} is larger than {} bytes", path.string(), maxBytes));
    }
    text.append(buffer, static_cast<size_t>(n));
  }
}

}  // namespace fcvm
