#include "base/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "base/error.h"
#include "base/unique_fd.h"

extern char** environ;

namespace fcvm {
namespace {

// Kills (if still running) and reaps the child when it goes out of scope.
class ChildProcess {
 public:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  ~ChildProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  int wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) == -1 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }
  void kill() { ::kill(pid_, SIGKILL); }

 private:
  pid_t pid_;
};

}  // namespace

std::optional<std::string> findInPath(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    if (::access(program.c_str(), X_OK) == 0) return program;
    return std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  // Administrative tools live in sbin, which a non-root PATH often lacks.
  for (const char* sbin : {"/usr/sbin/", "/sbin/"}) {
    std::string candidate = sbin + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

CommandResult runCommand(const std::vector<std::string>& argv, const CommandOptions& options) {
  if (argv.empty()) throw Error("runCommand: empty command");
  auto program = findInPath(argv[0]);
  if (!program) throw SysError(ENOENT, "run " + argv[0]);

  int pipeFds[2];
  checkSys(::pipe2(pipeFds, O_CLOEXEC), "pipe2");
  UniqueFd readEnd(pipeFds[0]);
  UniqueFd writeEnd(pipeFds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (options.outputFile.empty()) {
    posix_spawn_file_actions_adddup2(&actions, writeEnd.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, writeEnd.get(), 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 1, options.outputFile.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  }
  if (!options.errorFile.empty()) {
    posix_spawn_file_actions_addopen(&actions, 2, options.errorFile.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());
  std::vector<std::string> envStorage;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto name = entry.substr(0, entry.find('=') + 1);
    bool replaced = false;
    for (const auto& extra : options.extraEnv) replaced |= extra.starts_with(name);
    if (!replaced) envStorage.emplace_back(entry);
  }
  envStorage.insert(envStorage.end(), options.extraEnv.begin(), options.extraEnv.end());
  std::vector<char*> envp;
  for (auto& e : envStorage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int err = ::posix_spawn(&pid, program->c_str(), &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) throw SysError(err, "run " + *program);
  ChildProcess child(pid);
  writeEnd.reset();

  // Wait for EOF on the output pipe (when collecting) and for the child's exit (its pidfd),
  // whichever comes last, or the deadline.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  checkSys(pidfd.get(), "pidfd_open {}", pid);
  if (!options.outputFile.empty()) readEnd.reset();
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
    pollfd pfds[2] = {{pidfd.get(), POLLIN, 0}, {readEnd.get(), POLLIN, 0}};
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
