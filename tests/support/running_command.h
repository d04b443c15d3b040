// A command whose stdout a test reads while it runs (runCommand only returns at the end): for
// following output as it arrives (`fcvm logs -f`, a foreground run) and acting on what appears.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace fcvm::testing {

class RunningCommand {
 public:
  // `withStderr`: stderr goes into what is read too; else to the file `stderrPath` (e.g. a
  // PseudoTerminal's) if given, else it is this process's.
  RunningCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                 std::chrono::seconds deadline = std::chrono::seconds(600), bool withStderr = false,
                 const std::string& stderrPath = "")
      : deadline_(deadline) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> envStorage;
    for (char** e = environ; *e != nullptr; ++e) envStorage.emplace_back(*e);
    for (const auto& e : env) envStorage.push_back(e);
    std::vector<char*> args, envp;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const auto& e : envStorage) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      if (withStderr) ::dup2(fds[1], 2);
      if (!stderrPath.empty()) {
        int err = ::open(stderrPath.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC);
        if (err < 0) ::_exit(126);
        ::dup2(err, 2);  // fd 2 itself is not close-on-exec
      }
      int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, 0);
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
  }
  ~RunningCommand() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
  }

  // Reads until `text` has appeared in stdout (true) or stdout ended (false).
  bool readUntil(const std::string& text) {
    auto deadline = std::chrono::steady_clock::now() + deadline_;
    while (output_.find(text) == std::string::npos) {
      pollfd pfd{out_, POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
        throw std::runtime_error("no '" + text + "' in time; got: " + output_);
      }
      char buf[4096];
      ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) return false;
      output_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  // Reads to the end of stdout and reaps the command; returns its wait status.
  int finish() {
    while (readUntil("\x01never\x01")) {
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  // Once finish() has reaped it, there is nothing to signal (and -1 would mean every process).
  void kill(int signo) {
    if (pid_ > 0) ::kill(pid_, signo);
  }
  pid_t pid() const { return pid_; }
  const std::string& output() const { return output_; }

 private:
  std::chrono::seconds deadline_;  // bounds a hang; measures nothing
  pid_t pid_ = -1;
  int out_ = -1;
  std::string output_;
};

}  // namespace fcvm::testing
