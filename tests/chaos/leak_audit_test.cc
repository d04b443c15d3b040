// The leak audit must see what it is meant to see: one leftover of each kind, planted by hand in a
// private instance, is reported; an instance with nothing left reports nothing.
#include "tests/chaos/leak_audit.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "base/subprocess.h"

namespace fcvm::testing {
namespace {

bool reports(const std::vector<std::string>& leaks, const std::string& text) {
  return std::any_of(leaks.begin(), leaks.end(),
                     [&](const std::string& leak) { return leak.find(text) != std::string::npos; });
}

TEST(LeakAuditTest, EachKindOfLeftoverIsReported) {
  FcvmInstance fcvm;
  std::filesystem::create_directories(fcvm.dataDir() / "storage");
  const std::string id = "0123456789abcdef";
  LeakAudit audit(fcvm, {id}, {"fedcba9876543210"});
  EXPECT_EQ(audit.host(), std::vector<std::string>{});

  std::filesystem::create_directories(fcvm.dataDir() / "vms");
  std::ofstream(fcvm.dataDir() / "vms" / (id + ".json")) << "{}";
  std::filesystem::create_directories(fcvm.memoryDir());
  std::ofstream(fcvm.memoryDir() / (id + ".mem")) << "x";
  std::filesystem::create_directories(fcvm.dataDir() / "storage" / "snapshots" /
                                      "fedcba9876543210");
  std::filesystem::create_directories(fcvm.dataDir() / "netd");
  std::ofstream(fcvm.dataDir() / "netd" / (id + ".json")) << "{}";
  // A namespace of the project's own naming, made and removed by this test.
  ASSERT_EQ(runCommand({"ip", "netns", "add", "fcvm-" + id}).exitCode, 0);
  auto leaks = audit.host();
  runCommand({"ip", "netns", "delete", "fcvm-" + id});
  EXPECT_TRUE(reports(leaks, "VM file: " + (fcvm.dataDir() / "vms" / (id + ".json")).string()));
  EXPECT_TRUE(reports(leaks, "memory file: "));
  EXPECT_TRUE(reports(leaks, "snapshot file: "));
  EXPECT_TRUE(reports(leaks, "netd record: "));
  EXPECT_TRUE(reports(leaks, "network namespace: /run/netns/fcvm-" + id));
}

}  // namespace
}  // namespace fcvm::testing
