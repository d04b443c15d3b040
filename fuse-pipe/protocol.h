// The fuse-pipe protocol: frame layout, limits, opcodes and the codecs of shared value types.
//
// A frame is a 16-byte header followed by `payloadLength` bytes:
//   u32 payloadLength   at most kMaxFramePayload, checked before anything is allocated
//   u16 opcode          an Opcode; a reply carries the opcode of its request
//   u16 flags           kFrameReply on replies
//   u64 requestId       chosen by the client, echoed in the reply; 0 for requests without reply
// All integers are little-endian. The first frame in each direction is kHello.
//
// Request payload: Credentials, then the opcode's fields (see server.cc / client.cc, which are the
// only encoders and decoders). Reply payload: i32 errno (0 = success), then on success the
// opcode's result fields.
#pragma once

#include <cstdint>
#include <string_view>

#include "fuse-pipe/fs_types.h"
#include "fuse-pipe/wire.h"

namespace fcvm::fusepipe {

inline constexpr uint32_t kProtocolMagic = 0x50464346;  // "FCFP"
inline constexpr uint32_t kProtocolVersion = 4;
inline constexpr size_t kFrameHeaderSize = 16;
inline constexpr uint32_t kMaxIoSize = 1u << 20;  // largest read or write payload
inline constexpr uint32_t kMaxFramePayload = kMaxIoSize + 4096;
inline constexpr uint32_t kMaxNameLength = 255;
inline constexpr uint32_t kMaxPathLength = 4096;
inline constexpr uint32_t kMaxGroups = 256;
inline constexpr uint32_t kMaxXattrSize = 65536;  // XATTR_SIZE_MAX and XATTR_LIST_MAX
inline constexpr uint16_t kFrameReply = 1;
// A request with this id gets no reply, whatever its outcome: forget, interrupt, and the releases
// the client sends without waiting. Every other request id is answered exactly once.
inline constexpr uint64_t kNoReply = 0;

enum class Opcode : uint16_t {
  kHello = 1,
  kLookup = 2,
  kForget = 3,
  kGetattr = 4,
  kSetattr = 5,
  kReadlink = 6,
  kMknod = 7,
  kMkdir = 8,
  kUnlink = 9,
  kRmdir = 10,
  kSymlink = 11,
  kRename = 12,
  kLink = 13,
  kOpen = 14,  // kOpen and kOpendir reply with the handle, then kOpen* flags
  kRead = 15,
  kWrite = 16,
  kFlush = 17,
  kRelease = 18,
  kFsync = 19,
  kOpendir = 20,
  kReaddir = 21,
  kReleasedir = 22,
  kFsyncdir = 23,
  kStatfs = 24,
  kCreate = 25,
  kAccess = 26,
  kSetxattr = 27,
  kGetxattr = 28,
  kListxattr = 29,
  kRemovexattr = 30,
  kFallocate = 31,
  kLseek = 32,
  kCopyFileRange = 33,
  kReaddirplus = 34,
  // POSIX record locks (per lock owner) and flock (per open file). A blocking setlk or flock runs
  // on its own server thread until it gets the lock or a kInterrupt for its request id arrives.
  kGetlk = 35,
  kSetlk = 36,
  kFlock = 37,
  // No reply: asks the server to cancel the blocking request whose id is in the body.
  kInterrupt = 38,
};

// kSetlk flags.
inline constexpr uint32_t kLockWait = 1;  // F_SETLKW: wait for the lock

// kOpen and kOpendir reply flags (after the handle).
inline constexpr uint32_t kOpenKeepCache = 1;  // unchanged since its last open: keep cached data

std::string_view opcodeName(uint16_t opcode);

// The extended attributes a server serves: "user." names and the POSIX ACLs. Every other name
// ("security." such as file capabilities, "trusted.") would let a client grant privileges on the
// host: setting or removing one is EPERM, reading one ENODATA, and listings leave them out. The
// client answers reads of other names itself (the kernel asks for "security.capability" before
// every write), the server enforces the rule.
bool isServedXattrName(std::string_view name);
// The server's own records on host files (device placeholders, passthrough_fs.cc): never read,
// listed, set or removed by a client.
inline constexpr std::string_view kPrivateXattrPrefix = "user.fcvm.";

struct FrameHeader {
  uint32_t payloadLength = 0;
  uint16_t opcode = 0;
  uint16_t flags = 0;
  uint64_t requestId = 0;
};

void encodeFrameHeader(const FrameHeader& header, uint8_t out[kFrameHeaderSize]);
FrameHeader decodeFrameHeader(const uint8_t in[kFrameHeaderSize]);

// The kHello payload, sent first by each side.
struct Hello {
  uint32_t magic = kProtocolMagic;
  uint32_t version = kProtocolVersion;
  uint32_t maxFramePayload = kMaxFramePayload;
  uint32_t flags = 0;  // kHelloReadOnly, from the server
};

// The server refuses every mutation: the client may mount read-only.
inline constexpr uint32_t kHelloReadOnly = 1;

void encodeHello(WireWriter& w, const Hello& hello);
Hello decodeHello(WireReader& r);

void encodeCredentials(WireWriter& w, const Credentials& c);
// Fails the reader if there are more than kMaxGroups groups.
Credentials decodeCredentials(WireReader& r);

void encodeAttr(WireWriter& w, const Attr& a);
Attr decodeAttr(WireReader& r);

void encodeEntry(WireWriter& w, const Entry& e);
Entry decodeEntry(WireReader& r);

void encodeStatfs(WireWriter& w, const StatfsInfo& s);
StatfsInfo decodeStatfs(WireReader& r);

void encodeDirEntry(WireWriter& w, const DirEntry& d);
DirEntry decodeDirEntry(WireReader& r);

// A u8 presence flag, then the Entry if present.
void encodeLock(WireWriter& w, const LockRange& l);
LockRange decodeLock(WireReader& r);

void encodeDirEntryPlus(WireWriter& w, const DirEntryPlus& d);
DirEntryPlus decodeDirEntryPlus(WireReader& r);

}  // namespace fcvm::fusepipe
