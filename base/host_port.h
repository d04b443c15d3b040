// Whether a port of this host is free to publish: a bind that fails says it is not.
#pragma once

#include <cstdint>
#include <string>

namespace fcvm {

// Throws fcvm::Error ("port 8080/tcp is already in use on the host", or that `hostIp` is not an
// address of this host) unless a socket could bind `hostIp` (every address if empty):`port`.
void checkHostPortFree(const std::string& hostIp, uint16_t port, const std::string& protocol);

}  // namespace fcvm
