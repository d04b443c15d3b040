#include "base/capped_file.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "base/error.h"
#include "base/log.h"
#include "tests/support/temp_dir.h"

namespace fcvm {
namespace {

uint64_t sizeOf(const std::filesystem::path& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

std::string contentOf(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(CappedFileTest, EndlessAppendsStayUnderTheCapAndTheNewestIsLast) {
  testing::TempDir dir;
  auto path = dir / "console.log";
  constexpr uint64_t kCap = 64 << 10;
  int rotations = 0;
  CappedFile file(path, kCap, [&rotations](int) { ++rotations; });
  for (int i = 0; i < 10000; ++i) file.append("line " + std::to_string(i) + "\n");
  EXPECT_GT(rotations, 1);
  EXPECT_LE(sizeOf(path) + sizeOf(previousLogOf(path)), kCap);
  EXPECT_EQ(file.size(), sizeOf(path));
  // The rotated file ends where the current one begins: no line lost between them.
  std::string both = contentOf(previousLogOf(path)) + contentOf(path);
  EXPECT_TRUE(both.ends_with("line 9999\n"));
  auto first = both.substr(0, both.find('\n'));
  int firstKept = std::stoi(first.substr(5));
  EXPECT_EQ(both.find("line " + std::to_string(firstKept + 1) + "\n"), first.size() + 1);
  EXPECT_NE(both.find("line 9000\n"), std::string::npos);
}

TEST(CappedFileTest, ItAppendsToWhatIsThereAndNeverFollowsASymlink) {
  testing::TempDir dir;
  auto path = dir / "worker.log";
  std::ofstream(path) << "before\n";
  {
    CappedFile file(path, 1 << 20);
    EXPECT_EQ(file.size(), 7u);
    file.append("after\n");
  }
  EXPECT_EQ(contentOf(path), "before\nafter\n");
  std::filesystem::create_symlink(dir / "elsewhere", dir / "link.log");
  EXPECT_THROW((CappedFile{dir / "link.log", 1 << 20}), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "elsewhere"));
}

// A process log rotates under FCVM_LOG_MAX_BYTES, and what the process writes to stderr itself
// follows the rotation instead of growing the rotated file. In a child: it takes over stdio.
TEST(CappedFileTest, AProcessLogMovesStderrAlongWhenItRotates) {
  testing::TempDir dir;
  auto path = dir / "supervisor.log";
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::setenv("FCVM_LOG_MAX_BYTES", std::to_string(kMinProcessLogCap).c_str(), 1);
    initLogging("test", {spdlog::level::info, path.string()});
    for (int i = 0; i < 5000; ++i) {
      spdlog::info("line {} {}", i, std::string(40, 'x'));
      if (i % 100 == 0) std::fprintf(stderr, "stderr %d\n", i);
    }
    std::fprintf(stderr, "the last stderr line\n");
    std::fflush(stderr);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_LE(sizeOf(path) + sizeOf(previousLogOf(path)), kMinProcessLogCap);
  auto current = contentOf(path);
  EXPECT_TRUE(current.ends_with("the last stderr line\n")) << current.substr(0, 200);
  EXPECT_NE(current.find("line 4999 "), std::string::npos);
}

TEST(CappedFileTest, ACapFromTheEnvironmentMustBeANumberAboveTheLeast) {
  ::setenv("FCVM_TEST_CAP", "1048576", 1);
  EXPECT_EQ(logCapFromEnvironment("FCVM_TEST_CAP", 7, 1024), 1048576u);
  ::setenv("FCVM_TEST_CAP", "12", 1);
  EXPECT_EQ(logCapFromEnvironment("FCVM_TEST_CAP", 7, 1024), 7u);
  ::setenv("FCVM_TEST_CAP", "lots", 1);
  EXPECT_EQ(logCapFromEnvironment("FCVM_TEST_CAP", 7, 1024), 7u);
  ::unsetenv("FCVM_TEST_CAP");
  EXPECT_EQ(logCapFromEnvironment("FCVM_TEST_CAP", 7, 1024), 7u);
}

}  // namespace
}  // namespace fcvm
