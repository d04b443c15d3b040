#include "setup/artifact_store.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "base/error.h"
#include "tests/support/temp_dir.h"

namespace fcvm::setup {
namespace {

TEST(ArtifactStoreTest, OnlyCommittedArtifactsExist) {
  testing::TempDir dir;
  ArtifactStore store(dir / "artifacts");
  {
    auto staging = store.stage("kernel", "k1");
    std::ofstream(staging.dir() / "vmlinux") << "elf";
    EXPECT_FALSE(store.has("kernel", "k1"));
    // dropped without commit: as if the build failed
  }
  EXPECT_FALSE(store.has("kernel", "k1"));
  auto staging = store.stage("kernel", "k1");
  std::ofstream(staging.dir() / "vmlinux") << "elf";
  staging.commit();
  EXPECT_TRUE(store.has("kernel", "k1"));
  EXPECT_TRUE(std::filesystem::exists(store.path("kernel", "k1") / "vmlinux"));
}

TEST(ArtifactStoreTest, InterruptedRunLeavesNothingTrusted) {
  testing::TempDir dir;
  pid_t child = ::fork();
  if (child == 0) {
    ArtifactStore store(dir / "artifacts");
    auto staging = store.stage("rootfs", "r1");
    std::ofstream(staging.dir() / "rootfs.ext4") << "half";
    ::_exit(0);  // dies mid-build: no destructors, no commit
  }
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  ArtifactStore store(dir / "artifacts");
  EXPECT_FALSE(store.has("rootfs", "r1"));
  EXPECT_TRUE(std::filesystem::is_empty(dir / "artifacts" / "rootfs"));
  EXPECT_FALSE(store.current());
}

TEST(ArtifactStoreTest, OneSetupAtATime) {
  testing::TempDir dir;
  ArtifactStore first(dir / "artifacts");
  pid_t child = ::fork();
  if (child == 0) {
    try {
      ArtifactStore second(dir / "artifacts");
      ::_exit(0);
    } catch (const Error&) {
      ::_exit(7);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_EQ(WEXITSTATUS(status), 7);
}

TEST(ArtifactStoreTest, CurrentSetNeedsEveryFile) {
  testing::TempDir dir;
  ArtifactStore store(dir / "storage" / "artifacts");
  for (auto [kind, file] :
       {std::pair{"kernel", "vmlinux"}, std::pair{"initramfs", "initramfs.cpio"},
        std::pair{"rootfs", "rootfs.ext4"}}) {
    auto staging = store.stage(kind, "x");
    std::ofstream(staging.dir() / file) << "data";
    staging.commit();
  }
  store.setCurrent("x", "x", "x", "6.1");
  auto current = currentArtifacts(dir.path());
  ASSERT_TRUE(current);
  EXPECT_EQ(current->kernelVersion, "6.1");
  std::filesystem::remove(current->rootfs);
  EXPECT_FALSE(currentArtifacts(dir.path()));
}

}  // namespace
}  // namespace fcvm::setup
