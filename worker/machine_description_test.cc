#include "worker/machine_description.h"

#include <gtest/gtest.h>

#include "base/error.h"

namespace fcvm::worker {
namespace {

QemuConfig sourceMachine() {
  QemuConfig config;
  config.accel = "tcg";
  config.cpus = 2;
  config.memoryMib = 512;
  config.kernel = "/var/lib/fcvm/artifacts/k/vmlinux";
  config.initramfs = "/var/lib/fcvm/artifacts/k/initramfs.cpio";
  config.kernelCommandLine = "console=ttyS0 quiet panic=-1";
  config.extraDisks = {{"/var/lib/fcvm/images/abc.ext4", true}};
  config.channels = {{"fcvm.control", {}}, {"fcvm.vol0.1", {}}};
  config.network.mode = "bridged";
  config.network.mac = "02:fc:0a:1b:2c:3d";
  return config;
}

TEST(MachineDescriptionTest, AClonesMachineIsItsSourcesMachine) {
  auto clone = machineFromDescription(describeMachine(sourceMachine()));
  const auto source = sourceMachine();
  EXPECT_EQ(clone.qemu, source.qemu);
  EXPECT_EQ(clone.accel, "tcg");
  EXPECT_EQ(clone.cpus, 2u);
  EXPECT_EQ(clone.memoryMib, 512u);
  EXPECT_EQ(clone.kernel, source.kernel);
  EXPECT_EQ(clone.initramfs, source.initramfs);
  EXPECT_EQ(clone.kernelCommandLine, source.kernelCommandLine);
  ASSERT_EQ(clone.extraDisks.size(), 1u);
  EXPECT_EQ(clone.extraDisks[0].path, source.extraDisks[0].path);
  EXPECT_TRUE(clone.extraDisks[0].readOnly);
  ASSERT_EQ(clone.channels.size(), 2u);
  EXPECT_EQ(clone.channels[1].name, "fcvm.vol0.1");
  EXPECT_EQ(clone.network.mode, "bridged");
  EXPECT_EQ(clone.network.mac, "02:fc:0a:1b:2c:3d");
}

// A description can only describe what a worker could have written: never another program, a
// relative path, control characters or option text for QEMU.
TEST(MachineDescriptionTest, WhatNoWorkerWritesIsRefused) {
  auto refused = [](const char* what, auto change) {
    auto machine = describeMachine(sourceMachine());
    change(machine);
    EXPECT_THROW(machineFromDescription(machine), Error) << what;
  };
  refused("another QEMU", [](nlohmann::json& m) { m["qemu"] = "/tmp/evil"; });
  refused("a relative kernel", [](nlohmann::json& m) { m["kernel"] = "vmlinux"; });
  refused("a newline in a path", [](nlohmann::json& m) { m["initramfs"] = "/a\n/b"; });
  refused("a NUL in a disk",
          [](nlohmann::json& m) { m["extra_disks"][0]["path"] = std::string("/a\0b", 4); });
  refused("a channel with options", [](nlohmann::json& m) { m["channels"][0] = "x,path=/y"; });
  refused("a MAC with options",
          [](nlohmann::json& m) { m["network"]["mac"] = "02:fc:00:00:00:00,romfile=/x"; });
  refused("a control character in the command line",
          [](nlohmann::json& m) { m["kernel_command_line"] = "console=ttyS0\x1b]0;"; });
  refused("disks that are not a list", [](nlohmann::json& m) { m["extra_disks"] = "x"; });
  refused("a disk that is not an object", [](nlohmann::json& m) { m["extra_disks"][0] = 1; });
  refused("no network", [](nlohmann::json& m) { m.erase("network"); });
  refused("65 CPUs", [](nlohmann::json& m) { m["cpus"] = 65; });
  refused("a string for memory", [](nlohmann::json& m) { m["memory_mib"] = "512"; });
  EXPECT_THROW(machineFromDescription(nlohmann::json::array()), Error);
}

}  // namespace
}  // namespace fcvm::worker
