// The guest root file system: a minimal Debian with Podman, configured for a guest whose PID 1 is
// fc-agent (no systemd), as an ext4 image made without mounting anything.
#pragma once

#include <filesystem>
#include <string>

#include "setup/artifact_store.h"

namespace fcvm::setup {

struct RootfsArtifact {
  std::string key;
  std::filesystem::path image;
  uint64_t bytesUsed = 0;  // of the image file on disk (it is sparse)
  bool built = false;
};

struct RootfsOptions {
  std::string mirror;                  // the host's Debian mirror
  std::filesystem::path packageCache;  // debootstrap's .deb cache, kept across rebuilds
  std::string logFile;                 // debootstrap's and mkfs's output
  bool force = false;
};

RootfsArtifact ensureRootfs(const ArtifactStore& store, const RootfsOptions& options);

}  // namespace fcvm::setup
