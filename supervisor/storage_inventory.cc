#include "supervisor/storage_inventory.h"

#include <sys/stat.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/process_identity.h"
#include "setup/artifact_store.h"
#include "supervisor/worker_launcher.h"

namespace fcvm::supervisor {
namespace {

bool hasEnded(ipc::VmState state) {
  return state == ipc::VmState::kStopped || state == ipc::VmState::kFailed;
}

// The absolute paths among QEMU's arguments, whole or as a `key=value` option of one
// (-drive id=root,file=/path,...).
void addPathsOfArgument(const std::string& arg, std::set<std::filesystem::path>& out) {
  size_t start = 0;
  while (start <= arg.size()) {
    size_t end = arg.find(',', start);
    if (end == std::string::npos) end = arg.size();
    std::string option = arg.substr(start, end - start);
    auto eq = option.find('=');
    std::string value = eq == std::string::npos ? option : option.substr(eq + 1);
    if (value.starts_with('/')) out.insert(std::filesystem::path(value).lexically_normal());
    start = end + 1;
  }
}

// The files process `pid` holds open (a jailed QEMU gets all of them as fds).
void addOpenFiles(pid_t pid, std::set<std::filesystem::path>& out) {
  std::error_code ec;
  for (const auto& fd :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    auto target = std::filesystem::read_symlink(fd.path(), ec);
    if (!ec && target.is_absolute()) out.insert(target.lexically_normal());
  }
}

// The files VM `id`'s QEMU names or holds open, if it runs: false if there is no QEMU to read.
bool addFilesOfRunningQemu(const Paths& paths, const std::string& id,
                           std::set<std::filesystem::path>& out) {
  auto qemu = recordedQemu(paths, id);
  if (!qemu || !isSameProcessAlive(qemu->pid, qemu->startTime)) return false;
  pid_t pid = qemu->pid;
  uint64_t startTime = qemu->startTime;
  std::string all = readProcessFile(pid, "cmdline").value_or("");
  addOpenFiles(pid, out);
  // The pid may have gone between the two reads: it must still be the same process.
  if (!isSameProcessAlive(pid, startTime)) return false;
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    addPathsOfArgument(all.substr(start, end - start), out);
    start = end + 1;
  }
  return true;
}

// Every absolute path a snapshot's restore.json names (its machine: kernel, initramfs, disks).
void addFilesOfJson(const nlohmann::json& j, std::set<std::filesystem::path>& out) {
  if (j.is_string()) {
    auto s = j.get<std::string>();
    if (s.starts_with('/')) out.insert(std::filesystem::path(s).lexically_normal());
  } else if (j.is_structured()) {
    for (const auto& v : j) addFilesOfJson(v, out);
  }
}

// Under `dir` as named, or as the kernel names it (an open file's path has no symlinks, and the
// storage dir may be one).
bool namesSomethingUnder(const std::set<std::filesystem::path>& files,
                         const std::filesystem::path& dir) {
  std::error_code ec;
  auto canonical = std::filesystem::weakly_canonical(dir, ec);
  for (const auto& name : {dir.lexically_normal(), ec ? dir.lexically_normal() : canonical}) {
    auto prefix = name.string() + "/";
    auto it = files.lower_bound(prefix);
    if (it != files.end() && it->string().starts_with(prefix)) return true;
  }
  return false;
}

// The entries of `dir` that are items: not hidden, not staging (".staging-"), directories.
std::vector<std::filesystem::path> entriesOf(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    auto name = e.path().filename().string();
    if (name.starts_with('.') || !e.is_directory(ec) || e.is_symlink(ec)) continue;
    out.push_back(e.path());
  }
  return out;
}

}  // namespace

const char* nameOf(StorageKind kind) {
  switch (kind) {
    case StorageKind::kArtifacts:
      return "artifacts";
    case StorageKind::kImages:
      return "images";
    case StorageKind::kVmDisks:
      return "vm_disks";
    case StorageKind::kSnapshots:
      return "snapshots";
    case StorageKind::kLogs:
      return "logs";
  }
  return "?";
}

uint64_t allocatedBytes(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  uint64_t total = static_cast<uint64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) return total;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           path, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

StorageInventory takeInventory(const Paths& paths, const std::vector<ipc::VmRecord>& records) {
  StorageInventory inventory;
  std::map<std::string, const ipc::VmRecord*> vms;
  std::set<std::filesystem::path> named;
  for (const auto& r : records) {
    std::string id(r.id.view());
    vms[id] = &r;
    if (hasEnded(r.state)) continue;
    if (!addFilesOfRunningQemu(paths, id, named)) inventory.vmStarting = true;
  }
  auto snapshotsDir = paths.storageDir() / "snapshots";
  for (const auto& dir : entriesOf(snapshotsDir)) {
    std::ifstream in(dir / "restore.json");
    auto restore = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!restore.is_discarded()) addFilesOfJson(restore, named);
  }
  if (auto current = setup::currentArtifacts(paths.dataDir)) {
    for (const auto& file : {current->kernel, current->initramfs, current->rootfs}) {
      named.insert(file.lexically_normal());
    }
  }

  auto add = [&inventory](StorageKind kind, const std::filesystem::path& path, bool inUse) {
    return &inventory.items.emplace_back(
        StorageItem{kind, path, {}, {}, allocatedBytes(path), inUse});
  };
  auto artifacts = paths.storageDir() / "artifacts";
  for (const auto& kindDir : entriesOf(artifacts)) {
    for (const auto& dir : entriesOf(kindDir)) {
      add(StorageKind::kArtifacts, dir, namesSomethingUnder(named, dir));
    }
  }
  for (const auto& dir : entriesOf(paths.imageCacheDir())) {
    add(StorageKind::kImages, dir, namesSomethingUnder(named, dir));
  }
  auto ownedByVm = [&](StorageKind kind, const std::filesystem::path& dir) {
    auto id = dir.filename().string();
    auto vm = vms.find(id);
    // Without a record here it is not this supervisor's to judge (another data dir sharing the
    // storage, as tests do): left alone.
    auto* item = add(kind, dir, vm == vms.end() || !hasEnded(vm->second->state));
    if (vm != vms.end()) {
      item->ownerId = id;
      item->ownerUid = vm->second->ownerUid;
    }
  };
  for (const auto& dir : entriesOf(paths.storageDir() / "vms"))
    ownedByVm(StorageKind::kVmDisks, dir);
  for (const auto& dir : entriesOf(paths.dataDir / "vms")) ownedByVm(StorageKind::kLogs, dir);
  add(StorageKind::kLogs, paths.logDir(), true);
  for (const auto& dir : entriesOf(snapshotsDir)) {
    auto* item = add(StorageKind::kSnapshots, dir, true);
    item->ownerId = dir.filename().string();
    std::ifstream in(paths.dataDir / "snapshots" / dir.filename() / "snapshot.json");
    auto meta = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (meta.is_object() && meta.contains("owner_uid") && meta["owner_uid"].is_number_unsigned()) {
      item->ownerUid = meta["owner_uid"].get<uint32_t>();
    }
  }
  return inventory;
}

}  // namespace fcvm::supervisor
