// Where fcvm keeps things. Root uses the host-wide locations; any other user gets their own.
//   data dir:    FCVM_DATA_DIR, else /var/lib/fcvm (root), else $XDG_DATA_HOME/fcvm or
//                ~/.local/share/fcvm
//   runtime dir: FCVM_RUNTIME_DIR, else /run/fcvm (root), else $XDG_RUNTIME_DIR/fcvm or
//                /tmp/fcvm-run-<uid>
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace fcvm {

using Environment = std::function<std::optional<std::string>(const char* name)>;

// The process environment, as an Environment.
Environment processEnvironment();

struct Paths {
  std::filesystem::path dataDir;
  std::filesystem::path runtimeDir;
  // Guest RAM files (tmpfs): FCVM_MEMORY_DIR, else /dev/shm/fcvm (root) or /dev/shm/fcvm-<uid>.
  // Not the runtime dir: /run is a small tmpfs on most hosts (and no tmpfs at all on some).
  std::filesystem::path memoryDir;
  // The supervisor's configuration (quotas): FCVM_CONFIG, else /etc/fcvm/config.json (root) or
  // $XDG_CONFIG_HOME/fcvm/config.json (~/.config). Its absence means no quotas.
  std::filesystem::path configFile;

  static Paths resolve(uid_t uid, const Environment& env);

  std::filesystem::path supervisorSocket() const { return runtimeDir / "supervisor.sock"; }
  std::filesystem::path supervisorLock() const { return runtimeDir / "supervisor.lock"; }
  std::filesystem::path startLock() const { return runtimeDir / "start.lock"; }
  std::filesystem::path stateTable() const { return runtimeDir / "state"; }
  // One lock file per uid a jailed QEMU runs as, held by its worker (worker/qemu_jail.h).
  std::filesystem::path jailUidLocks() const { return runtimeDir / "jail-uids"; }
  std::filesystem::path logDir() const { return dataDir / "logs"; }
  std::filesystem::path supervisorLog() const { return logDir() / "supervisor.log"; }
  std::filesystem::path vmRecordDir() const { return dataDir / "vms"; }
  std::filesystem::path cacheDir() const { return dataDir / "cache"; }
  // Reflink-capable storage (a loopback btrfs when the data dir cannot reflink; see fcvm setup).
  std::filesystem::path storageDir() const { return dataDir / "storage"; }
  std::filesystem::path imageCacheDir() const { return storageDir() / "images"; }
  std::filesystem::path accelProbeCache() const { return cacheDir() / "accel-probe.json"; }
  // One VM's files: spec, logs and final state (data dir); its disk (storage); its sockets and
  // guest memory (runtime dir).
  std::filesystem::path vmDir(std::string_view id) const { return vmRecordDir() / id; }
  std::filesystem::path vmDiskDir(std::string_view id) const { return storageDir() / "vms" / id; }
  std::filesystem::path vmRunDir(std::string_view id) const { return runtimeDir / "vms" / id; }
  std::filesystem::path vmMemoryFile(std::string_view id) const {
    return memoryDir / (std::string(id) + ".mem");
  }
};

// Creates `dir` and its parents (new ones get `mode`) and checks that the leaf is a real directory
// owned by this effective uid, so a directory planted by someone else (e.g. under /tmp) is refused.
void ensureOwnedDirectory(const std::filesystem::path& dir, mode_t mode);

}  // namespace fcvm
