// End to end: the real fcvm-uffd-server process, started as the supervisor starts it (through
// fcvm::spawn, a ready pipe at fd 3), serving a test image to the real firecracker_peer on its
// uffd socket and to a Cap'n Proto PageServer client on its supervisor socket. No VM is needed;
// userfaultfd needs root (or vm.unprivileged_userfaultfd=1) for the peers started as root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/spawn.h"
#include "ipc/file_handle.h"
#include "ipc/rpc_client.h"
#include "ipc/uffd.capnp.h"
#include "uffd-server/mapping.h"
#include "uffd-server/testing.h"

namespace fcvm::uffd {
namespace {

using std::chrono::milliseconds;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 2048;  // 8 MiB
constexpr uint64_t kHoleEvery = 3;
constexpr const char* kSnapshotId = "0123456789abcdef";
constexpr const char* kCloneId = "0123456789abcdef";
constexpr const char* kOtherCloneId = "fedcba9876543210";
// Bounds a hang; nothing waits for it to pass. Longer than firecracker_peer's own 60 s wait for a
// hang-up, so that a peer the server wrongly served reports that itself.
constexpr milliseconds kDeadline{90'000};
constexpr uid_t kNobody = 65534;
constexpr uid_t kOwner = 4242;

// Everything read from `fd` until end of file; throws when that takes longer than `deadline`.
std::string readToEnd(int fd, milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  std::string text;
  for (;;) {
    const auto left =
        std::chrono::ceil<milliseconds>(end - std::chrono::steady_clock::now()).count();
    if (left <= 0) throw Error("no end of file in time; read so far: " + text);
    pollfd pfd{fd, POLLIN, 0};
    const int n = retryEintr([&] { return ::poll(&pfd, 1, static_cast<int>(left)); });
    checkSys(n, "poll");
    if (n == 0) continue;
    char buffer[256];
    const ssize_t got = retryEintr([&] { return ::read(fd, buffer, sizeof buffer); });
    checkSys(got, "read");
    if (got == 0) return text;
    text.append(buffer, static_cast<size_t>(got));
  }
}

std::string fileText(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// `size` bytes of `fd` from offset 0.
std::vector<std::byte> contents(int fd, uint64_t size) {
  std::vector<std::byte> bytes(size);
  for (uint64_t at = 0; at < size;) {
    const ssize_t n = ::pread(fd, bytes.data() + at, size - at, static_cast<off_t>(at));
    if (n <= 0) throw SysError(n == 0 ? EIO : errno, "pread");
    at += static_cast<uint64_t>(n);
  }
  return bytes;
}

// The bytes the file system holds as data (not holes) in the file at `path`.
uint64_t dataBytesOf(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw SysError(errno, "open " + path);
  const off_t size = ::lseek(fd.get(), 0, SEEK_END);
  uint64_t data = 0;
  for (off_t at = 0; at < size;) {
    const off_t start = ::lseek(fd.get(), at, SEEK_DATA);
    if (start == -1 && errno == ENXIO) break;
    checkSys(start, "SEEK_DATA");
    const off_t hole = checkSys(::lseek(fd.get(), start, SEEK_HOLE), "SEEK_HOLE");
    data += static_cast<uint64_t>(hole - start);
    at = hole;
  }
  return data;
}

struct Exited {
  int status = 0;
  std::string output;  // stdout and stderr
};

class ServerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::writeImage(imagePath_, kPages, kPage, kHoleEvery);
    UniqueFd image(::open(imagePath_.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(image) << errnoText(errno);
    image_ = contents(image.get(), kPages * kPage);
  }

  void TearDown() override {
    if (HasFailure()) std::cerr << "fcvm-uffd-server's log:\n" << fileText(serverLogPath_);
  }

  // Starts the server as the supervisor does and waits for its "ready"; throws (ending the test)
  // when it does not get ready.
  void startServer(uid_t owner = 0) {
    int ready[2];
    checkSys(::pipe2(ready, O_CLOEXEC), "pipe2");
    UniqueFd readyRead(ready[0]), readyWrite(ready[1]);
    UniqueFd log(::open(serverLogPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!log) throw SysError(errno, "create " + serverLogPath_);
    SpawnSpec spec;
    spec.argv = {FCVM_UFFD_SERVER_BINARY,
                 "--snapshot-id",
                 kSnapshotId,
                 "--image",
                 imagePath_,
                 "--socket",
                 socketPath_,
                 "--uffd-socket",
                 uffdSocketPath_,
                 "--owner",
                 std::to_string(owner),
                 "--ready-fd",
                 "3"};
    spec.env = environmentWith({});
    spec.fds = {{1, log.get()}, {2, log.get()}, {3, readyWrite.get()}};
    spec.dieWithParent = true;
    server_ = spawn(spec);
    readyWrite.reset();  // so that its death shows as end of file
    const std::string said = readToEnd(readyRead.get(), kDeadline);
    if (said != "ready\n") throw Error("the server did not get ready: '" + said + "'");
  }

  // Runs firecracker_peer against the uffd socket until it exits.
  Exited runPeer(const std::vector<std::string>& extra,
                 std::optional<Credentials> credentials = std::nullopt) {
    const std::string outputPath = dir_ / ("peer-" + std::to_string(++peers_) + ".out");
    UniqueFd output(::open(outputPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!output) throw SysError(errno, "create " + outputPath);
    SpawnSpec spec;
    spec.argv = {FIRECRACKER_PEER_BINARY, "--socket", uffdSocketPath_, "--image", imagePath_};
    spec.argv.insert(spec.argv.end(), extra.begin(), extra.end());
    spec.env = environmentWith({});
    spec.fds = {{1, output.get()}, {2, output.get()}};
    spec.dieWithParent = true;
    spec.credentials = std::move(credentials);
    ChildProcess peer = spawn(spec);
    Exited exited;
    const auto status = peer.waitFor(kDeadline);
    if (!status) throw Error("firecracker_peer did not exit in time: " + fileText(outputPath));
    exited.status = *status;
    exited.output = fileText(outputPath);
    return exited;
  }

  // Lets another uid reach the image and the uffd socket: the directory traversable, the image
  // readable.
  void openTheDirectoryToOtherUids() {
    checkSys(::chmod((dir_ / "").c_str(), 0711), "chmod the test directory");
    checkSys(::chmod(imagePath_.c_str(), 0644), "chmod the image");
  }

  static bool exitedWith(int status, int code) {
    return WIFEXITED(status) && WEXITSTATUS(status) == code;
  }

  // Declared first, so removed last: after the server is killed and reaped.
  testing::TempDir dir_;
  const std::string imagePath_ = dir_ / "memory.img";
  const std::string socketPath_ = dir_ / "server.sock";
  const std::string uffdSocketPath_ = dir_ / "uffd.sock";
  const std::string serverLogPath_ = dir_ / "server.log";
  std::vector<std::byte> image_;  // what every reader of the snapshot must see
  unsigned peers_ = 0;
  ChildProcess server_;  // killed and reaped on destruction, a failed test included
};

// The PageServer client of a test: its own event loop and connection.
class PageServerClient {
 public:
  explicit PageServerClient(const std::string& socket)
      : io_(kj::setupAsyncIo()),
        connection_(io_, socket, 1),
        server_(connection_.bootstrap<rpc::PageServer>()) {}

  kj::WaitScope& waitScope() { return io_.waitScope; }
  rpc::PageServer::Client& server() { return server_; }

  capnp::Response<rpc::PageServer::StatusResults> status() {
    return server_.statusRequest().send().wait(io_.waitScope);
  }

  UniqueFd attachClone(const char* vmId) {
    auto request = server_.attachCloneRequest();
    request.setVmId(vmId);
    auto response = request.send().wait(io_.waitScope);
    return ipc::receiveFile(response.getMemory(), "clone memory").wait(io_.waitScope);
  }

  void detachClone(const char* vmId) {
    auto request = server_.detachCloneRequest();
    request.setVmId(vmId);
    request.send().wait(io_.waitScope);
  }

  std::vector<std::string> clones() {
    std::vector<std::string> ids;
    auto response = status();
    for (auto id : response.getStatus().getClones()) ids.emplace_back(id.cStr());
    return ids;
  }

 private:
  kj::AsyncIoContext io_;
  ipc::RpcClient connection_;
  rpc::PageServer::Client server_;
};

TEST_F(ServerProcessTest, ServesAFirecrackerPeerThatChecksEveryPage) {
  startServer();
  Exited peer = runPeer({"--regions", "4", "--threads", "4", "--dontneed", "32"});
  EXPECT_TRUE(exitedWith(peer.status, 0)) << describeWaitStatus(peer.status) << ": " << peer.output;
}

TEST_F(ServerProcessTest, RefusesEachMalformedHandshakeAndGoesOnServing) {
  startServer();
  struct Malformed {
    const char* mode;
    const char* refusal;  // in the server's log
  };
  for (const Malformed& m :
       {Malformed{"bad-json", "not JSON"}, Malformed{"overlap", "overlap in host addresses"},
        Malformed{"overflow", "base + size overflows"}, Malformed{"no-fd", "missing userfaultfd"},
        Malformed{"page-size", "page size 8192 but the snapshot's is 4096"}}) {
    SCOPED_TRACE(m.mode);
    // Exit 0: after sending, the peer saw the server close the connection.
    Exited peer = runPeer({"--mode", m.mode});
    EXPECT_TRUE(exitedWith(peer.status, 0))
        << describeWaitStatus(peer.status) << ": " << peer.output;
    // The server logs the refusal before it closes the connection, so it is there by now.
    EXPECT_NE(fileText(serverLogPath_).find(m.refusal), std::string::npos);
  }
  Exited good = runPeer({"--regions", "2", "--threads", "2"});
  EXPECT_TRUE(exitedWith(good.status, 0)) << describeWaitStatus(good.status) << ": " << good.output;
  EXPECT_EQ(server_.waitFor(milliseconds(0)), std::nullopt) << "the server must still run";
}

// The uffd socket's mode (0600, owned by --owner) already keeps other uids out; here the socket is
// opened to everyone, so that the refusal seen is SO_PEERCRED's. The peer runs as nobody, which
// gets a userfaultfd only with UFFD_USER_MODE_ONLY when vm.unprivileged_userfaultfd is 0 (enough
// for a peer whose faults all come from user mode), and sends a correct handshake ("refused"): it
// exits 0 only once the server hangs up on it; served, it would wait and exit 1.
TEST_F(ServerProcessTest, RefusesAPeerOfAnotherUidThatReachesTheSocket) {
  startServer(0);
  openTheDirectoryToOtherUids();
  checkSys(::chmod(uffdSocketPath_.c_str(), 0666), "chmod the uffd socket");
  Exited peer =
      runPeer({"--mode", "refused", "--user-mode-only"}, Credentials{kNobody, kNobody, {}});
  EXPECT_TRUE(exitedWith(peer.status, 0)) << describeWaitStatus(peer.status) << ": " << peer.output;
  EXPECT_NE(fileText(serverLogPath_).find("uid 65534 may not use this snapshot"),
            std::string::npos);
  Exited root = runPeer({});
  EXPECT_TRUE(exitedWith(root.status, 0)) << describeWaitStatus(root.status) << ": " << root.output;
}

TEST_F(ServerProcessTest, ServesThePeerOfTheOwnerThroughTheOwnersSocket) {
  startServer(kOwner);
  struct stat st {};
  ASSERT_EQ(::stat(uffdSocketPath_.c_str(), &st), 0) << errnoText(errno);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_uid, kOwner);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat(socketPath_.c_str(), &st), 0) << errnoText(errno);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  openTheDirectoryToOtherUids();
  Exited peer = runPeer({"--user-mode-only"}, Credentials{kOwner, kOwner, {}});
  EXPECT_TRUE(exitedWith(peer.status, 0)) << describeWaitStatus(peer.status) << ": " << peer.output;
}

TEST_F(ServerProcessTest, StatusReportsTheSnapshotAndItsResidentBytes) {
  startServer();
  PageServerClient client(socketPath_);
  auto response = client.status();
  auto status = response.getStatus();
  EXPECT_EQ(std::string(status.getSnapshotId().cStr()), kSnapshotId);
  const uint64_t data = dataBytesOf(imagePath_);
  EXPECT_LT(data, kPages * kPage) << "the test image should have holes";
  EXPECT_EQ(status.getMemoryBytes(), data);
  EXPECT_EQ(status.getClones().size(), 0u);
  EXPECT_EQ(status.getUffdPeers(), 0u);
  EXPECT_EQ(status.getPagesServed(), 0u);
}

TEST_F(ServerProcessTest, AttachCloneHandsOutTheImageInAWriteSealedMemfd) {
  startServer();
  PageServerClient client(socketPath_);
  UniqueFd memory = client.attachClone(kCloneId);

  char link[256] = {};
  ASSERT_GT(
      ::readlink(("/proc/self/fd/" + std::to_string(memory.get())).c_str(), link, sizeof link - 1),
      0);
  EXPECT_TRUE(std::string(link).starts_with(std::string("/memfd:fcvm-snapshot-") + kSnapshotId))
      << link;
  struct stat st {};
  ASSERT_EQ(::fstat(memory.get(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kPages * kPage);
  EXPECT_EQ(contents(memory.get(), kPages * kPage), image_);

  const int seals = ::fcntl(memory.get(), F_GET_SEALS);
  ASSERT_NE(seals, -1) << errnoText(errno);
  EXPECT_TRUE(seals & F_SEAL_WRITE);
  EXPECT_TRUE(seals & F_SEAL_GROW);
  EXPECT_TRUE(seals & F_SEAL_SHRINK);
  EXPECT_TRUE(seals & F_SEAL_SEAL);

  const char byte = 1;
  EXPECT_EQ(::pwrite(memory.get(), &byte, 1, 0), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::write(memory.get(), &byte, 1), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::ftruncate(memory.get(), 0), -1);
  EXPECT_EQ(errno, EPERM);
  void* shared = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, memory.get(), 0);
  EXPECT_EQ(shared, MAP_FAILED);
  EXPECT_EQ(errno, EPERM);
  if (shared != MAP_FAILED) ::munmap(shared, kPage);
}

TEST_F(ServerProcessTest, ACloneMapsTheImagePrivateWithoutChangingItForOthers) {
  startServer();
  PageServerClient client(socketPath_);
  UniqueFd memory = client.attachClone(kCloneId);
  UniqueFd other = client.attachClone(kOtherCloneId);

  Mapping mapped(kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, memory.get(), "clone memory");
  ASSERT_EQ(std::memcmp(mapped.data(), image_.data(), image_.size()), 0);
  // A data page and a hole, written through the copy-on-write mapping.
  std::memset(mapped.data(), 0xab, kPage);
  std::memset(mapped.data() + (kHoleEvery - 1) * kPage, 0xcd, kPage);
  EXPECT_EQ(static_cast<int>(mapped.data()[0]), 0xab);

  EXPECT_EQ(contents(memory.get(), kPages * kPage), image_);
  EXPECT_EQ(contents(other.get(), kPages * kPage), image_);
  Mapping second(kPages * kPage, PROT_READ, MAP_PRIVATE, other.get(), "other clone memory");
  EXPECT_EQ(std::memcmp(second.data(), image_.data(), image_.size()), 0);
}

TEST_F(ServerProcessTest, StatusListsAttachedClonesUntilDetachedOrNotRetained) {
  startServer();
  PageServerClient client(socketPath_);
  UniqueFd first = client.attachClone(kCloneId);
  UniqueFd second = client.attachClone(kOtherCloneId);
  EXPECT_EQ(client.clones(), (std::vector<std::string>{kCloneId, kOtherCloneId}));

  client.detachClone(kCloneId);
  EXPECT_EQ(client.clones(), std::vector<std::string>{kOtherCloneId});
  client.detachClone(kCloneId);  // again: nothing to do
  EXPECT_EQ(client.clones(), std::vector<std::string>{kOtherCloneId});

  UniqueFd third = client.attachClone(kCloneId);
  auto retain = client.server().retainClonesRequest();
  retain.initVmIds(1).set(0, kOtherCloneId);
  retain.send().wait(client.waitScope());
  EXPECT_EQ(client.clones(), std::vector<std::string>{kOtherCloneId});
}

TEST_F(ServerProcessTest, AttachCloneRefusesWhatIsNotAVmId) {
  startServer();
  PageServerClient client(socketPath_);
  for (const char* id : {"", "../../etc", "0123456789ABCDEF", "0123456789abcdef0"}) {
    SCOPED_TRACE(id);
    auto request = client.server().attachCloneRequest();
    request.setVmId(id);
    try {
      request.send().wait(client.waitScope());
      ADD_FAILURE() << "attachClone accepted it";
    } catch (const kj::Exception& e) {
      EXPECT_NE(std::string(e.getDescription().cStr()).find("not a VM id"), std::string::npos)
          << e.getDescription().cStr();
    }
  }
  EXPECT_EQ(client.clones(), std::vector<std::string>{});
}

TEST_F(ServerProcessTest, StopAnswersThenTheServerExitsAndRemovesItsSockets) {
  startServer();
  PageServerClient client(socketPath_);
  // First a call that settles the bootstrap: the client then writes nothing more before stop()'s
  // answer, which must arrive before the server exits (a message the client still had to write
  // after the server is gone would fail the connection: EPIPE).
  EXPECT_EQ(client.clones(), std::vector<std::string>{});
  client.server().stopRequest().send().wait(client.waitScope());
  const auto status = server_.waitFor(kDeadline);
  ASSERT_TRUE(status) << "the server did not exit";
  EXPECT_TRUE(exitedWith(*status, 0)) << describeWaitStatus(*status);
  EXPECT_FALSE(std::filesystem::exists(socketPath_));
  EXPECT_FALSE(std::filesystem::exists(uffdSocketPath_));
}

TEST_F(ServerProcessTest, AfterSigkillItsSocketsRemainAndAClonesMemoryStaysReadable) {
  startServer();
  PageServerClient client(socketPath_);
  UniqueFd memory = client.attachClone(kCloneId);
  server_.kill(SIGKILL);
  const int status = server_.wait();
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << describeWaitStatus(status);

  // Left for the supervisor to remove; nobody listens on them any more.
  for (const std::string& path : {socketPath_, uffdSocketPath_}) {
    SCOPED_TRACE(path);
    struct stat st {};
    ASSERT_EQ(::lstat(path.c_str(), &st), 0) << errnoText(errno);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    try {
      ipc::connectUnixSocket(path);
      ADD_FAILURE() << "something still listens";
    } catch (const SysError& e) {
      EXPECT_EQ(e.code(), ECONNREFUSED) << e.what();
    }
  }
  EXPECT_EQ(contents(memory.get(), kPages * kPage), image_);
  Mapping mapped(kPages * kPage, PROT_READ, MAP_PRIVATE, memory.get(), "clone memory");
  EXPECT_EQ(std::memcmp(mapped.data(), image_.data(), image_.size()), 0);
}

}  // namespace
}  // namespace fcvm::uffd
