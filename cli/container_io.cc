#include "cli/container_io.h"

#include <fcntl.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "ipc/rpc_error.h"

namespace fcvm::cli {
namespace {

constexpr size_t kStdinChunk = 65536;  // the agent's maxDataBytes

kj::Promise<void> sendChunk(rpc::Process::Client& process, kj::ArrayPtr<const kj::byte> data,
                            bool eof) {
  auto request = process.writeStdinRequest();
  request.setData(data);
  request.setEof(eof);
  return request.send().ignoreResult();
}

kj::Promise<void> pumpStream(kj::Own<kj::AsyncInputStream> in, rpc::Process::Client process,
                             kj::Array<kj::byte> buffer) {
  auto read = in->tryRead(buffer.begin(), 1, buffer.size());
  return read.then([in = kj::mv(in), process = kj::mv(process),
                    buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
    if (n == 0) return sendChunk(process, {}, true);
    auto sent = sendChunk(process, buffer.slice(0, n), false);
    return sent.then(
        [in = kj::mv(in), process = kj::mv(process), buffer = kj::mv(buffer)]() mutable {
          return pumpStream(kj::mv(in), kj::mv(process), kj::mv(buffer));
        });
  });
}

// A regular file (or /dev/null) cannot be polled; it never blocks either, so read it directly.
kj::Promise<void> pumpFile(rpc::Process::Client process, kj::Array<kj::byte> buffer) {
  ssize_t n = retryEintr([&] { return ::read(0, buffer.begin(), buffer.size()); });
  checkSys(n, "read stdin");
  if (n == 0) return sendChunk(process, {}, true);
  auto sent = sendChunk(process, buffer.slice(0, static_cast<size_t>(n)), false);
  return sent.then([process = kj::mv(process), buffer = kj::mv(buffer)]() mutable {
    return pumpFile(kj::mv(process), kj::mv(buffer));
  });
}

}  // namespace

kj::Promise<void> FdOutputSink::write(WriteContext call) {
  if (beforeWrite_) beforeWrite_();
  auto params = call.getParams();
  int fd = params.getKind() == rpc::OutputKind::STDERR ? 2 : 1;
  auto data = params.getData();
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = retryEintr([&] { return ::write(fd, data.begin() + done, data.size() - done); });
    if (n == -1) {
      // Our own stdout is gone (a closed pipe): tell the sender, who then drops this sink.
      return ipc::rpcError(kj::str("write to fd ", fd, ": ", errnoText(errno).c_str()));
    }
    done += static_cast<size_t>(n);
  }
  return kj::READY_NOW;
}

RawTerminal::RawTerminal() {
  termios mode{};
  if (!::isatty(0) || ::tcgetattr(0, &mode) != 0) return;
  saved_ = mode;
  ::cfmakeraw(&mode);
  ::tcsetattr(0, TCSANOW, &mode);
}

RawTerminal::~RawTerminal() {
  if (saved_) ::tcsetattr(0, TCSANOW, &*saved_);
}

std::optional<WindowSize> terminalSize() {
  winsize ws{};
  for (int fd : {0, 1}) {
    if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) return WindowSize{ws.ws_row, ws.ws_col};
  }
  return std::nullopt;
}

kj::Promise<void> sendStdin(kj::AsyncIoContext& io, rpc::Process::Client process) {
  auto buffer = kj::heapArray<kj::byte>(kStdinChunk);
  struct stat st {};
  if (::fstat(0, &st) == 0 && (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode)) && !::isatty(0)) {
    return pumpFile(kj::mv(process), kj::mv(buffer));
  }
  // kj takes the fd over; hand it a duplicate so fd 0 stays ours (and blocking for the terminal).
  int fd = static_cast<int>(checkSys(::fcntl(0, F_DUPFD_CLOEXEC, 3), "dup stdin"));
  auto in = io.lowLevelProvider->wrapInputFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                                     kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
  return pumpStream(kj::mv(in), kj::mv(process), kj::mv(buffer));
}

kj::Promise<void> forwardWindowSize(kj::AsyncIoContext& io, rpc::Process::Client process) {
  return io.unixEventPort.onSignal(SIGWINCH).then(
      [&io, process = kj::mv(process)](siginfo_t) mutable -> kj::Promise<void> {
        if (auto size = terminalSize()) {
          auto request = process.resizeRequest();
          request.setRows(size->rows);
          request.setCols(size->cols);
          return request.send().ignoreResult().then([&io, process = kj::mv(process)]() mutable {
            return forwardWindowSize(io, kj::mv(process));
          });
        }
        return forwardWindowSize(io, kj::mv(process));
      });
}

}  // namespace fcvm::cli
