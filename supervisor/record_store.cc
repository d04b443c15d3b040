#include "supervisor/record_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/paths.h"
#include "base/unique_fd.h"
#include "supervisor/record_format.h"

namespace fcvm::supervisor {
namespace {

using nlohmann::json;

constexpr int kRecordVersion = 1;

bool isRecordId(std::string_view id) {
  return id.size() == 16 && id.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

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
  if (!field.assign(j.at(key).get<std::string>())) {
    throw Error(fmt::format("field '{}' is longer than {} bytes", key, N - 1));
  }
}

ipc::VmRecord fromJson(const json& j, const std::filesystem::path& file) {
  checkRecordFormat(j.at("version").get<int>(), kRecordVersion, file);
  ipc::VmRecord r;
  assignField(r.id, j, "id");
  if (!isRecordId(r.id.view())) throw Error("bad id");
  assignField(r.name, j, "name");
  assignField(r.image, j, "image");
  assignField(r.reason, j, "reason");
  assignField(r.network, j, "network");
  r.ownerUid = j.at("owner_uid").get<uint32_t>();
  auto state = ipc::vmStateFromString(j.at("state").get<std::string>());
  if (!state || *state == ipc::VmState::kFree) throw Error("bad state");
  r.state = *state;
  auto health = ipc::healthFromString(j.at("health").get<std::string>());
  if (!health) throw Error("bad health");
  r.health = *health;
  r.worker.pid = j.at("worker_pid").get<int32_t>();
  r.worker.startTime = j.at("worker_start_time").get<uint64_t>();
  r.createdAtNs = j.at("created_at_ns").get<int64_t>();
  r.updatedAtNs = j.at("updated_at_ns").get<int64_t>();
  r.autoRemove = j.value("auto_remove", false) ? 1 : 0;
  if (j.contains("snapshot_id")) assignField(r.snapshotId, j, "snapshot_id");
  r.restartCount = j.value("restart_count", uint32_t{0});
  if (j.contains("exit_code")) {
    r.hasExitCode = 1;
    r.exitCode = j.at("exit_code").get<int32_t>();
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

RecordStore::RecordStore(std::filesystem::path dir) : dir_(std::move(dir)) {
  ensureOwnedDirectory(dir_, 0700);
}

std::filesystem::path RecordStore::pathFor(std::string_view id) const {
  if (!isRecordId(id)) throw Error(fmt::format("invalid VM id '{}'", id));
  return dir_ / (std::string(id) + ".json");
}

std::vector<ipc::VmRecord> RecordStore::loadAll() const {
  std::vector<ipc::VmRecord> records;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    const auto& path = entry.path();
    if (path.extension() != ".json" || !entry.is_regular_file()) continue;
    try {
      std::ifstream in(path);
      auto record = fromJson(json::parse(in), path);
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
  writeFileAtomically(pathFor(record.id.view()), toJson(record).dump(2) + "\n");
}

void RecordStore::remove(std::string_view id) const {
  auto path = pathFor(id);
  if (::unlink(path.c_str()) == -1 && errno != ENOENT) {
    throw SysError(errno, "remove " + path.string());
  }
}

}  // namespace fcvm::supervisor
