// Reading a whole small file (a record, a config) with a bound, so that a damaged or planted file
// of gigabytes is refused with a clear error instead of being read into memory.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

namespace fcvm {

inline constexpr size_t kSmallFileMax = 1 << 20;

// Throws fcvm::Error naming the path: cannot open or read, or larger than `maxBytes`.
std::string readSmallFile(const std::filesystem::path& path, size_t maxBytes = kSmallFileMax);

}  // namespace fcvm
