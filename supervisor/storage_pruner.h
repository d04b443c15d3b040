// Removes what nothing uses of the shared kinds of storage (`fcvm system prune`): artifacts that
// are not the current set and that no running QEMU or snapshot names, and with `all` image disks
// that none names. Ended VMs are removed by the VM controller (as `rm` does), not here.
//
// Safe against what runs beside it: nothing shared is removed while a VM is being set up (what
// it will name is not known yet), while `fcvm setup` holds the artifact store, or from an image
// disk a worker is preparing (its lock is held). The supervisor runs this in one turn of its
// event loop, so no new VM starts meanwhile. Each item is renamed aside before it is removed,
// so a reader never sees half of one.
#pragma once

#include <cstdint>
#include <string>

#include "base/paths.h"
#include "supervisor/storage_inventory.h"

namespace fcvm::supervisor {

struct SharedPruneResult {
  uint32_t artifacts = 0;
  uint32_t images = 0;
  uint64_t bytes = 0;
  std::string skipped;  // why shared items were left this time, if they were
};

SharedPruneResult pruneShared(const Paths& paths, const StorageInventory& inventory, bool all);

}  // namespace fcvm::supervisor
