#include "worker/vm_runner.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file_copy.h"
#include "ipc/agent.capnp.h"
#include "ipc/rpc_error.h"
#include "worker/http_probe.h"
#include "worker/vm_snapshot.h"

namespace fcvm::worker {
namespace {

// After the container exits the agent powers the guest off by itself; a guest that does not
// within this time is killed.
constexpr auto kPowerOffDeadline = 30 * kj::SECONDS;
// Health checks: every second until the first pass, then every ten; three failures in a row
// make a healthy container unhealthy.
constexpr auto kHealthRetry = 1 * kj::SECONDS;
constexpr auto kHealthInterval = 10 * kj::SECONDS;
constexpr unsigned kHealthFailures = 3;
// An HTTP health check's answer must come within this time.
constexpr auto kHttpTimeout = 5 * kj::SECONDS;
constexpr auto kGuestMemoryTimeout = 5 * kj::SECONDS;
// A `logs -f` reader that falls this far behind is cut off rather than buffered without end.
constexpr size_t kFollowerBacklogBytes = 16 << 20;
// A guest that does not answer a freeze within this time fails the snapshot (and is thawed).
constexpr auto kFreezeDeadline = 30 * kj::SECONDS;
// The exit status reported for a container the user stopped (podman's "killed").
constexpr ExitStatus kStoppedStatus{137, 9};

int64_t realtimeNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

kj::Promise<void> writeTo(rpc::OutputSink::Client& sink, rpc::OutputKind kind,
                          const std::string& data) {
  auto request = sink.writeRequest();
  request.setKind(kind);
  request.setData(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(data.data()), data.size()));
  return request.send().ignoreResult();
}

rpc::OutputKind toWire(agent::OutputKind kind) {
  return kind == agent::OutputKind::kStdout ? rpc::OutputKind::STDOUT : rpc::OutputKind::STDERR;
}

std::string describeWaitStatus(int status) {
  if (WIFEXITED(status)) return fmt::format("exit code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("signal {}", WTERMSIG(status));
  return fmt::format("status {}", status);
}

const char* stateName(rpc::VmState s) {
  switch (s) {
    case rpc::VmState::CREATING:
      return "creating";
    case rpc::VmState::BOOTING:
      return "booting";
    case rpc::VmState::RUNNING:
      return "running";
    case rpc::VmState::HEALTHY:
      return "healthy";
    case rpc::VmState::STOPPED:
      return "stopped";
    case rpc::VmState::FAILED:
      return "failed";
    case rpc::VmState::RESTARTING:  // the supervisor's, never a worker's
      return "restarting";
  }
  return "unknown";
}

// The Process capability of one exec stream.
class ExecProcess final : public rpc::Process::Server {
 public:
  ExecProcess(VmRunner& runner, uint32_t id) : runner_(runner), id_(id) {}
  ~ExecProcess() { runner_.releaseExec(id_); }

  kj::Promise<void> writeStdin(WriteStdinContext call) override {
    auto params = call.getParams();
    auto data = params.getData();
    if (data.size() > agent::wire::MAX_DATA_BYTES) {
      return ipc::rpcError("stdin chunk larger than 64 KiB");
    }
    return runner_.writeStdin(id_, std::string(data.asChars().begin(), data.size()),
                              params.getEof());
  }
  kj::Promise<void> resize(ResizeContext call) override {
    return runner_.resize(id_, call.getParams().getRows(), call.getParams().getCols());
  }
  kj::Promise<void> wait(WaitContext call) override {
    call.allowCancellation();
    return runner_.waitExec(id_).then([call](ExitStatus status) mutable {
      auto exit = call.getResults().initExit();
      exit.setCode(status.code);
      exit.setSignal(status.signal);
    });
  }

 private:
  VmRunner& runner_;
  uint32_t id_;
};

// Keeps what an exec of the worker's own prints, up to a bound; more fails the write (and the
// exec's output is then dropped).
class BoundedCapture final : public rpc::OutputSink::Server {
 public:
  struct Text : public kj::Refcounted {
    std::string bytes;
    bool overflowed = false;
  };
  BoundedCapture(kj::Own<Text> text, size_t limit) : text_(kj::mv(text)), limit_(limit) {}

  kj::Promise<void> write(WriteContext call) override {
    auto data = call.getParams().getData();
    if (text_->bytes.size() + data.size() > limit_) {
      text_->overflowed = true;
      return ipc::rpcError("output over its bound");
    }
    text_->bytes.append(data.asChars().begin(), data.size());
    return kj::READY_NOW;
  }

 private:
  kj::Own<Text> text_;
  size_t limit_;
};

}  // namespace

struct VmRunner::ExecStream {
  kj::Maybe<rpc::OutputSink::Client> output;
  std::optional<ExitStatus> exit;
  std::string failure;  // set when the VM ended before the command did
  kj::Own<kj::PromiseFulfiller<void>> doneFulfiller;
  kj::ForkedPromise<void> done;

  explicit ExecStream(kj::Maybe<rpc::OutputSink::Client> sink,
                      kj::PromiseFulfillerPair<void> pair = kj::newPromiseAndFulfiller<void>())
      : output(kj::mv(sink)), doneFulfiller(kj::mv(pair.fulfiller)), done(pair.promise.fork()) {}
};

// Refcounted: an in-flight write keeps its follower alive after a reader that went away dropped it.
struct VmRunner::Follower : public kj::Refcounted {
  rpc::OutputSink::Client output;
  std::deque<ipc::LogRecord> queue;
  size_t queuedBytes = 0;
  bool replaying = true;  // the log file is still being sent; live records wait behind it
  bool writing = false;
  bool ended = false;  // the container's output has ended
  kj::Own<kj::PromiseFulfiller<void>> doneFulfiller;

  explicit Follower(rpc::OutputSink::Client sink) : output(kj::mv(sink)) {}
};

VmRunner::VmRunner(kj::AsyncIoContext& io, RunnerParts parts)
    : io_(io),
      parts_(kj::mv(parts)),
      vmmExit_(io.unixEventPort, parts_.vmm->pidfd(), kj::UnixEventPort::FdObserver::OBSERVE_READ),
      log_(parts_.containerLog, parts_.containerLogCap),
      qmpReady_(nullptr),
      agentReady_(nullptr),
      containerRunning_(nullptr),
      drained_(nullptr),
      endedPromise_(nullptr) {
  auto drained = kj::newPromiseAndFulfiller<void>();
  drainedFulfiller_ = kj::mv(drained.fulfiller);
  drained_ = drained.promise.fork();
  auto ready = kj::newPromiseAndFulfiller<void>();
  agentReadyFulfiller_ = kj::mv(ready.fulfiller);
  agentReady_ = ready.promise.fork();
  auto running = kj::newPromiseAndFulfiller<void>();
  containerRunningFulfiller_ = kj::mv(running.fulfiller);
  containerRunning_ = running.promise.fork();
  auto ended = kj::newPromiseAndFulfiller<void>();
  endedFulfiller_ = kj::mv(ended.fulfiller);
  endedPromise_ = ended.promise.fork();
  tasks_.add(watchVmm());
  kj::Promise<void> qmp = kj::READY_NOW;
  if (parts_.qmp) {
    qmp = parts_.qmp->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
      qmp_ = kj::heap<QmpClient>(kj::mv(stream));
      return qmp_->handshake();
    });
  }
  qmpReady_ = qmp.fork();
}

VmRunner::~VmRunner() = default;

void VmRunner::taskFailed(kj::Exception&& e) {
  if (drainedFulfiller_->isWaiting()) drainedFulfiller_->fulfill();
  if (!ended_) fail(e.getDescription().cStr());
}

void VmRunner::attach(rpc::WorkerEvents::Client events, kj::Maybe<rpc::OutputSink::Client> output) {
  events_ = kj::mv(events);
  KJ_IF_MAYBE (sink, output) {
    output_ = kj::mv(*sink);
  }
  report();
  if (!started_) {
    started_ = true;
    tasks_.add(runGuest());
  }
}

kj::Promise<void> VmRunner::withBootDeadline(kj::Promise<void> start) {
  auto tooLate = io_.provider->getTimer()
                     .afterDelay(parts_.bootDeadline.count() * kj::SECONDS)
                     .then([this]() -> kj::Promise<void> {
                       return ipc::rpcError(kj::str("the guest agent did not answer within ",
                                                    parts_.bootDeadline.count(), " s"));
                     });
  return start.exclusiveJoin(kj::mv(tooLate));
}

kj::Promise<void> VmRunner::runGuest() {
  if (parts_.restore) return restoreGuest();
  auto handshake = parts_.control->accept()
                       .then([this](kj::Own<kj::AsyncIoStream> stream) {
                         channel_ =
                             kj::heap<AgentChannel>(kj::mv(stream), "fcvm-worker " FCVM_VERSION);
                         return channel_->handshake();
                       })
                       .then([](agent::Hello hello) {
                         spdlog::info("guest agent {} answered", hello.agentVersion);
                       });
  return withBootDeadline(kj::mv(handshake))
      .then([this] {
        // From here the agent's events flow (a freeze's answer among them).
        tasks_.add(pump());
        return takeStartupSnapshot();
      })
      .then([this] { return startContainer(); });
}

kj::Promise<void> VmRunner::startContainer() {
  parts_.plan.clockRealtimeNs = realtimeNs();
  return channel_->runContainer(parts_.plan).then([this] {
    agentReadyFulfiller_->fulfill();
    setState(rpc::VmState::RUNNING,
             hasHealthCheck() ? rpc::Health::STARTING : rpc::Health::UNKNOWN);
  });
}

kj::Promise<void> VmRunner::takeStartupSnapshot() {
  kj::Promise<SnapshotFiles> files = nullptr;
  KJ_IF_MAYBE (f, startupFiles_) {
    files = kj::mv(*f);
    startupFiles_ = nullptr;
  } else {
    return kj::READY_NOW;
  }
  spdlog::info("start-up snapshot: the guest is ready for its container");
  return qmpReady_.addBranch()
      .then([files = kj::mv(files)]() mutable { return kj::mv(files); })
      .then([this](SnapshotFiles files) { return takeSnapshot(std::move(files)); })
      .then(
          [this](SnapshotTaken taken) {
            if (startupTaken_->isWaiting()) startupTaken_->fulfill(kj::mv(taken));
          },
          [this](kj::Exception&& e) {
            // The run goes on without: it only starts its container a little later.
            if (startupTaken_->isWaiting()) startupTaken_->reject(kj::mv(e));
          });
}

kj::Promise<SnapshotTaken> VmRunner::snapshotBeforeContainer(kj::Promise<SnapshotFiles> files) {
  if (started_ || startupTaken_) {
    return ipc::rpcError("a start-up snapshot must be asked for once, before the VM is attached");
  }
  auto taken = kj::newPromiseAndFulfiller<SnapshotTaken>();
  startupTaken_ = kj::mv(taken.fulfiller);
  startupFiles_ = kj::mv(files);
  return kj::mv(taken.promise);
}

// A clone: QEMU loads the snapshot's device state and resumes the guest, whose frozen agent meets
// this worker as a new host and takes the clone's identity. The clone of a VM snapshotted by
// `snapshot create` thaws and its container runs on; a start-up snapshot's clone starts its own.
kj::Promise<void> VmRunner::restoreGuest() {
  auto restored =
      qmpReady_.addBranch()
          .then([this] { return loadDeviceState(*qmp_, parts_.restore->state.get()); })
          .then([this] {
            parts_.restore->state.reset();
            return qmp_->execute("cont").ignoreResult();
          })
          .then([this] { return parts_.control->accept(); })
          .then([this](kj::Own<kj::AsyncIoStream> stream) {
            channel_ = kj::heap<AgentChannel>(kj::mv(stream), "fcvm-worker " FCVM_VERSION);
            return channel_->handshake();
          })
          .then([this](agent::Hello hello) {
            spdlog::info("restored guest agent {} answered", hello.agentVersion);
            parts_.restore->identity.realtimeNs = realtimeNs();
            return channel_->resume(parts_.restore->identity, !parts_.restore->startContainer);
          });
  return withBootDeadline(kj::mv(restored)).then([this] {
    tasks_.add(pump());
    if (parts_.restore->startContainer) return startContainer();
    agentReadyFulfiller_->fulfill();
    setState(rpc::VmState::RUNNING,
             hasHealthCheck() ? rpc::Health::STARTING : rpc::Health::UNKNOWN);
    containerStarted();  // it has been running since before the snapshot
    return kj::Promise<void>(kj::READY_NOW);
  });
}

kj::Promise<void> VmRunner::pump() {
  return channel_->next().then([this](std::optional<AgentEvent> event) -> kj::Promise<void> {
    if (!event) {  // the agent closed the channel: the guest powers off
      if (drainedFulfiller_->isWaiting()) drainedFulfiller_->fulfill();
      return kj::READY_NOW;
    }
    return handle(kj::mv(*event)).then([this] { return pump(); });
  });
}

kj::Promise<void> VmRunner::handle(AgentEvent event) {
  if (auto* output = std::get_if<agent::Output>(&event)) {
    if (output->streamId == agent::kContainerStream) {
      return containerOutput(output->kind, kj::mv(output->data));
    }
    auto it = execs_.find(output->streamId);
    if (it == execs_.end()) return kj::READY_NOW;
    KJ_IF_MAYBE (sink, it->second->output) {
      uint32_t id = output->streamId;
      return writeTo(*sink, toWire(output->kind), output->data)
          .catch_([this, id](kj::Exception&& e) {
            // The client went away; the command runs on, its output is dropped.
            spdlog::info("exec {}: output sink failed: {}", id, e.getDescription().cStr());
            auto found = execs_.find(id);
            if (found != execs_.end()) found->second->output = nullptr;
          });
    }
  } else if (auto* exit = std::get_if<agent::Exit>(&event)) {
    ExitStatus status{exit->code, exit->signal};
    if (exit->streamId == agent::kContainerStream) {
      spdlog::info("container exited with {}", status.code);
      containerExit_ = status;
      tasks_.add(io_.provider->getTimer().afterDelay(kPowerOffDeadline).then([this] {
        if (!ended_) fail("the guest did not power off after the container exited");
      }));
    } else {
      auto it = execs_.find(exit->streamId);
      if (it != execs_.end()) {
        it->second->exit = status;
        it->second->doneFulfiller->fulfill();
      }
    }
  } else if (std::holds_alternative<agent::ContainerStarted>(event)) {
    containerStarted();
  } else if (auto* frozen = std::get_if<agent::Frozen>(&event)) {
    if (frozenFulfiller_ && frozenFulfiller_->isWaiting())
      frozenFulfiller_->fulfill(kj::mv(*frozen));
  } else if (auto* log = std::get_if<agent::Log>(&event)) {
    // The guest decides how many lines it sends; what reaches our log is bounded.
    if (agentLogLimit_.allow()) {
      if (auto refused = agentLogLimit_.takeRefused()) {
        spdlog::warn("agent: {} lines suppressed (more than {}/s)", refused, kAgentLinesPerSecond);
      }
      spdlog::info("agent: {}", log->line);
    }
  }
  return kj::READY_NOW;
}

kj::Promise<void> VmRunner::containerOutput(agent::OutputKind kind, std::string data) {
  auto wire = toWire(kind);
  log_.append(wire, data);
  for (auto& f : followers_) {
    if (f->ended) continue;
    f->queuedBytes += data.size();
    f->queue.push_back({wire, data});
    if (f->queuedBytes > kFollowerBacklogBytes) {
      f->ended = true;
      f->doneFulfiller->reject(ipc::rpcError("the log reader fell too far behind"));
      continue;
    }
    drain(*f);
  }
  KJ_IF_MAYBE (sink, output_) {
    return writeTo(*sink, wire, data).catch_([this](kj::Exception&& e) {
      spdlog::info("the foreground client's output failed ({}); output goes to the log only",
                   e.getDescription().cStr());
      output_ = nullptr;
    });
  }
  return kj::READY_NOW;
}

void VmRunner::drain(Follower& f) {
  if (f.replaying || f.writing || f.ended) return;
  if (f.queue.empty()) return;
  f.writing = true;
  auto record = kj::mv(f.queue.front());
  f.queue.pop_front();
  f.queuedBytes -= record.data.size();
  tasks_.add(writeTo(f.output, record.kind, record.data)
                 .then(
                     [this, self = kj::addRef(f)]() mutable {
                       Follower& f = *self;
                       f.writing = false;
                       if (f.queue.empty() && ended_ && !f.ended) {
                         f.ended = true;
                         f.doneFulfiller->fulfill();
                         return;
                       }
                       drain(f);
                     },
                     [self = kj::addRef(f)](kj::Exception&& e) mutable {
                       Follower& f = *self;
                       f.writing = false;
                       if (!f.ended) {
                         f.ended = true;
                         f.doneFulfiller->reject(kj::mv(e));
                       }
                     }));
}

void VmRunner::containerStarted() {
  containerRunningSeen_ = true;
  if (containerRunningFulfiller_->isWaiting()) containerRunningFulfiller_->fulfill();
  if (parts_.healthCheck.empty() && !parts_.httpCheck) {
    setState(rpc::VmState::HEALTHY, rpc::Health::HEALTHY);
  } else {
    tasks_.add(healthLoop(0));
  }
}

kj::Promise<bool> VmRunner::probeHealth() {
  // The command in the container, and the HTTP GET from the host: healthy when each given passes.
  kj::Promise<bool> command = true;
  if (!parts_.healthCheck.empty()) {
    ipc::ExecSpec check;
    check.inContainer = true;
    check.command = parts_.healthCheck;
    command = startExec(check, nullptr).then([this](uint32_t id) {
      return waitExec(id).then([this, id](ExitStatus status) {
        releaseExec(id);
        return status.code == 0;
      });
    });
  }
  return command.then([this](bool passed) -> kj::Promise<bool> {
    if (!passed || !parts_.httpCheck) return passed;
    return httpProbe(io_, *parts_.httpCheck, kHttpTimeout);
  });
}

kj::Promise<void> VmRunner::healthLoop(unsigned failures) {
  if (ended_ || containerExit_) return kj::READY_NOW;
  return probeHealth().then(
      [this, failures](bool passed) {
        unsigned next = passed ? 0 : failures + 1;
        if (passed && state_.health != rpc::Health::HEALTHY) {
          setState(rpc::VmState::HEALTHY, rpc::Health::HEALTHY);
        } else if (next >= kHealthFailures && state_.health == rpc::Health::HEALTHY) {
          spdlog::warn("health check failed {} times in a row", next);
          setState(rpc::VmState::RUNNING, rpc::Health::UNHEALTHY);
        }
        auto delay = state_.health == rpc::Health::HEALTHY ? kHealthInterval : kHealthRetry;
        return io_.provider->getTimer().afterDelay(delay).then(
            [this, next] { return healthLoop(next); });
      },
      [this](kj::Exception&& e) {
        // The VM ending ends the checks; nothing else stops them.
        if (!ended_) spdlog::info("health check stopped: {}", e.getDescription().cStr());
      });
}

kj::Promise<void> VmRunner::watchVmm() {
  return vmmExit_.whenBecomesReadable().then([this] {
    int status = parts_.vmm->waitExit(std::chrono::milliseconds(0)).value_or(0);
    if (!channel_) {
      vmEnded(status);
      return kj::Promise<void>(kj::READY_NOW);
    }
    // The container's exit may still be unread in the control socket: read the channel to its
    // end first (bounded: a guest cannot hold the worker here).
    return io_.provider->getTimer()
        .timeoutAfter(5 * kj::SECONDS, drained_.addBranch())
        .catch_([](kj::Exception&&) {})
        .then([this, status] { vmEnded(status); });
  });
}

void VmRunner::fail(const std::string& reason) {
  if (ended_) return;
  if (failure_.empty()) {
    failure_ = reason;
    spdlog::error("{}", reason);
  }
  parts_.vmm->kill();
}

void VmRunner::vmEnded(int vmmStatus) {
  ended_ = true;
  if (containerExit_) {
    state_.state = rpc::VmState::STOPPED;
    state_.exitCode = containerExit_->code;
  } else if (stopRequested_ && failure_.empty()) {
    state_.state = rpc::VmState::STOPPED;
    state_.exitCode = kStoppedStatus.code;
  } else {
    state_.state = rpc::VmState::FAILED;
    state_.reason = !failure_.empty()
                        ? failure_
                        : fmt::format("the VM exited unexpectedly ({} {}); see console.log",
                                      parts_.vmm->name(), describeWaitStatus(vmmStatus));
    if (channel_ && !channel_->failure().empty()) state_.reason = channel_->failure();
  }
  if (state_.state == rpc::VmState::STOPPED) state_.health = rpc::Health::UNKNOWN;
  spdlog::info("VM ended: {}{}", stateName(state_.state),
               state_.reason.empty() ? "" : ": " + state_.reason);

  auto gone = [this] {
    return ipc::rpcError(kj::str("VM '", parts_.vmName.c_str(), "' is not running"));
  };
  if (agentReadyFulfiller_->isWaiting()) agentReadyFulfiller_->reject(gone());
  if (containerRunningFulfiller_->isWaiting()) containerRunningFulfiller_->reject(gone());
  if (startupTaken_ && startupTaken_->isWaiting()) startupTaken_->reject(gone());
  for (auto& [id, s] : execs_) {
    if (!s->exit) {
      s->failure = "the VM stopped before the command finished";
      s->doneFulfiller->fulfill();
    }
  }
  for (auto& f : followers_) {
    if (!f->ended && !f->replaying && !f->writing && f->queue.empty()) {
      f->ended = true;
      f->doneFulfiller->fulfill();
    }
  }
  writeFinalState();
  report();
  endedFulfiller_->fulfill();
}

void VmRunner::writeFinalState() const {
  nlohmann::json j = {{"state", stateName(state_.state)}, {"reason", state_.reason}};
  if (state_.exitCode) j["exit_code"] = *state_.exitCode;
  auto tmp = parts_.finalStateFile.string() + ".tmp";
  std::ofstream out(tmp);
  out << j.dump() << "\n";
  out.close();
  std::error_code ec;
  if (!out) {
    spdlog::error("could not write {}", tmp);
  } else {
    std::filesystem::rename(tmp, parts_.finalStateFile, ec);
    if (ec) spdlog::error("could not write {}: {}", parts_.finalStateFile.string(), ec.message());
  }
}

void VmRunner::setState(rpc::VmState state, rpc::Health health) {
  if (ended_) return;
  if (state_.state == state && state_.health == health) return;
  state_.state = state;
  state_.health = health;
  spdlog::info("state {}", stateName(state));
  report();
}

void VmRunner::report() {
  KJ_IF_MAYBE (events, events_) {
    auto request = events->stateChangedRequest();
    auto s = request.initState();
    s.setState(state_.state);
    s.setHealth(state_.health);
    s.setReason(state_.reason);
    s.setHasExitCode(state_.exitCode.has_value());
    s.setExitCode(state_.exitCode.value_or(0));
    // In order: each report goes out after the previous one was answered.
    reporting_ = reporting_.then([request = kj::mv(request)]() mutable {
      return request.send().ignoreResult().catch_([](kj::Exception&& e) {
        spdlog::warn("could not report to the supervisor: {}", e.getDescription().cStr());
      });
    });
  }
}

kj::Promise<ExitStatus> VmRunner::wait() {
  return endedPromise_.addBranch().then([this]() -> kj::Promise<ExitStatus> {
    if (containerExit_) return *containerExit_;
    if (state_.state == rpc::VmState::STOPPED) return kStoppedStatus;
    return ipc::rpcError(
        kj::str("VM '", parts_.vmName.c_str(), "' failed: ", state_.reason.c_str()));
  });
}

kj::Promise<rpc::Process::Client> VmRunner::exec(ipc::ExecSpec spec,
                                                 kj::Maybe<rpc::OutputSink::Client> output) {
  return startExec(kj::mv(spec), kj::mv(output)).then([this](uint32_t id) -> rpc::Process::Client {
    return kj::heap<ExecProcess>(*this, id);
  });
}

kj::Promise<uint32_t> VmRunner::startExec(ipc::ExecSpec spec,
                                          kj::Maybe<rpc::OutputSink::Client> output) {
  if (ended_) {
    return ipc::rpcError(kj::str("VM '", parts_.vmName.c_str(), "' is not running"));
  }
  uint32_t id = nextExecId_++;
  execs_.emplace(id, kj::heap<ExecStream>(kj::mv(output)));
  auto ready = spec.inContainer ? containerRunning_.addBranch() : agentReady_.addBranch();
  return kj::mv(ready)
      .then([this, id, spec = kj::mv(spec)]() {
        agent::ExecRequest request;
        request.id = id;
        request.inContainer = spec.inContainer;
        request.command = spec.command;
        request.env = spec.env;
        request.tty = spec.tty;
        request.rows = spec.rows;
        request.cols = spec.cols;
        request.stdin = spec.stdin;
        return channel_->exec(request);
      })
      .then([id]() { return id; },
            [this, id](kj::Exception&& e) -> uint32_t {
              releaseExec(id);
              kj::throwFatalException(kj::mv(e));
            });
}

VmRunner::ExecStream& VmRunner::stream(uint32_t id) {
  auto it = execs_.find(id);
  if (it == execs_.end()) {
    kj::throwFatalException(ipc::rpcError("no such exec stream"));
  }
  return *it->second;
}

kj::Promise<void> VmRunner::writeStdin(uint32_t id, std::string data, bool eof) {
  auto& s = stream(id);
  if (s.exit || ended_) return kj::READY_NOW;  // the command is gone; its stdin with it
  return channel_->sendStdin(id, kj::mv(data), eof).catch_([this, id](kj::Exception&& e) {
    // The command exiting while stdin was still being sent is normal, not an error.
    auto it = execs_.find(id);
    if (it != execs_.end() && !it->second->exit && !ended_) kj::throwFatalException(kj::mv(e));
  });
}

kj::Promise<void> VmRunner::resize(uint32_t id, uint16_t rows, uint16_t cols) {
  auto& s = stream(id);
  if (s.exit || ended_) return kj::READY_NOW;
  return channel_->resize(id, rows, cols);
}

kj::Promise<VmMemoryReport> VmRunner::memory() {
  VmMemoryReport report;
  if (ended_) {
    return ipc::rpcError(kj::str("VM '", parts_.vmName.c_str(), "' is not running"));
  }
  try {
    report.vmm = readVmmMemory(parts_.vmm->pid());
  } catch (const Error& e) {
    report.reason = e.what();
  }
  ipc::ExecSpec cat;
  cat.command = {"cat", "/proc/meminfo"};
  auto text = kj::refcounted<BoundedCapture::Text>();
  rpc::OutputSink::Client sink = kj::heap<BoundedCapture>(kj::addRef(*text), kMaxMeminfoBytes);
  auto guest =
      startExec(kj::mv(cat), kj::mv(sink))
          .then([this](uint32_t id) {
            // Released however this ends, a timeout included: output still to come is dropped.
            return waitExec(id).attach(kj::defer([this, id]() { releaseExec(id); }));
          })
          .then([text = kj::mv(text)](ExitStatus status) -> kj::Promise<GuestMemory> {
            try {
              if (text->overflowed) throw Error("the guest's meminfo is too long");
              if (status.code != 0) {
                throw Error(
                    fmt::format("cat /proc/meminfo in the guest exited with {}", status.code));
              }
              return parseGuestMeminfo(text->bytes);
            } catch (const Error& e) {
              return ipc::rpcError(e.what());
            }
          })
          .exclusiveJoin(io_.provider->getTimer().afterDelay(kGuestMemoryTimeout).then([]() {
            return kj::Promise<GuestMemory>(ipc::rpcError("the guest did not answer in time"));
          }));
  return guest.then(
      [report](GuestMemory memory) mutable {
        report.guest = memory;
        return report;
      },
      [report](kj::Exception&& e) mutable {
        std::string why = ipc::messageOf(e);
        report.reason = report.reason.empty() ? why : report.reason + "; " + why;
        return report;
      });
}

kj::Promise<ExitStatus> VmRunner::waitExec(uint32_t id) {
  return stream(id).done.addBranch().then([this, id]() -> kj::Promise<ExitStatus> {
    auto& s = stream(id);
    if (s.exit) return *s.exit;
    return ipc::rpcError(kj::str(s.failure.c_str()));
  });
}

void VmRunner::releaseExec(uint32_t id) { execs_.erase(id); }

kj::Promise<void> VmRunner::logs(bool follow, rpc::OutputSink::Client output) {
  auto reader = kj::heap<ipc::ContainerLogReader>(parts_.containerLog, log_.size());
  if (!follow || ended_) return ipc::sendContainerLog(kj::mv(reader), kj::mv(output));
  // Records written from now on queue behind the replay of what the file holds.
  auto follower = kj::refcounted<Follower>(output);
  auto done = kj::newPromiseAndFulfiller<void>();
  follower->doneFulfiller = kj::mv(done.fulfiller);
  Follower* key = follower.get();
  followers_.push_back(kj::addRef(*follower));
  tasks_.add(ipc::sendContainerLog(kj::mv(reader), kj::mv(output))
                 .then(
                     [this, self = kj::addRef(*follower)]() mutable {
                       Follower& f = *self;
                       f.replaying = false;
                       if (ended_ && f.queue.empty() && !f.ended) {
                         f.ended = true;
                         f.doneFulfiller->fulfill();
                       }
                       drain(f);
                     },
                     [self = kj::addRef(*follower)](kj::Exception&& e) mutable {
                       Follower& f = *self;
                       if (!f.ended) {
                         f.ended = true;
                         f.doneFulfiller->reject(kj::mv(e));
                       }
                     }));
  // However the call ends (done, failed, or cancelled by a reader that went away), the follower
  // leaves the list; a write still in flight holds its own reference.
  return done.promise.attach(kj::defer([this, key] {
    key->ended = true;
    followers_.remove_if([key](const kj::Own<Follower>& f) { return f.get() == key; });
  }));
}

kj::Promise<void> VmRunner::stop(std::chrono::milliseconds grace) {
  if (!ended_ && !stopRequested_) {
    stopRequested_ = true;
    spdlog::info("stop requested ({} ms grace)", grace.count());
    if (channel_ && failure_.empty() && !containerExit_) {
      tasks_.add(agentReady_.addBranch()
                     .then([this] { return channel_->powerOff(); })
                     .catch_([](kj::Exception&&) {}));
    }
    tasks_.add(io_.provider->getTimer()
                   .afterDelay(static_cast<int64_t>(grace.count()) * kj::MILLISECONDS)
                   .then([this] {
                     if (!ended_) parts_.vmm->kill();
                   }));
    if (!channel_) parts_.vmm->kill();  // not booted yet: nothing to shut down gently
  }
  return endedPromise_.addBranch();
}

namespace {

// One snapshot's files and timings, alive until it has ended.
struct SnapshotJob {
  UniqueFd state, memory, disk;
  std::chrono::steady_clock::time_point pausedAt, savedAt, copiedAt, resumedAt;
  bool paused = false;
  bool resumed = false;
  uint64_t memoryBytes = 0;
};

UniqueFd openForReading(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw SysError(errno, "open " + path.string());
  return fd;
}

}  // namespace

kj::Promise<SnapshotTaken> VmRunner::snapshot(SnapshotFiles files) {
  auto name = parts_.vmName;
  if (ended_ || !channel_ || !containerRunningSeen_ || !qmp_) {
    return ipc::rpcError(kj::str("VM '", name.c_str(), "' is not running"));
  }
  return takeSnapshot(std::move(files));
}

kj::Promise<SnapshotTaken> VmRunner::takeSnapshot(SnapshotFiles files) {
  auto name = parts_.vmName;
  if (ended_ || !channel_ || !qmp_) {
    return ipc::rpcError(kj::str("VM '", name.c_str(), "' is not running"));
  }
  if (snapshotting_) {
    return ipc::rpcError(kj::str("a snapshot of VM '", name.c_str(), "' is already being taken"));
  }
  snapshotting_ = true;
  auto job = kj::heap<SnapshotJob>();
  job->state = std::move(files.state);
  job->memory = std::move(files.memory);
  job->disk = std::move(files.disk);
  auto& j = *job;
  auto frozen = kj::newPromiseAndFulfiller<agent::Frozen>();
  frozenFulfiller_ = kj::mv(frozen.fulfiller);
  spdlog::info("snapshot: freezing the guest");
  return channel_->freeze()
      .then([this, answer = kj::mv(frozen.promise)]() mutable {
        return io_.provider->getTimer().timeoutAfter(kFreezeDeadline, kj::mv(answer));
      })
      .then([this, &j](agent::Frozen frozen) {
        if (!frozen.error.empty()) {
          ipc::throwRpcError(
              kj::str("the guest could not freeze its file systems: ", frozen.error.c_str()));
        }
        j.pausedAt = std::chrono::steady_clock::now();
        j.paused = true;
        return qmp_->execute("stop");
      })
      .then([this, &j](nlohmann::json) { return saveDeviceState(*qmp_, j.state.get()); })
      .then([this, &j] {
        j.savedAt = std::chrono::steady_clock::now();
        auto memory = openForReading(parts_.memoryFile);
        j.memoryBytes = copySparse(memory.get(), j.memory.get(), "guest memory");
        j.copiedAt = std::chrono::steady_clock::now();
        auto disk = openForReading(parts_.rootDisk);
        cloneOrCopy(disk.get(), j.disk.get(), "the VM's disk");
        return qmp_->execute("cont");
      })
      .then([this, &j](nlohmann::json) {
        j.resumedAt = std::chrono::steady_clock::now();
        j.resumed = true;
        snapshotting_ = false;
        auto pause = std::chrono::duration_cast<std::chrono::nanoseconds>(j.resumedAt - j.pausedAt);
        auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
        spdlog::info(
            "snapshot taken: paused {:.1f} ms (device state {:.1f}, {} MiB of guest memory {:.1f}, "
            "disk and resume {:.1f})",
            ms(pause), ms(j.savedAt - j.pausedAt), j.memoryBytes >> 20, ms(j.copiedAt - j.savedAt),
            ms(j.resumedAt - j.copiedAt));
        return channel_->thaw(realtimeNs()).then([pause, &j] {
          return SnapshotTaken{static_cast<uint64_t>(pause.count()), j.memoryBytes};
        });
      })
      .catch_([this, &j](kj::Exception&& e) -> kj::Promise<SnapshotTaken> {
        // The VM goes on whatever failed: resumed if it was paused, thawed if it was frozen.
        spdlog::error("snapshot failed: {}", e.getDescription().cStr());
        snapshotting_ = false;
        kj::Promise<void> resume = kj::READY_NOW;
        if (j.paused && !j.resumed && qmp_) {
          resume = qmp_->execute("cont").ignoreResult().catch_([](kj::Exception&&) {});
        }
        return resume.then([this, e = kj::mv(e)]() mutable -> kj::Promise<SnapshotTaken> {
          if (channel_ && channel_->failure().empty()) {
            return channel_->thaw(realtimeNs())
                .catch_([](kj::Exception&&) {})
                .then([e = kj::mv(e)]() mutable -> SnapshotTaken {
                  kj::throwFatalException(kj::mv(e));
                });
          }
          return kj::mv(e);
        });
      })
      .attach(kj::mv(job));
}

kj::Promise<void> VmRunner::finished() {
  return endedPromise_.addBranch().then([this] {
    // Give the final report a bounded time to reach a supervisor that may be gone.
    return io_.provider->getTimer()
        .timeoutAfter(5 * kj::SECONDS, kj::mv(reporting_))
        .catch_([](kj::Exception&&) {});
  });
}

}  // namespace fcvm::worker
