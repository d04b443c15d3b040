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

// The pieces of an initramfs, shared by fcvm's own and the benchmarks' (tests/guest).
// A tree for PID 1: /dev/console (the kernel opens it before /init runs) and the directories
// fc-agent mounts on. Throws fcvm::Error.
void makeInitramfsTree(const std::filesystem::path& tree);
// Copies `modules` (paths from moduleLoadOrder) into tree/fcvm/modules and lists them, in order,
// in tree/fcvm/modules.order, where PID 1 loads them from.
void addInitramfsModules(const std::filesystem::path& tree, const std::filesystem::path& modulesDir,
                         const std::vector<std::string>& modules);
// Packs the tree as a newc cpio archive at `out`, every file owned by root.
void packInitramfs(const std::filesystem::path& tree, const std::filesystem::path& out);

struct InitramfsArtifact {
  std::string key;
  std::filesystem::path image;
  bool built = false;
};

InitramfsArtifact ensureInitramfs(const ArtifactStore& store, const KernelArtifact& kernel,
                                  const std::filesystem::path& agentBinary, bool force);

}  // namespace fcvm::setup
