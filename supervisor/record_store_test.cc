#include "supervisor/record_store.h"

#include <gtest/gtest.h>

#include <fstream>

#include "base/error.h"
#include "supervisor/record_format.h"
#include "tests/support/temp_dir.h"

namespace fcvm::supervisor {
namespace {

ipc::VmRecord sample() {
  ipc::VmRecord r;
  r.id.assign("0123456789abcdef");
  r.name.assign("web");
  r.image.assign("localhost/busybox:latest");
  r.ownerUid = 1000;
  r.state = ipc::VmState::kStopped;
  r.hasExitCode = 1;
  r.exitCode = 7;
  r.restartCount = 2;
  r.worker = {1234, 0, 99};
  r.createdAtNs = 5;
  r.updatedAtNs = 6;
  return r;
}

TEST(RecordStoreTest, SavesAndLoadsEveryField) {
  testing::TempDir dir;
  RecordStore store(dir / "vms");
  store.save(sample());
  auto all = store.loadAll();
  ASSERT_EQ(all.size(), 1u);
  auto expected = sample();
  EXPECT_EQ(std::memcmp(&all[0], &expected, sizeof expected), 0);
  store.remove(expected.id.view());
  EXPECT_TRUE(store.loadAll().empty());
  EXPECT_NO_THROW(store.remove(expected.id.view()));  // idempotent
}

TEST(RecordStoreTest, DamagedFilesAreSkippedNotTrusted) {
  testing::TempDir dir;
  RecordStore store(dir / "vms");
  store.save(sample());
  std::ofstream(dir / "vms" / "aaaaaaaaaaaaaaaa.json") << "{ not json";
  std::ofstream(dir / "vms" / "bbbbbbbbbbbbbbbb.json")
      << R"({"version":1,"id":"bbbbbbbbbbbbbbbb","name":")" << std::string(200, 'n')
      << R"(","owner_uid":1,"state":"running","health":"unknown","image":"","reason":"",)"
      << R"("network":"","worker_pid":1,"worker_start_time":1,"created_at_ns":1,"updated_at_ns":1})";
  std::ofstream(dir / "vms" / "cccccccccccccccc.json")
      << R"({"version":1,"id":"dddddddddddddddd","name":"x","owner_uid":1,"state":"running",)"
      << R"("health":"unknown","image":"","reason":"","network":"","worker_pid":1,)"
      << R"("worker_start_time":1,"created_at_ns":1,"updated_at_ns":1})";
  std::ofstream(dir / "vms" / "eeeeeeeeeeeeeeee.json")
      << R"({"version":1,"id":"eeeeeeeeeeeeeeee","name":"x","owner_uid":1,"state":"bogus",)"
      << R"("health":"unknown","image":"","reason":"","network":"","worker_pid":1,)"
      << R"("worker_start_time":1,"created_at_ns":1,"updated_at_ns":1})";
  auto all = store.loadAll();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name.view(), "web");
}

// A record of a newer fcvm (after a downgrade) stops the load with a clear error: skipping it
// would let this fcvm reuse its name or remove its disk as a leftover.
TEST(RecordStoreTest, ARecordOfANewerFcvmIsRefusedNotSkipped) {
  testing::TempDir dir;
  RecordStore store(dir / "vms");
  store.save(sample());
  auto future = dir / "vms" / "ffffffffffffffff.json";
  std::ofstream(future)
      << R"({"version":99,"id":"ffffffffffffffff","name":"x","owner_uid":1,"state":"running",)"
      << R"("health":"unknown","image":"","reason":"","network":"","worker_pid":1,)"
      << R"("worker_start_time":1,"created_at_ns":1,"updated_at_ns":1,"something_new":true})";
  try {
    store.loadAll();
    FAIL() << "a record in format 99 was loaded";
  } catch (const NewerFormatError& e) {
    EXPECT_EQ(std::string(e.what()),
              future.string() +
                  " is in format 99, newer than this fcvm's 1: a newer fcvm wrote it; run that "
                  "one (fcvm never converts records back)");
  }
  EXPECT_TRUE(std::filesystem::exists(future));
}

TEST(RecordStoreTest, RefusesIdsThatAreNotIds) {
  testing::TempDir dir;
  RecordStore store(dir / "vms");
  EXPECT_THROW(store.remove("../../etc/passwd"), Error);
}

}  // namespace
}  // namespace fcvm::supervisor
