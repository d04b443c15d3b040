#include "supervisor/user_quotas.h"

#include <gtest/gtest.h>

#include <fstream>

#include "base/error.h"
#include "tests/support/temp_dir.h"

namespace fcvm::supervisor {
namespace {

class UserQuotasTest : public ::testing::Test {
 protected:
  UserQuotas load(const std::string& text) {
    std::ofstream(file()) << text;
    return UserQuotas::load(file());
  }
  std::string errorOf(const std::string& text) {
    try {
      load(text);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  std::filesystem::path file() const { return dir_ / "config.json"; }

  testing::TempDir dir_;
};

TEST_F(UserQuotasTest, NoFileIsNoQuota) {
  auto quotas = UserQuotas::load(dir_ / "missing.json");
  EXPECT_NO_THROW(quotas.checkVm(1000, {1000, 1 << 20, 0}, 65536));
  EXPECT_NO_THROW(quotas.checkSnapshot(1000, {0, 0, 1000}));
}

TEST_F(UserQuotasTest, AUidsOwnLimitsGoBeforeTheDefaultAndRootIsHeldOnlyWhenListed) {
  auto quotas = load(R"({"quotas": {"default": {"vms": 2, "memory_mib": 1024, "snapshots": 1},
                                    "uids": {"1000": {"vms": 4}, "0": {"snapshots": 0}}}})");
  EXPECT_EQ(quotas.of(1000).vms, 4u);
  EXPECT_EQ(quotas.of(1000).memoryMib, 1024u);  // the default's, where it sets none
  EXPECT_EQ(quotas.of(2000).vms, 2u);
  EXPECT_FALSE(quotas.of(0).vms);  // root: only what it is given
  EXPECT_EQ(quotas.of(0).snapshots, 0u);

  EXPECT_NO_THROW(quotas.checkVm(2000, {1, 512, 0}, 512));
  EXPECT_EQ(
      [&] {
        try {
          quotas.checkVm(2000, {2, 512, 0}, 256);
        } catch (const Error& e) {
          return std::string(e.what());
        }
        return std::string();
      }(),
      "uid 2000 has 2 VMs of its quota of 2 VMs (set in " + file().string() +
          "); stop or remove one first");
  EXPECT_THROW(quotas.checkVm(2000, {1, 768, 0}, 512), Error);  // 1280 MiB > 1024
  EXPECT_THROW(quotas.checkSnapshot(2000, {0, 0, 1}), Error);
  EXPECT_THROW(quotas.checkSnapshot(0, {0, 0, 0}), Error);
  EXPECT_NO_THROW(quotas.checkVm(0, {100, 1 << 20, 0}, 65536));
}

TEST_F(UserQuotasTest, AMistakeNamesTheFileAndTheField) {
  auto where = file().string() + ": ";
  EXPECT_EQ(errorOf(R"({"quotas": {"default": {"vm": 2}}})"),
            where + "quotas.default: unknown limit 'vm' (vms, memory_mib, snapshots)");
  EXPECT_EQ(errorOf(R"({"quotas": {"default": {"vms": -1}}})"),
            where + "quotas.default.vms: not a count (a whole number from 0)");
  EXPECT_EQ(errorOf(R"({"quotas": {"uids": {"alice": {}}}})"),
            where + "quotas.uids: 'alice' is not a uid");
  EXPECT_EQ(errorOf(R"({"quota": {}})"),
            where + "unknown setting 'quota' (quotas, jail, startup_snapshots)");
  EXPECT_EQ(errorOf("[1]"), where + "not a JSON object");
  EXPECT_NE(errorOf("{"), "");
}

}  // namespace
}  // namespace fcvm::supervisor
