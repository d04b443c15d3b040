// The QEMU side of snapshots: a VM's device state saved through QMP (migration to an fd, with
// guest RAM left in its memory file: x-ignore-shared) and loaded into a clone's QEMU. The machine
// a clone rebuilds the identical device model from is in machine_description.h.
#pragma once

#include <kj/async.h>

#include "worker/qemu_vmm.h"
#include "worker/qmp_client.h"

namespace fcvm::worker {

// The paused VM's device state into `stateFd` (open for writing). Resolves once QEMU reports the
// migration completed; rejects with QEMU's reason if it failed.
kj::Promise<void> saveDeviceState(QmpClient& qmp, int stateFd);

// A clone's QEMU (started with `incoming`) takes its device state from `stateFd` (open for
// reading); resolves once loaded. The clone stays paused until `cont`.
kj::Promise<void> loadDeviceState(QmpClient& qmp, int stateFd);

}  // namespace fcvm::worker
