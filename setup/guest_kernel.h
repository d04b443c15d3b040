// The guest kernel: Debian's linux-image-cloud-amd64, unpacked (never installed on the host),
// with the ELF vmlinux for QEMU's PVH entry and the modules the initramfs needs.
#pragma once

#include <filesystem>
#include <string>

#include "setup/artifact_store.h"

namespace fcvm::setup {

struct KernelArtifact {
  std::string key;
  std::string package;  // e.g. linux-image-6.1.0-56-cloud-amd64
  std::string version;  // e.g. 6.1.192-2
  std::filesystem::path vmlinux;
  std::filesystem::path modules;  // lib/modules/<release>
  bool built = false;             // false when it was already in the store
};

// Resolves the package apt would install now; downloads and unpacks it unless the store has it.
// Without apt metadata (offline), falls back to the newest kernel already in the store.
KernelArtifact ensureKernel(const ArtifactStore& store, bool force, const std::string& logFile);

}  // namespace fcvm::setup
