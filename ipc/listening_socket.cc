#include "ipc/listening_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/error.h"

namespace fcvm::ipc {

ListeningSocket::ListeningSocket(std::filesystem::path path, mode_t mode) : path_(std::move(path)) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.string().size() >= sizeof addr.sun_path) {
    throw Error(fmt::format("socket path {} is too long (max {} bytes)", path_.string(),
                            sizeof addr.sun_path - 1));
  }
  std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
  fd_.reset(static_cast<int>(
      checkSys(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), "socket")));
  if (::unlink(path_.c_str()) == -1 && errno != ENOENT) {
    throw SysError(errno, "remove stale " + path_.string());
  }
  checkSys(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), "bind {}",
           path_.string());
  checkSys(::chmod(path_.c_str(), mode), "chmod {}", path_.string());
  checkSys(::listen(fd_.get(), 128), "listen {}", path_.string());
}

ListeningSocket::~ListeningSocket() { ::unlink(path_.c_str()); }

}  // namespace fcvm::ipc
