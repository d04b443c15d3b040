// RequestHandler: decodes one request frame, checks it, performs it on a Filesystem and encodes
// the reply. It trusts nothing in the frame: the body is decoded completely and must be exactly
// consumed before anything is performed, names must be single components, and ids are passed on
// as keys. Only opcodes in its dispatch table are answered (others get ENOSYS); in read-only mode
// every mutation gets EROFS without reaching the filesystem.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "fuse-pipe/filesystem.h"
#include "fuse-pipe/transport.h"

namespace fcvm::fusepipe {

class RequestHandler {
 public:
  RequestHandler(Filesystem& fs, bool readOnly) : fs_(fs), readOnly_(readOnly) {}

  // The reply payload for `frame`, or nullopt for requests that take no reply (forget).
  // Malformed bodies get EPROTO, unknown opcodes ENOSYS, bad names EINVAL. A blocking request
  // (see isBlockingRequest) waits until `cancellation` (may be null) is cancelled at most.
  std::optional<std::vector<uint8_t>> handle(const Frame& frame,
                                             Cancellation* cancellation = nullptr);

 private:
  Filesystem& fs_;
  const bool readOnly_;
};

// True for requests that may wait indefinitely (setlk with kLockWait, flock without LOCK_NB):
// the session runs them on threads of their own, where a kInterrupt can cancel them.
bool isBlockingRequest(const Frame& frame);

// True for requests that only look things up, which take microseconds: no data I/O, nothing that
// can wait for a host process (an open can wait out a lease break, a flush or the last close of a
// file can write data back). The session may perform them on the thread that reads the stream.
bool isQuickRequest(const Frame& frame);

// The request id a well-formed kInterrupt frame names, else nullopt.
std::optional<uint64_t> decodeInterrupt(const Frame& frame);

// True if `name` may name an entry in a directory: 1..kMaxNameLength bytes, not "." or "..",
// without '/' or NUL.
bool isValidName(std::string_view name);

}  // namespace fcvm::fusepipe
