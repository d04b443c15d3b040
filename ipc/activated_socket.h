// A listening socket handed over by the service manager: systemd's socket activation (the
// fcvm-supervisor.socket unit), read with libsystemd's sd_listen_fds(3).
#pragma once

#include <filesystem>
#include <optional>

#include "base/unique_fd.h"

namespace fcvm::ipc {

// The socket the service manager passed to this process, checked to be one listening Unix stream
// socket bound at `expected` (where clients look for it); nullopt when none was passed. Throws
// when what was passed is anything else: a unit that names another path would leave every
// client unanswered. Clears LISTEN_* from the environment, so children see none of it.
std::optional<UniqueFd> takeActivatedSocket(const std::filesystem::path& expected);

}  // namespace fcvm::ipc
