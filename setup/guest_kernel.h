// The guest kernel: Debian's linux-image-cloud-amd64, unpacked (never installed on the host),
// with the ELF vmlinux for QEMU's PVH entry and the modules the initramfs needs. The volume
// benchmark also unpacks Debian's generic kernel the same way: the cloud kernel has no 9p.
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

// Which Debian kernel: a meta package and the flavour its concrete packages end in
// (linux-image-<abi>-<flavour>).
struct KernelPackage {
  std::string metaPackage;
  std::string flavour;
};
// What guests boot.
inline const KernelPackage kGuestKernel{"linux-image-cloud-amd64", "cloud-amd64"};
// Debian's generic kernel, with 9p: only `make bench-volumes` boots it (its virtio-9p baseline).
inline const KernelPackage kGenericKernel{"linux-image-amd64", "amd64"};

// Resolves the package apt would install now; downloads and unpacks it unless the store has it.
// Without apt metadata (offline), falls back to the newest kernel of that flavour in the store.
KernelArtifact ensureKernel(const ArtifactStore& store, bool force, const std::string& logFile,
                            const KernelPackage& kernel = kGuestKernel);

}  // namespace fcvm::setup
