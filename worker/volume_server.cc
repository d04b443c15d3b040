#include "worker/volume_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "base/install_layout.h"

namespace fcvm::worker {
namespace {

// The server's fds: the directory, its end of the channel, the ready pipe, its log.
constexpr int kServerRootFd = 3;
constexpr int kServerStreamFd = 4;
constexpr int kServerReadyFd = 5;
// Sandbox set-up is a few mounts and a pivot_root; anything near this long is a hung server.
constexpr int kReadyTimeoutMs = 30'000;

}  // namespace

VolumeServer::VolumeServer(size_t index, const ipc::VolumeMapping& volume, int dirFd,
                           const Credentials& owner, int logFd)
    : tag_("v" + std::to_string(index)) {
  std::string what = fmt::format("--map {}", volume.hostPath);
  // The namespaces the sandbox needs can only be made with privilege: a user's own supervisor
  // has none to give.
  if (::geteuid() != 0) {
    throw Error(fmt::format("{}: volumes need root's fcvm-supervisor (this one runs as uid {})",
                            what, ::geteuid()));
  }
  int pair[2];
  checkSys(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), "socketpair for {}", what);
  UniqueFd serverEnd(pair[0]);
  vmEnd_.reset(pair[1]);
  int ready[2];
  checkSys(::pipe2(ready, O_CLOEXEC), "pipe for {}", what);
  UniqueFd readyRead(ready[0]), readyWrite(ready[1]);

  SpawnSpec spec;
  spec.argv = {siblingBinary("fuse-pipe", "FCVM_FUSE_PIPE_BIN").string(),
               "serve",
               "--root-fd",
               std::to_string(kServerRootFd),
               "--stream-fd",
               std::to_string(kServerStreamFd),
               "--ready-fd",
               std::to_string(kServerReadyFd),
               "--sandbox"};
  if (volume.readOnly) spec.argv.push_back("--read-only");
  if (owner.uid != 0) {
    std::string user = fmt::format("{}:{}:", owner.uid, owner.gid);
    for (size_t i = 0; i < owner.groups.size(); ++i) {
      user += fmt::format("{}{}", i == 0 ? "" : ",", owner.groups[i]);
    }
    spec.argv.insert(spec.argv.end(), {"--user", user});
  }
  spec.env = {};  // nothing of ours: the server needs no environment
  spec.fds = {{kServerRootFd, dirFd},
              {kServerStreamFd, serverEnd.get()},
              {kServerReadyFd, readyWrite.get()},
              {2, logFd}};
  spec.newSession = true;
  spec.dieWithParent = true;  // a volume never outlives its VM's worker
  spec.noNewPrivs = true;
  spec.newNamespaces = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
  server_ = spawn(spec);
  serverEnd.reset();
  readyWrite.reset();

  // "1" once it serves; "error: <why>" (or nothing) if it could not.
  pollfd p{readyRead.get(), POLLIN, 0};
  int n = retryEintr([&] { return ::poll(&p, 1, kReadyTimeoutMs); });
  if (n == 0) {
    throw Error(fmt::format("{}: the fuse-pipe server did not start within {} s", what,
                            kReadyTimeoutMs / 1000));
  }
  char buf[1024];
  ssize_t got = n == 1 ? retryEintr([&] { return ::read(readyRead.get(), buf, sizeof buf); }) : 0;
  std::string answer(buf, got > 0 ? static_cast<size_t>(got) : 0);
  if (answer == "1") return;
  if (answer.starts_with("error: ")) {
    answer = answer.substr(7, answer.find('\n') - 7);
  } else {
    auto status = server_.waitFor(std::chrono::seconds(5));
    answer = "it exited: " + (status ? describeWaitStatus(*status) : std::string("no answer"));
  }
  throw Error(fmt::format("{}: the fuse-pipe server could not start: {}", what, answer));
}

}  // namespace fcvm::worker
