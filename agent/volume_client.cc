#include "agent/volume_client.h"

#include <fcntl.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <stdexcept>
#include <string>

#include "base/unique_fd.h"
#include "fuse-pipe/client_connection.h"
#include "fuse-pipe/error.h"
#include "fuse-pipe/fuse_client.h"
#include "fuse-pipe/transport.h"

namespace fcvm::agent {

int runVolumeClient(int argc, char** argv) {
  namespace fp = fcvm::fusepipe;
  std::string port;
  bool readOnly = false;
  fp::MountOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    bool hasValue = i + 1 < argc;
    if (arg == "--port" && hasValue) {
      port = argv[++i];
    } else if (arg == "--mountpoint" && hasValue) {
      options.mountpoint = argv[++i];
    } else if (arg == "--ready-fd" && hasValue) {
      options.readyFd = std::atoi(argv[++i]);
    } else if (arg == "--read-only") {
      readOnly = true;
    } else {
      fprintf(stderr,
              "usage: fc-agent volume-mount --port DEV --mountpoint DIR [--read-only] "
              "[--ready-fd N]\n");
      return 2;
    }
  }
  if (port.empty() || options.mountpoint.empty()) {
    fprintf(stderr, "fc-agent volume-mount: --port and --mountpoint are needed\n");
    return 2;
  }
  spdlog::set_default_logger(spdlog::stderr_logger_mt("volume " + options.mountpoint));
  try {
    UniqueFd stream(::open(port.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY));
    if (!stream) fp::throwErrno("open", port);
    fp::Hello server = fp::clientHandshake(stream.get());
    // Every container user reaches the mount (allow_other) and the kernel checks their
    // permissions against the host's modes before asking (default_permissions): a caller without
    // search permission on a directory does not reach below it, even through cached entries.
    // nodev: no device node on a volume opens a device (the server keeps the guest's as
    // placeholders); nosuid: no set-id file on it raises anyone's privileges in the guest.
    options.fuseOptions = {"allow_other", "default_permissions", "nodev",
                           "nosuid",      "fsname=fcvm-volume",  "subtype=fuse-pipe"};
    // Read-only end to end: the server refuses writes, the kernel before it.
    if (readOnly || (server.flags & fp::kHelloReadOnly) != 0) options.fuseOptions.push_back("ro");
    fp::ClientConnection connection(std::move(stream));
    fp::runMount(connection, options);
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}

}  // namespace fcvm::agent
