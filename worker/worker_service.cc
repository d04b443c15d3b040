#include "worker/worker_service.h"

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "ipc/file_handle.h"
#include "ipc/rpc_error.h"

namespace fcvm::worker {

kj::Promise<void> WorkerService::attach(AttachContext call) {
  auto params = call.getParams();
  kj::Maybe<rpc::OutputSink::Client> output;
  if (params.hasOutput()) output = params.getOutput();
  runner_.attach(params.getEvents(), kj::mv(output));
  return kj::READY_NOW;
}

kj::Promise<void> WorkerService::wait(WaitContext call) {
  call.allowCancellation();
  return runner_.wait().then([call](ExitStatus status) mutable {
    auto exit = call.getResults().initExit();
    exit.setCode(status.code);
    exit.setSignal(status.signal);
  });
}

kj::Promise<void> WorkerService::memory(MemoryContext call) {
  return runner_.memory().then([call](VmMemoryReport report) mutable {
    auto m = call.getResults().initMemory();
    if (report.guest) {
      m.setGuestReported(true);
      m.setGuestTotalBytes(report.guest->totalBytes);
      m.setGuestAvailableBytes(report.guest->availableBytes);
    }
    if (report.vmm) {
      m.setHostPssBytes(report.vmm->pssBytes);
      m.setHostAnonBytes(report.vmm->anonBytes);
    }
    m.setReason(report.reason);
  });
}

kj::Promise<void> WorkerService::exec(ExecContext call) {
  ipc::ExecSpec spec;
  try {
    spec = ipc::decodeExecSpec(call.getParams().getRequest());
  } catch (const Error& e) {
    return ipc::rpcError(kj::str(e.what()));
  }
  kj::Maybe<rpc::OutputSink::Client> output;
  if (call.getParams().hasOutput()) output = call.getParams().getOutput();
  return runner_.exec(kj::mv(spec), kj::mv(output))
      .then([call](rpc::Process::Client process) mutable {
        call.getResults().setProcess(kj::mv(process));
      });
}

kj::Promise<void> WorkerService::logs(LogsContext call) {
  call.allowCancellation();  // a `logs -f` reader may go away at any time
  auto params = call.getParams();
  return runner_.logs(params.getFollow(), params.getOutput());
}

kj::Promise<void> WorkerService::stop(StopContext call) {
  return runner_.stop(std::chrono::milliseconds(call.getParams().getTimeoutMs()));
}

namespace {

// The three files of a snapshot call, once each has arrived.
template <typename Params>
kj::Promise<SnapshotFiles> receiveSnapshotFiles(Params params) {
  if (!params.hasState() || !params.hasMemory() || !params.hasDisk()) {
    return ipc::rpcError("a snapshot needs its state, memory and disk files");
  }
  auto state = ipc::receiveFile(params.getState(), "the snapshot's state file");
  auto memory = ipc::receiveFile(params.getMemory(), "the snapshot's memory file");
  auto disk = ipc::receiveFile(params.getDisk(), "the snapshot's disk file");
  return state.then([memory = kj::mv(memory), disk = kj::mv(disk)](UniqueFd s) mutable {
    return memory.then([s = std::move(s), disk = kj::mv(disk)](UniqueFd m) mutable {
      return disk.then([s = std::move(s), m = std::move(m)](UniqueFd d) mutable {
        return SnapshotFiles{std::move(s), std::move(m), std::move(d)};
      });
    });
  });
}

template <typename Results>
void setTaken(Results results, const SnapshotTaken& taken, const std::string& restore) {
  results.setPauseNs(taken.pauseNs);
  results.setMemoryBytes(taken.memoryBytes);
  results.setRestore(restore);
}

}  // namespace

kj::Promise<void> WorkerService::snapshot(SnapshotContext call) {
  return receiveSnapshotFiles(call.getParams())
      .then([this](SnapshotFiles files) { return runner_.snapshot(std::move(files)); })
      .then([this, call](SnapshotTaken taken) mutable {
        setTaken(call.getResults(), taken, restoreInfo_);
      });
}

kj::Promise<void> WorkerService::snapshotBeforeContainer(SnapshotBeforeContainerContext call) {
  return runner_.snapshotBeforeContainer(receiveSnapshotFiles(call.getParams()))
      .then([this, call](SnapshotTaken taken) mutable {
        // Its clones start their own containers (worker_daemon.cc, prepareClone).
        auto restore = nlohmann::json::parse(restoreInfo_);
        restore["startup"] = true;
        setTaken(call.getResults(), taken, restore.dump());
      });
}

}  // namespace fcvm::worker
