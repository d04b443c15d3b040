// The uncompressed ELF kernel (vmlinux) inside a bzImage (vmlinuz), for QEMU's PVH entry.
#pragma once

#include <filesystem>

namespace fcvm::setup {

// Finds the compressed payload in `vmlinuz` (lz4, gzip, xz or zstd, as the kernel's own
// scripts/extract-vmlinux does), decompresses it to `vmlinux` and checks it is an ELF image.
// Throws fcvm::Error if no payload decompresses to one.
void extractVmlinux(const std::filesystem::path& vmlinuz, const std::filesystem::path& vmlinux);

}  // namespace fcvm::setup
