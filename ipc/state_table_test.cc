#include "ipc/state_table.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <thread>

#include "base/error.h"
#include "tests/support/temp_dir.h"

namespace fcvm::ipc {
namespace {

constexpr TableCapacity kSmall{16, 4, 4};

// A record whose every field is derived from `n`, so a reader can tell a torn copy.
VmRecord patterned(uint64_t n) {
  VmRecord r;
  r.id.assign(fmt::format("{:016x}", n));
  r.name.assign(fmt::format("vm-{}", n));
  r.ownerUid = static_cast<uint32_t>(n % 5000);
  r.state = static_cast<VmState>(1 + n % kVmStateMax);
  r.exitCode = static_cast<int32_t>(n & 0x7fffffff);
  r.hasExitCode = 1;
  r.image.assign(std::string(n % 100, static_cast<char>('a' + n % 26)));
  r.worker.pid = static_cast<int32_t>(n % 100000);
  r.worker.startTime = n * 7;
  r.createdAtNs = static_cast<int64_t>(n);
  r.updatedAtNs = static_cast<int64_t>(n * 3);
  return r;
}

bool consistent(const VmRecord& r) {
  auto n = static_cast<uint64_t>(r.createdAtNs);
  VmRecord expected = patterned(n);
  return std::memcmp(&expected, &r, sizeof r) == 0;
}

// Publishes patterned records round-robin over all slots, counting from `start`, forever or
// `count` times.
void writeLoop(StateTableWriter& writer, uint64_t start, uint64_t count) {
  size_t slots = writer.vms().size();
  for (uint64_t n = start; count == 0 || n < start + count; ++n) {
    writer.publishVm(n % slots, patterned(n));
  }
}

pid_t forkWriter(const std::filesystem::path& path, uint64_t start, uint64_t count) {
  pid_t pid = ::fork();
  if (pid == 0) {
    try {
      auto writer = StateTableWriter::open(path, kSmall, 0600);
      writeLoop(writer, start, count);
      ::_exit(0);
    } catch (...) {
      ::_exit(3);
    }
  }
  return pid;
}

int waitExit(pid_t pid) {
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return status;
}

TEST(StateTableTest, FreshTableIsEmptyAndRoundTrips) {
  testing::TempDir dir;
  auto path = dir / "state";
  auto writer = StateTableWriter::open(path, kSmall, 0600);
  EXPECT_FALSE(writer.adopted());
  auto reader = StateTable::openReader(path);
  EXPECT_EQ(reader.vms().size(), kSmall.vms);
  EXPECT_TRUE(reader.vms().readAll().empty());
  EXPECT_EQ(reader.writerPid(), ::getpid());

  writer.publishVm(3, patterned(42));
  auto all = reader.vms().readAll();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_TRUE(consistent(all[0]));
  EXPECT_EQ(all[0].name.view(), "vm-42");
  EXPECT_THROW(writer.publishVm(kSmall.vms, patterned(1)), Error);
}

TEST(StateTableTest, SecondWriterIsRefusedWhileFirstLives) {
  testing::TempDir dir;
  auto path = dir / "state";
  auto writer = StateTableWriter::open(path, kSmall, 0600);
  pid_t pid = ::fork();
  if (pid == 0) {
    try {
      StateTableWriter::open(path, kSmall, 0600);
      ::_exit(0);
    } catch (const Error& e) {
      ::_exit(std::strstr(e.what(), "already has a live writer") != nullptr ? 7 : 3);
    }
  }
  int status = waitExit(pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7);
}

TEST(StateTableTest, ReadersNeverSeeTornRecordsUnderAConcurrentWriter) {
  testing::TempDir dir;
  auto path = dir / "state";
  { StateTableWriter::open(path, kSmall, 0600); }  // create, then hand over to the child
  auto reader = StateTable::openReader(path);
  pid_t writer = forkWriter(path, 1, 300000);

  std::atomic<bool> done{false};
  std::atomic<uint64_t> reads{0}, torn{0}, unreadable{0};
  auto readLoop = [&] {
    while (!done.load()) {
      for (size_t i = 0; i < reader.vms().size(); ++i) {
        auto r = reader.vms().read(i);
        if (!r) {
          ++unreadable;
        } else if (r->inUse() && !consistent(*r)) {
          ++torn;
        }
        ++reads;
      }
    }
  };
  std::thread a(readLoop), b(readLoop);
  int status = waitExit(writer);
  done = true;
  a.join();
  b.join();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_EQ(unreadable.load(), 0u);
  EXPECT_GT(reads.load(), 0u);
  // The last record the writer published in each slot is what readers see afterwards.
  for (size_t i = 0; i < kSmall.vms; ++i) {
    auto r = reader.vms().read(i);
    ASSERT_TRUE(r);
    EXPECT_EQ(static_cast<uint64_t>(r->createdAtNs) % kSmall.vms, i);
    EXPECT_GT(r->createdAtNs, static_cast<int64_t>(300000 - kSmall.vms));
  }
}

TEST(StateTableTest, WriterKilledMidUpdateLeavesConsistentRecordsAndANewWriterTakesOver) {
  testing::TempDir dir;
  auto path = dir / "state";
  { StateTableWriter::open(path, kSmall, 0600); }
  auto reader = StateTable::openReader(path);
  uint64_t epoch = reader.writerEpoch();

  // Kill writers at many different points of their update loop.
  for (int round = 0; round < 20; ++round) {
    pid_t writer = forkWriter(path, 1 + static_cast<uint64_t>(round) * 1000000, 0);
    // Observe progress (a record of this round) before killing: no sleeps.
    auto sawThisRound = [&] {
      for (auto& r : reader.vms().readAll()) {
        if (r.createdAtNs > round * 1000000 + static_cast<int64_t>(round * 97 % 5000)) return true;
      }
      return false;
    };
    while (!sawThisRound()) {
    }
    ASSERT_EQ(::kill(writer, SIGKILL), 0);
    int status = waitExit(writer);
    ASSERT_TRUE(WIFSIGNALED(status));
    for (size_t i = 0; i < kSmall.vms; ++i) {
      auto r = reader.vms().read(i);
      ASSERT_TRUE(r) << "slot " << i << " unreadable after the writer died";
      if (r->inUse()) {
        EXPECT_TRUE(consistent(*r)) << "slot " << i << " round " << round;
      }
    }
  }

  auto writer = StateTableWriter::open(path, kSmall, 0600);
  EXPECT_TRUE(writer.adopted());
  EXPECT_EQ(reader.writerEpoch(), epoch + 21);
  EXPECT_EQ(reader.writerPid(), ::getpid());
  for (size_t i = 0; i < kSmall.vms; ++i) writer.publishVm(i, patterned(5 + i * kSmall.vms));
  for (size_t i = 0; i < kSmall.vms; ++i) {
    auto r = reader.vms().read(i);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->createdAtNs, static_cast<int64_t>(5 + i * kSmall.vms));
  }
}

TEST(StateTableTest, InvalidRecordsReadAsAbsent) {
  testing::TempDir dir;
  auto path = dir / "state";
  auto writer = StateTableWriter::open(path, kSmall, 0600);
  VmRecord bad = patterned(9);
  std::memset(bad.name.bytes.data(), 'x', bad.name.bytes.size());  // unterminated
  writer.publishVm(0, bad);
  VmRecord badState = patterned(10);
  std::memset(&badState.state, 200, 1);
  writer.publishVm(1, badState);
  writer.publishVm(2, patterned(11));
  auto reader = StateTable::openReader(path);
  EXPECT_FALSE(reader.vms().read(0));
  EXPECT_FALSE(reader.vms().read(1));
  EXPECT_EQ(reader.vms().readAll().size(), 1u);
}

TEST(StateTableTest, ReaderRejectsFilesThatAreNotStateTables) {
  testing::TempDir dir;
  auto garbage = dir / "garbage";
  std::ofstream(garbage) << std::string(4096, 'z');
  EXPECT_THROW(StateTable::openReader(garbage), Error);
  auto tiny = dir / "tiny";
  std::ofstream(tiny) << "FCVM";
  EXPECT_THROW(StateTable::openReader(tiny), Error);
  EXPECT_THROW(StateTable::openReader(dir / "missing"), Error);

  auto path = dir / "state";
  { StateTableWriter::open(path, kSmall, 0600); }
  ASSERT_EQ(::truncate(path.c_str(), 4096), 0);
  EXPECT_THROW(StateTable::openReader(path), Error);
  // A writer replaces a damaged table rather than trusting it.
  auto writer = StateTableWriter::open(path, kSmall, 0600);
  EXPECT_FALSE(writer.adopted());
  EXPECT_NO_THROW(StateTable::openReader(path));
}

}  // namespace
}  // namespace fcvm::ipc
