#include "supervisor/restart_rule.h"

#include <gtest/gtest.h>

namespace fcvm::supervisor {
namespace {

using std::chrono::milliseconds;
using Kind = ipc::RestartPolicy::Kind;

ipc::VmRecord endedWith(ipc::VmState state, std::optional<int32_t> exitCode,
                        uint32_t restarts = 0) {
  ipc::VmRecord r;
  r.state = state;
  r.hasExitCode = exitCode ? 1 : 0;
  r.exitCode = exitCode.value_or(0);
  r.restartCount = restarts;
  return r;
}

TEST(RestartRuleTest, EachPolicyRestartsWhatPodmansWould) {
  auto exited0 = endedWith(ipc::VmState::kStopped, 0);
  auto exited3 = endedWith(ipc::VmState::kStopped, 3);
  auto crashed = endedWith(ipc::VmState::kFailed, std::nullopt);
  const ipc::RestartPolicy no{Kind::kNo, 0}, always{Kind::kAlways, 0},
      onFailure{Kind::kOnFailure, 0}, unlessStopped{Kind::kUnlessStopped, 0};

  for (const auto& r : {exited0, exited3, crashed}) {
    EXPECT_FALSE(restartDelay(no, r, EndCause::kEnded, 0));
    EXPECT_EQ(restartDelay(always, r, EndCause::kEnded, 0), milliseconds{0});
    EXPECT_EQ(restartDelay(unlessStopped, r, EndCause::kEnded, 0), milliseconds{0});
  }
  EXPECT_FALSE(restartDelay(onFailure, exited0, EndCause::kEnded, 0));
  EXPECT_TRUE(restartDelay(onFailure, exited3, EndCause::kEnded, 0));
  EXPECT_TRUE(restartDelay(onFailure, crashed, EndCause::kEnded, 0));

  // A stop by the owner is final; a host restart brings back only always and unless-stopped.
  for (const auto& policy : {always, onFailure, unlessStopped}) {
    EXPECT_FALSE(restartDelay(policy, crashed, EndCause::kStoppedByOwner, 0));
  }
  EXPECT_TRUE(restartDelay(always, crashed, EndCause::kHostRestarted, 0));
  EXPECT_TRUE(restartDelay(unlessStopped, crashed, EndCause::kHostRestarted, 0));
  EXPECT_FALSE(restartDelay(onFailure, crashed, EndCause::kHostRestarted, 0));
}

TEST(RestartRuleTest, OnFailureStopsAfterItsRetries) {
  const ipc::RestartPolicy twice{Kind::kOnFailure, 2};
  EXPECT_TRUE(restartDelay(twice, endedWith(ipc::VmState::kStopped, 1, 0), EndCause::kEnded, 0));
  EXPECT_TRUE(restartDelay(twice, endedWith(ipc::VmState::kStopped, 1, 1), EndCause::kEnded, 0));
  EXPECT_FALSE(restartDelay(twice, endedWith(ipc::VmState::kStopped, 1, 2), EndCause::kEnded, 0));
}

TEST(RestartRuleTest, QuickEndsInARowDoubleTheDelayUpToAMinute) {
  const ipc::RestartPolicy always{Kind::kAlways, 0};
  auto r = endedWith(ipc::VmState::kStopped, 0);
  EXPECT_EQ(restartDelay(always, r, EndCause::kEnded, 0), milliseconds{0});
  EXPECT_EQ(restartDelay(always, r, EndCause::kEnded, 1), milliseconds{1000});
  EXPECT_EQ(restartDelay(always, r, EndCause::kEnded, 2), milliseconds{2000});
  EXPECT_EQ(restartDelay(always, r, EndCause::kEnded, 6), milliseconds{32000});
  EXPECT_EQ(restartDelay(always, r, EndCause::kEnded, 7), kMaxRestartDelay);
  EXPECT_EQ(restartDelay(always, r, EndCause::kEnded, 1000), kMaxRestartDelay);
}

}  // namespace
}  // namespace fcvm::supervisor
