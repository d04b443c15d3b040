// Who is on the other end of a supervisor connection, as the kernel says (SO_PEERCRED), never
// as the client claims.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace kj {
class AsyncIoStream;
}

namespace fcvm::supervisor {

struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;

  bool isRoot() const { return uid == 0; }
  // Root sees everything; anyone else only what they own.
  bool mayAccess(uint32_t ownerUid) const { return isRoot() || uid == ownerUid; }
};

// The credentials of the process that connected `stream` (a Unix socket). Throws if the stream
// is not a Unix socket.
Caller peerCredentials(kj::AsyncIoStream& stream);

}  // namespace fcvm::supervisor
