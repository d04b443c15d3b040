// The host's live state in one shared-memory file: VM, snapshot and serve records.
//
// Exactly one writer (the supervisor) at a time, enforced by an flock that dies with its holder;
// readers (CLI, workers) map the file read-only and never block the writer. Each record is a
// PublishedSlot, so a writer killed mid-update never leaves a torn record, and a new writer adopts
// the same file in place so readers that already mapped it keep working.
//
// Layout (all little-endian, 8-byte aligned):
//   TableHeader | PublishedSlot<VmRecord> x vms | <SnapshotRecord> x snapshots | <ServeRecord> x
//   serves
#pragma once

#include <boost/interprocess/mapped_region.hpp>
#include <filesystem>
#include <optional>
#include <vector>

#include "base/unique_fd.h"
#include "ipc/published_slot.h"
#include "ipc/records.h"

namespace fcvm::ipc {

struct TableCapacity {
  uint32_t vms = 1024;
  uint32_t snapshots = 256;
  uint32_t serves = 256;
};

// A view over one array of slots in a mapping; does not own the memory.
template <typename T>
class SlotArray {
 public:
  SlotArray(PublishedSlot<T>* slots, size_t size) : slots_(slots), size_(size) {}
  size_t size() const { return size_; }
  // The slot's record if it could be read stably and passes validation.
  std::optional<T> read(size_t index) const {
    auto value = slots_[index].read();
    if (!value || !isValid(*value)) return std::nullopt;
    return value;
  }
  // Every in-use, valid record.
  std::vector<T> readAll() const {
    std::vector<T> out;
    for (size_t i = 0; i < size_; ++i) {
      if (auto r = read(i); r && r->inUse()) out.push_back(*r);
    }
    return out;
  }

 private:
  friend class StateTableWriter;
  PublishedSlot<T>* slots_;
  size_t size_;
};

// Read-only view, for any process allowed to open the file.
class StateTable {
 public:
  // Maps `path` read-only and validates its header and size; throws fcvm::Error if the file is
  // missing, not a state table, or of a layout this build does not know.
  static StateTable openReader(const std::filesystem::path& path);

  SlotArray<VmRecord> vms() const;
  SlotArray<SnapshotRecord> snapshots() const;
  SlotArray<ServeRecord> serves() const;
  // Bumped by each writer that takes the table over.
  uint64_t writerEpoch() const;
  int32_t writerPid() const;
  TableCapacity capacity() const { return capacity_; }

 protected:
  friend class StateTableWriter;
  StateTable(boost::interprocess::mapped_region region, TableCapacity capacity);
  char* base() const { return static_cast<char*>(region_.get_address()); }

  boost::interprocess::mapped_region region_;
  TableCapacity capacity_;
};

// The single writer. Holding one means holding `<path>.lock`.
class StateTableWriter : public StateTable {
 public:
  // Takes the writer lock (fails at once if another live process holds it), then adopts the
  // existing table when its layout matches `capacity`, or atomically replaces it with a fresh,
  // empty one (readers of a replaced file keep their old mapping until they reopen).
  static StateTableWriter open(const std::filesystem::path& path, TableCapacity capacity,
                               mode_t mode);

  // True when open() found and kept the previous writer's table.
  bool adopted() const { return adopted_; }

  void publishVm(size_t index, const VmRecord& r) { publish(vms(), index, r); }
  void publishSnapshot(size_t index, const SnapshotRecord& r) { publish(snapshots(), index, r); }
  void publishServe(size_t index, const ServeRecord& r) { publish(serves(), index, r); }

 private:
  StateTableWriter(StateTable table, UniqueFd lock, bool adopted);
  template <typename T>
  static void publish(SlotArray<T> array, size_t index, const T& r);

  UniqueFd lock_;
  bool adopted_;
};

}  // namespace fcvm::ipc
