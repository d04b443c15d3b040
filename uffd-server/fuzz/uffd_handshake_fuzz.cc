// libFuzzer target: decodeHandshake on whatever a hostile peer could send as its JSON. The first
// input byte picks the snapshot's page size and image size; the rest is the message. A refusal is
// an fcvm::Error; anything else escaping, a crash, or an accepted set of regions that breaks the
// documented guarantees (aligned, in the image, disjoint, sorted) is a finding.
//
// `uffd_handshake_fuzz -write_seeds=DIR` writes a seed corpus of valid and nearly valid messages.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>

#include "base/error.h"
#include "tests/support/fuzz_seeds.h"
#include "uffd-server/uffd_handshake.h"

namespace {

using fcvm::uffd::GuestRegion;

struct Snapshot {
  uint64_t pageSize;
  uint64_t imageSize;
};

Snapshot snapshotFor(uint8_t selector) {
  const uint64_t pageSize = selector & 1 ? 2u << 20 : 4096;
  return {pageSize, pageSize * (1 + (selector >> 1))};
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "accepted regions break a guarantee: %s\n", what);
    std::abort();
  }
}

void checkAccepted(const std::vector<GuestRegion>& regions, const Snapshot& s) {
  check(!regions.empty() && regions.size() <= fcvm::uffd::kMaxGuestRegions, "count");
  for (size_t i = 0; i < regions.size(); ++i) {
    const GuestRegion& r = regions[i];
    check(r.pageSize == s.pageSize, "page size");
    check(r.size > 0 && r.size % s.pageSize == 0, "size");
    check(r.base % s.pageSize == 0 && r.offset % s.pageSize == 0, "alignment");
    check(r.base + r.size > r.base, "base overflow");
    check(r.offset + r.size <= s.imageSize && r.offset + r.size > r.offset, "in the image");
    if (i > 0) check(regions[i - 1].base + regions[i - 1].size <= r.base, "sorted and disjoint");
    for (size_t j = 0; j < i; ++j) {
      const GuestRegion& o = regions[j];
      check(o.offset + o.size <= r.offset || r.offset + r.size <= o.offset, "image disjoint");
    }
  }
}

void writeSeeds(const std::string& dir) {
  const char* seeds[] = {
      // Firecracker 1.12+: both page size fields.
      (R"([{"base_host_virt_addr":140000000000000,"size":8192,"offset":0,"page_size":4096,)"
       R"("page_size_kib":4096},{"base_host_virt_addr":130000000000000,"size":4096,)"
       R"("offset":8192,"page_size":4096,"page_size_kib":4096}])"),
      // Firecracker 1.7-1.11.
      R"([{"base_host_virt_addr":4096,"size":4096,"offset":4096,"page_size_kib":4096}])",
      R"([{"base_host_virt_addr":2097152,"size":2097152,"offset":0,"page_size":2097152}])",
      // Overlaps, overflow, unknown and repeated fields.
      (R"([{"base_host_virt_addr":4096,"size":8192,"offset":0,"page_size":4096},)"
       R"({"base_host_virt_addr":8192,"size":4096,"offset":8192,"page_size":4096}])"),
      R"([{"base_host_virt_addr":18446744073709547520,"size":8192,"offset":0,"page_size":4096}])",
      R"([{"base_host_virt_addr":4096,"size":4096,"offset":0,"page_size":4096,"x":[{}]}])",
      R"([{"size":4096,"size":4096,"base_host_virt_addr":0,"offset":0,"page_size":4096}])",
  };
  fcvm::testing::SeedWriter corpus(dir);
  for (const char* seed : seeds) {
    for (const uint8_t selector : {uint8_t{6}, uint8_t{1}}) corpus.add(selector, seed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  fcvm::testing::writeSeedsIfAsked(*argc, *argv, writeSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Snapshot snapshot = snapshotFor(data[0]);
  const std::string_view json(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    checkAccepted(fcvm::uffd::decodeHandshake(json, snapshot.imageSize, snapshot.pageSize),
                  snapshot);
  } catch (const fcvm::Error&) {
    // A refusal: the expected outcome for almost every input.
  }
  return 0;
}
