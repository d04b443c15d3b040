// The built static fc-agent, run on the host with --port (no PID-1 steps), driven by the real
// host channel over a Unix socket: guest-OS exec, stdin, exit codes and power-off.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "agent/child_process.h"
#include "agent/spawn.h"
#include "tests/support/temp_dir.h"
#include "worker/agent_channel.h"

namespace fcvm::agent {
namespace {

TEST(FcAgentBinary, ServesExecAndPowersOffOverAUnixSocket) {
  kj::UnixEventPort::captureChildExit();
  signal(SIGPIPE, SIG_IGN);
  testing::TempDir dir("fc-agent-bin");
  std::string socketPath = (dir / "control.sock").string();
  auto io = kj::setupAsyncIo();
  auto& ws = io.waitScope;

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  kj::AutoCloseFd listenFd(fd);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(socketPath.size(), sizeof(addr.sun_path));
  strcpy(addr.sun_path, socketPath.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  auto listener = io.lowLevelProvider->wrapListenSocketFd(
      listenFd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);

  SpawnOptions options;
  options.argv = {FC_AGENT_PATH, "--port", socketPath};
  auto spawned = spawnProcess(options);
  ChildProcess agent(spawned.pid, io.unixEventPort);

  // If the agent dies before connecting, fail instead of waiting for a connection forever.
  auto connection = listener->accept().exclusiveJoin(
      agent.exited().then([](ExitStatus s) -> kj::Own<kj::AsyncIoStream> {
        KJ_FAIL_REQUIRE("fc-agent exited before connecting", s.code);
      }));
  worker::AgentChannel host(connection.wait(ws), "binary-test");
  auto hello = host.handshake().wait(ws);
  EXPECT_FALSE(hello.agentVersion.empty());

  host.exec(ExecRequest{.id = 1,
                        .command = {"sh", "-c", "read x; echo out:$x; echo err >&2; exit 3"},
                        .stdin = true})
      .wait(ws);
  host.sendStdin(1, "ping\n", true).wait(ws);
  std::string out, err;
  for (;;) {
    auto event = host.next().wait(ws);
    ASSERT_TRUE(event.has_value());
    if (auto* o = std::get_if<Output>(&*event)) {
      (o->kind == OutputKind::kStdout ? out : err) += o->data;
    } else if (auto* e = std::get_if<Exit>(&*event)) {
      EXPECT_EQ(e->streamId, 1u);
      EXPECT_EQ(e->code, 3);
      break;
    }
  }
  EXPECT_EQ(out, "out:ping\n");
  EXPECT_EQ(err, "err\n");

  host.powerOff().wait(ws);
  auto status = agent.exited().wait(ws);
  EXPECT_EQ(status.code, 0);
  EXPECT_FALSE(host.next().wait(ws).has_value());
}

}  // namespace
}  // namespace fcvm::agent
