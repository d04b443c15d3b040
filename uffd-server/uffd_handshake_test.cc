#include "uffd-server/uffd_handshake.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/userfaultfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>

#include "base/error.h"
#include "uffd-server/testing.h"

namespace fcvm::uffd {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kImage = 1024 * kPage;  // 4 MiB

// Firecracker's message for two regions of 2 MiB, the second below the first in host addresses.
constexpr char kGood[] = R"([
  {"base_host_virt_addr": 140000000000000, "size": 2097152, "offset": 0, "page_size": 4096},
  {"base_host_virt_addr": 130000002097152, "size": 2097152, "offset": 2097152, "page_size": 4096}
])";

std::string refusal(std::string_view json, uint64_t image = kImage, uint64_t page = kPage) {
  try {
    decodeHandshake(json, image, page);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

#define EXPECT_REFUSED(json, reason) \
  EXPECT_NE(refusal(json).find(reason), std::string::npos) << refusal(json)

// One region with `fields` spliced in; the defaults are valid.
std::string region(const std::string& fields = "") {
  return R"([{"base_host_virt_addr": 1048576, "size": 8192, "offset": 4096)" +
         (fields.empty() ? std::string(R"(, "page_size": 4096)") : fields) + "}]";
}

TEST(DecodeHandshake, AcceptsFirecrackersMessageSortedByBase) {
  const auto regions = decodeHandshake(kGood, kImage, kPage);
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[0], (GuestRegion{130000002097152, 2097152, 2097152, 4096}));
  EXPECT_EQ(regions[1], (GuestRegion{140000000000000, 2097152, 0, 4096}));
}

TEST(DecodeHandshake, AcceptsTheOlderPageSizeKibFieldAsBytes) {
  EXPECT_EQ(decodeHandshake(region(R"(, "page_size_kib": 4096)"), kImage, kPage)[0].pageSize,
            kPage);
  EXPECT_EQ(refusal(region(R"(, "page_size": 4096, "page_size_kib": 4096)")), "(accepted)");
  EXPECT_REFUSED(region(R"(, "page_size": 4096, "page_size_kib": 4)"), "differ");
}

TEST(DecodeHandshake, RefusesWhatIsNotAJsonArrayOfObjects) {
  EXPECT_REFUSED("", "not JSON");
  EXPECT_REFUSED("[{\"size\": 1,", "not JSON");
  EXPECT_REFUSED(std::string(kGood) + "x", "not JSON");
  EXPECT_REFUSED("[1e999]", "not JSON");
  EXPECT_REFUSED(R"({"size": 1})", "not a JSON array");
  EXPECT_REFUSED("[]", "0 regions");
  EXPECT_REFUSED("[1]", "region 0 is not an object");
}

TEST(DecodeHandshake, RefusesMoreThan64Regions) {
  std::string json = "[";
  for (int i = 0; i < 65; ++i) {
    json += fmt::format(
        R"({}{{"base_host_virt_addr": {}, "size": 4096, "offset": {}, "page_size": 4096}})",
        i ? "," : "", (i + 1) * kPage, i * kPage);
  }
  EXPECT_REFUSED(json + "]", "65 regions");
}

TEST(DecodeHandshake, RefusesMissingRepeatedUnknownAndMistypedFields) {
  EXPECT_REFUSED(R"([{"size": 4096, "offset": 0, "page_size": 4096}])",
                 "missing \"base_host_virt_addr\"");
  EXPECT_REFUSED(R"([{"base_host_virt_addr": 4096, "offset": 0, "page_size": 4096}])",
                 "missing \"size\"");
  EXPECT_REFUSED(R"([{"base_host_virt_addr": 4096, "size": 4096, "page_size": 4096}])",
                 "missing \"offset\"");
  EXPECT_REFUSED(region(" "), "missing \"page_size\"");
  EXPECT_REFUSED(region(R"(, "page_size": 4096, "page_size": 4096)"), "\"page_size\" given twice");
  EXPECT_REFUSED(region(R"(, "page_size": 4096, "prefault": true)"), "unknown field \"prefault\"");
  for (const char* bad :
       {"-4096", "4096.0", "\"4096\"", "null", "[4096]", "18446744073709551616"}) {
    EXPECT_REFUSED(region(fmt::format(R"(, "page_size": {})", bad)),
                   "\"page_size\" is not an unsigned integer");
  }
}

TEST(DecodeHandshake, RefusesAPageSizeOtherThanTheSnapshots) {
  EXPECT_REFUSED(region(R"(, "page_size": 2097152)"),
                 "page size 2097152 but the snapshot's is 4096");
}

TEST(DecodeHandshake, RefusesUnalignedEmptyAndOverflowingRegions) {
  auto one = [](uint64_t base, uint64_t size, uint64_t offset) {
    return fmt::format(
        R"([{{"base_host_virt_addr": {}, "size": {}, "offset": {}, "page_size": 4096}}])", base,
        size, offset);
  };
  EXPECT_REFUSED(one(4097, 4096, 0), "not aligned");
  EXPECT_REFUSED(one(4096, 4095, 0), "not aligned");
  EXPECT_REFUSED(one(4096, 4096, 1), "not aligned");
  EXPECT_REFUSED(one(4096, 0, 0), "size 0");
  const uint64_t top = ~uint64_t{0} - kPage + 1;  // the last page of the address space
  EXPECT_REFUSED(one(top, 2 * kPage, 0), "base + size overflows");
  EXPECT_REFUSED(one(4096, 2 * kPage, top), "offset + size overflows");
  EXPECT_REFUSED(one(4096, kImage, kPage), "beyond the image");
  EXPECT_REFUSED(one(top, kPage, 0), "base + size overflows");  // would end at 2^64
  EXPECT_EQ(refusal(one(top - kPage, kPage, 0)), "(accepted)");
}

TEST(DecodeHandshake, RefusesOverlapsInHostAddressesOrInTheImage) {
  auto two = [](uint64_t base0, uint64_t offset0, uint64_t base1, uint64_t offset1) {
    return fmt::format(
        R"([{{"base_host_virt_addr": {}, "size": 8192, "offset": {}, "page_size": 4096}},
            {{"base_host_virt_addr": {}, "size": 8192, "offset": {}, "page_size": 4096}}])",
        base0, offset0, base1, offset1);
  };
  EXPECT_REFUSED(two(0x10000, 0, 0x11000, 0x4000), "overlap in host addresses at 0x11000");
  EXPECT_REFUSED(two(0x10000, 0x4000, 0x20000, 0x5000), "overlap in the image at 0x5000");
  EXPECT_EQ(refusal(two(0x10000, 0x2000, 0x12000, 0)), "(accepted)");  // adjacent is fine
}

// --- readHandshake over a socketpair -------------------------------------------------------------

size_t openFdCount() {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                                           std::filesystem::directory_iterator()));
}

class ReadHandshakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    server_.reset(fds[0]);
    peer_.reset(fds[1]);
    try {
      uffd_ = testing::createUserfaultfd(UFFD_FEATURE_EVENT_REMOVE);
    } catch (const Error& e) {
      FAIL() << e.what();
    }
  }

  std::string refusalOf(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    try {
      readHandshake(server_.get(), kImage, kPage, timeout);
    } catch (const Error& e) {
      return e.what();
    }
    return "(accepted)";
  }

  UniqueFd server_, peer_, uffd_;
};

TEST_F(ReadHandshakeTest, ReturnsRegionsUserfaultfdAndPeer) {
  // Made blocking on purpose: the server must not depend on the peer's choice.
  ASSERT_EQ(::fcntl(uffd_.get(), F_SETFL, 0), 0);
  testing::sendWithFds(peer_.get(), kGood, {uffd_.get()});
  const Handshake h = readHandshake(server_.get(), kImage, kPage, std::chrono::seconds(10));
  EXPECT_EQ(h.regions, decodeHandshake(kGood, kImage, kPage));
  ASSERT_TRUE(h.uffd);
  EXPECT_TRUE(::fcntl(h.uffd.get(), F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(::fcntl(h.uffd.get(), F_GETFD) & FD_CLOEXEC);
  EXPECT_EQ(h.peer.pid, ::getpid());
  EXPECT_EQ(h.peer.uid, ::getuid());
  EXPECT_TRUE(h.peerPidfd);
}

TEST_F(ReadHandshakeTest, ReadsAMessageThatArrivesInPieces) {
  const std::string text = kGood;
  const size_t cut = text.size() / 2;
  testing::sendWithFds(peer_.get(), text.substr(0, cut), {uffd_.get()});
  std::thread rest([&] { testing::sendWithFds(peer_.get(), text.substr(cut), {}); });
  EXPECT_EQ(refusalOf(), "(accepted)");
  rest.join();
}

TEST_F(ReadHandshakeTest, RefusesAMessageWithoutDescriptor) {
  testing::sendWithFds(peer_.get(), kGood, {});
  EXPECT_EQ(refusalOf(),
            "uffd handshake: missing userfaultfd (no descriptor came with the message)");
}

TEST_F(ReadHandshakeTest, RefusesTwoDescriptorsAndClosesBoth) {
  UniqueFd second = testing::createUserfaultfd(0);
  testing::sendWithFds(peer_.get(), kGood, {uffd_.get(), second.get()});
  const size_t before = openFdCount();
  EXPECT_EQ(refusalOf(), "uffd handshake: 2 descriptors, expected one userfaultfd");
  EXPECT_EQ(openFdCount(), before);
}

TEST_F(ReadHandshakeTest, RefusesSoManyDescriptorsThatTheyAreTruncated) {
  std::vector<int> many(16, uffd_.get());
  testing::sendWithFds(peer_.get(), kGood, many);
  const size_t before = openFdCount();
  EXPECT_EQ(refusalOf(), "uffd handshake: too many file descriptors (control data truncated)");
  EXPECT_EQ(openFdCount(), before);
}

TEST_F(ReadHandshakeTest, RefusesADescriptorThatIsNotAUserfaultfd) {
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  testing::sendWithFds(peer_.get(), kGood, {readEnd.get()});
  EXPECT_NE(refusalOf().find("not a userfaultfd but pipe:["), std::string::npos) << refusalOf();
}

TEST_F(ReadHandshakeTest, RefusesAnOversizeMessage) {
  // Valid JSON up to the limit and beyond: only the size is wrong.
  const std::string text = "[" + std::string(kMaxHandshakeBytes, ' ') + "]";
  std::thread sender([&] { testing::sendWithFds(peer_.get(), text, {uffd_.get()}); });
  EXPECT_EQ(refusalOf(), "uffd handshake: message longer than 65536 bytes");
  server_.reset();  // lets a sender still blocked in sendmsg fail
  sender.join();
}

TEST_F(ReadHandshakeTest, RefusesBadJsonWithTheDecodersReason) {
  testing::sendWithFds(peer_.get(), R"([{"size": 1}] trailing)", {uffd_.get()});
  EXPECT_NE(refusalOf().find("uffd handshake: not JSON"), std::string::npos);
}

TEST_F(ReadHandshakeTest, RefusesAPeerThatIsTooSlow) {
  testing::sendWithFds(peer_.get(), "[{", {uffd_.get()});
  EXPECT_EQ(refusalOf(std::chrono::milliseconds(50)),
            "uffd handshake: timed out waiting for the peer's message");
}

TEST_F(ReadHandshakeTest, RefusesAPeerThatHangsUp) {
  testing::sendWithFds(peer_.get(), "[{", {uffd_.get()});
  peer_.reset();
  EXPECT_EQ(refusalOf(),
            "uffd handshake: the peer closed the connection in the middle of its message");
  EXPECT_EQ(refusalOf(), "uffd handshake: the peer closed the connection without a message");
}

}  // namespace
}  // namespace fcvm::uffd
