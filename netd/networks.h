// The networks netd has built: its records, the slots they hold in the address pool, and the
// checks a request must pass before anything is built (its ports free on the host and not
// published by another VM).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/unique_fd.h"
#include "netd/network_records.h"

namespace fcvm::netd {

class Networks {
 public:
  // Loads the records. This netd's host chains that no record accounts for (a netd killed
  // between building and recording) are removed. `instance` (4 hex digits) tells this netd's
  // chains from those of another one on the host (each test instance runs its own).
  Networks(NetworkRecords records, std::string instance);

  // Records, then builds the VM's network; returns its plan and TAP. Throws fcvm::Error with a
  // clear reason; nothing is left then.
  std::pair<NetworkPlan, UniqueFd> create(const NetworkRequest& request);
  void destroy(const std::string& vmId);
  // Destroys every network but those of `vmIds`.
  void retain(const std::vector<std::string>& vmIds);
  std::vector<std::string> list() const;

 private:
  void checkPortsFree(const NetworkRequest& request) const;
  uint32_t freeSlot() const;

  NetworkRecords records_;
  const std::string instance_;
  std::map<std::string, NetworkRecord> networks_;  // by VM id
};

// The host's first nameserver (/etc/resolv.conf), for VMs that ask for none.
std::string hostResolver();
// The instance tag of the netd whose records are in `dataDir`.
std::string instanceTag(const std::filesystem::path& dataDir);

}  // namespace fcvm::netd
