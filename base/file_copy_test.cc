#include "base/file_copy.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "base/unique_fd.h"

namespace fcvm {
namespace {

struct TempFiles {
  TempFiles(const char* dirTemplate) {
    std::string t = dirTemplate;
    if (::mkdtemp(t.data()) == nullptr) throw std::runtime_error("mkdtemp");
    dir = t;
  }
  ~TempFiles() { std::system(("rm -rf " + dir).c_str()); }
  UniqueFd open(const std::string& name, int flags) {
    return UniqueFd(::open((dir + "/" + name).c_str(), flags | O_CLOEXEC, 0600));
  }
  std::string dir;
};

std::string readAt(int fd, off_t offset, size_t length) {
  std::string s(length, '\0');
  EXPECT_EQ(::pread(fd, s.data(), length, offset), static_cast<ssize_t>(length));
  return s;
}

// Guest memory lives on tmpfs and snapshots go to disk: the copy crosses file system types.
TEST(FileCopyTest, SparseCopyAcrossFileSystemsKeepsDataOffsetsAndHoles) {
  TempFiles shm("/dev/shm/fcvm-copy-XXXXXX"), disk("/tmp/fcvm-copy-XXXXXX");
  auto from = shm.open("mem", O_RDWR | O_CREAT);
  ASSERT_TRUE(from);
  constexpr off_t kMiB = 1 << 20;
  ASSERT_EQ(::ftruncate(from.get(), 64 * kMiB), 0);
  std::string a(8192, 'a'), b(4096, 'b');
  ASSERT_EQ(::pwrite(from.get(), a.data(), a.size(), 0), 8192);
  ASSERT_EQ(::pwrite(from.get(), b.data(), b.size(), 40 * kMiB), 4096);
  auto to = disk.open("mem", O_RDWR | O_CREAT);
  ASSERT_TRUE(to);
  EXPECT_EQ(copySparse(from.get(), to.get(), "test memory"), 8192u + 4096u);
  struct stat st {};
  ASSERT_EQ(::fstat(to.get(), &st), 0);
  EXPECT_EQ(st.st_size, 64 * kMiB);
  EXPECT_LT(st.st_blocks * 512, 2 * kMiB) << "holes were filled";
  EXPECT_EQ(readAt(to.get(), 0, 8192), a);
  EXPECT_EQ(readAt(to.get(), 40 * kMiB, 4096), b);
  EXPECT_EQ(readAt(to.get(), 20 * kMiB, 16), std::string(16, '\0'));
}

TEST(FileCopyTest, CloneOrCopyGivesTheSameBytes) {
  TempFiles dir("/tmp/fcvm-copy-XXXXXX");
  auto from = dir.open("a", O_RDWR | O_CREAT);
  std::string text(100000, 'x');
  ASSERT_EQ(::write(from.get(), text.data(), text.size()), 100000);
  auto to = dir.open("b", O_RDWR | O_CREAT);
  cloneOrCopy(from.get(), to.get(), "a to b");
  EXPECT_EQ(readAt(to.get(), 0, text.size()), text);
}

}  // namespace
}  // namespace fcvm
