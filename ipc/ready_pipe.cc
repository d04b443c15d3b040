#include "ipc/ready_pipe.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "base/error.h"

namespace fcvm::ipc {
namespace {

void writeLine(std::optional<int> fd, const std::string& line) {
  if (!fd) return;
  std::string text = line + "\n";
  if (retryEintr([&] { return ::write(*fd, text.data(), text.size()); }) == -1) {
    spdlog::warn("could not write to the ready fd: {}", errnoText(errno));
  }
  ::close(*fd);
}

}  // namespace

void reportReady(std::optional<int> fd) { writeLine(fd, "ready"); }

void reportFailure(std::optional<int> fd, const std::string& why) {
  writeLine(fd, "error: " + why);
}

}  // namespace fcvm::ipc
