#include "worker/qemu_jail.h"

#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "base/error.h"
#include "ipc/listening_socket.h"

namespace fcvm::worker {
namespace {

class QemuJailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dirTemplate[] = "/tmp/fcvm-qemu-jail-XXXXXX";
    ASSERT_NE(::mkdtemp(dirTemplate), nullptr);
    dir_ = dirTemplate;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path file(const std::string& name, mode_t mode) {
    auto path = dir_ / name;
    std::ofstream(path) << name;
    std::filesystem::permissions(path, std::filesystem::perms(mode));
    return path;
  }
  std::filesystem::path dir_;
};

// Everything a jailed QEMU is given comes as an fd of ours at a number of its own; no host path
// is left on its command line but its name.
TEST_F(QemuJailTest, QemuIsGivenFdsInsteadOfPaths) {
  ASSERT_EQ(::geteuid(), 0u) << "handing guest memory to the jail's uid needs root";
  ipc::ListeningSocket qmp(dir_ / "qmp.sock", 0600);
  ipc::ListeningSocket control(dir_ / "control.sock", 0600);
  QemuConfig config;
  config.name = "/run/fcvm/vms/0123456789abcdef";
  config.kernel = file("vmlinux", 0644);
  config.initramfs = file("initramfs.cpio", 0644);
  config.rootDisk = file("rootfs.ext4", 0600);
  config.extraDisks = {{file("images.ext4", 0600), true}};
  config.memoryFile = dir_ / "vm.mem";
  config.qmpSocket = qmp.path();
  config.channels = {{"fcvm.control", control.path()}, {"fcvm.discard", {}, -1, true}};
  config.consoleFd = 5;
  config.inheritedFds[5] = STDERR_FILENO;
  config.jail = QemuJail{JailUids{}.first + 7, JailUids{}.first + 7, dir_ / "jail"};

  auto held = openForJail(config);
  EXPECT_EQ(held.size(), 7u);
  EXPECT_EQ(config.kernel, "/dev/fd/64");
  EXPECT_EQ(config.initramfs, "/dev/fd/65");
  EXPECT_EQ(config.rootDisk, "/dev/fdset/1");
  EXPECT_EQ(config.extraDisks[0].path, "/dev/fdset/2");
  // Each disk with the access QEMU opens it with.
  EXPECT_EQ(config.fdSets, (std::map<int, int>{{66, 1}, {67, 2}}));
  EXPECT_EQ(::fcntl(config.inheritedFds.at(66), F_GETFL) & O_ACCMODE, O_RDWR);
  EXPECT_EQ(::fcntl(config.inheritedFds.at(67), F_GETFL) & O_ACCMODE, O_RDONLY);
  EXPECT_EQ(config.memoryFile, "/dev/fd/68");
  EXPECT_EQ(config.channels[0].fd, 69);
  EXPECT_TRUE(config.channels[0].socket.empty());
  EXPECT_TRUE(config.channels[1].discard);
  EXPECT_EQ(config.qmpFd, 70);
  // The new memory file is the jail's.
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "vm.mem").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, JailUids{}.first + 7);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto argv = qemuCommandLine(config);
  for (const auto& arg : argv) {
    EXPECT_EQ(arg.find(dir_.string()), std::string::npos) << arg;
  }
  auto has = [&](const std::string& a, const std::string& b) {
    for (size_t i = 0; i + 1 < argv.size(); ++i) {
      if (argv[i] == a && argv[i + 1] == b) return true;
    }
    return false;
  };
  EXPECT_TRUE(has("-name", "guest=/run/fcvm/vms/0123456789abcdef"));
  EXPECT_TRUE(has("-add-fd", "fd=66,set=1"));
  EXPECT_TRUE(has("-add-fd", "fd=67,set=2"));
  EXPECT_TRUE(has("-chardev", "socket,id=qmp,fd=70"));
  EXPECT_TRUE(has("-chardev", "socket,id=ch0,fd=69"));
  EXPECT_TRUE(has("-kernel", "/dev/fd/64"));
}

TEST_F(QemuJailTest, AKernelOnlyRootCanReadIsRefusedWithWhatToDo) {
  QemuConfig config;
  config.kernel = file("vmlinux", 0600);
  config.consoleFd = 5;
  config.jail = QemuJail{JailUids{}.first, JailUids{}.first, dir_ / "jail"};
  try {
    openForJail(config);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not readable by everyone"), std::string::npos)
        << e.what();
  }
}

// Each VM gets a uid no running QEMU has; a uid whose worker is gone is free again.
TEST_F(QemuJailTest, JailUidsAreOnePerHolder) {
  JailUids range{3'000'000'000u, 2};
  auto first = JailIdentity::acquire(dir_ / "uids", range);
  auto second = JailIdentity::acquire(dir_ / "uids", range);
  EXPECT_EQ(first.uid(), 3'000'000'000u);
  EXPECT_EQ(second.uid(), 3'000'000'001u);
  EXPECT_EQ(second.gid(), static_cast<gid_t>(second.uid()));
  EXPECT_THROW(JailIdentity::acquire(dir_ / "uids", range), Error);
  { auto released = std::move(first); }
  auto again = JailIdentity::acquire(dir_ / "uids", range);
  EXPECT_EQ(again.uid(), 3'000'000'000u);
  // QEMU's own lock keeps a uid taken after its worker's is gone.
  auto qemuLock = second.lockForQemu();
  { auto released = std::move(second); }
  EXPECT_THROW(JailIdentity::acquire(dir_ / "uids", range), Error);
  qemuLock.reset();
  EXPECT_EQ(JailIdentity::acquire(dir_ / "uids", range).uid(), 3'000'000'001u);
}

// The host's administrator may move the range; a range that is not unprivileged uids, or a
// misspelt key, is refused naming the file.
TEST_F(QemuJailTest, TheRangeComesFromTheConfigurationFile) {
  EXPECT_EQ(JailUids::load(dir_ / "missing.json").first, 1'900'000'000u);
  auto config = dir_ / "config.json";
  std::ofstream(config) << R"({"quotas": {}, "jail": {"first_uid": 200000, "uids": 100}})";
  auto range = JailUids::load(config);
  EXPECT_EQ(range.first, 200000u);
  EXPECT_EQ(range.count, 100u);
  for (const char* bad : {R"({"jail": {"first_uid": 0}})", R"({"jail": {"uids": 0}})",
                          R"({"jail": {"first_uid": 4294967200, "uids": 1000}})",
                          R"({"jail": {"first-uid": 200000}})", R"({"jail": 5})"}) {
    std::ofstream(config) << bad;
    try {
      JailUids::load(config);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(config.string()), std::string::npos) << e.what();
    }
  }
}

// A range that holds an account's id would give QEMU that account's files: it is found, named.
TEST_F(QemuJailTest, AnAccountInsideTheRangeIsFound) {
  EXPECT_EQ(JailUids{}.ownedByAnAccount(), std::nullopt);
  EXPECT_EQ(JailUids({65534, 1}).ownedByAnAccount(), "user 'nobody' (uid 65534)");
}

}  // namespace
}  // namespace fcvm::worker
