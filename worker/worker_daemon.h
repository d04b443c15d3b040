// fcvm-worker's life: prepare one VM (image, disk, QEMU) synchronously, tell the supervisor it is
// ready, confine itself with seccomp, then serve the Worker capability until the VM has ended.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/paths.h"
#include "base/spawn.h"

namespace fcvm::worker {

struct WorkerOptions {
  Paths paths;
  std::string id;              // the VM's id; its spec is <data dir>/vms/<id>/spec.bin
  std::optional<int> readyFd;  // gets "ready\n", or "error: <why>\n" if setup failed
  Credentials owner;           // the VM owner's: host images are read with these rights
  int imageFd = -1;            // the image archive the client opened, for an archive image
  // A clone: the snapshot's directory, and its memory image (from its serve process).
  std::filesystem::path restoreDir;
  int memoryFd = -1;
  int tapFd = -1;              // a bridged VM's TAP, from netd
  std::vector<int> volumeFds;  // each of the spec's --map directories, as the client opened it
  // The image was prepared already (prepareImageOnly): <vm dir>/image.json says how.
  bool imagePrepared = false;
};

// Returns the process exit code: 0 once the VM has ended (however it ended), 1 if setup failed.
int runWorker(const WorkerOptions& options);

// `fcvm-worker --prepare-image`: prepares the VM's image as its owner (exports it once per digest),
// writes <vm dir>/image.json, says "ready" and returns 0; or says why not and returns 1.
int prepareImageOnly(const WorkerOptions& options);

}  // namespace fcvm::worker
