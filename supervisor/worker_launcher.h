// Starting an fcvm-worker for one VM. The worker runs in its own session, so it outlives a
// supervisor that dies (a restarted supervisor re-adopts it); its output goes to
// <vm dir>/worker.log; it reports on a pipe when its VM is set up, or why it could not be.
#pragma once

#include <kj/async-io.h>

#include <filesystem>
#include <optional>
#include <string>

#include "base/paths.h"
#include "base/spawn.h"
#include "base/unique_fd.h"
#include "ipc/records.h"

namespace fcvm::supervisor {

// A daemon this supervisor started: it outlives the supervisor (own session), so it is known by
// pid plus start time, and watched through its pidfd.
struct LaunchedProcess {
  ipc::ProcessId identity;
  UniqueFd pidfd;  // readable once the process has exited
};
using LaunchedWorker = LaunchedProcess;

// Starts `spec` in its own session with its output appended to `log` (and `--log-file log`, so that
// it caps and rotates the file itself) and a ready pipe as fd 3,
// which the daemon writes "ready" to once it serves, or "error: <why>" and exits. Resolves then;
// fails with the daemon's one-line reason otherwise (after reaping it). `what` names it.
kj::Promise<LaunchedProcess> launchDaemon(kj::AsyncIoContext& io, SpawnSpec spec,
                                          const std::string& log, const std::string& what);

// What a worker is given besides its spec file.
struct WorkerInputs {
  Credentials owner;      // the VM owner's: the worker prepares host images with these rights
  int imageArchive = -1;  // the image archive the client opened, if the image is one
  // A clone: its snapshot's directory and memory image (from the snapshot's serve process).
  std::filesystem::path restoreDir;
  int memory = -1;
  int tap = -1;                      // a bridged VM's TAP, from netd
  std::vector<int> volumeDirs;       // each of the spec's volumes, as the client opened it
  std::vector<std::string> cgroups;  // the VM's cgroup.procs files (VmCgroups::create)
  bool imagePrepared = false;        // prepareImage() ran: the worker reads <vm dir>/image.json
};

// Starts the worker for VM `id`, whose spec file must be written. Resolves once the worker says it
// is ready (its VM is booting and its socket listening); fails with the worker's own one-line
// reason otherwise, after the worker has exited.
kj::Promise<LaunchedWorker> launchWorker(kj::AsyncIoContext& io, const Paths& paths,
                                         const std::string& id, const WorkerInputs& inputs);

// Prepares VM `id`'s image as its owner would see it, in a worker process of its own
// (`fcvm-worker --prepare-image`, its log in the VM's worker.log): the export on the first run of
// an image digest, a lookup after. Resolves once <vm dir>/image.json is written; fails with the
// one-line reason otherwise.
kj::Promise<void> prepareImage(kj::AsyncIoContext& io, const Paths& paths, const std::string& id,
                               const WorkerInputs& inputs);

// A pidfd for the process `process` names (a worker found at adoption, a worker's QEMU), or an
// invalid fd if that process is gone (its pid may have been reused: the start time must match).
UniqueFd openPidfd(const ipc::ProcessId& process);

// The QEMU that VM `id`'s worker started, as it recorded it (<run dir>/qemu.pid); none if none
// was recorded. Whether it still runs is the caller's to check (openPidfd, isSameProcessAlive).
std::optional<ipc::ProcessId> recordedQemu(const Paths& paths, const std::string& id);

}  // namespace fcvm::supervisor
