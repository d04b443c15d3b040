// Errors with context: the failed operation, its subject (a path, an fd, a peer) and errno text.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>

namespace fcvm::fusepipe {

// 0 on success, otherwise a positive errno value. Filesystem operations return this so that the
// server can put it on the wire unchanged.
using Errno = int;

// Throws std::system_error whose what() reads "OPERATION SUBJECT: errno text".
[[noreturn]] void throwErrno(std::string_view operation, std::string_view subject, int err = errno);

// Thrown when the peer breaks the protocol (bad length, bad handshake, unknown reply id).
class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace fcvm::fusepipe
