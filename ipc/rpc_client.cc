#include "ipc/rpc_client.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "base/error.h"

namespace fcvm::ipc {

UniqueFd connectUnixSocket(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof addr.sun_path) {
    throw Error(fmt::format("socket path {} is too long", path.string()));
  }
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  UniqueFd fd(
      static_cast<int>(checkSys(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket")));
  checkSys(retryEintr([&] {
             return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
           }),
           "connect {}", path.string());
  return fd;
}

RpcClient::RpcClient(kj::AsyncIoContext& io, UniqueFd connected, unsigned maxFdsPerMessage)
    : stream_(io.lowLevelProvider->wrapUnixSocketFd(
          connected.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                   kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC)),
      client_(kj::heap<capnp::TwoPartyClient>(*stream_, maxFdsPerMessage)) {}

RpcClient::RpcClient(kj::AsyncIoContext& io, const std::filesystem::path& path,
                     unsigned maxFdsPerMessage)
    : RpcClient(io, connectUnixSocket(path), maxFdsPerMessage) {}

}  // namespace fcvm::ipc
