// The real SupervisorServer on a real Unix socket, called by processes running as other uids:
// each caller sees and touches only its own VMs, whatever names it sends.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "ipc/listening_socket.h"
#include "ipc/rpc_client.h"
#include "supervisor/supervisor_server.h"
#include "tests/support/temp_dir.h"

namespace fcvm::supervisor {
namespace {

constexpr uid_t kAlice = 60001;
constexpr uid_t kBob = 60002;

using Check = std::function<std::string(rpc::Supervisor::Client&, kj::AsyncIoContext&)>;

// Forks a process that becomes `uid`, connects to `socket` and runs `check`; the check's verdict
// ("ok" or what went wrong) comes back on the returned pipe. Must run before this process creates
// its own event loop.
int spawnCaller(uid_t uid, const std::filesystem::path& socket, Check check) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::string verdict;
    try {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
          ::setresuid(uid, uid, uid) != 0) {
        verdict = "could not change uid";
      } else {
        auto io = kj::setupAsyncIo();
        ipc::RpcClient client(io, socket);
        auto supervisor = client.bootstrap<rpc::Supervisor>();
        verdict = check(supervisor, io);
      }
    } catch (const kj::Exception& e) {
      verdict = std::string("unexpected: ") + e.getDescription().cStr();
    }
    (void)::write(fds[1], verdict.data(), verdict.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  return fds[0];
}

std::vector<std::string> names(rpc::Supervisor::Client& s, kj::WaitScope& ws) {
  auto reply = s.listVmsRequest().send().wait(ws);
  std::vector<std::string> out;
  for (auto vm : reply.getVms()) out.emplace_back(vm.getName().cStr());
  return out;
}

// The remote error text of `call`, or "succeeded".
std::string errorOf(std::function<void()> call) {
  try {
    call();
    return "succeeded";
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
}

// A supervisor's records, state table and socket in a directory every uid may reach.
struct SupervisorFiles {
  SupervisorFiles() { ::chmod(dir.path().c_str(), 0755); }

  testing::TempDir dir;
  ipc::StateTableWriter table =
      ipc::StateTableWriter::open(dir / "state", ipc::TableCapacity{8, 2, 2}, 0600);
  RecordStore store{dir / "vms"};
  VmRegistry registry{table, store};
  ipc::ListeningSocket socket{dir / "supervisor.sock", 0666};
};

// The real supervisor server on the files' socket, in this process's event loop. Made after the
// callers are forked (they must not inherit an event loop).
struct ServedSupervisor {
  explicit ServedSupervisor(SupervisorFiles& files)
      : listener(io.lowLevelProvider->wrapListenSocketFd(
            files.socket.releaseFd(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
        paths{files.dir.path(), files.dir.path(), files.dir.path(), {}},
        netd(io, paths),
        vms(io, files.registry, paths, netd),
        snapshots(io, paths, files.registry, vms),
        startup(io, paths, vms, snapshots, StartupCache::kDefaultMaxEntries),
        context{files.registry,
                vms,
                snapshots,
                startup,
                files.table,
                files.dir.path(),
                files.dir.path(),
                files.socket.path(),
                0,
                {},
                shutdown.fulfiller},
        server(context, io.provider->getTimer()),
        serving(server.listen(*listener).eagerlyEvaluate(nullptr)) {}

  // Everything the caller process `fd` reports, once it has finished.
  std::string verdictOf(int fd) {
    auto in = io.lowLevelProvider->wrapInputFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    return std::string(in->readAllText(4096).wait(io.waitScope).cStr());
  }

  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Own<kj::ConnectionReceiver> listener;
  kj::PromiseFulfillerPair<void> shutdown = kj::newPromiseAndFulfiller<void>();
  Paths paths;
  NetdClient netd;
  VmController vms;
  SnapshotController snapshots;
  StartupCache startup;
  SupervisorContext context;
  SupervisorServer server;
  kj::Promise<void> serving;
};

TEST(PeerCredentialsTest, SecondUidCannotSeeOrChangeFirstUidsVms) {
  ASSERT_EQ(::geteuid(), 0u) << "this test switches uids and must run as root";
  SupervisorFiles files;
  auto& registry = files.registry;
  for (auto [owner, name] : {std::pair{kAlice, "web-a"}, std::pair{kBob, "web-b"}}) {
    auto vm = registry.create(owner, name, "img");
    vm.state = ipc::VmState::kStopped;
    registry.update(vm);
  }

  int bob = spawnCaller(kBob, files.socket.path(), [](auto& s, auto& io) -> std::string {
    auto& ws = io.waitScope;
    if (names(s, ws) != std::vector<std::string>{"web-b"}) return "bob listed other VMs";
    auto get = errorOf([&] {
      auto req = s.getVmRequest();
      req.setName("web-a");
      req.send().wait(ws);
    });
    if (get.find("no VM named 'web-a'") == std::string::npos) return "bob got web-a: " + get;
    auto rm = errorOf([&] {
      auto req = s.removeVmRequest();
      req.setName("web-a");
      req.send().wait(ws);
    });
    if (rm.find("no VM named 'web-a'") == std::string::npos) return "bob removed web-a: " + rm;
    auto stop = errorOf([&] { s.shutdownRequest().send().wait(ws); });
    if (stop.find("may not stop") == std::string::npos) return "bob stopped it: " + stop;
    return "ok";
  });
  int alice = spawnCaller(kAlice, files.socket.path(), [](auto& s, auto& io) -> std::string {
    auto& ws = io.waitScope;
    if (names(s, ws) != std::vector<std::string>{"web-a"}) return "alice listed other VMs";
    auto req = s.getVmRequest();
    req.setName("web-a");
    auto reply = req.send().wait(ws);
    if (reply.getVm().getOwnerUid() != kAlice) return "wrong owner";
    return "ok";
  });

  ServedSupervisor served(files);

  EXPECT_EQ(served.verdictOf(bob), "ok");
  EXPECT_EQ(served.verdictOf(alice), "ok");
  while (::waitpid(-1, nullptr, 0) > 0) {
  }

  Caller root{0, 0, 1};
  EXPECT_TRUE(registry.find(root, "web-a"));
  EXPECT_TRUE(registry.find(root, "web-b"));
  EXPECT_FALSE(served.shutdown.promise.poll(served.io.waitScope));
}

// A raw connection to `socket`, for a client that speaks no RPC at all.
UniqueFd connectRaw(const std::filesystem::path& socket) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("connect " + socket.string() + ": " + std::strerror(errno));
  }
  return fd;
}

// True once the server has closed `fd` (EOF), after reading whatever it sent first.
bool closedByServer(int fd) {
  char buf[256];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) return true;
    if (n < 0 && errno != EINTR) return errno == ECONNRESET;
  }
}

// A hostile user floods the supervisor with connections, garbage and an oversized frame: each is
// refused or closed, its own connection goes on, and another user's new connections are served
// all the while.
TEST(PeerCredentialsTest, AFloodingClientCannotWedgeTheSupervisor) {
  ASSERT_EQ(::geteuid(), 0u) << "this test switches uids and must run as root";
  SupervisorFiles files;
  int flooded[2], release[2], go[2];
  ASSERT_EQ(::pipe2(flooded, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(release, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  auto path = files.socket.path();

  int bob = spawnCaller(kBob, path, [&](auto& s, auto& io) -> std::string {
    ::close(flooded[0]);
    ::close(release[1]);
    ::close(go[0]);
    ::close(go[1]);
    std::string verdict = "ok";
    std::vector<UniqueFd> held;
    for (int i = 0; i < 300; ++i) held.push_back(connectRaw(path));
    // Beyond the limit, connections are closed at the door; a new RPC connection fails.
    if (!closedByServer(held.back().get())) verdict = "connection 300 was kept";
    auto refused = errorOf([&] {
      ipc::RpcClient extra(io, path);
      extra.bootstrap<rpc::Supervisor>().listVmsRequest().send().wait(io.waitScope);
    });
    if (refused == "succeeded") verdict = "a connection beyond the limit was served";
    // Garbage, then (on connections it holds) a frame header announcing 2^28 words: both
    // connections are closed.
    const char garbage[] = "GET / HTTP/1.1\r\n\r\nnot a capnp frame at all, just bytes....";
    (void)::write(held[0].get(), garbage, sizeof garbage);
    uint32_t huge[2] = {0, 1u << 28};
    (void)::write(held[1].get(), huge, sizeof huge);
    if (!closedByServer(held[0].get())) verdict = "garbage kept its connection";
    if (!closedByServer(held[1].get())) verdict = "an oversized frame kept its connection";
    // Its first connection is still served.
    if (!names(s, io.waitScope).empty()) verdict = "bob listed VMs";
    (void)::write(flooded[1], verdict.data(), verdict.size());
    ::close(flooded[1]);
    char byte;
    (void)::read(release[0], &byte, 1);  // holds every connection until released
    return "ok";
  });
  int alice = spawnCaller(kAlice, path, [&](auto&, auto& io) -> std::string {
    ::close(flooded[0]);
    ::close(flooded[1]);
    ::close(release[0]);
    ::close(release[1]);
    ::close(go[1]);
    char byte;
    if (::read(go[0], &byte, 1) != 1) return "no go";
    // New connections of another user while bob holds his, one after another.
    for (int i = 0; i < 20; ++i) {
      ipc::RpcClient client(io, path);
      auto s = client.bootstrap<rpc::Supervisor>();
      if (!names(s, io.waitScope).empty()) return "alice listed VMs";
    }
    return "ok";
  });
  ::close(flooded[1]);
  ::close(release[0]);
  ::close(go[0]);

  ServedSupervisor served(files);
  EXPECT_EQ(served.verdictOf(flooded[0]), "ok");
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  EXPECT_EQ(served.verdictOf(alice), "ok");
  ::close(release[1]);
  EXPECT_EQ(served.verdictOf(bob), "ok");
  while (::waitpid(-1, nullptr, 0) > 0) {
  }
}

}  // namespace
}  // namespace fcvm::supervisor
