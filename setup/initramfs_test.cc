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

}  // namespace
}  // namespace fcvm::setup
