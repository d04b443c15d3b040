// Free space checked before work that would otherwise fail half done: `fcvm setup` building the
// guest artifacts, a VM's disk and its guest memory on tmpfs (where running short later kills
// QEMU with SIGBUS mid-run instead of refusing the run).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

namespace fcvm {

// Bytes an unprivileged writer can still use on the file system of `path` (statvfs f_bavail).
uint64_t freeBytes(const std::filesystem::path& path);

// Throws fcvm::Error ("not enough free space in PATH for WHAT: X MiB free, Y MiB needed") when
// the file system of `path` has less than `needed` bytes free.
void requireFreeSpace(const std::filesystem::path& path, uint64_t needed, std::string_view what);

}  // namespace fcvm
