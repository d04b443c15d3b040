#include "supervisor/startup_cache.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "tests/support/temp_dir.h"

namespace fcvm::supervisor {
namespace {

ipc::VmSpec baseSpec() {
  ipc::VmSpec spec;
  spec.name = "web";
  spec.image = "localhost/app:1";
  spec.network = "bridged";
  spec.command = {"sh", "-c", "echo hi"};
  return spec;
}

ipc::PreparedImage image(const std::string& digest) {
  ipc::PreparedImage i;
  i.digest = digest;
  i.reference = "localhost/app:1";
  i.disk = "/var/lib/fcvm/storage/images/v4-" + digest + "/store.ext4";
  return i;
}

StartupKeys keysOf(const ipc::VmSpec& spec, uint32_t owner = 0,
                   const std::string& digest = "sha256:aaaa") {
  return startupKeysOf(spec, owner, image(digest), "kernel initramfs rootfs", "QEMU 7.2");
}

TEST(StartupKeysTest, WhatARunAloneChoosesLeavesTheKeyAlone) {
  auto base = keysOf(baseSpec());
  EXPECT_EQ(base.startup.size(), 64u);
  auto run = baseSpec();
  run.name = "other";
  run.command = {"true"};
  run.env = {"A=1"};
  run.user = "nobody";
  run.workdir = "/tmp";
  run.ports = {ipc::PortMapping{}};
  run.healthCmd = "true";
  EXPECT_EQ(keysOf(run).startup, base.startup);
}

TEST(StartupKeysTest, EachPartOfTheMachineMakesAnotherKey) {
  auto base = keysOf(baseSpec());
  std::vector<ipc::VmSpec> changed(6, baseSpec());
  changed[0].cpus = 2;
  changed[1].memoryMib = 512;
  changed[2].accel = "kvm";
  changed[3].network = "none";
  changed[4].rootfsSizeMib = 2048;
  changed[5].volumes.push_back({"/srv", "/data", true});
  for (const auto& spec : changed) {
    auto keys = keysOf(spec);
    EXPECT_NE(keys.startup, base.startup);
    EXPECT_NE(keys.config, base.config);
  }
  EXPECT_NE(keysOf(baseSpec(), 1000).startup, base.startup);
  EXPECT_NE(
      startupKeysOf(baseSpec(), 0, image("sha256:aaaa"), "other artifacts", "QEMU 7.2").startup,
      base.startup);
  EXPECT_NE(
      startupKeysOf(baseSpec(), 0, image("sha256:aaaa"), "kernel initramfs rootfs", "QEMU 8.0")
          .startup,
      base.startup);
}

TEST(StartupKeysTest, AnotherDigestIsAnotherEntryOfTheSameConfiguration) {
  auto before = keysOf(baseSpec(), 0, "sha256:aaaa");
  auto after = keysOf(baseSpec(), 0, "sha256:bbbb");
  EXPECT_NE(after.startup, before.startup);
  EXPECT_EQ(after.config, before.config);
}

class StartupConfigTest : public ::testing::Test {
 protected:
  uint32_t load(const std::string& text) {
    std::ofstream(file()) << text;
    return StartupCache::maxEntriesFrom(file());
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

TEST_F(StartupConfigTest, TheBoundComesFromTheConfigurationFile) {
  EXPECT_EQ(StartupCache::maxEntriesFrom(dir_ / "missing.json"), StartupCache::kDefaultMaxEntries);
  EXPECT_EQ(load(R"({"quotas": {}})"), StartupCache::kDefaultMaxEntries);
  EXPECT_EQ(load(R"({"startup_snapshots": {"max_entries": 3}})"), 3u);
  EXPECT_EQ(load(R"({"startup_snapshots": {"max_entries": 0}})"), 0u);
  auto where = file().string() + ": ";
  EXPECT_EQ(errorOf(R"({"startup_snapshots": {"max_entry": 3}})"),
            where + "startup_snapshots: unknown key 'max_entry' (max_entries)");
  EXPECT_EQ(errorOf(R"({"startup_snapshots": {"max_entries": -1}})"),
            where + "'max_entries' is not a whole number in range");
  EXPECT_EQ(errorOf(R"({"startup_snapshots": 3})"), where + "startup_snapshots: not an object");
}

TEST(StartupSnapshotMetaTest, ItsKeysGoThroughItsRecord) {
  SnapshotMeta meta;
  meta.id = "0123456789abcdef";
  meta.tag = "startup-0123456789ab";
  meta.sourceVmId = "fedcba9876543210";
  meta.sourceVmName = "web";
  meta.startupKey = std::string(64, 'a');
  meta.configKey = std::string(64, 'b');
  auto parsed = parseSnapshotMeta(formatSnapshotMeta(meta), "snapshot.json");
  EXPECT_EQ(parsed.startupKey, meta.startupKey);
  EXPECT_EQ(parsed.configKey, meta.configKey);
  // A record from before start-up snapshots has neither.
  auto older = nlohmann::json::parse(formatSnapshotMeta(meta));
  older.erase("startup_key");
  older.erase("config_key");
  EXPECT_EQ(parseSnapshotMeta(older.dump(), "snapshot.json").startupKey, "");
  auto bad = nlohmann::json::parse(formatSnapshotMeta(meta));
  bad["startup_key"] = "../../etc";
  EXPECT_THROW(parseSnapshotMeta(bad.dump(), "snapshot.json"), Error);
}

}  // namespace
}  // namespace fcvm::supervisor
