#include "setup/reflink_storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/paths.h"
#include "base/reflink.h"
#include "base/subprocess.h"

namespace fcvm::setup {
namespace {

constexpr const char* kImageSize = "32G";  // sparse: costs only what is used

bool isMountPoint(const std::filesystem::path& dir) {
  struct stat self {
  }, parent{};
  if (::stat(dir.c_str(), &self) != 0 || ::stat(dir.parent_path().c_str(), &parent) != 0) {
    return false;
  }
  return self.st_dev != parent.st_dev;
}

void mustRun(const std::vector<std::string>& argv, const std::string& logFile) {
  CommandOptions options = CommandOptions::withTimeout(std::chrono::minutes(2));
  options.outputFile = logFile;
  auto r = runCommand(argv, options);
  if (r.exitCode != 0) {
    throw Error(fmt::format("{} failed (exit {}); see {}", argv[0], r.exitCode, logFile));
  }
}

}  // namespace

std::filesystem::path storageDir(const std::filesystem::path& dataDir) {
  return dataDir / "storage";
}

ReflinkStorage ensureReflinkStorage(const std::filesystem::path& dataDir,
                                    const std::string& logFile) {
  ReflinkStorage storage;
  storage.dir = storageDir(dataDir);
  auto image = dataDir / "storage.btrfs";
  ensureOwnedDirectory(storage.dir, 0755);
  if (isMountPoint(storage.dir)) {
    storage.loopback = true;
    storage.detail = fmt::format("loopback btrfs {} mounted", image.string());
    return storage;
  }
  auto why = whyNoReflink(storage.dir);
  if (!why && !std::filesystem::exists(image)) {
    storage.detail = "the data dir's file system supports reflink";
    return storage;
  }
  if (!std::filesystem::is_empty(storage.dir)) {
    throw Error(
        fmt::format("{} cannot reflink ({}) and is not empty; move its contents away so "
                    "fcvm setup can mount a loopback btrfs there",
                    storage.dir.string(), why.value_or("unknown")));
  }
  if (!std::filesystem::exists(image)) {
    auto tmp = image;
    tmp += ".tmp";
    std::filesystem::remove(tmp);
    mustRun({"truncate", "-s", kImageSize, tmp.string()}, logFile);
    mustRun({"mkfs.btrfs", "-q", tmp.string()}, logFile);
    std::filesystem::rename(tmp, image);
  }
  mustRun({"mount", "-o", "loop", image.string(), storage.dir.string()}, logFile);
  storage.loopback = true;
  storage.created = true;
  storage.detail =
      fmt::format("the data dir cannot reflink ({}): mounted loopback btrfs {} ({} sparse) there",
                  *why, image.string(), kImageSize);
  return storage;
}

bool remountReflinkStorage(const std::filesystem::path& dataDir, const std::string& logFile) {
  auto dir = storageDir(dataDir);
  auto image = dataDir / "storage.btrfs";
  if (!std::filesystem::exists(image) || !std::filesystem::is_directory(dir) || isMountPoint(dir)) {
    return false;
  }
  mustRun({"mount", "-o", "loop", image.string(), dir.string()}, logFile);
  return true;
}

}  // namespace fcvm::setup
