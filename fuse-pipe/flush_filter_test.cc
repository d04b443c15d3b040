#include "fuse-pipe/flush_filter.h"

#include <gtest/gtest.h>

namespace fcvm::fusepipe {
namespace {

constexpr uint64_t kReader = 1, kWriter = 2;
const FlushFilter::Owner kOwner{10, 0xabc};

TEST(FlushFilterTest, ReadOnlyClosesWithoutLocksStayInTheClient) {
  FlushFilter filter;
  filter.writerOpened(kWriter);
  EXPECT_FALSE(filter.flushStarting(kReader, kOwner).send);
  EXPECT_TRUE(filter.flushStarting(kWriter, kOwner).send);
  filter.released(kWriter);
  EXPECT_FALSE(filter.flushStarting(kWriter, kOwner).send);
}

TEST(FlushFilterTest, AnOwnerThatLockedIsFlushedThroughAnyHandleUntilAFlushReleasedIt) {
  FlushFilter filter;
  filter.lockSent(kOwner);
  filter.lockDone(kOwner);
  // Another owner, or another inode of the same owner, holds nothing.
  EXPECT_FALSE(filter.flushStarting(kReader, {10, 0xdef}).send);
  EXPECT_FALSE(filter.flushStarting(kReader, {11, 0xabc}).send);

  auto ticket = filter.flushStarting(kReader, kOwner);
  ASSERT_TRUE(ticket.send);
  EXPECT_TRUE(ticket.mayHoldLocks);
  EXPECT_EQ(filter.lockOwnerCount(), 1u);
  filter.flushDone(kOwner, ticket);
  EXPECT_EQ(filter.lockOwnerCount(), 0u);
  EXPECT_FALSE(filter.flushStarting(kReader, kOwner).send);
}

TEST(FlushFilterTest, ALockRacingAFlushKeepsTheOwnerRecorded) {
  FlushFilter filter;
  filter.lockSent(kOwner);
  filter.lockDone(kOwner);

  // A lock request sent while the flush is on its way may have reached the server after it.
  auto ticket = filter.flushStarting(kReader, kOwner);
  filter.lockSent(kOwner);
  filter.lockDone(kOwner);
  filter.flushDone(kOwner, ticket);
  EXPECT_TRUE(filter.flushStarting(kReader, kOwner).send);

  // One in flight as the flush starts, even if answered before the flush is: the server may
  // have performed the flush first.
  filter.lockSent(kOwner);
  ticket = filter.flushStarting(kReader, kOwner);
  filter.lockDone(kOwner);
  filter.flushDone(kOwner, ticket);
  EXPECT_TRUE(filter.flushStarting(kReader, kOwner).send);

  // One still in flight when the flush is done, too.
  ticket = filter.flushStarting(kReader, kOwner);
  filter.flushDone(kOwner, ticket);
  EXPECT_FALSE(filter.flushStarting(kReader, kOwner).send);
  filter.lockSent(kOwner);
  ticket = filter.flushStarting(kReader, kOwner);
  filter.flushDone(kOwner, ticket);
  EXPECT_TRUE(filter.flushStarting(kReader, kOwner).send);
  filter.lockDone(kOwner);
  ticket = filter.flushStarting(kReader, kOwner);
  filter.flushDone(kOwner, ticket);
  EXPECT_FALSE(filter.flushStarting(kReader, kOwner).send);
}

}  // namespace
}  // namespace fcvm::fusepipe
