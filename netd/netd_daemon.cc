#include "netd/netd_daemon.h"

#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include "base/error.h"
#include "base/unique_fd.h"
#include "ipc/file_handle.h"
#include "ipc/listening_socket.h"
#include "ipc/netd.capnp.h"
#include "ipc/ready_pipe.h"
#include "ipc/rpc_error.h"
#include "ipc/rpc_server.h"
#include "netd/networks.h"
#include "netd/request_decoder.h"

namespace fcvm::netd {
namespace {

// Requests are names and port lists; a TAP's fd goes back in each answer (Cap'n Proto 0.9 passes
// fds only on a connection that allows them).
constexpr uint64_t kMaxMessageWords = 64 * 1024;
constexpr unsigned kRpcFds = 1;

template <typename F>
kj::Promise<void> answer(F&& body) {
  try {
    body();
    return kj::READY_NOW;
  } catch (const Error& e) {
    return ipc::rpcError(e.what());
  }
}

class NetdService final : public rpc::Netd::Server {
 public:
  explicit NetdService(Networks& networks) : networks_(networks) {}

  kj::Promise<void> createNetwork(CreateNetworkContext call) override {
    return answer([&] {
      auto request = decodeNetworkRequest(call.getParams().getRequest());
      auto [plan, tap] = networks_.create(request);
      auto results = call.getResults();
      auto info = results.initInfo();
      info.setNetns(plan.netns);
      info.setHostIp(plan.hostIp);
      info.setNsIp(plan.nsIp);
      info.setGuestIp(kGuestAddress);
      info.setGateway(kGatewayAddress);
      info.setPrefixLength(kGuestPrefix);
      results.setTap(ipc::fileHandle(std::move(tap)));
    });
  }
  kj::Promise<void> destroyNetwork(DestroyNetworkContext call) override {
    return answer([&] { networks_.destroy(call.getParams().getVmId().cStr()); });
  }
  kj::Promise<void> retain(RetainContext call) override {
    return answer([&] {
      std::vector<std::string> ids;
      for (auto id : call.getParams().getVmIds()) ids.emplace_back(id.cStr());
      networks_.retain(ids);
    });
  }
  kj::Promise<void> list(ListContext call) override {
    auto ids = networks_.list();
    auto out = call.getResults().initVmIds(static_cast<unsigned>(ids.size()));
    for (unsigned i = 0; i < out.size(); ++i) out.set(i, ids[i]);
    return kj::READY_NOW;
  }

 private:
  Networks& networks_;
};

}  // namespace

int removeAllNetworks(const NetdOptions& options) {
  Networks networks(NetworkRecords(options.paths.dataDir / "netd"),
                    instanceTag(options.paths.dataDir));
  networks.retain({});
  return 0;
}

int runNetd(const NetdOptions& options) {
  std::unique_ptr<Networks> networks;
  std::unique_ptr<ipc::ListeningSocket> socket;
  UniqueFd lock;
  try {
    if (::geteuid() != 0) throw Error("fcvm-netd needs root: it changes the host's networking");
    // One netd per runtime dir: a second one (a supervisor killed while its netd was starting,
    // and the next one starting another) would take the socket from the first and leave it
    // running unreachable. Held until this process ends.
    auto lockPath = options.paths.runtimeDir / "netd.lock";
    lock = UniqueFd(::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!lock) throw SysError(errno, "open " + lockPath.string());
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
      throw Error(fmt::format("another fcvm-netd serves {} (it holds {})",
                              options.paths.runtimeDir.string(), lockPath.string()));
    }
    networks = std::make_unique<Networks>(NetworkRecords(options.paths.dataDir / "netd"),
                                          instanceTag(options.paths.dataDir));
    socket = std::make_unique<ipc::ListeningSocket>(options.paths.runtimeDir / "netd.sock", 0600);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    ipc::reportFailure(options.readyFd, e.what());
    return 1;
  }
  kj::UnixEventPort::captureSignal(SIGTERM);
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);
  auto io = kj::setupAsyncIo();
  auto listener = io.lowLevelProvider->wrapListenSocketFd(
      socket->releaseFd(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                               kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                               kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
  ipc::RpcServer server(
      "netd socket",
      [&networks](kj::AsyncIoStream& peer) -> capnp::Capability::Client {
        ucred cred{};
        uint length = sizeof cred;
        peer.getsockopt(SOL_SOCKET, SO_PEERCRED, &cred, &length);
        if (cred.uid != ::geteuid()) {
          throw Error(fmt::format("uid {} may not use fcvm-netd", cred.uid));
        }
        return kj::heap<NetdService>(*networks);
      },
      capnp::ReaderOptions{kMaxMessageWords, 16}, kRpcFds);
  auto serving = server.listen(*listener);
  spdlog::info("fcvm-netd serving on {} ({} networks on record)",
               (options.paths.runtimeDir / "netd.sock").string(), networks->list().size());
  ipc::reportReady(options.readyFd);
  io.unixEventPort.onSignal(SIGTERM)
      .then([](siginfo_t) { spdlog::info("SIGTERM: stopping"); })
      .exclusiveJoin(kj::mv(serving))
      .wait(io.waitScope);
  return 0;
}

}  // namespace fcvm::netd
