#include "ipc/fixed_string.h"

#include <gtest/gtest.h>

namespace fcvm::ipc {
namespace {

TEST(FixedStringTest, AssignRefusesWhatDoesNotFit) {
  FixedString<8> s;
  EXPECT_TRUE(s.assign("1234567"));
  EXPECT_EQ(s.view(), "1234567");
  EXPECT_FALSE(s.assign("12345678"));
  EXPECT_EQ(s.view(), "1234567");
  EXPECT_FALSE(s.assign(std::string_view("a\0b", 3)));
}

TEST(FixedStringTest, UnterminatedBytesAreInvalidAndViewStaysInBounds) {
  FixedString<8> s;
  s.bytes.fill('x');
  EXPECT_FALSE(s.valid());
  EXPECT_EQ(s.view().size(), 8u);
}

TEST(FixedStringTest, TruncatedAssignKeepsPrefix) {
  FixedString<8> s;
  s.assignTruncated("a long failure reason");
  EXPECT_EQ(s.view(), "a long ");
  EXPECT_TRUE(s.valid());
}

}  // namespace
}  // namespace fcvm::ipc
