#include "fuse-pipe/wire.h"

#include <gtest/gtest.h>

#include "fuse-pipe/protocol.h"

namespace fcvm::fusepipe {
namespace {

TEST(WireTest, RoundTripsIntegersAndStrings) {
  WireWriter w;
  w.u8(0xab);
  w.u16(0xbeef);
  w.u32(0xdeadbeef);
  w.u64(0x0123456789abcdefULL);
  w.i32(-5);
  w.i64(-7);
  w.string("name");
  w.string("");
  WireReader r(w.buffer());
  EXPECT_EQ(r.u8(), 0xab);
  EXPECT_EQ(r.u16(), 0xbeef);
  EXPECT_EQ(r.u32(), 0xdeadbeefu);
  EXPECT_EQ(r.u64(), 0x0123456789abcdefULL);
  EXPECT_EQ(r.i32(), -5);
  EXPECT_EQ(r.i64(), -7);
  EXPECT_EQ(r.string(10), "name");
  EXPECT_EQ(r.string(10), "");
  EXPECT_TRUE(r.finish());
}

TEST(WireTest, EncodingIsLittleEndian) {
  WireWriter w;
  w.u32(0x01020304);
  EXPECT_EQ(w.buffer(), (std::vector<uint8_t>{4, 3, 2, 1}));
}

TEST(WireTest, ShortBufferFailsStickily) {
  std::vector<uint8_t> three = {1, 2, 3};
  WireReader r(three);
  EXPECT_EQ(r.u32(), 0u);
  EXPECT_TRUE(r.failed());
  EXPECT_EQ(r.u8(), 0u);  // even though a byte is there: the reader stays failed
  EXPECT_FALSE(r.finish());
}

TEST(WireTest, StringLongerThanItsLimitFails) {
  WireWriter w;
  w.string("toolong");
  WireReader r(w.buffer());
  EXPECT_EQ(r.string(3), "");
  EXPECT_TRUE(r.failed());
}

TEST(WireTest, StringLongerThanTheBufferFails) {
  WireWriter w;
  w.u32(1000);  // claims 1000 bytes
  w.u8('x');
  WireReader r(w.buffer());
  EXPECT_TRUE(r.bytes(1u << 30).empty());
  EXPECT_TRUE(r.failed());
}

TEST(WireTest, HugeLengthDoesNotOverflow) {
  WireWriter w;
  w.u32(0xffffffff);
  WireReader r(w.buffer());
  EXPECT_TRUE(r.bytes(0xffffffff).empty());
  EXPECT_TRUE(r.failed());
}

TEST(WireTest, TrailingBytesMeanNotFinished) {
  WireWriter w;
  w.u32(1);
  w.u8(0);
  WireReader r(w.buffer());
  r.u32();
  EXPECT_FALSE(r.failed());
  EXPECT_FALSE(r.finish());
}

TEST(WireTest, FrameHeaderRoundTrips) {
  FrameHeader h{.payloadLength = 77, .opcode = 9, .flags = kFrameReply, .requestId = 1ULL << 40};
  uint8_t raw[kFrameHeaderSize];
  encodeFrameHeader(h, raw);
  FrameHeader back = decodeFrameHeader(raw);
  EXPECT_EQ(back.payloadLength, 77u);
  EXPECT_EQ(back.opcode, 9);
  EXPECT_EQ(back.flags, kFrameReply);
  EXPECT_EQ(back.requestId, 1ULL << 40);
}

TEST(WireTest, CredentialsRoundTripAndGroupLimit) {
  Credentials c{.uid = 1000, .gid = 100, .pid = 42, .umask = 027, .groups = {4, 24, 27}};
  WireWriter w;
  encodeCredentials(w, c);
  WireReader r(w.buffer());
  Credentials back = decodeCredentials(r);
  EXPECT_TRUE(r.finish());
  EXPECT_EQ(back.uid, 1000u);
  EXPECT_EQ(back.gid, 100u);
  EXPECT_EQ(back.umask, 027u);
  EXPECT_EQ(back.groups, (std::vector<uint32_t>{4, 24, 27}));

  WireWriter tooMany;
  tooMany.u32(0);
  tooMany.u32(0);
  tooMany.u32(0);
  tooMany.u32(0);
  tooMany.u32(kMaxGroups + 1);  // more groups than allowed; nothing is reserved for them
  WireReader r2(tooMany.buffer());
  decodeCredentials(r2);
  EXPECT_TRUE(r2.failed());
}

TEST(WireTest, EntryAndStatfsRoundTrip) {
  Entry e{.inode = InodeId{7}, .generation = 3, .attr = {}};
  e.attr.size = 12345;
  e.attr.mode = 0100644;
  e.attr.mtimeSec = -1;
  e.attr.mtimeNsec = 999999999;
  StatfsInfo s{.blocks = 10, .bfree = 5, .namemax = 255, .flags = 1};
  WireWriter w;
  encodeEntry(w, e);
  encodeStatfs(w, s);
  WireReader r(w.buffer());
  Entry eb = decodeEntry(r);
  StatfsInfo sb = decodeStatfs(r);
  ASSERT_TRUE(r.finish());
  EXPECT_EQ(eb.inode, InodeId{7});
  EXPECT_EQ(eb.attr.size, 12345u);
  EXPECT_EQ(eb.attr.mode, 0100644u);
  EXPECT_EQ(eb.attr.mtimeSec, -1);
  EXPECT_EQ(eb.attr.mtimeNsec, 999999999u);
  EXPECT_EQ(sb.blocks, 10u);
  EXPECT_EQ(sb.namemax, 255u);
  EXPECT_EQ(sb.flags, 1u);
}

}  // namespace
}  // namespace fcvm::fusepipe
