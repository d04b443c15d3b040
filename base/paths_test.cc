#include "base/paths.h"

#include <gtest/gtest.h>

#include <map>

#include "base/error.h"

namespace fcvm {
namespace {

Environment fakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(PathsTest, RootUsesHostLocations) {
  auto p = Paths::resolve(0, fakeEnv({}));
  EXPECT_EQ(p.dataDir, "/var/lib/fcvm");
  EXPECT_EQ(p.runtimeDir, "/run/fcvm");
  EXPECT_EQ(p.supervisorSocket(), "/run/fcvm/supervisor.sock");
}

TEST(PathsTest, UserGetsOwnDirectories) {
  auto p =
      Paths::resolve(1000, fakeEnv({{"HOME", "/home/u"}, {"XDG_RUNTIME_DIR", "/run/user/1000"}}));
  EXPECT_EQ(p.dataDir, "/home/u/.local/share/fcvm");
  EXPECT_EQ(p.supervisorSocket(), "/run/user/1000/fcvm/supervisor.sock");
  auto q = Paths::resolve(1000, fakeEnv({{"HOME", "/home/u"}}));
  EXPECT_EQ(q.runtimeDir, "/tmp/fcvm-run-1000");
}

TEST(PathsTest, EnvironmentOverrides) {
  auto p = Paths::resolve(0, fakeEnv({{"FCVM_DATA_DIR", "/d"}, {"FCVM_RUNTIME_DIR", "/r"}}));
  EXPECT_EQ(p.dataDir, "/d");
  EXPECT_EQ(p.stateTable(), "/r/state");
}

TEST(PathsTest, RelativeOverrideIsRefused) {
  EXPECT_THROW(Paths::resolve(0, fakeEnv({{"FCVM_DATA_DIR", "rel"}})), Error);
}

TEST(PathsTest, DirectoryOwnedBySomeoneElseIsRefused) {
  if (::geteuid() != 0) GTEST_FAIL() << "this test chowns a directory and must run as root";
  char tmpl[] = "/tmp/fcvm-paths-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::filesystem::path dir = tmpl;
  ASSERT_EQ(::chown(dir.c_str(), 12345, 12345), 0);
  EXPECT_THROW(ensureOwnedDirectory(dir, 0700), Error);
  ASSERT_EQ(::chown(dir.c_str(), 0, 0), 0);
  EXPECT_NO_THROW(ensureOwnedDirectory(dir / "a" / "b", 0700));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fcvm
