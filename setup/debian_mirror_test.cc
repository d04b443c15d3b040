#include "setup/debian_mirror.h"

#include <gtest/gtest.h>

#include <fstream>

#include "base/error.h"
#include "tests/support/temp_dir.h"

namespace fcvm::setup {
namespace {

TEST(DebianMirrorTest, ReadsDeb822Stanzas) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir / "sources.list.d");
  std::ofstream(dir / "sources.list.d" / "debian.sources")
      << "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm "
         "bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://sec.example/\nSuites: "
         "bookworm-security\n";
  EXPECT_EQ(hostDebianMirror("bookworm", dir.path()), "http://mirror.example/debian");
  EXPECT_EQ(hostDebianMirror("bookworm-security", dir.path()), "http://sec.example/");
  EXPECT_THROW(hostDebianMirror("trixie", dir.path()), Error);
}

TEST(DebianMirrorTest, ReadsOneLineSources) {
  testing::TempDir dir;
  std::ofstream(dir / "sources.list")
      << "# deb http://old.example/ bookworm main\ndeb-src http://src.example/ bookworm main\n"
         "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n";
  EXPECT_EQ(hostDebianMirror("bookworm", dir.path()), "http://one.example/debian");
}

}  // namespace
}  // namespace fcvm::setup
