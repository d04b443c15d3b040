#include "supervisor/snapshot_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/ids.h"
#include "base/json_field.h"
#include "base/paths.h"
#include "base/small_file.h"
#include "supervisor/record_format.h"

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
          {"qemu_version", m.qemuVersion},
          {"startup_key", m.startupKey},
          {"config_key", m.configKey}};
}

bool isKey(const std::string& key) {
  return key.empty() ||
         (key.size() == 64 && key.find_first_not_of("0123456789abcdef") == std::string::npos);
}

SnapshotMeta fromJson(const json& j, const std::filesystem::path& file) {
  checkRecordFormat(jsonField<int>(j, "format"), kFormat, file);
  SnapshotMeta m;
  m.id = jsonField<std::string>(j, "id");
  if (!isHexId(m.id)) throw Error("bad id");
  m.tag = jsonField<std::string>(j, "tag");
  if (!isValidName(m.tag)) throw Error("bad tag");
  m.ownerUid = jsonField<uint32_t>(j, "owner_uid");
  m.createdAtNs = jsonField<int64_t>(j, "created_at_ns");
  m.sourceVmId = jsonField<std::string>(j, "source_vm_id");
  m.sourceVmName = jsonField<std::string>(j, "source_vm_name");
  if (!isHexId(m.sourceVmId) || !isValidName(m.sourceVmName)) throw Error("bad source VM");
  m.image = jsonField<std::string>(j, "image");
  m.pauseNs = jsonField<uint64_t>(j, "pause_ns");
  m.memoryBytes = jsonField<uint64_t>(j, "memory_bytes");
  m.qemuVersion = jsonField<std::string>(j, "qemu_version");
  // Absent in a record of a snapshot taken before start-up snapshots existed.
  m.startupKey = optionalJsonField<std::string>(j, "startup_key").value_or("");
  m.configKey = optionalJsonField<std::string>(j, "config_key").value_or("");
  if (!isKey(m.startupKey) || !isKey(m.configKey)) throw Error("bad start-up key");
  return m;
}

}  // namespace

std::string formatSnapshotMeta(const SnapshotMeta& meta) { return toJson(meta).dump(2) + "\n"; }

SnapshotMeta parseSnapshotMeta(std::string_view text, const std::filesystem::path& file) {
  return fromJson(json::parse(text), file);
}

SnapshotStaging::SnapshotStaging(const std::filesystem::path& recordDir,
                                 const std::filesystem::path& bulkDir, const std::string& id)
    : recordStaging_(recordDir / (kStagingPrefix + id)),
      record_(recordDir / id),
      bulkStaging_(bulkDir / (kStagingPrefix + id)),
      bulk_(bulkDir / id) {
  // The record's staging dir first: it says what to clean up if this never completes.
  ensureOwnedDirectory(recordStaging_, 0700);
  syncPath(recordDir);
  ensureOwnedDirectory(bulkStaging_, 0700);
  state = createFile(bulkStaging_ / "state.bin");
  memory = createFile(bulkStaging_ / "memory.img");
  disk = createFile(bulkStaging_ / "rootfs.ext4");
}

SnapshotStaging::~SnapshotStaging() {
  if (committed_) return;
  for (const auto& dir : {bulkStaging_, bulk_, recordStaging_}) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    if (ec) spdlog::warn("could not remove {}: {}", dir.string(), ec.message());
  }
}

void SnapshotStaging::commit(const SnapshotMeta& meta, const std::string& restoreJson,
                             const std::filesystem::path& specFile) {
  for (int fd : {state.get(), memory.get(), disk.get()}) {
    checkSys(::fsync(fd), "fsync the snapshot's files in {}", bulkStaging_.string());
  }
  writeText(bulkStaging_ / "restore.json", restoreJson + "\n");
  syncPath(bulkStaging_);
  std::filesystem::rename(bulkStaging_, bulk_);
  syncPath(bulk_.parent_path());
  std::filesystem::copy_file(specFile, recordStaging_ / "spec.bin");
  syncPath(recordStaging_ / "spec.bin");
  writeText(recordStaging_ / "snapshot.json", formatSnapshotMeta(meta));
  syncPath(recordStaging_);
  std::filesystem::rename(recordStaging_, record_);  // the commit
  syncPath(record_.parent_path());
  committed_ = true;
}

SnapshotStore::SnapshotStore(std::filesystem::path recordDir, std::filesystem::path bulkDir)
    : recordDir_(std::move(recordDir)), bulkDir_(std::move(bulkDir)) {
  ensureOwnedDirectory(recordDir_, 0700);
  ensureOwnedDirectory(bulkDir_, 0700);
}

std::vector<SnapshotMeta> SnapshotStore::load() const {
  std::vector<SnapshotMeta> out;
  for (const auto& entry : std::filesystem::directory_iterator(recordDir_)) {
    auto name = entry.path().filename().string();
    if (name.starts_with(kStagingPrefix)) {
      auto id = name.substr(std::string(kStagingPrefix).size());
      spdlog::info("removing snapshot {}, which was not completed or not removed completely", id);
      for (const auto& dir : {bulkDir_ / name, bulkDir_ / id, entry.path()}) {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }
      continue;
    }
    try {
      auto file = entry.path() / "snapshot.json";
      auto meta = parseSnapshotMeta(readSmallFile(file), file);
      if (meta.id != name) throw Error("its id is not its directory's name");
      if (!std::filesystem::is_directory(bulkDir_ / name)) throw Error("its files are gone");
      meta.volumes = ipc::readVmSpecFile(specOf(name).string()).volumes;
      meta.lastUsedNs = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::file_clock::to_sys(std::filesystem::last_write_time(file))
                                .time_since_epoch())
                            .count();
      out.push_back(std::move(meta));
    } catch (const NewerFormatError&) {
      throw;
    } catch (const std::exception& e) {
      spdlog::warn("snapshot {} is unreadable ({}); left alone", entry.path().string(), e.what());
    }
  }
  return out;
}

std::unique_ptr<SnapshotStaging> SnapshotStore::begin(const std::string& id) const {
  return std::make_unique<SnapshotStaging>(recordDir_, bulkDir_, id);
}

void SnapshotStore::markUsed(const std::string& id) const {
  // The record's time is its last use: what a restarted supervisor evicts by.
  std::error_code ec;
  std::filesystem::last_write_time(recordDir_ / id / "snapshot.json",
                                   std::filesystem::file_time_type::clock::now(), ec);
}

void SnapshotStore::remove(const std::string& id) const {
  auto staging = recordDir_ / (kStagingPrefix + id);
  std::error_code ec;
  std::filesystem::rename(recordDir_ / id, staging, ec);
  if (ec) throw Error(fmt::format("remove snapshot {}: {}", id, ec.message()));
  for (const auto& dir : {bulkDir_ / id, staging}) {
    std::filesystem::remove_all(dir, ec);
    if (ec) throw Error(fmt::format("remove {}: {}", dir.string(), ec.message()));
  }
}

}  // namespace fcvm::supervisor
