// The CLI's end of a container's or command's streams: output written to its own stdout/stderr,
// stdin read and sent with flow control, the local terminal in raw mode for a pty, and window
// size changes passed on.
#pragma once

#include <kj/async-io.h>
#include <termios.h>

#include <functional>
#include <optional>

#include "ipc/common.capnp.h"

namespace fcvm::cli {

// Writes each chunk to fd 1 or 2 before answering, so a slow reader slows the sender.
// `beforeWrite` runs first each time (a run's status line is erased there).
class FdOutputSink final : public rpc::OutputSink::Server {
 public:
  explicit FdOutputSink(std::function<void()> beforeWrite = {})
      : beforeWrite_(std::move(beforeWrite)) {}
  kj::Promise<void> write(WriteContext context) override;

 private:
  std::function<void()> beforeWrite_;
};

// Puts the terminal on fd 0 in raw mode (no echo, no line editing, no signals) for as long as it
// lives, so keys go to the pty in the VM as typed; restores the old mode on destruction.
class RawTerminal {
 public:
  RawTerminal();  // a no-op when fd 0 is not a terminal
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  std::optional<termios> saved_;
};

struct WindowSize {
  uint16_t rows = 0;
  uint16_t cols = 0;
};
// The size of the terminal on fd 0 (or 1), if there is one.
std::optional<WindowSize> terminalSize();

// Sends everything on fd 0 to `process` in chunks of at most 64 KiB, then end-of-file.
kj::Promise<void> sendStdin(kj::AsyncIoContext& io, rpc::Process::Client process);
// Passes every SIGWINCH's new size to `process`; never resolves. SIGWINCH must be captured
// (kj::UnixEventPort::captureSignal) before the event loop was set up.
kj::Promise<void> forwardWindowSize(kj::AsyncIoContext& io, rpc::Process::Client process);

}  // namespace fcvm::cli
