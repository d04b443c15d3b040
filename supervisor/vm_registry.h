// The supervisor's authoritative set of VMs. Every change goes to the durable RecordStore first
// and is then published in the shared-memory state table, whose only writer this is. All access
// happens on the supervisor's event-loop thread.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/state_table.h"
#include "supervisor/caller.h"
#include "supervisor/record_store.h"

namespace fcvm::supervisor {

struct AdoptionSummary {
  uint32_t records = 0;   // durable records found
  uint32_t live = 0;      // VMs whose worker is still running, re-adopted as they are
  uint32_t orphaned = 0;  // active VMs whose worker died meanwhile, now marked failed
  std::vector<std::string> orphanedIds;  // their ids
};

class VmRegistry {
 public:
  VmRegistry(ipc::StateTableWriter& table, const RecordStore& store);

  // Rebuilds the table from the durable records; run once at start. An active VM whose worker
  // died meanwhile is passed to `settle`, which may fill in how it ended (the worker's final
  // state file) and return true; otherwise it is marked failed.
  AdoptionSummary adopt(const std::function<bool(ipc::VmRecord&)>& settle = {});

  std::vector<ipc::VmRecord> visibleTo(const Caller& caller) const;
  // The VM `name` as `caller` may see it: a VM of another user is reported as absent.
  std::optional<ipc::VmRecord> find(const Caller& caller, std::string_view name) const;

  // Registers a new VM in state `creating`. Throws fcvm::Error if `owner` already has a VM of
  // that name, the name is invalid or the table is full.
  ipc::VmRecord create(uint32_t owner, std::string_view name, std::string_view image);
  // Replaces the record with the same id.
  void update(const ipc::VmRecord& record);
  std::optional<ipc::VmRecord> byId(std::string_view id) const;
  // Drops a VM's records whatever its state (the supervisor's own cleanup; no caller check).
  void erase(std::string_view id);
  // Removes a stopped or failed VM's records; throws if it is still active or not visible.
  void remove(const Caller& caller, std::string_view name);

  size_t size() const;

 private:
  std::optional<size_t> slotOf(std::string_view id) const;
  void put(size_t slot, const ipc::VmRecord& record);

  ipc::StateTableWriter& table_;
  const RecordStore& store_;
  std::vector<ipc::VmRecord> slots_;  // mirrors the table; state kFree marks an empty slot
};

bool isActive(ipc::VmState state);

// True for a name that is usable as a VM name and hostname: [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}.

}  // namespace fcvm::supervisor
