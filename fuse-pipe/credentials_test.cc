#include "fuse-pipe/credentials.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <future>
#include <thread>

namespace fcvm::fusepipe {
namespace {

struct Ids {
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
};

// This thread's ids (the raw syscalls report the calling thread's own).
Ids threadIds() {
  Ids ids{};
  ::syscall(SYS_getresuid, &ids.ruid, &ids.euid, &ids.suid);
  ::syscall(SYS_getresgid, &ids.rgid, &ids.egid, &ids.sgid);
  return ids;
}

mode_t threadUmask() {
  mode_t mask = ::umask(0);
  ::umask(mask);
  return mask;
}

TEST(ScopedCredentialsTest, SwitchesOnlyTheCallingThreadAndRestores) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root";
  const mode_t mainUmask = threadUmask();
  Ids inside{}, after{};
  std::vector<gid_t> groupsInside;
  Errno error = -1;
  std::promise<void> switched, checked;
  std::thread worker([&] {
    {
      ScopedCredentials as(
          Credentials{.uid = 65534, .gid = 65533, .pid = 0, .umask = 077, .groups = {4242, 4343}},
          /*switchIds=*/true);
      error = as.error();
      inside = threadIds();
      groupsInside.resize(16);
      int n = ::getgroups(static_cast<int>(groupsInside.size()), groupsInside.data());
      groupsInside.resize(n > 0 ? static_cast<size_t>(n) : 0);
      EXPECT_EQ(threadUmask(), 077u);
      switched.set_value();
      checked.get_future().wait();  // stay switched while the main thread looks at itself
    }
    after = threadIds();
  });
  switched.get_future().wait();
  const Ids mainDuring = threadIds();  // the process's other threads are untouched
  const mode_t mainUmaskDuring = threadUmask();
  checked.set_value();
  worker.join();
  EXPECT_EQ(mainDuring.euid, 0u);
  EXPECT_EQ(mainDuring.egid, 0u);
  EXPECT_EQ(mainUmaskDuring, mainUmask);
  ASSERT_EQ(error, 0);
  EXPECT_EQ(inside.euid, 65534u);
  EXPECT_EQ(inside.egid, 65533u);
  EXPECT_EQ(inside.ruid, 0u);  // real and saved stay root, so the switch can be undone
  EXPECT_EQ(inside.suid, 0u);
  EXPECT_EQ(groupsInside, (std::vector<gid_t>{4242, 4343}));
  EXPECT_EQ(after.euid, 0u);
  EXPECT_EQ(after.egid, 0u);
  Ids mainIds = threadIds();
  EXPECT_EQ(mainIds.euid, 0u);
  EXPECT_EQ(mainIds.egid, 0u);
  EXPECT_EQ(threadUmask(), mainUmask);  // the umask was per thread too
}

TEST(ScopedCredentialsTest, WithoutSwitchingOnlyTheUmaskChanges) {
  const Ids before = threadIds();
  const mode_t mainUmask = threadUmask();
  std::thread worker([&] {
    ScopedCredentials as(
        Credentials{.uid = 65534, .gid = 65534, .pid = 0, .umask = 027, .groups = {}},
        /*switchIds=*/false);
    EXPECT_EQ(as.error(), 0);
    EXPECT_EQ(threadIds().euid, before.euid);
    EXPECT_EQ(threadUmask(), 027u);
  });
  worker.join();
  EXPECT_EQ(threadUmask(), mainUmask);
}

}  // namespace
}  // namespace fcvm::fusepipe
