#include "fuse-pipe/inode_table.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "fuse-pipe/handle_table.h"

namespace fcvm::fusepipe {
namespace {

UniqueFd openPath(const char* path) { return UniqueFd(::open(path, O_PATH | O_CLOEXEC)); }

TEST(InodeTableTest, RootIsRegisteredAndNeverForgotten) {
  InodeTable table(openPath("/"), 1, 2);
  auto root = table.find(kRootInode);
  ASSERT_TRUE(root);
  EXPECT_EQ(root->type, static_cast<uint32_t>(S_IFDIR));
  table.forget(kRootInode, ~0ULL);
  EXPECT_TRUE(table.find(kRootInode));
}

TEST(InodeTableTest, SameHostInodeGetsTheSameIdAndCountsLookups) {
  InodeTable table(openPath("/"), 1, 2);
  InodeId a = table.addLookup(openPath("/tmp"), 1, 100, S_IFDIR);
  InodeId b = table.addLookup(openPath("/tmp"), 1, 100, S_IFDIR);
  InodeId other = table.addLookup(openPath("/tmp"), 2, 100, S_IFDIR);  // other device
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);
  EXPECT_EQ(table.size(), 3u);
  table.forget(a, 1);
  EXPECT_TRUE(table.find(a));
  table.forget(a, 1);
  EXPECT_FALSE(table.find(a));
  EXPECT_EQ(table.size(), 2u);
}

TEST(InodeTableTest, IdsAreNeverReused) {
  InodeTable table(openPath("/"), 1, 2);
  InodeId first = table.addLookup(openPath("/tmp"), 1, 100, S_IFDIR);
  table.forget(first, 1);
  InodeId second = table.addLookup(openPath("/tmp"), 1, 100, S_IFDIR);
  EXPECT_NE(first, second);
  EXPECT_FALSE(table.find(first));
}

TEST(InodeTableTest, ForgettingMoreThanLookedUpRemovesAndUnknownIdsAreIgnored) {
  InodeTable table(openPath("/"), 1, 2);
  InodeId a = table.addLookup(openPath("/tmp"), 1, 100, S_IFDIR);
  table.forget(a, 1000);
  EXPECT_FALSE(table.find(a));
  table.forget(InodeId{424242}, 1);
  table.forget(InodeId{0}, 1);
  EXPECT_EQ(table.size(), 1u);
}

TEST(InodeTableTest, AFoundInodeOutlivesItsForget) {
  InodeTable table(openPath("/"), 1, 2);
  InodeId a = table.addLookup(openPath("/tmp"), 1, 100, S_IFDIR);
  auto held = table.find(a);
  table.forget(a, 1);
  ASSERT_TRUE(held);
  EXPECT_TRUE(held->pathFd);  // still usable by the request that holds it
}

TEST(HandleTableTest, InsertFindRemoveAndCapacity) {
  HandleTable<int> table(2);
  auto a = table.insert(std::make_shared<int>(1));
  auto b = table.insert(std::make_shared<int>(2));
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_FALSE(table.insert(std::make_shared<int>(3)));  // full
  EXPECT_EQ(*table.find(*a), 1);
  EXPECT_FALSE(table.find(HandleId{999}));
  EXPECT_TRUE(table.remove(*a));
  EXPECT_FALSE(table.remove(*a));
  auto c = table.insert(std::make_shared<int>(3));
  ASSERT_TRUE(c);
  EXPECT_NE(*c, *a);  // not reused
}

}  // namespace
}  // namespace fcvm::fusepipe
