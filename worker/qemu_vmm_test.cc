#include "worker/qemu_vmm.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace fcvm::worker {
namespace {

bool hasPair(const std::vector<std::string>& argv, const std::string& flag,
             const std::string& value) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag && argv[i + 1] == value) return true;
  }
  return false;
}

TEST(QemuVmmTest, TcgGuestGetsTheTscRateAndOneMicrovm) {
  QemuConfig config;
  config.kernel = "/k/vmlinux";
  config.initramfs = "/k/initramfs.cpio";
  config.rootDisk = "/d/rootfs.ext4";
  config.rootDiskSnapshot = true;
  config.channels = {{"fcvm.control", "/run/vm/control.sock"}};
  config.consoleLog = "/run/vm/console.log";
  auto argv = qemuCommandLine(config);
  EXPECT_TRUE(hasPair(argv, "-M", "microvm,acpi=on,x-option-roms=off,rtc=on"));
  // The translated-code cache is bounded (QEMU's default grows to 1 GiB); 0 keeps the default.
  EXPECT_TRUE(hasPair(argv, "-accel", "tcg,tb-size=" + std::to_string(kTcgCacheMib)));
  config.tcgCacheMib = 0;
  EXPECT_TRUE(hasPair(qemuCommandLine(config), "-accel", "tcg"));
  EXPECT_TRUE(hasPair(argv, "-sandbox",
                      "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"));
  EXPECT_TRUE(hasPair(argv, "-initrd", "/k/initramfs.cpio"));
  EXPECT_TRUE(hasPair(argv, "-device", "virtserialport,chardev=ch0,name=fcvm.control"));
  EXPECT_TRUE(hasPair(argv, "-chardev", "socket,id=ch0,path=/run/vm/control.sock"));
  EXPECT_TRUE(
      hasPair(argv, "-drive",
              "id=root,file=/d/rootfs.ext4,format=raw,if=none,cache=unsafe,auto-read-only=off,"
              "snapshot=on"));
  auto cmdline = kernelCommandLine(config);
  EXPECT_NE(cmdline.find("tsc_early_khz=" + std::to_string(hostTscKhz())), std::string::npos);
  EXPECT_NE(cmdline.find("tsc=reliable"), std::string::npos);
}

TEST(QemuVmmTest, SnapshottableGuestRamLivesInASharedFile) {
  QemuConfig config;
  config.accel = "kvm";
  config.kernel = "/k/vmlinux";
  config.memoryFile = "/dev/shm/vm.mem";
  config.memoryMib = 512;
  auto argv = qemuCommandLine(config);
  EXPECT_TRUE(hasPair(argv, "-object",
                      "memory-backend-file,id=mem,size=512M,mem-path=/dev/shm/vm.mem,share=on"));
  EXPECT_TRUE(hasPair(argv, "-M", "microvm,acpi=on,x-option-roms=off,rtc=on,memory-backend=mem"));
  EXPECT_TRUE(hasPair(argv, "-cpu", "host"));
  EXPECT_TRUE(hasPair(argv, "-accel", "kvm"));  // no translated code, no cache to bound
  EXPECT_EQ(kernelCommandLine(config).find("tsc_early_khz"), std::string::npos);
}

// A comma inside a path is QEMU's ",,": the path stays one value and cannot start an option.
TEST(QemuVmmTest, CommasInPathsCannotAddOptions) {
  QemuConfig config;
  config.kernel = "/k/vmlinux";
  config.rootDisk = "/d/a,readonly=off/rootfs.ext4";
  config.extraDisks = {{"/d/x,file=/etc/shadow", true}};
  config.channels = {{"fcvm.control", "/run/a,b/control.sock"}};
  auto argv = qemuCommandLine(config);
  EXPECT_TRUE(hasPair(argv, "-drive",
                      "id=root,file=/d/a,,readonly=off/rootfs.ext4,format=raw,if=none,cache=unsafe,"
                      "auto-read-only=off"));
  EXPECT_TRUE(hasPair(argv, "-drive",
                      "id=disk0,file=/d/x,,file=/etc/shadow,format=raw,if=none,readonly=on"));
  EXPECT_TRUE(hasPair(argv, "-chardev", "socket,id=ch0,path=/run/a,,b/control.sock"));
}

// A volume's two ports: the server's end of a socket on one, nothing on the other (a clone's
// snapshot port, where the source's client may still write).
TEST(QemuVmmTest, AVolumePortLeadsToItsServerOrNowhere) {
  QemuConfig config;
  config.kernel = "/k/vmlinux";
  config.channels = {{"fcvm.control", "/run/vm/control.sock"},
                     {"fcvm.volume.v0.0", {}, -1, true},
                     {"fcvm.volume.v0.1", {}, 5}};
  auto argv = qemuCommandLine(config);
  EXPECT_TRUE(hasPair(argv, "-chardev", "null,id=ch1"));
  EXPECT_TRUE(hasPair(argv, "-device", "virtserialport,chardev=ch1,name=fcvm.volume.v0.0"));
  EXPECT_TRUE(hasPair(argv, "-chardev", "socket,id=ch2,fd=5"));
  EXPECT_TRUE(hasPair(argv, "-device", "virtserialport,chardev=ch2,name=fcvm.volume.v0.1"));
}

}  // namespace
}  // namespace fcvm::worker
