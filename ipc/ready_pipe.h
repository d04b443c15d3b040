// The daemon's side of the ready pipe (supervisor/worker_launcher.h launchDaemon): one line,
// "ready" once it serves, or "error: <why>" before it exits; then the pipe is closed.
#pragma once

#include <optional>
#include <string>

namespace fcvm::ipc {

void reportReady(std::optional<int> fd);
void reportFailure(std::optional<int> fd, const std::string& why);

}  // namespace fcvm::ipc
