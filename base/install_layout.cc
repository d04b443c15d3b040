#include "base/install_layout.h"

#include <cstdlib>

#include "base/error.h"

namespace fcvm {

std::filesystem::path siblingBinary(const char* name, const char* override) {
  if (const char* path = std::getenv(override); path != nullptr && *path != '\0') return path;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error("cannot find my own executable: " + ec.message());
  return self.parent_path() / name;
}

}  // namespace fcvm
