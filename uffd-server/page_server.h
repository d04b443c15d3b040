// fcvm-uffd-server's life: load one snapshot's memory image into a sealed memfd, serve it to the
// supervisor's clones (PageServer, ipc/uffd.capnp) and to Firecracker peers on the uffd socket,
// until the supervisor says stop or SIGTERM comes.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

namespace fcvm::uffd {

struct ServerOptions {
  std::string snapshotId;
  std::filesystem::path image;       // the snapshot's memory.img
  std::filesystem::path socket;      // the supervisor's PageServer socket (mode 0600)
  std::filesystem::path uffdSocket;  // Firecracker peers connect here (owned by `owner`, 0600)
  uid_t owner = 0;                   // the snapshot's owner: besides root, the only peer served
  std::optional<int> readyFd;        // "ready\n" once both sockets listen, or "error: ..."
};

// Returns the exit code: 0 after a stop, 1 when it could not start.
int runPageServer(const ServerOptions& options);

}  // namespace fcvm::uffd
