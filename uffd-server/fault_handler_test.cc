// FaultHandler in one process: a server thread runs the handler over a userfaultfd this test
// registered on its own anonymous memory, and the test's threads fault on that memory.
#include "uffd-server/fault_handler.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

#include "base/error.h"
#include "uffd-server/testing.h"

namespace fcvm::uffd {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 64;
constexpr uint64_t kHoleEvery = 4;  // pages 3, 7, 11, ... are holes

size_t openFdCount() {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                                           std::filesystem::directory_iterator()));
}

bool isHolePage(uint64_t page) { return page % kHoleEvery == kHoleEvery - 1; }

// Runs a FaultHandler on its own thread until it stops or the test ends. The handler (and with it
// the last copy of the userfaultfd) is destroyed as soon as it stops, so a fault it refused
// resolves as plain anonymous memory instead of hanging the test.
class ServerThread {
 public:
  explicit ServerThread(std::unique_ptr<FaultHandler> handler)
      : quit_(::eventfd(0, EFD_CLOEXEC)),
        thread_([this, h = std::move(handler)]() mutable { serve(std::move(h)); }) {}
  ~ServerThread() { finish(); }

  // Ends the thread; returns the handler's stop reason ("" if it was still serving).
  std::string finish() {
    if (thread_.joinable()) {
      const uint64_t one = 1;
      (void)!::write(quit_.get(), &one, sizeof one);
      thread_.join();
    }
    return reason_;
  }
  const FaultStats& stats() const { return stats_; }  // after finish()

 private:
  void serve(std::unique_ptr<FaultHandler> handler) {
    for (;;) {
      pollfd fds[2] = {{handler->fd(), POLLIN, 0}, {quit_.get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
      if ((fds[0].revents & POLLIN) && !handler->handleEvents()) break;
      if (fds[1].revents & POLLIN) break;
    }
    reason_ = handler->stopReason();
    stats_ = handler->stats();
  }

  UniqueFd quit_;
  std::string reason_;
  FaultStats stats_;
  std::thread thread_;
};

class FaultHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::writeImage(dir_ / "memory", kPages, kPage, kHoleEvery);
    image_ = std::make_unique<MemoryImage>(MemoryImage::open(dir_ / "memory", kPage));
    memory_ = Mapping(kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                      "test guest memory");
  }

  // A handler for memory_ (declared as two regions mapping the image's halves in swapped order)
  // whose userfaultfd was set up with `features`; `undeclared` is registered too.
  std::unique_ptr<FaultHandler> makeHandler(uint64_t features = UFFD_FEATURE_EVENT_REMOVE,
                                            const Mapping* undeclared = nullptr) {
    UniqueFd uffd;
    try {
      uffd = testing::createUserfaultfd(features);
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();  // a refusal fails the test, with the reason
      throw;
    }
    testing::registerMissing(uffd.get(), memory_.data(), memory_.size());
    if (undeclared) testing::registerMissing(uffd.get(), undeclared->data(), undeclared->size());
    const uint64_t half = memory_.size() / 2;
    const auto base = reinterpret_cast<uint64_t>(memory_.data());
    std::vector<GuestRegion> regions = {{base, half, half, kPage}, {base + half, half, 0, kPage}};
    return std::make_unique<FaultHandler>(*image_, std::move(regions), std::move(uffd));
  }

  // The image page behind guest page `page` (the halves are swapped).
  static uint64_t imagePage(uint64_t page) { return (page + kPages / 2) % kPages; }

  // Whether guest page `page` holds what the image has there, or zeros.
  ::testing::AssertionResult pageIs(uint64_t page, bool zeros) const {
    const std::byte* p = memory_.data() + page * kPage;
    for (uint64_t i = 0; i < kPage; ++i) {
      const std::byte want = zeros ? std::byte{0} : testing::patternByte(imagePage(page), i);
      if (p[i] != want) {
        return ::testing::AssertionFailure()
               << "guest page " << page << " byte " << i << " is " << static_cast<int>(p[i])
               << ", expected " << static_cast<int>(want);
      }
    }
    return ::testing::AssertionSuccess();
  }

  testing::TempDir dir_;
  std::unique_ptr<MemoryImage> image_;
  Mapping memory_;
};

TEST_F(FaultHandlerTest, CopiesDataPagesAndAnswersHolesWithZeroPages) {
  ServerThread server(makeHandler());
  for (uint64_t page = 0; page < kPages; ++page) {
    EXPECT_TRUE(pageIs(page, isHolePage(imagePage(page))));
  }
  EXPECT_EQ(server.finish(), "");
  EXPECT_EQ(server.stats().pagesCopied, kPages - kPages / kHoleEvery);
  EXPECT_EQ(server.stats().pagesZeroed, kPages / kHoleEvery);
}

TEST_F(FaultHandlerTest, ConcurrentFaultsOnTheSamePagesAllSeeTheImage) {
  ServerThread server(makeHandler());
  std::vector<std::thread> readers;
  std::vector<std::string> failures(4);
  for (size_t t = 0; t < failures.size(); ++t) {
    readers.emplace_back([&, t] {
      for (uint64_t page = 0; page < kPages; ++page) {
        auto ok = pageIs(page, isHolePage(imagePage(page)));
        if (!ok && failures[t].empty()) failures[t] = ok.message();
      }
    });
  }
  for (auto& reader : readers) reader.join();
  for (const auto& failure : failures) EXPECT_EQ(failure, "");
  EXPECT_EQ(server.finish(), "");
  const FaultStats& stats = server.stats();
  EXPECT_EQ(stats.pagesCopied + stats.pagesZeroed, kPages);  // each page placed exactly once
}

TEST_F(FaultHandlerTest, RemovedPagesReadAsZerosWhetherServedBeforeOrNot) {
  ServerThread server(makeHandler());
  // Pages 0-7 are read (served) first; pages 8-15 are never touched before their removal.
  for (uint64_t page = 0; page < 8; ++page) ASSERT_TRUE(pageIs(page, isHolePage(imagePage(page))));
  ASSERT_EQ(::madvise(memory_.data(), 16 * kPage, MADV_DONTNEED), 0);
  for (uint64_t page = 0; page < 16; ++page) EXPECT_TRUE(pageIs(page, true));
  // The rest is untouched by the removal.
  for (uint64_t page = 16; page < kPages; ++page) {
    EXPECT_TRUE(pageIs(page, isHolePage(imagePage(page))));
  }
  EXPECT_EQ(server.finish(), "");
  EXPECT_GE(server.stats().removeEvents, 1u);
}

TEST_F(FaultHandlerTest, FaultOutsideTheDeclaredRegionsStopsServing) {
  const Mapping undeclared(kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, "extra");
  ServerThread server(makeHandler(UFFD_FEATURE_EVENT_REMOVE, &undeclared));
  ASSERT_TRUE(pageIs(0, isHolePage(imagePage(0))));
  // Blocks until the handler stops and its userfaultfd is closed; then it is plain memory.
  EXPECT_EQ(*reinterpret_cast<volatile char*>(undeclared.data()), 0);
  EXPECT_NE(server.finish().find("outside the regions the peer declared"), std::string::npos)
      << server.finish();
}

TEST_F(FaultHandlerTest, ForkEventIsRefusedAndItsDescriptorClosed) {
  ServerThread server(makeHandler(UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_FORK));
  const size_t before = openFdCount();
  // fork() returns once the handler has read the event (which installs the child's new
  // userfaultfd in this process).
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_NE(server.finish().find("fork"), std::string::npos) << server.finish();
  EXPECT_EQ(openFdCount(), before - 1);  // the handler's own userfaultfd went with it
}

TEST_F(FaultHandlerTest, UninitialisedUserfaultfdIsRefused) {
  UniqueFd raw(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  ASSERT_TRUE(raw) << "userfaultfd(2): " << errnoText(errno);
  FaultHandler handler(*image_, {}, std::move(raw));
  EXPECT_FALSE(handler.handleEvents());
  EXPECT_EQ(handler.stopReason(), "the peer's userfaultfd is not initialised");
  EXPECT_FALSE(handler.handleEvents());  // and stays stopped
}

TEST_F(FaultHandlerTest, RegionsThatDoNotFitTheImageAreRejected) {
  auto make = [&](std::vector<GuestRegion> regions) {
    FaultHandler(*image_, std::move(regions), UniqueFd());
  };
  EXPECT_THROW(make({{0x200000, 0x200000, 0, 0x200000}}), Error);         // page size
  EXPECT_THROW(make({{0x200000, kPage, kPages * kPage, kPage}}), Error);  // beyond the image
  EXPECT_THROW(make({{0x200000, kPage, 0, kPage}, {0x100000, kPage, kPage, kPage}}),
               Error);  // order
  EXPECT_NO_THROW(make({{0x100000, kPage, kPage, kPage}, {0x200000, kPage, 0, kPage}}));
}

}  // namespace
}  // namespace fcvm::uffd
