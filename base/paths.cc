#include "base/paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "base/error.h"

namespace fcvm {

Environment processEnvironment() {
  return [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
  };
}

Paths Paths::resolve(uid_t uid, const Environment& env) {
  Paths paths;
  if (auto dir = env("FCVM_DATA_DIR")) {
    paths.dataDir = *dir;
  } else if (uid == 0) {
    paths.dataDir = "/var/lib/fcvm";
  } else if (auto xdg = env("XDG_DATA_HOME")) {
    paths.dataDir = std::filesystem::path(*xdg) / "fcvm";
  } else if (auto home = env("HOME")) {
    paths.dataDir = std::filesystem::path(*home) / ".local/share/fcvm";
  } else {
    throw Error("cannot choose a data dir: set FCVM_DATA_DIR or HOME");
  }

  if (auto dir = env("FCVM_RUNTIME_DIR")) {
    paths.runtimeDir = *dir;
  } else if (uid == 0) {
    paths.runtimeDir = "/run/fcvm";
  } else if (auto xdg = env("XDG_RUNTIME_DIR")) {
    paths.runtimeDir = std::filesystem::path(*xdg) / "fcvm";
  } else {
    paths.runtimeDir = "/tmp/fcvm-run-" + std::to_string(uid);
  }
  if (auto dir = env("FCVM_MEMORY_DIR")) {
    paths.memoryDir = *dir;
  } else {
    paths.memoryDir = uid == 0 ? "/dev/shm/fcvm" : "/dev/shm/fcvm-" + std::to_string(uid);
  }
  if (auto file = env("FCVM_CONFIG")) {
    paths.configFile = *file;
  } else if (uid == 0) {
    paths.configFile = "/etc/fcvm/config.json";
  } else if (auto xdg = env("XDG_CONFIG_HOME")) {
    paths.configFile = std::filesystem::path(*xdg) / "fcvm/config.json";
  } else if (auto home = env("HOME")) {
    paths.configFile = std::filesystem::path(*home) / ".config/fcvm/config.json";
  }
  if (paths.dataDir.is_relative() || paths.runtimeDir.is_relative() ||
      paths.memoryDir.is_relative()) {
    throw Error(fmt::format("data dir '{}' and runtime dir '{}' must be absolute paths",
                            paths.dataDir.string(), paths.runtimeDir.string()));
  }
  return paths;
}

void ensureOwnedDirectory(const std::filesystem::path& dir, mode_t mode) {
  std::error_code ec;
  if (!dir.parent_path().empty() && dir.parent_path() != dir) {
    std::filesystem::create_directories(dir.parent_path(), ec);
    if (ec) throw Error(fmt::format("create {}: {}", dir.parent_path().string(), ec.message()));
  }
  if (::mkdir(dir.c_str(), mode) == -1 && errno != EEXIST) {
    throw SysError(errno, "create " + dir.string());
  }
  struct stat st {};
  checkSys(::lstat(dir.c_str(), &st), "stat {}", dir.string());
  if (!S_ISDIR(st.st_mode)) throw Error(dir.string() + ": exists and is not a directory");
  if (st.st_uid != ::geteuid()) {
    throw Error(fmt::format("{}: owned by uid {}, not by this user (uid {}); refusing to use it",
                            dir.string(), st.st_uid, ::geteuid()));
  }
}

}  // namespace fcvm
