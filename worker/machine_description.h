// The machine a clone must repeat, as a snapshot keeps it (restore.json's "machine"): machine, CPU,
// memory size, kernel, initramfs and command line, the extra disks in order, the channels by
// name, the network card. The worker writes it at snapshot time and reads it back in every clone,
// so it is a file the worker parses as carefully as a request: every field is checked against what
// a worker could have written, and nothing in it can add to QEMU's command line.
#pragma once

#include <nlohmann/json.hpp>

#include "worker/qemu_vmm.h"

namespace fcvm::worker {

nlohmann::json describeMachine(const QemuConfig& config);

// The configuration back from a description (the clone fills in its own sockets, disk, memory
// and console). Throws fcvm::Error naming the field that is missing, of the wrong type or out of
// range: a QEMU other than the one fcvm runs, a relative path or one with control characters, a
// channel name or MAC address of another form than fcvm makes.
QemuConfig machineFromDescription(const nlohmann::json& machine);

}  // namespace fcvm::worker
