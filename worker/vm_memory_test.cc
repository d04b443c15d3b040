// The parsers behind `fcvm inspect`'s memory: a guest's /proc/meminfo (the guest's word: any
// bytes a hostile guest prints) and the VMM's smaps_rollup.
#include "worker/vm_memory.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "base/error.h"

namespace fcvm::worker {
namespace {

constexpr const char* kMeminfo =
    "MemTotal:         220444 kB\n"
    "MemFree:          130116 kB\n"
    "MemAvailable:     168904 kB\n"
    "Buffers:            4268 kB\n"
    "HugePages_Total:       0\n";

std::string errorOf(const std::string& text) {
  try {
    parseGuestMeminfo(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(VmMemoryTest, ReadsAGuestsTotalAndAvailableMemory) {
  auto m = parseGuestMeminfo(kMeminfo);
  EXPECT_EQ(m.totalBytes, 220444ull * 1024);
  EXPECT_EQ(m.availableBytes, 168904ull * 1024);
  // A key is matched whole: MemTotal is not found in "MemTotalX", a count without kB is no value.
  EXPECT_EQ(kilobyteField("MemTotalX: 5 kB\nMemTotal: 7 kB\n", "MemTotal"), 7 * 1024u);
  EXPECT_EQ(kilobyteField(kMeminfo, "Cached"), std::nullopt);
  EXPECT_THROW(kilobyteField(kMeminfo, "HugePages_Total"), Error);
}

TEST(VmMemoryTest, RefusesWhatNoGuestKernelPrints) {
  EXPECT_EQ(errorOf(""), "the guest's meminfo lacks MemTotal or MemAvailable");
  EXPECT_EQ(errorOf("MemTotal: 100 kB\n"), "the guest's meminfo lacks MemTotal or MemAvailable");
  EXPECT_EQ(errorOf("MemTotal: 100 kB\nMemAvailable: 200 kB\n"),
            "the guest's meminfo is inconsistent: 204800 bytes available of 102400");
  EXPECT_EQ(errorOf("MemTotal: 0 kB\nMemAvailable: 0 kB\n"),
            "the guest's meminfo is inconsistent: 0 bytes available of 0");
  EXPECT_EQ(errorOf("MemTotal: -5 kB\nMemAvailable: 1 kB\n"), "MemTotal: not a number of kB");
  EXPECT_EQ(errorOf("MemTotal: 5 MB\nMemAvailable: 1 kB\n"), "MemTotal: not a number of kB");
  EXPECT_EQ(errorOf("MemTotal:\n"), "MemTotal: no value");
  EXPECT_EQ(errorOf("MemTotal: 99999999999999999999 kB\nMemAvailable: 1 kB\n"),
            "MemTotal: not a number of kB");
  EXPECT_EQ(errorOf("MemTotal: 18014398509481984 kB\nMemAvailable: 1 kB\n"),
            "MemTotal: out of range");
  EXPECT_EQ(errorOf(std::string(kMaxMeminfoBytes + 1, 'x')), "the guest's meminfo is too long");
}

TEST(VmMemoryTest, ReadsAProcesssShareOfHostMemory) {
  auto m = readVmmMemory(::getpid());
  EXPECT_GT(m.pssBytes, 0u);
  EXPECT_GT(m.anonBytes, 0u);
  EXPECT_THROW(readVmmMemory(-1), Error);
}

}  // namespace
}  // namespace fcvm::worker
