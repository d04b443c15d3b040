// Each VM's resource limits: a cgroup of its own that its worker joins before exec, so the worker
// and its QEMU (and fuse-pipe servers) are held together: memory (guest RAM, which QEMU touches in
// its tmpfs file, plus kVmmOverhead), pids, and CPU time (its vCPUs plus one for the VMM).
//
// cgroup v2 where the host mounts it with these controllers (<root>/fcvm/<vm id>), else the v1
// hierarchies (<root>/{memory,pids,cpu}/fcvm/<vm id>). A host with neither (a container without
// cgroup access) runs VMs without limits; `fcvm doctor` and the supervisor log say which holds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace fcvm {

struct VmLimits {
  uint64_t memoryBytes = 0;
  uint32_t pids = 0;
  uint32_t cpuMillis = 0;  // CPU time per second, in thousandths of a CPU
};

// What a VM of `memoryMib` guest RAM and `cpus` vCPUs is held to.
VmLimits vmLimits(uint32_t memoryMib, uint32_t cpus);

// Measured: QEMU under TCG with a 256 MiB guest keeps ~65 MiB anonymous memory (its translation
// cache and devices) and ~75 MiB of mapped files, the worker ~11 MiB. The rest is headroom for
// snapshots, volumes and a KVM host's larger page tables; the limit is against a runaway VMM.
inline constexpr uint64_t kVmmOverhead = uint64_t{512} << 20;
inline constexpr uint32_t kVmPids = 512;

class VmCgroups {
 public:
  enum class Version { kNone, kV1, kV2 };

  // What `root` (a cgroup file system mount point) offers this process: the version, and whether
  // a VM cgroup can be made there (checked by making and removing one).
  static VmCgroups probe(const std::filesystem::path& root = "/sys/fs/cgroup");

  Version version() const { return version_; }
  bool enforced() const { return version_ != Version::kNone; }
  // One line: what is enforced and where, or why nothing is.
  const std::string& description() const { return description_; }

  // Makes VM `id`'s cgroup with `limits`; returns the cgroup.procs files its worker joins (none
  // when nothing is enforced). Throws fcvm::Error naming the file that could not be written.
  std::vector<std::string> create(const std::string& id, const VmLimits& limits) const;
  // Removes VM `id`'s cgroup, after it ended; idempotent. A process still in it (a QEMU dying of
  // its worker's end, a volume server) is killed first, and waited for a few seconds.
  void remove(const std::string& id) const;

 private:
  std::vector<std::filesystem::path> dirsOf(const std::string& id) const;

  Version version_ = Version::kNone;
  std::filesystem::path root_;
  std::string description_;
};

}  // namespace fcvm
