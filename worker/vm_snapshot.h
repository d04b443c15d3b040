// The QEMU side of snapshots: a VM's device state saved through QMP (migration to an fd, with
// guest RAM left in its memory file: x-ignore-shared) and loaded into a clone's QEMU, and the
// machine description a clone needs to rebuild the identical device model.
#pragma once

#include <kj/async.h>

#include <nlohmann/json.hpp>

#include "worker/qemu_vmm.h"
#include "worker/qmp_client.h"

namespace fcvm::worker {

// The paused VM's device state into `stateFd` (open for writing). Resolves once QEMU reports the
// migration completed; rejects with QEMU's reason if it failed.
kj::Promise<void> saveDeviceState(QmpClient& qmp, int stateFd);

// A clone's QEMU (started with `incoming`) takes its device state from `stateFd` (open for
// reading); resolves once loaded. The clone stays paused until `cont`.
kj::Promise<void> loadDeviceState(QmpClient& qmp, int stateFd);

// What of a VM's QEMU configuration its clones must repeat: machine, CPU, memory size, kernel,
// initramfs and command line, the extra disks in order, the channels by name.
nlohmann::json describeMachine(const QemuConfig& config);
// The configuration back from a description (the clone fills in its own sockets, disk, memory
// and console). Throws fcvm::Error naming the field that is missing or out of range.
QemuConfig machineFromDescription(const nlohmann::json& machine);

}  // namespace fcvm::worker
