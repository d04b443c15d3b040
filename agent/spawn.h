// Starting one child process with a fixed fd layout: stdin, stdout and stderr are pipes to us
// (or all three are one pty), nothing else is inherited. The child gets a clean signal mask and
// dispositions (the agent blocks/captures SIGCHLD for its event loop) and its own session.
#pragma once

#include <kj/io.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fcvm::agent {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH
  std::vector<std::string> env;   // NAME=VALUE, added to (or replacing in) the agent's environment
  std::string workdir;            // empty: the agent's
  bool pipeStdin = false;         // else stdin is /dev/null
  bool tty = false;               // a pty for all three
  uint16_t rows = 0;
  uint16_t cols = 0;
  // A daemon of the agent's (a volume's client): stdout and stderr are the agent's own (the
  // console) instead of pipes, and `passFd`, if set, is its fd 3 (where it reports readiness).
  bool inheritOutput = false;
  int passFd = -1;
};

struct SpawnedProcess {
  pid_t pid = -1;
  kj::AutoCloseFd stdinFd;   // write end; invalid unless pipeStdin (for a tty: a dup of the pty)
  kj::AutoCloseFd stdoutFd;  // read end; for a tty: the pty master
  kj::AutoCloseFd stderrFd;  // read end; invalid for a tty
};

// Forks and execs. Throws kj::Exception naming argv[0] if the program cannot be started (the
// child reports exec's errno over a close-on-exec pipe, and is reaped here in that case).
// On success the caller owns the child (see ChildProcess).
SpawnedProcess spawnProcess(const SpawnOptions& options);

}  // namespace fcvm::agent
