#include "base/process_identity.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fcvm {
namespace {

TEST(ProcessIdentityTest, KnowsSelfAndForgetsTheDead) {
  auto self = processStartTime(::getpid());
  ASSERT_TRUE(self);
  EXPECT_TRUE(isSameProcessAlive(::getpid(), *self));
  EXPECT_FALSE(isSameProcessAlive(::getpid(), *self + 1));

  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  auto childStart = processStartTime(child);
  ASSERT_TRUE(childStart);
  // Exited but not reaped (a zombie, as under an init that does not reap): dead already.
  siginfo_t exited{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &exited, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(isSameProcessAlive(child, *childStart));
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(isSameProcessAlive(child, *childStart));
  EXPECT_FALSE(processStartTime(-1));
}

}  // namespace
}  // namespace fcvm
