#include "base/subprocess.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"

namespace fcvm {
namespace {

TEST(SubprocessTest, CollectsOutputAndExitCode) {
  auto r = runCommand({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exitCode, 3);
  EXPECT_FALSE(r.timedOut);
  EXPECT_EQ(r.output, "out\nerr\n");
}

TEST(SubprocessTest, DeadlineKillsTheChild) {
  auto r = runCommand({"sh", "-c", "exec tail -f /dev/null"},
                      CommandOptions::withTimeout(std::chrono::milliseconds(200)));
  EXPECT_TRUE(r.timedOut);
  EXPECT_EQ(r.exitCode, -1);
  EXPECT_EQ(r.signal, SIGKILL);
}

TEST(SubprocessTest, MissingProgramIsAClearError) {
  try {
    runCommand({"fcvm-no-such-program"});
    FAIL();
  } catch (const SysError& e) {
    EXPECT_EQ(e.code(), ENOENT);
    EXPECT_STREQ(e.what(), "start fcvm-no-such-program: No such file or directory");
  }
}

TEST(SubprocessTest, OutputIsCapped) {
  CommandOptions options;
  options.maxOutput = 10;
  auto r = runCommand({"sh", "-c", "yes | head -c 100000"}, options);
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_EQ(r.output.size(), 10u);
}

}  // namespace
}  // namespace fcvm

namespace fcvm {
namespace {

TEST(SubprocessTest, OutputFileAndWorkingDirectory) {
  char dir[] = "/tmp/fcvm-subprocess-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  CommandOptions options;
  options.cwd = dir;
  options.outputFile = std::string(dir) + "/log";
  auto r = runCommand({"sh", "-c", "pwd; echo err >&2; exit 5"}, options);
  EXPECT_EQ(r.exitCode, 5);
  EXPECT_EQ(r.output, "");
  std::ifstream in(options.outputFile);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(text, std::string(dir) + "\nerr\n");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fcvm
