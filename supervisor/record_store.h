// Durable VM records under <data dir>/vms/<id>.json, so a restarted supervisor can re-adopt the
// VMs that are still running. Each save is atomic (temporary file, fsync, rename).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/records.h"

namespace fcvm::supervisor {

// A record's file, and back. The parser checks every field (ids, names' lengths, states, pids);
// throws NewerFormatError for a record of a newer fcvm, fcvm::Error or nlohmann::json::exception
// for one that does not check out. `file` names it in errors.
std::string formatVmRecord(const ipc::VmRecord& record);
ipc::VmRecord parseVmRecord(std::string_view text, const std::filesystem::path& file);

class RecordStore {
 public:
  explicit RecordStore(std::filesystem::path dir);

  // Every record that parses and validates; a damaged file is logged and left in place. Throws
  // NewerFormatError for a record of a newer fcvm (record_format.h).
  std::vector<ipc::VmRecord> loadAll() const;
  void save(const ipc::VmRecord& record) const;
  void remove(std::string_view id) const;

 private:
  std::filesystem::path pathFor(std::string_view id) const;
  std::filesystem::path dir_;
};

}  // namespace fcvm::supervisor
