#include "supervisor/vm_registry.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "base/process_identity.h"
#include "tests/support/temp_dir.h"

namespace fcvm::supervisor {
namespace {

constexpr ipc::TableCapacity kSmall{8, 2, 2};

struct Fixture {
  testing::TempDir dir;
  ipc::StateTableWriter table = ipc::StateTableWriter::open(dir / "state", kSmall, 0600);
  RecordStore store{dir / "vms"};
};

TEST(VmRegistryTest, NamesAreUniquePerOwner) {
  Fixture f;
  VmRegistry registry(f.table, f.store);
  registry.create(1000, "web", "img");
  EXPECT_THROW(registry.create(1000, "web", "img"), Error);
  EXPECT_NO_THROW(registry.create(1001, "web", "img"));
  EXPECT_THROW(registry.create(1000, "bad name", "img"), Error);
  EXPECT_THROW(registry.create(1000, "-x", "img"), Error);
  EXPECT_THROW(registry.create(1000, std::string(64, 'a'), "img"), Error);
}

TEST(VmRegistryTest, UsersSeeOnlyTheirOwnAndRootSeesAll) {
  Fixture f;
  VmRegistry registry(f.table, f.store);
  registry.create(1000, "a", "img");
  registry.create(1001, "b", "img");
  EXPECT_EQ(registry.visibleTo(Caller{1000, 1000, 1}).size(), 1u);
  EXPECT_FALSE(registry.find(Caller{1000, 1000, 1}, "b"));
  EXPECT_TRUE(registry.find(Caller{1001, 1001, 1}, "b"));
  EXPECT_EQ(registry.visibleTo(Caller{0, 0, 1}).size(), 2u);
  EXPECT_TRUE(registry.find(Caller{0, 0, 1}, "a"));
}

TEST(VmRegistryTest, RemoveRefusesActiveAndForeignVms) {
  Fixture f;
  VmRegistry registry(f.table, f.store);
  auto vm = registry.create(1000, "a", "img");
  EXPECT_THROW(registry.remove(Caller{1000, 1000, 1}, "a"), Error);  // still creating
  vm.state = ipc::VmState::kStopped;
  registry.update(vm);
  EXPECT_THROW(registry.remove(Caller{1001, 1001, 1}, "a"), Error);  // not theirs
  registry.remove(Caller{1000, 1000, 1}, "a");
  EXPECT_EQ(registry.size(), 0u);
  EXPECT_TRUE(f.store.loadAll().empty());
  EXPECT_TRUE(f.table.vms().readAll().empty());
}

TEST(VmRegistryTest, ChangesReachTheSharedTable) {
  Fixture f;
  VmRegistry registry(f.table, f.store);
  auto vm = registry.create(1000, "a", "img");
  auto reader = ipc::StateTable::openReader(f.dir / "state");
  auto seen = reader.vms().readAll();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].state, ipc::VmState::kCreating);
  vm.state = ipc::VmState::kHealthy;
  registry.update(vm);
  EXPECT_EQ(reader.vms().readAll()[0].state, ipc::VmState::kHealthy);
}

TEST(VmRegistryTest, AdoptionKeepsLiveWorkersAndFailsOrphans) {
  Fixture f;
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  auto deadStart = processStartTime(dead);
  ASSERT_TRUE(deadStart);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  {
    VmRegistry first(f.table, f.store);
    auto live = first.create(1000, "live", "img");
    live.state = ipc::VmState::kHealthy;
    live.worker = {::getpid(), 0, *processStartTime(::getpid())};
    first.update(live);
    auto orphan = first.create(1000, "orphan", "img");
    orphan.state = ipc::VmState::kRunning;
    orphan.worker = {dead, 0, *deadStart};
    first.update(orphan);
    auto done = first.create(1000, "done", "img");
    done.state = ipc::VmState::kStopped;
    first.update(done);
  }
  VmRegistry second(f.table, f.store);
  auto summary = second.adopt();
  EXPECT_EQ(summary.records, 3u);
  EXPECT_EQ(summary.live, 1u);
  EXPECT_EQ(summary.orphaned, 1u);
  Caller owner{1000, 1000, 1};
  EXPECT_EQ(second.find(owner, "live")->state, ipc::VmState::kHealthy);
  auto orphan = second.find(owner, "orphan");
  EXPECT_EQ(orphan->state, ipc::VmState::kFailed);
  EXPECT_EQ(orphan->reason.view(), "worker exited while the supervisor was down");
  EXPECT_EQ(second.find(owner, "done")->state, ipc::VmState::kStopped);
  EXPECT_EQ(f.table.vms().readAll().size(), 3u);
}

}  // namespace
}  // namespace fcvm::supervisor
