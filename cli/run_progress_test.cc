#include "cli/run_progress.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/timer.h>
#include <unistd.h>

#include "base/unique_fd.h"

namespace fcvm::cli {
namespace {

// A clock moved by hand, with the timer that ticks on it.
class ManualClock final : public kj::MonotonicClock {
 public:
  kj::TimePoint now() const override { return now_; }
  kj::TimePoint now_ = kj::origin<kj::TimePoint>();
};

// The status line's bytes, read from a pipe standing in for the terminal; time moves by hand.
class RunProgressTest : public ::testing::Test {
 protected:
  RunProgressTest() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    read_.reset(fds[0]);
    write_.reset(fds[1]);
  }
  ~RunProgressTest() noexcept override {}  // kj::EventLoop's destructor may throw
  std::string written() {
    std::string text;
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(read_.get(), buffer, sizeof buffer)) > 0) text.append(buffer, n);
    return text;
  }
  void advance(kj::Duration d) {
    clock_.now_ = clock_.now_ + d;
    timer_.advanceTo(clock_.now_);
    ws_.poll();
  }

  kj::EventLoop loop_;
  kj::WaitScope ws_{loop_};
  ManualClock clock_;
  kj::TimerImpl timer_{kj::origin<kj::TimePoint>()};
  UniqueFd read_, write_;
};

TEST_F(RunProgressTest, OneLineRewrittenEachSecondAndErasedBeforeOtherOutput) {
  {
    RunProgress progress(write_.get(), true, timer_, clock_);
    progress.show("booting VM web");
    EXPECT_EQ(written(), "\r\x1b[Kfcvm: booting VM web... 0s");
    advance(1 * kj::SECONDS);
    advance(1 * kj::SECONDS);
    EXPECT_EQ(written(), "\r\x1b[Kfcvm: booting VM web... 1s\r\x1b[Kfcvm: booting VM web... 2s");
    progress.show("starting");  // a new wait has its own clock
    EXPECT_EQ(written(), "\r\x1b[Kfcvm: starting... 0s");
    progress.clear();
    EXPECT_EQ(written(), "\r\x1b[K");
    advance(5 * kj::SECONDS);  // nothing shows after clear()
    progress.clear();
    EXPECT_EQ(written(), "");
    progress.show("again");
    EXPECT_EQ(written(), "\r\x1b[Kfcvm: again... 0s");
  }
  EXPECT_EQ(written(), "\r\x1b[K");  // its end erases it too
}

TEST_F(RunProgressTest, TimeSpentOutsideTheEventLoopCountsAndNothingShowsAfterDone) {
  RunProgress progress(write_.get(), true, timer_, clock_);
  clock_.now_ = clock_.now_ + 7 * kj::SECONDS;  // a blocking podman pull: the loop did not run
  progress.show("booting VM web");
  advance(2 * kj::SECONDS);
  EXPECT_EQ(written(), "\r\x1b[Kfcvm: booting VM web... 0s\r\x1b[Kfcvm: booting VM web... 2s");
  progress.done();  // the container's output began
  EXPECT_EQ(written(), "\r\x1b[K");
  progress.show("anything");
  advance(3 * kj::SECONDS);
  EXPECT_EQ(written(), "");
}

TEST_F(RunProgressTest, QuietOrNoTerminalWritesNothing) {
  {
    RunProgress progress(write_.get(), false, timer_, clock_);
    progress.show("booting VM web");
    advance(3 * kj::SECONDS);
    progress.clear();
  }
  EXPECT_EQ(written(), "");
}

TEST_F(RunProgressTest, TheLineFitsTheTerminal) {
  EXPECT_EQ(RunProgress::line("preparing docker.io/library/debian:12, starting its VM", 12, 30),
            "fcvm: preparing docker.io/lib");
  EXPECT_EQ(RunProgress::line("booting VM a", 3, 80), "fcvm: booting VM a... 3s");
}

}  // namespace
}  // namespace fcvm::cli
