// Which supervisor a CLI talks to, and starting it when none answers.
//
// Order: --socket / FCVM_SOCKET; else the runtime dir of Paths (FCVM_RUNTIME_DIR, root's
// /run/fcvm). A non-root user without FCVM_RUNTIME_DIR uses the host's shared supervisor at
// /run/fcvm/supervisor.sock when it answers, and otherwise their own under $XDG_RUNTIME_DIR/fcvm.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>

#include "base/paths.h"

namespace fcvm::cli {

struct SupervisorEndpoint {
  std::filesystem::path socket;
  // Set when this CLI may start the supervisor for `socket` itself.
  std::optional<Paths> startable;
};

// Root's supervisor, which other users reach when it runs (and they set no runtime dir).
inline constexpr char kHostSocket[] = "/run/fcvm/supervisor.sock";

SupervisorEndpoint resolveEndpoint(uid_t uid, const Environment& env,
                                   const std::optional<std::string>& socketFlag);

// Makes sure a supervisor answers on `endpoint.socket`, starting one if allowed. Two CLIs racing
// here start exactly one (they serialise on <runtime dir>/start.lock). Throws fcvm::Error with the
// supervisor's last log line if it fails to come up within `readyTimeout`.
void ensureSupervisor(const SupervisorEndpoint& endpoint, std::chrono::milliseconds readyTimeout);

// True if something accepts connections on `socket` right now.
bool isAnswering(const std::filesystem::path& socket);

}  // namespace fcvm::cli
