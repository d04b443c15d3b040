// What must be gone once every VM and snapshot of an fcvm instance has been removed and its
// supervisor stopped, whatever was killed on the way: processes, network namespaces, links,
// iptables rules, mounts, guest memory files, disks, records, state-table entries and cgroups.
// Each leak is one line naming the thing and where it was found.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "tests/support/fcvm_instance.h"

namespace fcvm::testing {

class LeakAudit {
 public:
  // `vmIds`/`snapshotIds`: every id the instance ever showed (VMs and clones, snapshots).
  LeakAudit(const FcvmInstance& fcvm, std::set<std::string> vmIds,
            std::set<std::string> snapshotIds);

  // Asks the live supervisor: no VM, snapshot or serve process is listed. Run before it stops.
  std::vector<std::string> stateTable() const;
  // Looks at the host: nothing of the instance is left. Run after the supervisor stopped.
  std::vector<std::string> host() const;

 private:
  void processes(std::vector<std::string>& leaks) const;
  void networks(std::vector<std::string>& leaks) const;
  void files(std::vector<std::string>& leaks) const;

  const FcvmInstance& fcvm_;
  std::set<std::string> vmIds_, snapshotIds_;
};

}  // namespace fcvm::testing
