#include "cli/supervisor_endpoint.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "base/error.h"
#include "base/install_layout.h"
#include "base/spawn.h"
#include "base/unique_fd.h"
#include "ipc/rpc_client.h"

namespace fcvm::cli {
namespace {

std::string lastLine(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

// Starts fcvm-supervisor detached from this CLI (its own session; init adopts it when this CLI
// exits) and waits until it says it is listening.
void launch(const Paths& paths, std::chrono::milliseconds readyTimeout) {
  auto binary = siblingBinary("fcvm-supervisor", "FCVM_SUPERVISOR_BIN");
  if (::access(binary.c_str(), X_OK) != 0) {
    throw SysError(errno, "cannot start the supervisor: " + binary.string());
  }
  ensureOwnedDirectory(paths.logDir(), 0755);
  auto log = paths.supervisorLog();

  int ready[2];
  checkSys(::pipe2(ready, O_CLOEXEC), "pipe2");
  UniqueFd readyRead(ready[0]);
  UniqueFd readyWrite(ready[1]);

  SpawnSpec spec;
  spec.argv = {binary.string(),
               "--data-dir",
               paths.dataDir.string(),
               "--runtime-dir",
               paths.runtimeDir.string(),
               "--log-file",
               log.string(),
               "--ready-fd",
               "3"};
  spec.env = environmentWith({});
  UniqueFd logFd(static_cast<int>(
      checkSys(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600), "open {}",
               log.string())));
  spec.fds = {{1, logFd.get()}, {2, logFd.get()}, {3, readyWrite.get()}};
  // Its own session: the supervisor outlives this CLI once it is ready. Until then it is ours: one
  // that fails or hangs is gone (killed if need be, and reaped) before this CLI says so.
  spec.newSession = true;
  ChildProcess supervisor = spawn(spec);
  readyWrite.reset();

  // One line: "ready", or "error: <why>" from a supervisor that could not start.
  pollfd pfd{readyRead.get(), POLLIN, 0};
  int n = retryEintr([&] { return ::poll(&pfd, 1, static_cast<int>(readyTimeout.count())); });
  checkSys(n, "wait for fcvm-supervisor");
  std::string line;
  char buf[4096];
  while (n > 0 && line.find('\n') == std::string::npos && line.size() < sizeof buf) {
    ssize_t got = retryEintr([&] { return ::read(readyRead.get(), buf, sizeof buf); });
    if (got <= 0) break;
    line.append(buf, static_cast<size_t>(got));
  }
  line = line.substr(0, line.find('\n'));
  if (line == "ready") {
    supervisor.release();
    return;
  }
  supervisor.waitFor(std::chrono::seconds(5));
  if (line.starts_with("error: ")) {
    throw Error(fmt::format("fcvm-supervisor could not start: {}", line.substr(7)));
  }
  std::string last = lastLine(log);
  throw Error(fmt::format("fcvm-supervisor {} (log {}){}",
                          n == 0 ? "did not become ready in time" : "failed to start", log.string(),
                          last.empty() ? "" : ": " + last));
}

}  // namespace

bool isAnswering(const std::filesystem::path& socket) {
  try {
    ipc::connectUnixSocket(socket);
    return true;
  } catch (const Error&) {
    return false;
  }
}

SupervisorEndpoint resolveEndpoint(uid_t uid, const Environment& env,
                                   const std::optional<std::string>& socketFlag) {
  Paths paths = Paths::resolve(uid, env);
  if (socketFlag) return {*socketFlag, std::nullopt};
  if (auto socket = env("FCVM_SOCKET")) return {*socket, std::nullopt};
  if (uid != 0 && !env("FCVM_RUNTIME_DIR") && isAnswering(kHostSocket)) {
    return {kHostSocket, std::nullopt};
  }
  return {paths.supervisorSocket(), paths};
}

void ensureSupervisor(const SupervisorEndpoint& endpoint, std::chrono::milliseconds readyTimeout) {
  if (isAnswering(endpoint.socket)) return;
  if (!endpoint.startable) {
    throw Error(fmt::format("no fcvm-supervisor answers on {}", endpoint.socket.string()));
  }
  const Paths& paths = *endpoint.startable;
  ensureOwnedDirectory(paths.runtimeDir, ::geteuid() == 0 ? 0755 : 0700);
  auto lockPath = paths.startLock();
  UniqueFd lock(static_cast<int>(
      checkSys(::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600), "open {}",
               lockPath.string())));
  // Whoever holds this is launching a supervisor; the kernel frees it if that CLI dies.
  checkSys(retryEintr([&] { return ::flock(lock.get(), LOCK_EX); }), "lock {}", lockPath.string());
  if (isAnswering(endpoint.socket)) return;  // the CLI before us started it
  launch(paths, readyTimeout);
}

}  // namespace fcvm::cli
