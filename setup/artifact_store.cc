#include "setup/artifact_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/paths.h"

namespace fcvm::setup {
namespace {

using nlohmann::json;

constexpr const char* kStagingPrefix = ".staging-";

void syncPath(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw SysError(errno, "open " + path.string());
  checkSys(::fsync(fd.get()), "fsync {}", path.string());
}

std::optional<GuestArtifacts> readCurrent(const std::filesystem::path& root) {
  std::ifstream in(root / "current.json");
  if (!in) return std::nullopt;
  try {
    json j = json::parse(in);
    GuestArtifacts a{root / "kernel" / j.at("kernel").get<std::string>() / "vmlinux",
                     root / "initramfs" / j.at("initramfs").get<std::string>() / "initramfs.cpio",
                     root / "rootfs" / j.at("rootfs").get<std::string>() / "rootfs.ext4",
                     j.at("kernel_version").get<std::string>()};
    for (const auto& p : {a.kernel, a.initramfs, a.rootfs}) {
      if (!std::filesystem::exists(p)) return std::nullopt;
    }
    return a;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

}  // namespace

ArtifactStore::ArtifactStore(std::filesystem::path root) : root_(std::move(root)) {
  ensureOwnedDirectory(root_, 0755);
  auto lockPath = root_.string() + ".lock";
  lock_.reset(static_cast<int>(
      checkSys(::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600), "open {}",
               lockPath)));
  if (::flock(lock_.get(), LOCK_EX | LOCK_NB) == -1) {
    if (errno != EWOULDBLOCK) throw SysError(errno, "lock " + lockPath);
    throw Error(fmt::format("another `fcvm setup` is running on {}", root_.string()));
  }
  // We hold the lock: any staging directory is left over from an interrupted run.
  for (const auto& kind : std::filesystem::directory_iterator(root_)) {
    if (!kind.is_directory()) continue;
    for (const auto& entry : std::filesystem::directory_iterator(kind.path())) {
      if (entry.path().filename().string().starts_with(kStagingPrefix)) {
        std::filesystem::remove_all(entry.path());
      }
    }
  }
}

std::filesystem::path ArtifactStore::path(std::string_view kind, std::string_view key) const {
  return root_ / kind / key;
}

bool ArtifactStore::has(std::string_view kind, std::string_view key) const {
  return std::filesystem::is_directory(path(kind, key));
}

ArtifactStore::Staging ArtifactStore::stage(std::string_view kind, std::string_view key) const {
  auto final = path(kind, key);
  std::filesystem::create_directories(final.parent_path());
  auto dir = final.parent_path() / (kStagingPrefix + std::string(key));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return Staging(dir, final);
}

ArtifactStore::Staging::Staging(std::filesystem::path dir, std::filesystem::path final)
    : dir_(std::move(dir)), final_(std::move(final)) {}

ArtifactStore::Staging::~Staging() {
  if (!committed_ && !dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void ArtifactStore::Staging::commit() {
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_)) {
    if (entry.is_regular_file() && !entry.is_symlink()) syncPath(entry.path());
  }
  syncPath(dir_);
  std::filesystem::remove_all(final_);
  std::filesystem::rename(dir_, final_);
  syncPath(final_.parent_path());
  committed_ = true;
}

std::optional<GuestArtifacts> ArtifactStore::current() const { return readCurrent(root_); }

void ArtifactStore::setCurrent(std::string_view kernelKey, std::string_view initramfsKey,
                               std::string_view rootfsKey, const std::string& kernelVersion) const {
  json j = {{"kernel", kernelKey},
            {"initramfs", initramfsKey},
            {"rootfs", rootfsKey},
            {"kernel_version", kernelVersion}};
  auto tmp = root_ / "current.json.tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) throw Error("write " + tmp.string());
  }
  syncPath(tmp);
  std::filesystem::rename(tmp, root_ / "current.json");
  syncPath(root_);
}

std::optional<GuestArtifacts> currentArtifacts(const std::filesystem::path& dataDir) {
  return readCurrent(dataDir / "storage" / "artifacts");
}

}  // namespace fcvm::setup
