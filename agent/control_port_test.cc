#include "agent/control_port.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "agent/modules.h"
#include "tests/support/temp_dir.h"

namespace fcvm::agent {
namespace {

void writeFile(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << content;
}

TEST(FindVirtioPort, MatchesTheNameFile) {
  testing::TempDir dir("fc-agent-test");
  writeFile(dir / "vport0p0/name", "org.qemu.guest_agent.0\n");
  writeFile(dir / "vport1p1/name", "fcvm.control\n");
  writeFile(dir / "vport1p2/name", "fcvm.control.other\n");
  std::filesystem::create_directories(dir / "vport2p1");  // no name file
  EXPECT_EQ(findVirtioPort(dir.path(), "fcvm.control"), "/dev/vport1p1");
  EXPECT_EQ(findVirtioPort(dir.path(), "fcvm.control", "/x"), "/x/vport1p1");
  EXPECT_EQ(findVirtioPort(dir.path(), "fcvm.absent"), std::nullopt);
  EXPECT_EQ(findVirtioPort((dir / "missing").string(), "fcvm.control"), std::nullopt);
}

TEST(ReadModuleList, RelativeAbsoluteCommentsAndBlanks) {
  testing::TempDir dir("fc-agent-test");
  writeFile(dir / "modules.order",
            "# virtio first\nmodules/virtio_mmio.ko\n\n/lib/overlay.ko\r\nmodules/fuse.ko  \n");
  EXPECT_EQ(readModuleList(dir / "modules.order", "/fcvm"),
            (std::vector<std::string>{"/fcvm/modules/virtio_mmio.ko", "/lib/overlay.ko",
                                      "/fcvm/modules/fuse.ko"}));
  EXPECT_THROW(readModuleList(dir / "absent", "/fcvm"), kj::Exception);
}

}  // namespace
}  // namespace fcvm::agent
