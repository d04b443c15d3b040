#include "worker/console_recorder.h"

#include <spdlog/spdlog.h>

#include "base/error.h"

namespace fcvm::worker {
namespace {

constexpr size_t kReadBytes = 64 << 10;

}  // namespace

ConsoleRecorder::ConsoleRecorder(kj::AsyncIoContext& io, UniqueFd socket,
                                 const std::filesystem::path& path, uint64_t cap)
    : stream_(io.lowLevelProvider->wrapSocketFd(socket.release(),
                                                kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                                    kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC)),
      file_(path, cap),
      buffer_(kj::heapArray<char>(kReadBytes)),
      pumping_(pump().eagerlyEvaluate(
          [](kj::Exception&& e) { spdlog::warn("console: {}", e.getDescription().cStr()); })) {}

kj::Promise<void> ConsoleRecorder::pump() {
  return stream_->tryRead(buffer_.begin(), 1, buffer_.size()).then([this](size_t n) {
    if (n == 0) return kj::Promise<void>(kj::READY_NOW);  // QEMU is gone
    // Never stop reading, or QEMU would stall the guest on its console: a failed write drops
    // the output instead.
    if (!failed_) {
      try {
        file_.append(std::string_view(buffer_.begin(), n));
      } catch (const Error& e) {
        failed_ = true;
        spdlog::warn("console output is dropped from now on: {}", e.what());
      }
    }
    return pump();
  });
}

}  // namespace fcvm::worker
