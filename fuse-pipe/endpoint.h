// Endpoints: where a fuse-pipe stream comes from, written "unix:PATH".
#pragma once

#include <string>
#include <string_view>

#include "base/unique_fd.h"

namespace fcvm::fusepipe {

struct Endpoint {
  std::string unixPath;
};

// Parses "unix:PATH"; throws std::invalid_argument naming the text otherwise.
Endpoint parseEndpoint(std::string_view text);

// A connected stream to the endpoint; throws SysError with the path on failure.
UniqueFd connectEndpoint(const Endpoint& endpoint);

// A listening socket on the endpoint. A stale socket file at the path is replaced; any other kind
// of file there is an error.
UniqueFd listenEndpoint(const Endpoint& endpoint);

}  // namespace fcvm::fusepipe
