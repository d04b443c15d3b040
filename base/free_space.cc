#include "base/free_space.h"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include "base/error.h"

namespace fcvm {

uint64_t freeBytes(const std::filesystem::path& path) {
  struct statvfs st {};
  checkSys(::statvfs(path.c_str(), &st), "statvfs {}", path.string());
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

void requireFreeSpace(const std::filesystem::path& path, uint64_t needed, std::string_view what) {
  uint64_t free = freeBytes(path);
  if (free >= needed) return;
  throw Error(fmt::format("not enough free space in {} for {}: {} MiB free, {} MiB needed",
                          path.string(), what, free >> 20, (needed + (1 << 20) - 1) >> 20));
}

}  // namespace fcvm
