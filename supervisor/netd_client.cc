#include "supervisor/netd_client.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "base/error.h"
#include "base/install_layout.h"
#include "base/process_identity.h"
#include "base/spawn.h"
#include "ipc/file_handle.h"
#include "ipc/rpc_error.h"
#include "supervisor/worker_launcher.h"

namespace fcvm::supervisor {
namespace {

// netd answers each createNetwork with the TAP's fd.
constexpr unsigned kNetdFds = 1;

}  // namespace

NetdClient::NetdClient(kj::AsyncIoContext& io, Paths paths) : io_(io), paths_(std::move(paths)) {}

NetdClient::~NetdClient() = default;

void NetdClient::taskFailed(kj::Exception&& e) {
  spdlog::warn("netd: {}", e.getDescription().cStr());
}

void NetdClient::watch() {
  exitObserver_ = kj::heap<kj::UnixEventPort::FdObserver>(
      io_.unixEventPort, pidfd_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
  watching_ = exitObserver_->whenBecomesReadable()
                  .then([this] {
                    ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), nullptr, WEXITED | WNOHANG);
                    spdlog::warn("fcvm-netd (pid {}) exited; the next network starts it again",
                                 process_.pid);
                    netd_ = nullptr;
                    // Not from inside the observer's own callback; and not if another netd has
                    // been taken on meanwhile.
                    tasks_.add(kj::evalLater([this, generation = generation_] {
                      if (generation == generation_) forget();
                    }));
                  })
                  .eagerlyEvaluate([](kj::Exception&& e) {
                    spdlog::warn("netd: {}", e.getDescription().cStr());
                  });
}

void NetdClient::forget() {
  netd_ = nullptr;
  watching_ = nullptr;
  exitObserver_ = nullptr;  // before its fd closes
  connection_ = nullptr;
  pidfd_.reset();
  ++generation_;
}

bool NetdClient::adoptServing() {
  auto socketPath = paths_.runtimeDir / "netd.sock";
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (!probe || socketPath.string().size() >= sizeof address.sun_path) return false;
  std::strncpy(address.sun_path, socketPath.c_str(), sizeof address.sun_path - 1);
  if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    return false;  // none serves (a stale socket file is replaced by the next netd)
  }
  ucred peer{};
  socklen_t length = sizeof peer;
  if (::getsockopt(probe.get(), SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0 ||
      peer.uid != ::geteuid()) {
    return false;
  }
  auto startTime = processStartTime(peer.pid);
  if (!startTime) return false;
  ipc::ProcessId process{peer.pid, 0, *startTime};
  auto pidfd = openPidfd(process);
  if (!pidfd) return false;
  kj::Own<ipc::RpcClient> connection;
  try {
    connection = kj::heap<ipc::RpcClient>(io_, socketPath, kNetdFds);
  } catch (const Error& e) {
    spdlog::warn("fcvm-netd (pid {}) cannot be reached: {}", process.pid, e.what());
    return false;
  }
  forget();
  connection_ = kj::mv(connection);
  netd_ = connection_->bootstrap<rpc::Netd>();
  process_ = process;
  pidfd_ = std::move(pidfd);
  watch();
  spdlog::info("adopted the running fcvm-netd, pid {}", process.pid);
  return true;
}

void NetdClient::adopt(const std::vector<std::string>& liveVms) {
  adoptServing();
  if (!std::filesystem::exists(paths_.dataDir / "netd")) return;  // never had a network
  tasks_.add(ensure().then([liveVms](rpc::Netd::Client netd) {
    auto request = netd.retainRequest();
    auto ids = request.initVmIds(static_cast<unsigned>(liveVms.size()));
    for (unsigned i = 0; i < ids.size(); ++i) ids.set(i, liveVms[i]);
    return request.send().ignoreResult();
  }));
}

kj::Promise<rpc::Netd::Client> NetdClient::ensure() {
  KJ_IF_MAYBE (netd, netd_) {
    return *netd;
  }
  if (::geteuid() != 0) {
    return ipc::rpcError(
        "--network bridged needs root's fcvm-supervisor; use --network rootless or none");
  }
  KJ_IF_MAYBE (starting, starting_) {
    return starting->addBranch().then([this]() -> kj::Promise<rpc::Netd::Client> {
      KJ_IF_MAYBE (netd, netd_) {
        return *netd;
      }
      return ipc::rpcError("fcvm-netd did not start");
    });
  }
  // One that a supervisor killed right after starting it left running: it is this one's.
  if (adoptServing()) {
    KJ_IF_MAYBE (netd, netd_) {
      return *netd;
    }
  }
  SpawnSpec spec;
  spec.argv = {siblingBinary("fcvm-netd", "FCVM_NETD_BIN").string(), "--data-dir",
               paths_.dataDir.string(), "--runtime-dir", paths_.runtimeDir.string()};
  spec.env = environmentWith({});
  auto started =
      launchDaemon(io_, std::move(spec), (paths_.logDir() / "netd.log").string(), "fcvm-netd")
          .then([this](LaunchedProcess launched) {
            forget();
            process_ = launched.identity;
            pidfd_ = std::move(launched.pidfd);
            connection_ = kj::heap<ipc::RpcClient>(io_, paths_.runtimeDir / "netd.sock", kNetdFds);
            netd_ = connection_->bootstrap<rpc::Netd>();
            watch();
            spdlog::info("started fcvm-netd, pid {}", process_.pid);
          })
          .eagerlyEvaluate(nullptr)
          .fork();
  auto branch = started.addBranch();
  starting_ = kj::mv(started);
  return branch.then(
      [this]() -> kj::Promise<rpc::Netd::Client> {
        tasks_.add(kj::evalLater([this] { starting_ = nullptr; }));
        KJ_IF_MAYBE (netd, netd_) {
          return *netd;
        }
        return ipc::rpcError("fcvm-netd did not start");
      },
      [this](kj::Exception&& e) -> kj::Promise<rpc::Netd::Client> {
        tasks_.add(kj::evalLater([this] { starting_ = nullptr; }));
        return kj::mv(e);
      });
}

kj::Promise<VmNetwork> NetdClient::createNetwork(const std::string& vmId,
                                                 const std::vector<ipc::PortMapping>& ports,
                                                 const std::vector<std::string>& dns) {
  return ensure().then([vmId, ports, dns](rpc::Netd::Client netd) {
    auto request = netd.createNetworkRequest();
    auto r = request.initRequest();
    r.setVmId(vmId);
    ipc::encodePorts(ports, r.initPorts(static_cast<unsigned>(ports.size())));
    auto resolvers = r.initDns(static_cast<unsigned>(dns.size()));
    for (unsigned i = 0; i < resolvers.size(); ++i) resolvers.set(i, dns[i]);
    return request.send().then([](auto reply) {
      auto info = reply.getInfo();
      auto network = kj::heap<VmNetwork>();
      network->netns = info.getNetns().cStr();
      network->hostIp = info.getHostIp().cStr();
      network->nsIp = info.getNsIp().cStr();
      network->guestIp = info.getGuestIp().cStr();
      return ipc::receiveFd(reply.getTap(), "the VM's TAP")
          .then([network = kj::mv(network)](UniqueFd tap) mutable {
            network->tap = std::move(tap);
            return std::move(*network);
          });
    });
  });
}

kj::Promise<void> NetdClient::destroyNetwork(const std::string& vmId) {
  return ensure()
      .then([vmId](rpc::Netd::Client netd) {
        auto request = netd.destroyNetworkRequest();
        request.setVmId(vmId);
        return request.send().ignoreResult();
      })
      .catch_([vmId](kj::Exception&& e) {
        spdlog::warn("VM {}: its network could not be removed: {}", vmId,
                     e.getDescription().cStr());
      });
}

}  // namespace fcvm::supervisor
