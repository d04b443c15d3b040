#include "supervisor/record_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/ids.h"
#include "base/json_field.h"
#include "base/paths.h"
#include "base/small_file.h"
#include "base/unique_fd.h"
#include "supervisor/record_format.h"

namespace fcvm::supervisor {
namespace {

using nlohmann::json;

constexpr int kRecordVersion = 1;

json toJson(const ipc::VmRecord& r) {
  json j = {
      {"version", kRecordVersion},
      {"id", r.id.view()},
      {"name", r.name.view()},
      {"owner_uid", r.ownerUid},
      {"state", ipc::toString(r.state)},
      {"health", ipc::toString(r.health)},
      {"image", r.image.view()},
      {"reason", r.reason.view()},
      {"network", r.network.view()},
      {"worker_pid", r.worker.pid},
      {"worker_start_time", r.worker.startTime},
      {"created_at_ns", r.createdAtNs},
      {"updated_at_ns", r.updatedAtNs},
  };
  if (r.hasExitCode) j["exit_code"] = r.exitCode;
  if (r.autoRemove) j["auto_remove"] = true;
  if (!r.snapshotId.view().empty()) j["snapshot_id"] = r.snapshotId.view();
  if (r.restartCount != 0) j["restart_count"] = r.restartCount;
  return j;
}

template <size_t N>
void assignField(ipc::FixedString<N>& field, const json& j, const char* key) {
  if (!field.assign(jsonField<std::string>(j, key))) {
    throw Error(fmt::format("field '{}' is longer than {} bytes", key, N - 1));
  }
}

ipc::VmRecord fromJson(const json& j, const std::filesystem::path& file) {
  checkRecordFormat(jsonField<int>(j, "version"), kRecordVersion, file);
  ipc::VmRecord r;
  assignField(r.id, j, "id");
  if (!isHexId(r.id.view())) throw Error("bad id");
  assignField(r.name, j, "name");
  if (!isValidName(r.name.view())) throw Error("bad name");
  assignField(r.image, j, "image");
  assignField(r.reason, j, "reason");
  assignField(r.network, j, "network");
  r.ownerUid = jsonField<uint32_t>(j, "owner_uid");
  auto state = ipc::vmStateFromString(jsonField<std::string>(j, "state"));
  if (!state || *state == ipc::VmState::kFree) throw Error("bad state");
  r.state = *state;
  auto health = ipc::healthFromString(jsonField<std::string>(j, "health"));
  if (!health) throw Error("bad health");
  r.health = *health;
  r.worker.pid = jsonField<int32_t>(j, "worker_pid");
  r.worker.startTime = jsonField<uint64_t>(j, "worker_start_time");
  r.createdAtNs = jsonField<int64_t>(j, "created_at_ns");
  r.updatedAtNs = jsonField<int64_t>(j, "updated_at_ns");
  r.autoRemove = optionalJsonField<bool>(j, "auto_remove").value_or(false) ? 1 : 0;
  if (r.worker.pid < 0) throw Error("bad worker pid");
  if (j.contains("snapshot_id")) {
    assignField(r.snapshotId, j, "snapshot_id");
    if (!isHexId(r.snapshotId.view())) throw Error("bad snapshot id");
  }
  r.restartCount = optionalJsonField<uint32_t>(j, "restart_count").value_or(0);
  if (auto code = optionalJsonField<int32_t>(j, "exit_code")) {
    r.hasExitCode = 1;
    r.exitCode = *code;
  }
  return r;
}

void writeFileAtomically(const std::filesystem::path& path, const std::string& content) {
  auto tmp = path;
  tmp += ".tmp";
  UniqueFd fd(static_cast<int>(
      checkSys(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600),
               "create {}", tmp.string())));
  size_t done = 0;
  while (done < content.size()) {
    auto n = checkSys(
        retryEintr([&] { return ::write(fd.get(), content.data() + done, content.size() - done); }),
        "write {}", tmp.string());
    done += static_cast<size_t>(n);
  }
  checkSys(::fsync(fd.get()), "fsync {}", tmp.string());
  fd.reset();
  checkSys(::rename(tmp.c_str(), path.c_str()), "rename {}", path.string());
}

}  // namespace

std::string formatVmRecord(const ipc::VmRecord& record) { return toJson(record).dump(2) + "\n"; }

ipc::VmRecord parseVmRecord(std::string_view text, const std::filesystem::path& file) {
  return fromJson(json::parse(text), file);
}

RecordStore::RecordStore(std::filesystem::path dir) : dir_(std::move(dir)) {
  ensureOwnedDirectory(dir_, 0700);
}

std::filesystem::path RecordStore::pathFor(std::string_view id) const {
  if (!isHexId(id)) throw Error(fmt::format("invalid VM id '{}'", id));
  return dir_ / (std::string(id) + ".json");
}

std::vector<ipc::VmRecord> RecordStore::loadAll() const {
  std::vector<ipc::VmRecord> records;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    const auto& path = entry.path();
    if (path.extension() != ".json" || !entry.is_regular_file()) continue;
    try {
      auto record = parseVmRecord(readSmallFile(path), path);
      if (path.stem() != record.id.view()) throw Error("file name does not match its id");
      records.push_back(record);
    } catch (const NewerFormatError&) {
      throw;
    } catch (const std::exception& e) {
      spdlog::warn("ignoring damaged VM record {}: {}", path.string(), e.what());
    }
  }
  return records;
}

void RecordStore::save(const ipc::VmRecord& record) const {
  writeFileAtomically(pathFor(record.id.view()), formatVmRecord(record));
}

void RecordStore::remove(std::string_view id) const {
  auto path = pathFor(id);
  if (::unlink(path.c_str()) == -1 && errno != ENOENT) {
    throw SysError(errno, "remove " + path.string());
  }
}

}  // namespace fcvm::supervisor
