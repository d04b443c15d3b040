#include "supervisor/caller.h"

#include <kj/async-io.h>
#include <kj/debug.h>
#include <sys/socket.h>

namespace fcvm::supervisor {

Caller peerCredentials(kj::AsyncIoStream& stream) {
  struct ucred cred {};
  uint length = sizeof cred;
  stream.getsockopt(SOL_SOCKET, SO_PEERCRED, &cred, &length);
  KJ_REQUIRE(length == sizeof cred, "SO_PEERCRED answered a short credential", length);
  return Caller{cred.uid, cred.gid, cred.pid};
}

}  // namespace fcvm::supervisor
