#include "uffd-server/memory_image.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include "base/error.h"
#include "uffd-server/testing.h"

namespace fcvm::uffd {
namespace {

constexpr uint64_t kPage = 4096;

class MemoryImageTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  std::string path_ = dir_ / "memory";
};

TEST_F(MemoryImageTest, MapsTheFileAndHandsOutItsPages) {
  testing::writeImage(path_, 8, kPage, 0);
  const MemoryImage image = MemoryImage::open(path_, kPage);
  EXPECT_EQ(image.size(), 8 * kPage);
  EXPECT_EQ(image.pageSize(), kPage);
  for (uint64_t page = 0; page < 8; ++page) {
    const std::byte* p = image.page(page * kPage);
    EXPECT_EQ(p[0], testing::patternByte(page, 0));
    EXPECT_EQ(p[kPage - 1], testing::patternByte(page, kPage - 1));
  }
}

TEST_F(MemoryImageTest, TakesAnAlreadyOpenDescriptor) {
  testing::writeImage(path_, 2, kPage, 0);
  const MemoryImage image(UniqueFd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC)), kPage,
                          "inherited");
  EXPECT_EQ(image.size(), 2 * kPage);
  EXPECT_EQ(image.page(kPage)[5], testing::patternByte(1, 5));
}

TEST_F(MemoryImageTest, PageRefusesUnalignedAndOutOfBoundsOffsets) {
  testing::writeImage(path_, 2, kPage, 0);
  const MemoryImage image = MemoryImage::open(path_, kPage);
  EXPECT_THROW(image.page(1), Error);
  EXPECT_THROW(image.page(2 * kPage), Error);
  EXPECT_THROW(image.page(~uint64_t{0} - kPage + 1), Error);
}

TEST_F(MemoryImageTest, NeverWrittenPagesAreHoles) {
  testing::writeImage(path_, 16, kPage, 4);  // pages 3, 7, 11 and 15 are never written
  const MemoryImage image = MemoryImage::open(path_, kPage);
  for (uint64_t page = 0; page < 16; ++page) {
    EXPECT_EQ(image.isHole(page * kPage, kPage), page % 4 == 3) << "page " << page;
  }
  EXPECT_FALSE(image.isHole(3 * kPage, 2 * kPage));  // a hole followed by data
  EXPECT_THROW(image.isHole(15 * kPage, 2 * kPage), Error);
}

TEST_F(MemoryImageTest, RefusesFilesThatCannotBeAnImage) {
  testing::writeImage(path_, 0, kPage, 0);
  EXPECT_THROW(MemoryImage::open(path_, kPage), Error);  // empty
  ASSERT_EQ(::truncate(path_.c_str(), kPage + 1), 0);
  EXPECT_THROW(MemoryImage::open(path_, kPage), Error);  // not whole pages
  ASSERT_EQ(::truncate(path_.c_str(), 2 * kPage), 0);
  EXPECT_THROW(MemoryImage::open(path_, 3000), Error);  // not a power of two
  EXPECT_THROW(MemoryImage::open(path_, 1024), Error);  // below the system page size
  EXPECT_THROW(MemoryImage::open(dir_ / "missing", kPage), SysError);
  try {
    MemoryImage::open(path_, 4 * kPage);
    ADD_FAILURE() << "a file smaller than one page was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path_), std::string::npos) << e.what();
  }
}

TEST_F(MemoryImageTest, CanBeKeptResident) {
  testing::writeImage(path_, 4, kPage, 0);  // small enough for any RLIMIT_MEMLOCK
  MemoryImage image = MemoryImage::open(path_, kPage);
  EXPECT_NO_THROW(image.lockResident());
}

}  // namespace
}  // namespace fcvm::uffd
