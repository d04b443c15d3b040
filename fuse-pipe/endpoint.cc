#include "fuse-pipe/endpoint.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "fuse-pipe/error.h"

namespace fcvm::fusepipe {

namespace {

sockaddr_un unixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    throw std::invalid_argument("unix socket path '" + path + "' is empty or too long");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

Endpoint parseEndpoint(std::string_view text) {
  constexpr std::string_view kUnix = "unix:";
  if (text.starts_with(kUnix) && text.size() > kUnix.size()) {
    return Endpoint{std::string(text.substr(kUnix.size()))};
  }
  throw std::invalid_argument("endpoint '" + std::string(text) + "' is not of the form unix:PATH");
}

UniqueFd connectEndpoint(const Endpoint& endpoint) {
  sockaddr_un addr = unixAddress(endpoint.unixPath);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throwErrno("socket for", endpoint.unixPath);
  while (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINTR) throwErrno("connect to", endpoint.unixPath);
  }
  return fd;
}

UniqueFd listenEndpoint(const Endpoint& endpoint) {
  sockaddr_un addr = unixAddress(endpoint.unixPath);
  struct stat st;
  if (::lstat(endpoint.unixPath.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      throwErrno("listen on (a non-socket file exists at)", endpoint.unixPath, EEXIST);
    }
    if (::unlink(endpoint.unixPath.c_str()) != 0) {
      throwErrno("remove stale socket", endpoint.unixPath);
    }
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throwErrno("socket for", endpoint.unixPath);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throwErrno("bind", endpoint.unixPath);
  }
  if (::listen(fd.get(), 16) != 0) throwErrno("listen on", endpoint.unixPath);
  return fd;
}

}  // namespace fcvm::fusepipe
