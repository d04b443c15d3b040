#include "setup/initramfs.h"

#include <gtest/gtest.h>

#include <fstream>

#include "base/error.h"
#include "tests/support/temp_dir.h"

namespace fcvm::setup {
namespace {

TEST(InitramfsTest, ModulesComeAfterTheirDependencies) {
  testing::TempDir dir;
  std::ofstream(dir / "modules.dep")
      << "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio_ring.ko "
         "kernel/drivers/virtio/virtio.ko\n"
         "kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n"
         "kernel/drivers/virtio/virtio.ko:\n"
         "kernel/fs/fuse/fuse.ko:\n"
         "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko "
         "kernel/drivers/virtio/virtio.ko\n";
  auto order = moduleLoadOrder(dir.path(), {"virtio_mmio", "fuse", "virtio-blk"});
  std::vector<std::string> expected = {
      "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
      "kernel/drivers/virtio/virtio_mmio.ko", "kernel/fs/fuse/fuse.ko",
      "kernel/drivers/block/virtio_blk.ko"};
  EXPECT_EQ(order, expected);
  EXPECT_THROW(moduleLoadOrder(dir.path(), {"nope"}), Error);
}

TEST(InitramfsTest, BuiltInModulesNeedNoLoading) {
  testing::TempDir dir;
  std::ofstream(dir / "modules.dep") << "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko\n"
                                        "kernel/net/9p/9pnet.ko:\n";
  std::ofstream(dir / "modules.builtin") << "kernel/drivers/virtio/virtio_mmio.ko\n";
  auto order = moduleLoadOrder(dir.path(), {"virtio_mmio", "9p"});
  std::vector<std::string> expected = {"kernel/net/9p/9pnet.ko", "kernel/fs/9p/9p.ko"};
  EXPECT_EQ(order, expected);
}

}  // namespace
}  // namespace fcvm::setup
