#include "base/host_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/error.h"
#include "base/unique_fd.h"

namespace fcvm {

void checkHostPortFree(const std::string& hostIp, uint16_t port, const std::string& protocol) {
  UniqueFd sock(
      ::socket(AF_INET, (protocol == "udp" ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
  if (!sock) throw SysError(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (!hostIp.empty() && ::inet_pton(AF_INET, hostIp.c_str(), &addr.sin_addr) != 1) {
    throw Error(fmt::format("'{}' is not an IPv4 address", hostIp));
  }
  if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return;
  int e = errno;
  auto what = fmt::format("{}{}/{}", hostIp.empty() ? "" : hostIp + ":", port, protocol);
  if (e == EADDRINUSE) throw Error(fmt::format("port {} is already in use on the host", what));
  if (e == EADDRNOTAVAIL) throw Error(fmt::format("{} is not an address of this host", hostIp));
  throw SysError(e, "check port " + what);
}

}  // namespace fcvm
