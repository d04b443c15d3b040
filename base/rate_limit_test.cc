#include "base/rate_limit.h"

#include <gtest/gtest.h>

namespace fcvm {
namespace {

using namespace std::chrono_literals;

TEST(RateLimitTest, ABurstThenTheRefillRate) {
  RateLimit limit(3, 2);  // 3 at once, 2 per second after
  auto t = RateLimit::Clock::now();
  EXPECT_TRUE(limit.allow(t));
  EXPECT_TRUE(limit.allow(t));
  EXPECT_TRUE(limit.allow(t));
  EXPECT_FALSE(limit.allow(t));
  EXPECT_FALSE(limit.allow(t + 100ms));
  EXPECT_EQ(limit.takeRefused(), 2u);
  EXPECT_EQ(limit.takeRefused(), 0u);
  EXPECT_TRUE(limit.allow(t + 600ms));  // 1.2 tokens by then
  EXPECT_FALSE(limit.allow(t + 600ms));
  // A long quiet spell refills only up to the burst.
  auto later = t + 60s;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limit.allow(later));
  EXPECT_FALSE(limit.allow(later));
}

}  // namespace
}  // namespace fcvm
