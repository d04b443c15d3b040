#include "fuse-pipe/protocol.h"

namespace fcvm::fusepipe {

bool isServedXattrName(std::string_view name) {
  if (name.starts_with(kPrivateXattrPrefix)) return false;
  return (name.starts_with("user.") && name.size() > 5) || name == "system.posix_acl_access" ||
         name == "system.posix_acl_default";
}

std::string_view opcodeName(uint16_t opcode) {
  switch (static_cast<Opcode>(opcode)) {
    case Opcode::kHello:
      return "hello";
    case Opcode::kLookup:
      return "lookup";
    case Opcode::kForget:
      return "forget";
    case Opcode::kGetattr:
      return "getattr";
    case Opcode::kSetattr:
      return "setattr";
    case Opcode::kReadlink:
      return "readlink";
    case Opcode::kMknod:
      return "mknod";
    case Opcode::kMkdir:
      return "mkdir";
    case Opcode::kUnlink:
      return "unlink";
    case Opcode::kRmdir:
      return "rmdir";
    case Opcode::kSymlink:
      return "symlink";
    case Opcode::kRename:
      return "rename";
    case Opcode::kLink:
      return "link";
    case Opcode::kOpen:
      return "open";
    case Opcode::kRead:
      return "read";
    case Opcode::kWrite:
      return "write";
    case Opcode::kFlush:
      return "flush";
    case Opcode::kRelease:
      return "release";
    case Opcode::kFsync:
      return "fsync";
    case Opcode::kOpendir:
      return "opendir";
    case Opcode::kReaddir:
      return "readdir";
    case Opcode::kReleasedir:
      return "releasedir";
    case Opcode::kFsyncdir:
      return "fsyncdir";
    case Opcode::kStatfs:
      return "statfs";
    case Opcode::kCreate:
      return "create";
    case Opcode::kAccess:
      return "access";
    case Opcode::kSetxattr:
      return "setxattr";
    case Opcode::kGetxattr:
      return "getxattr";
    case Opcode::kListxattr:
      return "listxattr";
    case Opcode::kRemovexattr:
      return "removexattr";
    case Opcode::kFallocate:
      return "fallocate";
    case Opcode::kLseek:
      return "lseek";
    case Opcode::kCopyFileRange:
      return "copy_file_range";
    case Opcode::kReaddirplus:
      return "readdirplus";
    case Opcode::kGetlk:
      return "getlk";
    case Opcode::kSetlk:
      return "setlk";
    case Opcode::kFlock:
      return "flock";
    case Opcode::kInterrupt:
      return "interrupt";
  }
  return "unknown";
}

void encodeFrameHeader(const FrameHeader& header, uint8_t out[kFrameHeaderSize]) {
  auto put = [&](size_t at, uint64_t v, int width) {
    for (int i = 0; i < width; ++i) out[at + i] = static_cast<uint8_t>(v >> (8 * i));
  };
  put(0, header.payloadLength, 4);
  put(4, header.opcode, 2);
  put(6, header.flags, 2);
  put(8, header.requestId, 8);
}

FrameHeader decodeFrameHeader(const uint8_t in[kFrameHeaderSize]) {
  auto get = [&](size_t at, int width) {
    uint64_t v = 0;
    for (int i = 0; i < width; ++i) v |= static_cast<uint64_t>(in[at + i]) << (8 * i);
    return v;
  };
  return FrameHeader{
      .payloadLength = static_cast<uint32_t>(get(0, 4)),
      .opcode = static_cast<uint16_t>(get(4, 2)),
      .flags = static_cast<uint16_t>(get(6, 2)),
      .requestId = get(8, 8),
  };
}

void encodeHello(WireWriter& w, const Hello& hello) {
  w.u32(hello.magic);
  w.u32(hello.version);
  w.u32(hello.maxFramePayload);
  w.u32(hello.flags);
}

Hello decodeHello(WireReader& r) {
  Hello h;
  h.magic = r.u32();
  h.version = r.u32();
  h.maxFramePayload = r.u32();
  h.flags = r.u32();
  return h;
}

void encodeCredentials(WireWriter& w, const Credentials& c) {
  w.u32(c.uid);
  w.u32(c.gid);
  w.u32(c.pid);
  w.u32(c.umask);
  w.u32(static_cast<uint32_t>(c.groups.size()));
  for (uint32_t g : c.groups) w.u32(g);
}

Credentials decodeCredentials(WireReader& r) {
  Credentials c;
  c.uid = r.u32();
  c.gid = r.u32();
  c.pid = r.u32();
  c.umask = r.u32() & 07777;
  uint32_t count = r.u32();
  if (count > kMaxGroups) {
    r.fail();
    return c;
  }
  c.groups.reserve(count);
  for (uint32_t i = 0; i < count && !r.failed(); ++i) c.groups.push_back(r.u32());
  return c;
}

void encodeAttr(WireWriter& w, const Attr& a) {
  w.u64(a.ino);
  w.u64(a.size);
  w.u64(a.blocks);
  w.i64(a.atimeSec);
  w.i64(a.mtimeSec);
  w.i64(a.ctimeSec);
  w.u32(a.atimeNsec);
  w.u32(a.mtimeNsec);
  w.u32(a.ctimeNsec);
  w.u32(a.mode);
  w.u32(a.nlink);
  w.u32(a.uid);
  w.u32(a.gid);
  w.u32(a.rdev);
  w.u32(a.blksize);
}

Attr decodeAttr(WireReader& r) {
  Attr a;
  a.ino = r.u64();
  a.size = r.u64();
  a.blocks = r.u64();
  a.atimeSec = r.i64();
  a.mtimeSec = r.i64();
  a.ctimeSec = r.i64();
  a.atimeNsec = r.u32();
  a.mtimeNsec = r.u32();
  a.ctimeNsec = r.u32();
  a.mode = r.u32();
  a.nlink = r.u32();
  a.uid = r.u32();
  a.gid = r.u32();
  a.rdev = r.u32();
  a.blksize = r.u32();
  return a;
}

void encodeEntry(WireWriter& w, const Entry& e) {
  w.u64(e.inode.value);
  w.u64(e.generation);
  encodeAttr(w, e.attr);
}

Entry decodeEntry(WireReader& r) {
  Entry e;
  e.inode.value = r.u64();
  e.generation = r.u64();
  e.attr = decodeAttr(r);
  return e;
}

void encodeStatfs(WireWriter& w, const StatfsInfo& s) {
  w.u64(s.blocks);
  w.u64(s.bfree);
  w.u64(s.bavail);
  w.u64(s.files);
  w.u64(s.ffree);
  w.u64(s.favail);
  w.u32(s.bsize);
  w.u32(s.frsize);
  w.u32(s.namemax);
  w.u32(s.flags);
}

StatfsInfo decodeStatfs(WireReader& r) {
  StatfsInfo s;
  s.blocks = r.u64();
  s.bfree = r.u64();
  s.bavail = r.u64();
  s.files = r.u64();
  s.ffree = r.u64();
  s.favail = r.u64();
  s.bsize = r.u32();
  s.frsize = r.u32();
  s.namemax = r.u32();
  s.flags = r.u32();
  return s;
}

void encodeDirEntry(WireWriter& w, const DirEntry& d) {
  w.u64(d.ino);
  w.u64(d.offset);
  w.u32(d.type);
  w.string(d.name);
}

DirEntry decodeDirEntry(WireReader& r) {
  DirEntry d;
  d.ino = r.u64();
  d.offset = r.u64();
  d.type = r.u32();
  d.name = std::string(r.string(kMaxNameLength));
  return d;
}

void encodeLock(WireWriter& w, const LockRange& l) {
  w.u32(l.type);
  w.u64(l.start);
  w.u64(l.length);
  w.u32(l.pid);
}

LockRange decodeLock(WireReader& r) {
  LockRange l;
  l.type = r.u32();
  l.start = r.u64();
  l.length = r.u64();
  l.pid = r.u32();
  return l;
}

void encodeDirEntryPlus(WireWriter& w, const DirEntryPlus& d) {
  encodeDirEntry(w, d.dirent);
  w.u8(d.entry ? 1 : 0);
  if (d.entry) encodeEntry(w, *d.entry);
}

DirEntryPlus decodeDirEntryPlus(WireReader& r) {
  DirEntryPlus d;
  d.dirent = decodeDirEntry(r);
  uint8_t present = r.u8();
  if (present > 1) r.fail();
  if (present == 1) d.entry = decodeEntry(r);
  return d;
}

}  // namespace fcvm::fusepipe
