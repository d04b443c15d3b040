// The real SupervisorServer on a real Unix socket, called by processes running as other uids:
// each caller sees and touches only its own VMs, whatever names it sends.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "ipc/listening_socket.h"
#include "ipc/rpc_client.h"
#include "supervisor/supervisor_server.h"
#include "tests/support/temp_dir.h"

namespace fcvm::supervisor {
namespace {

constexpr uid_t kAlice = 60001;
constexpr uid_t kBob = 60002;

using Check = std::function<std::string(rpc::Supervisor::Client&, kj::WaitScope&)>;

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
        verdict = check(supervisor, io.waitScope);
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

TEST(PeerCredentialsTest, SecondUidCannotSeeOrChangeFirstUidsVms) {
  ASSERT_EQ(::geteuid(), 0u) << "this test switches uids and must run as root";
  testing::TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  auto table = ipc::StateTableWriter::open(dir / "state", ipc::TableCapacity{8, 2, 2}, 0600);
  RecordStore store(dir / "vms");
  VmRegistry registry(table, store);
  for (auto [owner, name] : {std::pair{kAlice, "web-a"}, std::pair{kBob, "web-b"}}) {
    auto vm = registry.create(owner, name, "img");
    vm.state = ipc::VmState::kStopped;
    registry.update(vm);
  }
  ipc::ListeningSocket socket(dir / "supervisor.sock", 0666);

  int bob = spawnCaller(kBob, socket.path(), [](auto& s, auto& ws) -> std::string {
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
  int alice = spawnCaller(kAlice, socket.path(), [](auto& s, auto& ws) -> std::string {
    if (names(s, ws) != std::vector<std::string>{"web-a"}) return "alice listed other VMs";
    auto req = s.getVmRequest();
    req.setName("web-a");
    auto reply = req.send().wait(ws);
    if (reply.getVm().getOwnerUid() != kAlice) return "wrong owner";
    return "ok";
  });

  auto io = kj::setupAsyncIo();
  auto listener = io.lowLevelProvider->wrapListenSocketFd(
      socket.releaseFd(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  auto shutdown = kj::newPromiseAndFulfiller<void>();
  Paths paths{dir.path(), dir.path(), dir.path()};
  NetdClient netd(io, paths);
  VmController vms(io, registry, paths, netd);
  SnapshotController snapshots(io, paths, registry, vms);
  SupervisorContext context{registry,   vms,           snapshots, table, dir.path(),
                            dir.path(), socket.path(), 0,         {},    shutdown.fulfiller};
  SupervisorServer server(context);
  auto serving = server.listen(*listener).eagerlyEvaluate(nullptr);

  auto verdictOf = [&](int fd) {
    auto in = io.lowLevelProvider->wrapInputFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    return std::string(in->readAllText(4096).wait(io.waitScope).cStr());
  };
  EXPECT_EQ(verdictOf(bob), "ok");
  EXPECT_EQ(verdictOf(alice), "ok");
  while (::waitpid(-1, nullptr, 0) > 0) {
  }

  Caller root{0, 0, 1};
  EXPECT_TRUE(registry.find(root, "web-a"));
  EXPECT_TRUE(registry.find(root, "web-b"));
  EXPECT_FALSE(shutdown.promise.poll(io.waitScope));
}

}  // namespace
}  // namespace fcvm::supervisor
