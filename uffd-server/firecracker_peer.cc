// firecracker_peer: a protocol peer of fcvm-uffd-server that does what Firecracker does when it
// restores a snapshot with the `Uffd` memory backend, for tests where Firecracker and KVM are
// absent. It maps guest memory anonymous and private in --regions separate mappings, creates a
// userfaultfd (O_CLOEXEC | O_NONBLOCK, UFFDIO_API with UFFD_FEATURE_EVENT_REMOVE, each mapping
// registered for missing faults), connects to --socket and sends the regions as JSON with the
// userfaultfd as SCM_RIGHTS in one sendmsg, keeping the connection open as Firecracker does.
//
// Then, as a guest would, it reads its memory from --threads threads at once and checks every page
// against --image (holes read as zeros); madvise(MADV_DONTNEED)s --dontneed pages it has read and
// as many it never touched, as a balloon does, and checks they all read back as zeros.
// Exit 0 when all is as expected; 1 with a message on stderr otherwise.
//
// --mode sends a wrong handshake on purpose and then waits for the server to hang up:
//   bad-json, overlap, overflow, no-fd, page-size (twice the real one); outside-fault sends a good
//   handshake and then touches registered memory it did not declare (and hangs in that fault
//   until the server kills it); refused sends a good handshake and expects the hang-up all the
//   same (a peer the server must not serve, such as one of another uid).
// --user-mode-only creates the userfaultfd with UFFD_USER_MODE_ONLY, which the kernel grants an
// unprivileged peer even when vm.unprivileged_userfaultfd is 0 (Firecracker does not ask for it:
// KVM touches guest memory from the kernel).
//   firecracker_peer --socket PATH --image FILE [--mib N] [--regions R] [--threads T]
//                    [--dontneed PAGES] [--page-size BYTES] [--mode MODE] [--user-mode-only]
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "uffd-server/mapping.h"
#include "uffd-server/testing.h"

namespace uffd = fcvm::uffd;

namespace {

struct Options {
  std::string socket;
  std::string image;
  uint64_t mib = 0;  // 0: the image's size
  uint64_t regions = 2;
  unsigned threads = 2;
  uint64_t dontneed = 16;
  uint64_t pageSize = 4096;
  std::string mode = "normal";
  bool userModeOnly = false;
};

struct GuestMemory {
  std::vector<uffd::Mapping> mappings;
  std::vector<uffd::GuestRegion> regions;
};

GuestMemory mapGuestMemory(const Options& o, uint64_t bytes) {
  GuestMemory memory;
  const uint64_t each = bytes / o.regions;
  if (each == 0 || each % o.pageSize != 0) throw fcvm::Error("regions not a multiple of pages");
  for (uint64_t i = 0; i < o.regions; ++i) {
    memory.mappings.emplace_back(each, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, "guest memory");
    const auto base = reinterpret_cast<uint64_t>(memory.mappings.back().data());
    memory.regions.push_back({base, each, i * each, o.pageSize});
  }
  return memory;
}

// The message for --mode; the right one for normal, outside-fault and refused.
std::string handshakeText(const Options& o, std::vector<uffd::GuestRegion> regions) {
  if (o.mode == "bad-json") return "[{\"base_host_virt_addr\": 1,}]";  // complete, but invalid
  if (o.mode == "overlap") regions[1].base = regions[0].base;
  if (o.mode == "overflow") regions[0].base = std::numeric_limits<uint64_t>::max() - o.pageSize + 1;
  if (o.mode == "page-size") {
    for (auto& r : regions) r.pageSize *= 2;
  }
  return uffd::testing::encodeRegions(regions);
}

// Compares `length` bytes of guest memory with the image at `offset` (or with zeros).
bool matches(const std::byte* memory, int imageFd, uint64_t offset, uint64_t length,
             bool expectZeros, std::string& why) {
  std::vector<std::byte> expected(length);
  if (!expectZeros && ::pread(imageFd, expected.data(), length, static_cast<off_t>(offset)) !=
                          static_cast<ssize_t>(length)) {
    why = "cannot read the image: " + fcvm::errnoText(errno);
    return false;
  }
  if (std::memcmp(memory, expected.data(), length) == 0) return true;
  size_t i = 0;
  while (memory[i] == expected[i]) ++i;
  why = fmt::format("{} {:#x}: byte {:#x} is {:#x}, expected {:#x}",
                    expectZeros ? "range at" : "image offset", expectZeros ? 0 : offset, i,
                    static_cast<int>(memory[i]), static_cast<int>(expected[i]));
  return false;
}

// Every page of every region but the last `skipTail` pages of the last region, on `threads`
// threads that all start at the beginning, so that several fault on the same page at once.
bool checkAll(const GuestMemory& memory, const Options& o, int imageFd, uint64_t skipTail) {
  std::vector<std::string> failures(o.threads);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < o.threads; ++t) {
    threads.emplace_back([&, t] {
      for (size_t r = 0; r < memory.regions.size() && failures[t].empty(); ++r) {
        const uffd::GuestRegion& region = memory.regions[r];
        const uint64_t end =
            region.size - (r + 1 == memory.regions.size() ? skipTail * o.pageSize : 0);
        for (uint64_t at = 0; at < end && failures[t].empty(); at += o.pageSize) {
          matches(memory.mappings[r].data() + at, imageFd, region.offset + at, o.pageSize, false,
                  failures[t]);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& failure : failures) {
    if (!failure.empty()) {
      std::fprintf(stderr, "firecracker_peer: %s\n", failure.c_str());
      return false;
    }
  }
  return true;
}

// madvise(MADV_DONTNEED) of `pages` pages at `at`; they must read as zeros afterwards.
bool checkDontneed(std::byte* at, uint64_t pages, const Options& o, const char* what) {
  const uint64_t length = pages * o.pageSize;
  fcvm::checkSys(::madvise(at, length, MADV_DONTNEED), "madvise DONTNEED");
  std::string why;
  if (matches(at, -1, 0, length, true, why)) return true;
  std::fprintf(stderr, "firecracker_peer: %s pages not zero after MADV_DONTNEED: %s\n", what,
               why.c_str());
  return false;
}

// Waits until the server closes the connection (it refused the handshake).
int waitForHangUp(int socketFd) {
  pollfd pfd{socketFd, POLLIN, 0};
  char byte;
  if (::poll(&pfd, 1, 60'000) == 1 && ::read(socketFd, &byte, 1) == 0) return 0;
  std::fprintf(stderr, "firecracker_peer: the server did not hang up\n");
  return 1;
}

int run(const Options& o) {
  fcvm::UniqueFd imageFd(::open(o.image.c_str(), O_RDONLY | O_CLOEXEC));
  if (!imageFd) throw fcvm::SysError(errno, "open " + o.image);
  const uint64_t bytes =
      o.mib ? o.mib << 20 : static_cast<uint64_t>(::lseek(imageFd.get(), 0, SEEK_END));
  GuestMemory memory = mapGuestMemory(o, bytes);
  fcvm::UniqueFd uffd = uffd::testing::createUserfaultfd(UFFD_FEATURE_EVENT_REMOVE, o.userModeOnly);
  for (const auto& m : memory.mappings)
    uffd::testing::registerMissing(uffd.get(), m.data(), m.size());
  // Registered like guest memory, but never declared: a fault there is not the server's to serve.
  uffd::Mapping undeclared(o.pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                           "undeclared memory");
  uffd::testing::registerMissing(uffd.get(), undeclared.data(), undeclared.size());

  const fcvm::UniqueFd socket = uffd::testing::connectUnix(o.socket);
  std::vector<int> fds;
  if (o.mode != "no-fd") fds.push_back(uffd.get());
  uffd::testing::sendWithFds(socket.get(), handshakeText(o, memory.regions), fds);
  if (o.mode == "outside-fault") {
    std::printf("%d\n", static_cast<int>(*reinterpret_cast<volatile char*>(undeclared.data())));
    return 1;  // the server served a page it was never told about
  }
  if (o.mode != "normal") return waitForHangUp(socket.get());

  const uint64_t tail = std::min(o.dontneed, memory.regions.back().size / o.pageSize);
  if (!checkAll(memory, o, imageFd.get(), tail)) return 1;
  // Pages read (and so served) before, then a range never touched: both must read zeros.
  const uint64_t head = std::min(o.dontneed, memory.regions.front().size / o.pageSize);
  if (!checkDontneed(memory.mappings.front().data(), head, o, "served")) return 1;
  std::byte* untouched =
      memory.mappings.back().data() + memory.regions.back().size - tail * o.pageSize;
  if (!checkDontneed(untouched, tail, o, "never touched")) return 1;
  std::printf("firecracker_peer: %llu MiB in %zu regions checked\n",
              static_cast<unsigned long long>(bytes >> 20), memory.regions.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A protocol peer that does what Firecracker's Uffd memory backend does"};
  Options o;
  app.add_option("--socket", o.socket, "the server's Unix socket")->required();
  app.add_option("--image", o.image, "the snapshot memory file, to check pages against")
      ->required();
  app.add_option("--mib", o.mib, "guest memory size (default: the image's)");
  app.add_option("--regions", o.regions, "number of guest memory regions")
      ->check(CLI::Range(2, 64));
  app.add_option("--threads", o.threads, "threads reading guest memory")->check(CLI::Range(1, 64));
  app.add_option("--dontneed", o.dontneed, "pages given back with MADV_DONTNEED, twice");
  app.add_option("--page-size", o.pageSize, "page size in bytes");
  app.add_option("--mode", o.mode, "what to send")
      ->check(CLI::IsMember({"normal", "bad-json", "overlap", "overflow", "no-fd", "page-size",
                             "outside-fault", "refused"}));
  app.add_flag("--user-mode-only", o.userModeOnly, "a userfaultfd for user-mode faults only");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "firecracker_peer: %s\n", e.what());
    return 1;
  }
}
