// fcvm-hostile-volume-peer: a protocol peer for the volume tests, playing a hostile guest. Run as
// root in the guest OS, it takes a volume's channel over from the guest's fuse-pipe client (which
// it kills) and sends the host's server what no kernel would: names with "..", "/" and NUL,
// lookups and opens through a symlink that points out of the volume, forged inode and handle
// numbers, a rename out of the tree, and last a frame larger than any allowed. One line per probe,
// "NAME ERRNO" (0: success), for the test to check; then "closed" if the server ended the stream.
//   fcvm-hostile-volume-peer TAG
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "fuse-pipe/protocol.h"
#include "fuse-pipe/transport.h"

namespace fp = fcvm::fusepipe;

namespace {

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The /dev node of the virtio-serial port called `name`.
std::string portNamed(const std::string& name) {
  for (const auto& entry : std::filesystem::directory_iterator("/sys/class/virtio-ports")) {
    auto text = readFile(entry.path() / "name");
    if (text == name + "\n" || text == name) return "/dev/" + entry.path().filename().string();
  }
  throw std::runtime_error("no port " + name);
}

// Kills the fuse-pipe client that holds `port` and waits for it to be gone (its pidfd is
// readable once it has exited, after its files, the port among them, were closed), then opens the
// port itself.
fcvm::UniqueFd takeOver(const std::string& port) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    auto cmdline = readFile(entry.path() / "cmdline");
    if (cmdline.find("volume-mount") == std::string::npos ||
        cmdline.find(port + std::string(1, '\0')) == std::string::npos) {
      continue;
    }
    pid_t client = std::stoi(entry.path().filename().string());
    fcvm::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, client, 0)));
    if (!pidfd || ::kill(client, SIGKILL) != 0) continue;  // gone already
    pollfd exited{pidfd.get(), POLLIN, 0};
    if (::poll(&exited, 1, 30'000) != 1) throw std::runtime_error("the client did not exit");
  }
  fcvm::UniqueFd fd(::open(port.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY));
  if (!fd) throw std::runtime_error("open " + port + ": " + std::strerror(errno));
  return fd;
}

class Peer {
 public:
  explicit Peer(fcvm::UniqueFd fd)
      : fd_(std::move(fd)), reader_(fd_.get(), fp::kMaxFramePayload, 0) {}

  // Sends a request as root and returns the reply's errno; `result` gets the rest of the reply.
  int call(fp::Opcode opcode, const std::function<void(fp::WireWriter&)>& fields,
           std::vector<uint8_t>* result = nullptr) {
    fp::WireWriter w;
    fp::encodeCredentials(
        w, fp::Credentials{.uid = 0, .gid = 0, .pid = 1, .umask = 022, .groups = {}});
    fields(w);
    uint64_t id = nextId_++;
    fp::FrameWriter(fd_.get()).write(
        {.opcode = static_cast<uint16_t>(opcode), .flags = 0, .requestId = id}, w.take());
    for (;;) {
      auto frame = reader_.read();
      if (!frame) throw std::runtime_error("the server closed the stream");
      if (frame->header.requestId != id) continue;  // a reply to the killed client
      fp::WireReader r(frame->payload);
      int error = r.i32();
      if (result) result->assign(frame->payload.begin() + 4, frame->payload.end());
      return error;
    }
  }

  // A frame header claiming more than any payload may be: true if the server then ends the
  // stream (as it must: it cannot know where the next frame starts).
  bool oversizedFrameCloses() {
    std::vector<uint8_t> header(fp::kFrameHeaderSize);
    fp::encodeFrameHeader({.payloadLength = fp::kMaxFramePayload + 1,
                           .opcode = static_cast<uint16_t>(fp::Opcode::kWrite),
                           .flags = 0,
                           .requestId = nextId_++},
                          header.data());
    if (::write(fd_.get(), header.data(), header.size()) != static_cast<ssize_t>(header.size())) {
      return true;
    }
    try {
      while (auto frame = reader_.read()) {
      }
      return true;
    } catch (const std::exception&) {
      return true;  // a broken stream is closed too
    }
  }

 private:
  fcvm::UniqueFd fd_;
  fp::FrameReader reader_;
  uint64_t nextId_ = uint64_t{1} << 40;  // far from the killed client's ids
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fcvm-hostile-volume-peer TAG\n");
    return 2;
  }
  try {
    Peer peer(takeOver(portNamed(std::string("fcvm.volume.") + argv[1] + ".0")));
    constexpr uint64_t kRoot = 1;
    auto lookup = [&](uint64_t parent, const std::string& name, uint64_t* inode = nullptr) {
      std::vector<uint8_t> result;
      int e = peer.call(
          fp::Opcode::kLookup,
          [&](fp::WireWriter& w) {
            w.u64(parent);
            w.string(name);
          },
          &result);
      if (e == 0 && inode) {
        fp::WireReader r(result);
        *inode = fp::decodeEntry(r).inode.value;
      }
      return e;
    };
    auto report = [](const char* name, int e) { printf("%s %d\n", name, e); };
    report("dotdot", lookup(kRoot, ".."));
    report("slash", lookup(kRoot, "sub/../../etc"));
    report("nul", lookup(kRoot, std::string("a\0b", 3)));
    uint64_t escape = 0;
    report("escape", lookup(kRoot, "escape", &escape));
    report("through-symlink", lookup(escape, "secret"));
    report("open-symlink", peer.call(fp::Opcode::kOpen, [&](fp::WireWriter& w) {
      w.u64(escape);
      w.u32(O_RDONLY);
    }));
    report("mkdir-in-symlink", peer.call(fp::Opcode::kMkdir, [&](fp::WireWriter& w) {
      w.u64(escape);
      w.string("made");
      w.u32(0755);
    }));
    report("forged-inode", peer.call(fp::Opcode::kGetattr, [&](fp::WireWriter& w) {
      w.u64(0xdeadbeef);
      w.u8(0);
      w.u64(0);
    }));
    report("forged-handle", peer.call(fp::Opcode::kRead, [&](fp::WireWriter& w) {
      w.u64(77777);
      w.u64(0);
      w.u32(4096);
    }));
    report("rename-out", peer.call(fp::Opcode::kRename, [&](fp::WireWriter& w) {
      w.u64(kRoot);
      w.string("host-wrote.txt");
      w.u64(kRoot);
      w.string("../host-wrote.txt");
      w.u32(0);
    }));
    printf("%s\n", peer.oversizedFrameCloses() ? "closed" : "still open");
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "fcvm-hostile-volume-peer: %s\n", e.what());
    return 1;
  }
}
