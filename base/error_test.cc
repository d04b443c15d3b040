#include "base/error.h"

#include <fcntl.h>
#include <gtest/gtest.h>

namespace fcvm {
namespace {

TEST(ErrorTest, SysErrorCarriesContextAndErrno) {
  try {
    checkSys(::open("/nonexistent/fcvm", O_RDONLY), "open {}", "/nonexistent/fcvm");
    FAIL() << "open succeeded";
  } catch (const SysError& e) {
    EXPECT_EQ(e.code(), ENOENT);
    EXPECT_STREQ(e.what(), "open /nonexistent/fcvm: No such file or directory");
  }
}

}  // namespace
}  // namespace fcvm
