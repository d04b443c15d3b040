#include "supervisor/host_boot.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/temp_dir.h"

namespace fcvm::supervisor {
namespace {

TEST(HostBootTest, ARestartIsAnotherBootIdThanTheStampsAndAFirstStartIsNone) {
  testing::TempDir dir;
  auto stamp = dir / "boot-id";
  EXPECT_FALSE(hostRestartedSince(stamp, "boot-a"));  // first start: no stamp yet
  EXPECT_FALSE(hostRestartedSince(stamp, "boot-a"));  // supervisor restarted, host not
  EXPECT_TRUE(hostRestartedSince(stamp, "boot-b"));
  EXPECT_FALSE(hostRestartedSince(stamp, "boot-b"));
  std::ifstream in(stamp);
  std::string recorded;
  std::getline(in, recorded);
  EXPECT_EQ(recorded, "boot-b");
}

TEST(HostBootTest, TheRunningKernelHasABootId) {
  EXPECT_EQ(currentBootId().size(), 36u);  // a UUID
}

}  // namespace
}  // namespace fcvm::supervisor
