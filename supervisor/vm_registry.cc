#include "supervisor/vm_registry.h"

#include <spdlog/spdlog.h>
#include <sys/random.h>

#include <chrono>

#include "base/error.h"
#include "base/ids.h"
#include "base/process_identity.h"

namespace fcvm::supervisor {
namespace {}  // namespace

bool isActive(ipc::VmState state) {
  return state != ipc::VmState::kFree && state != ipc::VmState::kStopped &&
         state != ipc::VmState::kFailed;
}

// A VM's name becomes its guest's hostname: the agent's rule.
VmRegistry::VmRegistry(ipc::StateTableWriter& table, const RecordStore& store)
    : table_(table), store_(store), slots_(table.vms().size()) {}

AdoptionSummary VmRegistry::adopt(const std::function<bool(ipc::VmRecord&)>& settle) {
  AdoptionSummary summary;
  std::vector<ipc::VmRecord> records = store_.loadAll();
  if (records.size() > slots_.size()) {
    throw Error(fmt::format("{} durable VM records exceed the state table's {} slots",
                            records.size(), slots_.size()));
  }
  // Each slot is published once with its final content, so readers never see a gap.
  std::vector<ipc::VmRecord> adopted(slots_.size());
  size_t slot = 0;
  for (auto& record : records) {
    ++summary.records;
    if (isActive(record.state)) {
      if (isSameProcessAlive(record.worker.pid, record.worker.startTime)) {
        ++summary.live;
      } else {
        ++summary.orphaned;
        summary.orphanedIds.push_back(record.id.str());
        if (!settle || !settle(record)) {
          record.state = ipc::VmState::kFailed;
          record.reason.assignTruncated("worker exited while the supervisor was down");
        }
        record.updatedAtNs = realtimeNs();
        store_.save(record);
      }
    }
    adopted[slot++] = record;
  }
  for (size_t i = 0; i < slots_.size(); ++i) put(i, adopted[i]);
  return summary;
}

std::vector<ipc::VmRecord> VmRegistry::visibleTo(const Caller& caller) const {
  std::vector<ipc::VmRecord> out;
  for (const auto& r : slots_) {
    if (r.inUse() && caller.mayAccess(r.ownerUid)) out.push_back(r);
  }
  return out;
}

std::optional<ipc::VmRecord> VmRegistry::find(const Caller& caller, std::string_view name) const {
  // Root may name a VM of any owner; if two owners use the name, root must be exact, so prefer
  // root's own VM and otherwise refuse to guess.
  std::optional<ipc::VmRecord> found;
  for (const auto& r : slots_) {
    if (!r.inUse() || r.name.view() != name || !caller.mayAccess(r.ownerUid)) continue;
    if (r.ownerUid == caller.uid) return r;
    if (found) throw Error(fmt::format("VM name '{}' is used by several users; use its id", name));
    found = r;
  }
  return found;
}

ipc::VmRecord VmRegistry::create(uint32_t owner, std::string_view name, std::string_view image) {
  if (!isValidName(name)) {
    throw Error(fmt::format(
        "invalid VM name '{}': use 1-63 letters, digits, '_', '.' or '-', starting with a letter "
        "or digit",
        name));
  }
  std::optional<size_t> freeSlot;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& r = slots_[i];
    if (r.inUse() && r.ownerUid == owner && r.name.view() == name) {
      throw Error(
          fmt::format("a VM named '{}' already exists (state {}); remove it or pick "
                      "another name",
                      name, ipc::toString(r.state)));
    }
    if (!r.inUse() && !freeSlot) freeSlot = i;
  }
  if (!freeSlot) throw Error(fmt::format("no room for another VM ({} slots)", slots_.size()));

  ipc::VmRecord record;
  record.id.assign(randomHexId());
  record.name.assign(name);
  if (!record.image.assign(image)) {
    throw Error(fmt::format("image reference longer than {} bytes", record.image.capacity()));
  }
  record.ownerUid = owner;
  record.state = ipc::VmState::kCreating;
  record.createdAtNs = record.updatedAtNs = realtimeNs();
  store_.save(record);
  put(*freeSlot, record);
  return record;
}

void VmRegistry::update(const ipc::VmRecord& record) {
  auto slot = slotOf(record.id.view());
  if (!slot) throw Error(fmt::format("no VM with id {}", record.id.view()));
  ipc::VmRecord updated = record;
  updated.updatedAtNs = realtimeNs();
  store_.save(updated);
  put(*slot, updated);
}

void VmRegistry::remove(const Caller& caller, std::string_view name) {
  auto record = find(caller, name);
  if (!record) throw Error(fmt::format("no VM named '{}'", name));
  if (isActive(record->state)) {
    throw Error(fmt::format("VM '{}' is {}; stop it first", name, ipc::toString(record->state)));
  }
  store_.remove(record->id.view());
  put(*slotOf(record->id.view()), ipc::VmRecord{});
}

std::optional<ipc::VmRecord> VmRegistry::byId(std::string_view id) const {
  auto slot = slotOf(id);
  if (!slot) return std::nullopt;
  return slots_[*slot];
}

void VmRegistry::erase(std::string_view id) {
  auto slot = slotOf(id);
  if (!slot) return;
  store_.remove(id);
  put(*slot, ipc::VmRecord{});
}

size_t VmRegistry::size() const {
  size_t n = 0;
  for (const auto& r : slots_) n += r.inUse() ? 1 : 0;
  return n;
}

std::optional<size_t> VmRegistry::slotOf(std::string_view id) const {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].inUse() && slots_[i].id.view() == id) return i;
  }
  return std::nullopt;
}

void VmRegistry::put(size_t slot, const ipc::VmRecord& record) {
  slots_[slot] = record;
  table_.publishVm(slot, record);
}

}  // namespace fcvm::supervisor
