#include "cli/run_progress.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace fcvm::cli {
namespace {

// Back to the line's start, erase it (ECMA-48 EL).
constexpr char kErase[] = "\r\x1b[K";

void writeAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a terminal that is gone: the status is not worth failing the run
    done += static_cast<size_t>(n);
  }
}

unsigned columnsOf(int fd) {
  winsize size{};
  if (::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

}  // namespace

RunProgress::RunProgress(int fd, bool enabled, kj::Timer& timer, const kj::MonotonicClock& clock)
    : fd_(fd), enabled_(enabled), timer_(timer), clock_(clock), since_(clock.now()) {}

RunProgress::~RunProgress() { clear(); }

std::string RunProgress::line(const std::string& what, long seconds, unsigned columns) {
  auto text = fmt::format("fcvm: {}... {}s", what, seconds);
  // One column short of the width: a line that fills it makes some terminals wrap.
  if (columns > 1 && text.size() > columns - 1) text.resize(columns - 1);
  return text;
}

void RunProgress::show(const std::string& what) {
  if (!enabled_ || done_) return;
  what_ = what;
  since_ = clock_.now();
  draw();
  if (ticker_ == nullptr) ticker_ = tick().eagerlyEvaluate(nullptr);
}

void RunProgress::clear() {
  ticker_ = nullptr;
  if (!shown_) return;
  writeAll(fd_, kErase);
  shown_ = false;
}

void RunProgress::done() {
  done_ = true;
  clear();
}

void RunProgress::draw() {
  long seconds = (clock_.now() - since_) / kj::SECONDS;
  writeAll(fd_, kErase + line(what_, seconds, columnsOf(fd_)));
  shown_ = true;
}

kj::Promise<void> RunProgress::tick() {
  return timer_.afterDelay(1 * kj::SECONDS).then([this] {
    draw();
    return tick();
  });
}

}  // namespace fcvm::cli
