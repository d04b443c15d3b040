// One VM's life inside its worker, once QEMU is started: the guest agent's handshake, the
// container's run, its output (to the container log, a foreground sink and `logs -f` followers),
// exec streams, health checks, stop, and the final state. Every state change is reported to the
// supervisor through WorkerEvents; the final one is also written to a file, so a supervisor that
// was down at that moment still learns how the VM ended.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <chrono>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/messages.h"
#include "base/rate_limit.h"
#include "base/unique_fd.h"
#include "ipc/container_log.h"
#include "ipc/vm_spec.h"
#include "ipc/worker.capnp.h"
#include "worker/agent_channel.h"
#include "worker/qmp_client.h"
#include "worker/vm_memory.h"
#include "worker/vmm.h"

namespace fcvm::worker {

struct ExitStatus {
  int32_t code = 0;
  int32_t signal = 0;
};

struct WorkerState {
  rpc::VmState state = rpc::VmState::BOOTING;
  rpc::Health health = rpc::Health::UNKNOWN;
  std::string reason;
  std::optional<int32_t> exitCode;
};

// A clone: what it is restored from, and who it becomes.
struct RestoreFrom {
  UniqueFd state;          // the snapshot's device state
  agent::Resume identity;  // its clock is set when the guest resumes
  // A start-up snapshot's clone: its container starts (from the plan) once the guest resumed.
  bool startContainer = false;
};

// The three files a snapshot is written into (the supervisor's staging).
struct SnapshotFiles {
  UniqueFd state, memory, disk;
};

struct SnapshotTaken {
  uint64_t pauseNs = 0;      // the guest was paused this long (QMP stop to cont)
  uint64_t memoryBytes = 0;  // guest memory copied (the data of the sparse image)
};

// What the worker prepared before its event loop: the VMM running, the control socket listening.
struct RunnerParts {
  std::string vmName;
  std::unique_ptr<VmmProcess> vmm;
  kj::Own<kj::ConnectionReceiver> control;  // the VMM connects the guest's fcvm.control port here
  agent::RunPlan plan;
  std::vector<std::string> healthCheck;     // run in the container; empty: healthy once started
  std::optional<ipc::HttpCheck> httpCheck;  // a GET from the host; with healthCheck, both count
  std::filesystem::path containerLog;
  uint64_t containerLogCap = ipc::kDefaultContainerLogCap;  // bytes on disk at most
  std::filesystem::path finalStateFile;
  std::chrono::seconds bootDeadline{300};
  kj::Own<kj::ConnectionReceiver> qmp;  // the VMM's monitor connects here
  std::filesystem::path memoryFile;     // guest RAM, which a snapshot copies
  std::filesystem::path rootDisk;       // the VM's disk, which a snapshot reflinks
  std::optional<RestoreFrom> restore;   // set for a clone
};

class VmRunner : private kj::TaskSet::ErrorHandler {
 public:
  VmRunner(kj::AsyncIoContext& io, RunnerParts parts);
  ~VmRunner();
  VmRunner(const VmRunner&) = delete;
  VmRunner& operator=(const VmRunner&) = delete;

  // The first call starts the container; every call reports the current state to `events`.
  void attach(rpc::WorkerEvents::Client events, kj::Maybe<rpc::OutputSink::Client> output);
  // The container's exit status once the VM has powered off; rejects if the VM failed.
  kj::Promise<ExitStatus> wait();
  kj::Promise<rpc::Process::Client> exec(ipc::ExecSpec spec,
                                         kj::Maybe<rpc::OutputSink::Client> output);
  kj::Promise<void> logs(bool follow, rpc::OutputSink::Client output);
  // Asks the guest to power off; kills QEMU after `grace`. Resolves once the VM has ended.
  kj::Promise<void> stop(std::chrono::milliseconds grace);
  // Resolves once the VM has ended and its final state was reported (or could not be).
  kj::Promise<void> finished();
  // Snapshots the running VM: the agent freezes the guest's file systems, QEMU pauses and saves
  // its device state into `state`, guest memory is copied into `memory` and the disk reflinked
  // into `disk`, then the VM resumes and the guest thaws. The VM goes on however this ends.
  kj::Promise<SnapshotTaken> snapshot(SnapshotFiles files);
  // The same, once, at the moment the booted guest is ready for its container and before it gets
  // it: a start-up snapshot. Must come before attach(); the container starts after it however
  // it ends.
  kj::Promise<SnapshotTaken> snapshotBeforeContainer(kj::Promise<SnapshotFiles> files);
  // The VM's memory: the VMM's from /proc, the guest's from `cat /proc/meminfo` in the guest OS,
  // given up after kGuestMemoryTimeout (a busy or hostile guest cannot hold inspect up).
  kj::Promise<VmMemoryReport> memory();

  // For the Process capabilities exec() hands out.
  kj::Promise<void> writeStdin(uint32_t id, std::string data, bool eof);
  kj::Promise<void> resize(uint32_t id, uint16_t rows, uint16_t cols);
  kj::Promise<ExitStatus> waitExec(uint32_t id);
  void releaseExec(uint32_t id);

  const WorkerState& state() const { return state_; }

 private:
  // The agent's own log lines reach the worker's log at this rate at most, after a burst.
  static constexpr double kAgentLinesPerSecond = 20;
  static constexpr double kAgentLineBurst = 200;
  struct ExecStream;
  struct Follower;

  kj::Promise<uint32_t> startExec(ipc::ExecSpec spec, kj::Maybe<rpc::OutputSink::Client> output);
  kj::Promise<void> runGuest();
  kj::Promise<void> restoreGuest();
  kj::Promise<void> startContainer();
  kj::Promise<void> takeStartupSnapshot();
  kj::Promise<SnapshotTaken> takeSnapshot(SnapshotFiles files);
  kj::Promise<void> withBootDeadline(kj::Promise<void> start);
  kj::Promise<void> pump();
  kj::Promise<void> handle(AgentEvent event);
  kj::Promise<void> containerOutput(agent::OutputKind kind, std::string data);
  void containerStarted();
  kj::Promise<void> healthLoop(unsigned failures);
  kj::Promise<bool> probeHealth();
  bool hasHealthCheck() const { return !parts_.healthCheck.empty() || parts_.httpCheck; }
  kj::Promise<void> watchVmm();
  void vmEnded(int vmmStatus);
  void fail(const std::string& reason);  // records why, then kills QEMU; vmEnded() follows
  void setState(rpc::VmState state, rpc::Health health);
  void report();
  void writeFinalState() const;
  void drain(Follower& follower);
  ExecStream& stream(uint32_t id);
  void taskFailed(kj::Exception&& exception) override;

  kj::AsyncIoContext& io_;
  RunnerParts parts_;
  kj::UnixEventPort::FdObserver vmmExit_;
  ipc::ContainerLogWriter log_;
  RateLimit agentLogLimit_{kAgentLineBurst, kAgentLinesPerSecond};
  WorkerState state_;
  kj::Maybe<rpc::WorkerEvents::Client> events_;
  kj::Maybe<rpc::OutputSink::Client> output_;  // a foreground run's sink
  bool started_ = false;
  bool ended_ = false;
  bool stopRequested_ = false;
  std::string failure_;  // why the VM is being failed, set before QEMU is killed
  std::optional<ExitStatus> containerExit_;
  kj::Own<AgentChannel> channel_;
  kj::Own<QmpClient> qmp_;
  kj::ForkedPromise<void> qmpReady_;
  bool containerRunningSeen_ = false;
  bool snapshotting_ = false;
  kj::Own<kj::PromiseFulfiller<agent::Frozen>> frozenFulfiller_;  // a snapshot awaits the freeze
  // A start-up snapshot asked for: its files, and who waits for it.
  kj::Maybe<kj::Promise<SnapshotFiles>> startupFiles_;
  kj::Own<kj::PromiseFulfiller<SnapshotTaken>> startupTaken_;
  kj::Own<kj::PromiseFulfiller<void>> agentReadyFulfiller_;
  kj::ForkedPromise<void> agentReady_;
  kj::Own<kj::PromiseFulfiller<void>> containerRunningFulfiller_;
  kj::ForkedPromise<void> containerRunning_;  // exec into the container waits for it
  // Fulfilled once the agent channel is read to its end (or failed): what the guest sent before
  // it went down is still in the socket when the VMM's exit is seen.
  kj::Own<kj::PromiseFulfiller<void>> drainedFulfiller_;
  kj::ForkedPromise<void> drained_;
  kj::Own<kj::PromiseFulfiller<void>> endedFulfiller_;
  kj::ForkedPromise<void> endedPromise_;
  kj::Promise<void> reporting_ = kj::READY_NOW;  // state reports, in order
  std::map<uint32_t, kj::Own<ExecStream>> execs_;
  uint32_t nextExecId_ = 1;
  std::list<kj::Own<Follower>> followers_;
  kj::TaskSet tasks_{*this};
};

}  // namespace fcvm::worker
