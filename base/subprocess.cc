#include "base/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "base/unique_fd.h"

namespace fcvm {
namespace {

UniqueFd openFor(const std::string& path, int flags) {
  return UniqueFd(static_cast<int>(
      checkSys(::open(path.c_str(), flags | O_CLOEXEC | O_NOCTTY, 0644), "open {}", path)));
}

}  // namespace

CommandResult runCommand(const std::vector<std::string>& argv, const CommandOptions& options) {
  if (argv.empty()) throw Error("runCommand: empty command");
  int pipeFds[2];
  checkSys(::pipe2(pipeFds, O_CLOEXEC), "pipe2");
  UniqueFd readEnd(pipeFds[0]);
  UniqueFd writeEnd(pipeFds[1]);
  UniqueFd outFile, errFile;

  SpawnSpec spec;
  spec.argv = argv;
  spec.env = options.environment ? *options.environment : environmentWith(options.extraEnv);
  spec.cwd = options.cwd;
  spec.credentials = options.credentials;
  spec.netns = options.netns;
  if (options.stdinFd >= 0) spec.fds[0] = options.stdinFd;
  if (options.outputFile.empty()) {
    spec.fds[1] = spec.fds[2] = writeEnd.get();
  } else {
    outFile = openFor(options.outputFile, O_WRONLY | O_CREAT | O_APPEND);
    spec.fds[1] = spec.fds[2] = outFile.get();
  }
  if (!options.errorFile.empty()) {
    errFile = openFor(options.errorFile, O_WRONLY | O_CREAT | O_TRUNC);
    spec.fds[2] = errFile.get();
  }
  ChildProcess child = spawn(spec);
  writeEnd.reset();
  if (!options.outputFile.empty()) readEnd.reset();

  // Wait for EOF on the output pipe (when collecting) and for the child's exit (its pidfd),
  // whichever comes last, or the deadline.
  CommandResult result;
  bool exited = false;
  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  char buf[4096];
  while (readEnd || !exited) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timedOut = true;
      child.kill();
      break;
    }
    pollfd pfds[2] = {{child.pidfd(), POLLIN, 0}, {readEnd.get(), POLLIN, 0}};
    int ready = ::poll(pfds, readEnd ? 2 : 1, static_cast<int>(left.count()));
    if (ready == -1 && errno == EINTR) continue;
    checkSys(ready, "wait for {}", argv[0]);
    if (pfds[0].revents != 0) exited = true;
    if (readEnd && pfds[1].revents != 0) {
      ssize_t n = retryEintr([&] { return ::read(readEnd.get(), buf, sizeof buf); });
      checkSys(n, "read output of {}", argv[0]);
      if (n == 0) {
        readEnd.reset();
        continue;
      }
      size_t room = options.maxOutput - std::min(options.maxOutput, result.output.size());
      result.output.append(buf, std::min(room, static_cast<size_t>(n)));
    }
  }
  int status = child.wait();
  if (WIFEXITED(status) && !result.timedOut) result.exitCode = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

}  // namespace fcvm
