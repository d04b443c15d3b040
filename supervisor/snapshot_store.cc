#include "supervisor/snapshot_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/paths.h"

namespace fcvm::supervisor {
namespace {

using nlohmann::json;

constexpr int kFormat = 1;
constexpr char kStagingPrefix[] = ".staging-";

UniqueFd createFile(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw SysError(errno, "create " + path.string());
  return fd;
}

void syncPath(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw SysError(errno, "open " + path.string());
  checkSys(::fsync(fd.get()), "fsync {}", path.string());
}

void writeText(const std::filesystem::path& path, const std::string& text) {
  auto fd = createFile(path);
  for (size_t done = 0; done < text.size();) {
    ssize_t n = checkSys(::write(fd.get(), text.data() + done, text.size() - done), "write {}",
                         path.string());
    done += static_cast<size_t>(n);
  }
  checkSys(::fsync(fd.get()), "fsync {}", path.string());
}

json toJson(const SnapshotMeta& m) {
  return {{"format", kFormat},
          {"id", m.id},
          {"tag", m.tag},
          {"owner_uid", m.ownerUid},
          {"created_at_ns", m.createdAtNs},
          {"source_vm_id", m.sourceVmId},
          {"source_vm_name", m.sourceVmName},
          {"image", m.image},
          {"pause_ns", m.pauseNs},
          {"memory_bytes", m.memoryBytes},
          {"qemu_version", m.qemuVersion}};
}

SnapshotMeta fromJson(const json& j) {
  auto format = j.at("format").get<int>();
  if (format > kFormat) {
    throw Error(fmt::format("format {} is newer than this fcvm's {}", format, kFormat));
  }
  SnapshotMeta m;
  m.id = j.at("id").get<std::string>();
  m.tag = j.at("tag").get<std::string>();
  m.ownerUid = j.at("owner_uid").get<uint32_t>();
  m.createdAtNs = j.at("created_at_ns").get<int64_t>();
  m.sourceVmId = j.at("source_vm_id").get<std::string>();
  m.sourceVmName = j.at("source_vm_name").get<std::string>();
  m.image = j.at("image").get<std::string>();
  m.pauseNs = j.at("pause_ns").get<uint64_t>();
  m.memoryBytes = j.at("memory_bytes").get<uint64_t>();
  m.qemuVersion = j.at("qemu_version").get<std::string>();
  return m;
}

}  // namespace

SnapshotStaging::SnapshotStaging(std::filesystem::path dir, std::filesystem::path final)
    : dir_(std::move(dir)), final_(std::move(final)) {
  std::filesystem::create_directory(dir_);
  std::filesystem::permissions(dir_, std::filesystem::perms::owner_all);
  state = createFile(dir_ / "state.bin");
  memory = createFile(dir_ / "memory.img");
  disk = createFile(dir_ / "rootfs.ext4");
}

SnapshotStaging::~SnapshotStaging() {
  if (committed_) return;
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  if (ec) spdlog::warn("could not remove {}: {}", dir_.string(), ec.message());
}

void SnapshotStaging::commit(const SnapshotMeta& meta, const std::string& restoreJson,
                             const std::filesystem::path& specFile) {
  for (int fd : {state.get(), memory.get(), disk.get()}) {
    checkSys(::fsync(fd), "fsync the snapshot's files in {}", dir_.string());
  }
  std::filesystem::copy_file(specFile, dir_ / "spec.bin");
  syncPath(dir_ / "spec.bin");
  writeText(dir_ / "restore.json", restoreJson + "\n");
  writeText(dir_ / "snapshot.json", toJson(meta).dump(2) + "\n");
  syncPath(dir_);
  std::filesystem::rename(dir_, final_);
  syncPath(final_.parent_path());
  committed_ = true;
}

SnapshotStore::SnapshotStore(std::filesystem::path dir) : dir_(std::move(dir)) {
  ensureOwnedDirectory(dir_, 0700);
}

std::vector<SnapshotMeta> SnapshotStore::load() const {
  std::vector<SnapshotMeta> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    auto name = entry.path().filename().string();
    if (name.starts_with(kStagingPrefix)) {
      spdlog::info("removing {}, left by a snapshot that did not complete", entry.path().string());
      std::error_code ec;
      std::filesystem::remove_all(entry.path(), ec);
      continue;
    }
    try {
      std::ifstream in(entry.path() / "snapshot.json");
      auto meta = fromJson(json::parse(in));
      if (meta.id != name) throw Error("its id is not its directory's name");
      out.push_back(std::move(meta));
    } catch (const std::exception& e) {
      spdlog::warn("snapshot {} is unreadable ({}); left alone", entry.path().string(), e.what());
    }
  }
  return out;
}

std::unique_ptr<SnapshotStaging> SnapshotStore::begin(const std::string& id) const {
  return std::make_unique<SnapshotStaging>(dir_ / (kStagingPrefix + id), dir_ / id);
}

void SnapshotStore::remove(const std::string& id) const {
  std::error_code ec;
  std::filesystem::remove_all(dir_ / id, ec);
  if (ec) throw Error(fmt::format("remove snapshot {}: {}", id, ec.message()));
}

}  // namespace fcvm::supervisor
