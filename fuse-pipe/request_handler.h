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
  // Malformed bodies get EPROTO, unknown opcodes ENOSYS, bad names EINVAL.
  std::optional<std::vector<uint8_t>> handle(const Frame& frame);

 private:
  Filesystem& fs_;
  const bool readOnly_;
};

// True if `name` may name an entry in a directory: 1..kMaxNameLength bytes, not "." or "..",
// without '/' or NUL.
bool isValidName(std::string_view name);

}  // namespace fcvm::fusepipe
