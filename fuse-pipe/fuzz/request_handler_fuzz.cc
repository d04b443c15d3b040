// libFuzzer target: the server's side of a connection after the handshake. An input is the byte
// stream a client would send; it is cut into frames by FrameReader (length limits, truncation)
// and each frame goes where Session would send it: interrupts to decodeInterrupt, everything else
// through RequestHandler to a PassthroughFs on a scratch directory. Blocking requests are
// skipped (the session runs them on their own threads with a cancellation; session_test covers
// that). After each input the harness checks that nothing outside the served root changed.
//
// `request_handler_fuzz -write_seeds=DIR` writes a seed corpus of valid request sequences.
#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuse-pipe/passthrough_fs.h"
#include "fuse-pipe/protocol.h"
#include "fuse-pipe/request_handler.h"
#include "fuse-pipe/transport.h"
#include "tests/support/fuzz_seeds.h"

namespace fp = fcvm::fusepipe;
namespace fs = std::filesystem;

namespace {

constexpr char kSecret[] = "outside the root";

struct Scratch {
  fs::path base;  // holds root/ (served) and secret (must never change)
  fs::path root() const { return base / "root"; }
  fs::path secret() const { return base / "secret"; }
};
Scratch* scratch = nullptr;

void populateRoot() {
  const fs::path root = scratch->root();
  std::error_code ignored;
  fs::remove_all(root, ignored);
  fs::create_directories(root / "d");
  std::ofstream(root / "f") << "0123456789";
  fs::create_symlink("../secret", root / "up", ignored);
  fs::create_symlink(scratch->secret(), root / "abs", ignored);
}

// Checks the one invariant the fuzzer cannot see from replies: nothing outside the root changed.
void checkOutsideUntouched() {
  std::ifstream in(scratch->secret(), std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(scratch->base)) ++entries;
  if (content != kSecret || entries != 2) {
    std::fprintf(stderr, "escape: the scratch directory changed outside the root\n");
    std::abort();
  }
}

// ---- Seeds: sequences of well-formed requests, so that mutation starts from deep paths. ----

class Stream {
 public:
  Stream& request(fp::Opcode opcode, const std::function<void(fp::WireWriter&)>& fields) {
    fp::WireWriter body;
    fp::encodeCredentials(body, fp::Credentials{.uid = 0, .gid = 0, .pid = 1, .umask = 022});
    fields(body);
    uint8_t header[fp::kFrameHeaderSize];
    fp::encodeFrameHeader({.payloadLength = static_cast<uint32_t>(body.size()),
                           .opcode = static_cast<uint16_t>(opcode),
                           .flags = 0,
                           .requestId = ++id_},
                          header);
    bytes_.insert(bytes_.end(), header, header + sizeof header);
    bytes_.insert(bytes_.end(), body.buffer().begin(), body.buffer().end());
    return *this;
  }
  void save(const fs::path& path) const {
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes_.data()),
               static_cast<std::streamsize>(bytes_.size()));
  }

 private:
  std::vector<uint8_t> bytes_;
  uint64_t id_ = 0;
};

void writeSeeds(const fs::path& dir) {
  using fp::Opcode;
  auto lookup = [](const char* name) {
    return [name](fp::WireWriter& w) {
      w.u64(1);
      w.string(name);
    };
  };
  // The first lookup makes inode 2; the first open makes handle 1.
  Stream()
      .request(Opcode::kLookup, lookup("f"))
      .request(Opcode::kOpen,
               [](fp::WireWriter& w) {
                 w.u64(2);
                 w.u32(O_RDWR);
               })
      .request(Opcode::kWrite,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.u64(3);
                 w.string("abc");
               })
      .request(Opcode::kRead,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.u64(0);
                 w.u32(64);
               })
      .request(Opcode::kSetlk,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.u64(7);
                 fp::encodeLock(w, fp::LockRange{.type = F_WRLCK, .start = 0, .length = 4});
                 w.u32(0);
               })
      .request(Opcode::kGetlk,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.u64(8);
                 fp::encodeLock(w, fp::LockRange{.type = F_RDLCK, .start = 0, .length = 0});
               })
      .request(Opcode::kFlock,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.u32(LOCK_EX | LOCK_NB);
               })
      .request(Opcode::kFlush,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.u64(7);
               })
      .request(Opcode::kRelease, [](fp::WireWriter& w) { w.u64(1); })
      .save(dir / "file-io");
  Stream()
      .request(Opcode::kMkdir,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.string("new");
                 w.u32(0755);
               })
      .request(Opcode::kCreate,
               [](fp::WireWriter& w) {
                 w.u64(2);
                 w.string("file");
                 w.u32(0644);
                 w.u32(O_RDWR | O_EXCL);
               })
      .request(Opcode::kSetattr,
               [](fp::WireWriter& w) {
                 w.u64(3);
                 w.u32(fp::kSetMode | fp::kSetSize | fp::kSetMtime);
                 w.u8(1);
                 w.u64(1);
                 w.u32(0600);
                 w.u32(0);
                 w.u32(0);
                 w.u64(100);
                 w.i64(0);
                 w.u32(0);
                 w.i64(1000);
                 w.u32(5);
               })
      .request(Opcode::kRename,
               [](fp::WireWriter& w) {
                 w.u64(2);
                 w.string("file");
                 w.u64(1);
                 w.string("moved");
                 w.u32(0);
               })
      .request(Opcode::kSymlink,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.string("link");
                 w.string("../../etc/passwd");
               })
      .request(Opcode::kLink,
               [](fp::WireWriter& w) {
                 w.u64(3);
                 w.u64(1);
                 w.string("hard");
               })
      .request(Opcode::kUnlink, lookup("hard"))
      .save(dir / "namespace");
  Stream()
      .request(Opcode::kOpendir, [](fp::WireWriter& w) { w.u64(1); })
      .request(Opcode::kReaddirplus,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.u64(0);
                 w.u32(4096);
               })
      .request(Opcode::kReaddir,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.u64(0);
                 w.u32(4096);
               })
      .request(Opcode::kLookup, lookup("up"))
      .request(Opcode::kReadlink, [](fp::WireWriter& w) { w.u64(2); })
      .request(Opcode::kSetxattr,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.string("user.k");
                 w.string("v");
                 w.u32(0);
               })
      .request(Opcode::kListxattr,
               [](fp::WireWriter& w) {
                 w.u64(1);
                 w.u32(256);
               })
      .request(Opcode::kStatfs, [](fp::WireWriter& w) { w.u64(1); })
      .request(Opcode::kInterrupt, [](fp::WireWriter& w) { w.u64(3); })
      .request(Opcode::kForget,
               [](fp::WireWriter& w) {
                 w.u64(2);
                 w.u64(1);
               })
      .save(dir / "listing");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  fcvm::testing::writeSeedsIfAsked(*argc, *argv, writeSeeds);
  spdlog::set_level(spdlog::level::off);
  // Writes, truncations and fallocate beyond 8 MiB fail with EFBIG instead of filling the disk.
  rlimit size{8u << 20, 8u << 20};
  ::setrlimit(RLIMIT_FSIZE, &size);
  ::signal(SIGXFSZ, SIG_IGN);
  std::string pattern = (fs::temp_directory_path() / "fuse-pipe-fuzz.XXXXXX").string();
  if (!::mkdtemp(pattern.data())) {
    std::perror("mkdtemp");
    std::exit(1);
  }
  scratch = new Scratch{pattern};
  std::ofstream(scratch->secret()) << kSecret;
  populateRoot();
  std::atexit([] {
    std::error_code ignored;
    fs::remove_all(scratch->base, ignored);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static unsigned inputs = 0;
  if (++inputs % 256 == 0) populateRoot();  // bounded growth of the scratch tree
  fp::PassthroughFs filesystem(scratch->root().string(), fp::PassthroughOptions{});
  fp::RequestHandler handler(filesystem, /*readOnly=*/size % 2 == 1);

  fcvm::UniqueFd stream(::memfd_create("fuzz-input", MFD_CLOEXEC));
  if (!stream || ::write(stream.get(), data, size) != static_cast<ssize_t>(size) ||
      ::lseek(stream.get(), 0, SEEK_SET) != 0) {
    std::abort();
  }
  fp::FrameReader reader(stream.get());
  try {
    while (auto frame = reader.read()) {
      if (frame->header.flags != 0) break;  // the session closes the connection
      if (frame->header.opcode == static_cast<uint16_t>(fp::Opcode::kInterrupt)) {
        fp::decodeInterrupt(*frame);
        continue;
      }
      if (fp::isBlockingRequest(*frame)) continue;
      auto reply = handler.handle(*frame);
      if (!reply) continue;
      fp::WireReader r(*reply);
      int32_t error = r.i32();
      if (r.failed() || error < 0 || reply->size() > fp::kMaxFramePayload) std::abort();
    }
  } catch (const fp::ProtocolError&) {
    // A bad length or a truncated frame: the session would close the connection.
  }
  checkOutsideUntouched();
  return 0;
}
