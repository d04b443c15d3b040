#include "uffd-server/page_server.h"

#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>

#include "base/error.h"
#include "base/ids.h"
#include "ipc/file_handle.h"
#include "ipc/listening_socket.h"
#include "ipc/ready_pipe.h"
#include "ipc/rpc_error.h"
#include "ipc/rpc_server.h"
#include "ipc/uffd.capnp.h"
#include "uffd-server/firecracker_peers.h"
#include "uffd-server/memory_image.h"
#include "uffd-server/sealed_image.h"

namespace fcvm::uffd {
namespace {

constexpr uint64_t kPageSize = 4096;
// The supervisor sends no fds; one is allowed because Cap'n Proto 0.9 sends none (the memory
// image it asks for) on a connection that accepts none.
constexpr unsigned kRpcFds = 1;

struct ServerState {
  std::string snapshotId;
  SealedImage image;
  std::set<std::string> clones;
  FirecrackerPeers* peers = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> stop;
};

class PageServerService final : public rpc::PageServer::Server {
 public:
  explicit PageServerService(ServerState& state) : state_(state) {}

  kj::Promise<void> status(StatusContext call) override {
    auto s = call.getResults().initStatus();
    s.setSnapshotId(state_.snapshotId);
    auto clones = s.initClones(static_cast<unsigned>(state_.clones.size()));
    unsigned i = 0;
    for (const auto& id : state_.clones) clones.set(i++, id);
    s.setUffdPeers(state_.peers->active());
    s.setPagesServed(state_.peers->pagesServed());
    s.setMemoryBytes(state_.image.dataBytes);
    return kj::READY_NOW;
  }

  kj::Promise<void> attachClone(AttachCloneContext call) override {
    std::string id = call.getParams().getVmId().cStr();
    if (!isHexId(id)) return ipc::rpcError("attachClone: not a VM id");
    UniqueFd copy(::fcntl(state_.image.memfd.get(), F_DUPFD_CLOEXEC, 0));
    if (!copy) return ipc::rpcError(kj::str("dup the memory image: ", errnoText(errno).c_str()));
    state_.clones.insert(id);
    spdlog::info("clone {} attached ({} now)", id, state_.clones.size());
    call.getResults().setMemory(ipc::fileHandle(std::move(copy)));
    return kj::READY_NOW;
  }

  kj::Promise<void> detachClone(DetachCloneContext call) override {
    if (state_.clones.erase(call.getParams().getVmId().cStr()) != 0) {
      spdlog::info("clone {} detached ({} left)", call.getParams().getVmId().cStr(),
                   state_.clones.size());
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> retainClones(RetainClonesContext call) override {
    std::set<std::string> alive;
    for (auto id : call.getParams().getVmIds()) alive.insert(id.cStr());
    std::erase_if(state_.clones, [&](const std::string& id) { return alive.count(id) == 0; });
    return kj::READY_NOW;
  }

  kj::Promise<void> stop(StopContext) override {
    spdlog::info("stop requested");
    // runPageServer returns only once this answer has been written (see `stopped` there).
    return kj::evalLater([this] {
      if (state_.stop->isWaiting()) state_.stop->fulfill();
    });
  }

 private:
  ServerState& state_;
};

kj::Own<kj::ConnectionReceiver> wrap(kj::AsyncIoContext& io, ipc::ListeningSocket& socket) {
  return io.lowLevelProvider->wrapListenSocketFd(socket.releaseFd(),
                                                 kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                                     kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                                                     kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
}

// Accepts Firecracker peers; each connection goes to a thread of its own. `spare` is an fd kept
// for running out of them: a connection that cannot be accepted (EMFILE) is accepted into it and
// closed, rather than left pending with the socket readable forever.
kj::Promise<void> acceptPeers(kj::UnixEventPort::FdObserver& observer, int listenFd,
                              FirecrackerPeers& peers, UniqueFd& spare) {
  return observer.whenBecomesReadable().then([&observer, listenFd, &peers, &spare] {
    for (;;) {
      UniqueFd connection(::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC));
      if (connection) {
        peers.serve(std::move(connection));
        continue;
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        spdlog::warn("uffd socket: out of file descriptors; a peer is turned away");
        spare.reset();
        UniqueFd(::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC));
        spare.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        continue;
      }
      break;  // EAGAIN: all taken
    }
    return acceptPeers(observer, listenFd, peers, spare);
  });
}

}  // namespace

int runPageServer(const ServerOptions& options) {
  ServerState state;
  state.snapshotId = options.snapshotId;
  std::unique_ptr<MemoryImage> image;
  std::unique_ptr<ipc::ListeningSocket> rpcSocket, uffdSocket;
  try {
    UniqueFd file(::open(options.image.c_str(), O_RDONLY | O_CLOEXEC));
    if (!file) throw SysError(errno, "open " + options.image.string());
    state.image = loadSealedImage(file.get(), options.snapshotId);
    UniqueFd mapped(::fcntl(state.image.memfd.get(), F_DUPFD_CLOEXEC, 0));
    image = std::make_unique<MemoryImage>(std::move(mapped), kPageSize, options.snapshotId);
    rpcSocket = std::make_unique<ipc::ListeningSocket>(options.socket, 0600);
    uffdSocket = std::make_unique<ipc::ListeningSocket>(options.uffdSocket, 0600);
    checkSys(::chown(options.uffdSocket.c_str(), options.owner, static_cast<gid_t>(-1)), "chown {}",
             options.uffdSocket.string());
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    ipc::reportFailure(options.readyFd, e.what());
    return 1;
  }
  spdlog::info("snapshot {}: {} MiB resident of {} MiB", options.snapshotId,
               state.image.dataBytes >> 20, state.image.size >> 20);

  kj::UnixEventPort::captureSignal(SIGTERM);
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);  // the supervisor decides when serving ends, not a terminal
  auto io = kj::setupAsyncIo();
  FirecrackerPeers peers(*image, options.owner);
  state.peers = &peers;
  auto stop = kj::newPromiseAndFulfiller<void>();
  state.stop = kj::mv(stop.fulfiller);

  auto listener = wrap(io, *rpcSocket);
  ipc::RpcServer server(
      "page server socket",
      [&state](kj::AsyncIoStream&) -> capnp::Capability::Client {
        return kj::heap<PageServerService>(state);
      },
      capnp::ReaderOptions{}, kRpcFds);
  auto serving = server.listen(*listener);
  int uffdListen = uffdSocket->releaseFd();
  UniqueFd uffdListenOwner(uffdListen);
  kj::UnixEventPort::FdObserver observer(io.unixEventPort, uffdListen,
                                         kj::UnixEventPort::FdObserver::OBSERVE_READ);
  UniqueFd spare(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto accepting = acceptPeers(observer, uffdListen, peers, spare);

  ipc::reportReady(options.readyFd);
  auto terminated =
      io.unixEventPort.onSignal(SIGTERM).then([](siginfo_t) { spdlog::info("SIGTERM: stopping"); });
  // stop()'s answer is written a few continuations after `stop` is fulfilled; returning (and
  // exiting) before that would reset the supervisor's connection and fail its stop() call.
  // evalLast runs once those continuations, queued like all others, are done.
  auto stopped = stop.promise.then([] { return kj::evalLast([] {}); });
  stopped.exclusiveJoin(kj::mv(terminated))
      .exclusiveJoin(kj::mv(serving))
      .exclusiveJoin(kj::mv(accepting))
      .wait(io.waitScope);
  spdlog::info("fcvm-uffd-server for snapshot {} stopped", options.snapshotId);
  return 0;
}

}  // namespace fcvm::uffd
