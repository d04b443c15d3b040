// A client's end of a Cap'n Proto two-party connection over a Unix socket.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <filesystem>

#include "base/unique_fd.h"

namespace fcvm::ipc {

// A blocking connect to the Unix socket at `path`. Throws fcvm::SysError naming the path; its
// code() tells "nobody there" (ENOENT, ECONNREFUSED) from other failures.
UniqueFd connectUnixSocket(const std::filesystem::path& path);

// Passes fds (capabilities whose server has getFd()) in either direction, up to
// `maxFdsPerMessage` in one message; Cap'n Proto 0.9 sends none at all when that is 0.
class RpcClient {
 public:
  RpcClient(kj::AsyncIoContext& io, UniqueFd connected, unsigned maxFdsPerMessage = 0);
  // Connects to `path` and wraps the connection.
  RpcClient(kj::AsyncIoContext& io, const std::filesystem::path& path,
            unsigned maxFdsPerMessage = 0);

  template <typename T>
  typename T::Client bootstrap() {
    return client_->bootstrap().castAs<T>();
  }

 private:
  kj::Own<kj::AsyncCapabilityStream> stream_;
  kj::Own<capnp::TwoPartyClient> client_;
};

}  // namespace fcvm::ipc
