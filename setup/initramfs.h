// The initramfs: fc-agent as /init plus the kernel modules it loads before mounting the root disk.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "setup/artifact_store.h"
#include "setup/guest_kernel.h"

namespace fcvm::setup {

// Modules the guest needs that the Debian cloud kernel builds as modules; their dependencies are
// added from modules.dep.
const std::vector<std::string>& guestModules();

// `wanted` and everything they depend on, dependencies first, as paths relative to `modulesDir`
// (read from its modules.dep); modules the kernel has built in (modules.builtin) are left out.
// Throws fcvm::Error for a module the kernel does not have.
std::vector<std::string> moduleLoadOrder(const std::filesystem::path& modulesDir,
                                         const std::vector<std::string>& wanted);

struct InitramfsArtifact {
  std::string key;
  std::filesystem::path image;
  bool built = false;
};

InitramfsArtifact ensureInitramfs(const ArtifactStore& store, const KernelArtifact& kernel,
                                  const std::filesystem::path& agentBinary, bool force);

}  // namespace fcvm::setup
