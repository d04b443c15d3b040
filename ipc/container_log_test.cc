#include "ipc/container_log.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/support/temp_dir.h"

namespace fcvm::ipc {
namespace {

uint64_t sizeOf(const std::filesystem::path& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

std::string record(int i) { return std::to_string(i) + std::string(64 << 10, 'x') + "\n"; }

// A container that prints without end keeps at most the cap on disk, and a reader gets the newest
// records, oldest first, without a gap.
TEST(ContainerLogTest, EndlessOutputStaysUnderTheCapAndTheNewestIsKept) {
  testing::TempDir dir;
  auto path = dir / "container.log";
  ContainerLogWriter writer(path, kMinContainerLogCap);
  for (int i = 0; i < 400; ++i) writer.append(rpc::OutputKind::STDOUT, record(i));
  EXPECT_LE(sizeOf(path) + sizeOf(previousLogOf(path)), kMinContainerLogCap);
  EXPECT_GT(sizeOf(previousLogOf(path)), 0u);

  ContainerLogReader reader(path, writer.size());
  std::vector<int> seen;
  while (auto r = reader.next()) seen.push_back(std::stoi(r->data));
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), 399);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_EQ(seen[i], seen[i - 1] + 1);
  EXPECT_GT(seen.size(), 20u);  // about half the cap at least
}

// A reader reads what was there when it started, even if the writer rotates meanwhile.
TEST(ContainerLogTest, AReaderIsNotDisturbedByALaterRotation) {
  testing::TempDir dir;
  auto path = dir / "container.log";
  ContainerLogWriter writer(path, kMinContainerLogCap);
  writer.append(rpc::OutputKind::STDERR, "first\n");
  ContainerLogReader reader(path, writer.size());
  for (int i = 0; i < 100; ++i) writer.append(rpc::OutputKind::STDOUT, record(i));
  auto first = reader.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->data, "first\n");
  EXPECT_EQ(first->kind, rpc::OutputKind::STDERR);
  EXPECT_FALSE(reader.next());
}

}  // namespace
}  // namespace fcvm::ipc
