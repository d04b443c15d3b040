// netd's own records of the networks it built, one JSON file per VM under <data dir>/netd/,
// written before anything is built (atomically: temporary file, fsync, rename), so that a netd
// killed at any moment, or restarted after the host came back, knows what to remove.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "netd/network_plan.h"

namespace fcvm::netd {

struct NetworkRecord {
  NetworkRequest request;
  uint32_t slot = 0;
  std::string hostResolver;  // as it was when the network was built

  NetworkPlan plan() const { return planNetwork(request, slot, hostResolver); }
};

// A record's file, and back. The parser checks every field (and plans the network, which checks
// the rest); throws fcvm::Error or nlohmann::json::exception for a record that does not.
std::string formatNetworkRecord(const NetworkRecord& record);
NetworkRecord parseNetworkRecord(std::string_view text);

class NetworkRecords {
 public:
  explicit NetworkRecords(std::filesystem::path dir);

  // Every record that reads and plans; a damaged one is logged and removed.
  std::map<std::string, NetworkRecord> loadAll() const;
  void save(const NetworkRecord& record) const;
  void remove(const std::string& vmId) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace fcvm::netd
