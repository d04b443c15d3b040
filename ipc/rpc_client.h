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

class RpcClient {
 public:
  RpcClient(kj::AsyncIoContext& io, UniqueFd connected);
  // Connects to `path` and wraps the connection.
  RpcClient(kj::AsyncIoContext& io, const std::filesystem::path& path);

  template <typename T>
  typename T::Client bootstrap() {
    return client_->bootstrap().castAs<T>();
  }

 private:
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyClient> client_;
};

}  // namespace fcvm::ipc
