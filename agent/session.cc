#include "agent/session.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <set>
#include <vector>

#include "ipc/agent.capnp.h"

namespace fcvm::agent {

struct AgentSession::ProcessStream {
  ProcessStream(uint32_t id, bool tty, pid_t pid, kj::UnixEventPort& events)
      : id(id), tty(tty), child(pid, events) {}

  const uint32_t id;
  const bool tty;
  bool orphaned = false;  // its host is gone (a clone's restore): no more frames for it
  ChildProcess child;     // first member: destroyed last, after the fds below are closed
  kj::Own<kj::AsyncInputStream> out;
  kj::Own<kj::AsyncInputStream> err;  // null for a tty
  kj::Own<kj::AsyncOutputStream> in;  // null without stdin, and after eof
  int ptyFd = -1;                     // the pty master (owned by `out`), for window sizes
  // The fds behind `out` and `err` (owned there) while their output has not ended.
  int outFd = -1;
  int errFd = -1;
  std::string outBuffer;
  std::string errBuffer;
  kj::ForkedPromise<void> stdinTail = kj::Promise<void>(kj::READY_NOW).fork();
  size_t stdinPending = 0;  // bytes queued in stdinTail, not yet acked to the host
  bool outputRead = false;  // output was read since the last look of outputGrace()
  unsigned sending = 0;     // output frames waiting on the channel (the host's flow control)
};

AgentSession::AgentSession(SessionDeps deps, std::string agentVersion)
    : deps_(deps), agentVersion_(std::move(agentVersion)), writer_(deps.stream), tasks_(*this) {}

AgentSession::~AgentSession() noexcept(false) = default;

kj::Promise<SessionEnd> AgentSession::run() {
  auto paf = kj::newPromiseAndFulfiller<SessionEnd>();
  end_ = kj::mv(paf.fulfiller);
  auto hello = writer_.send(Hello{wire::PROTOCOL_VERSION, agentVersion_});
  if (!afterHello_.empty()) log(afterHello_);
  auto loop = hello.then([this]() { return readLoop(); }).then([]() -> SessionEnd {
    return SessionEnd{SessionEnd::Reason::kHostClosed, {}};
  });
  return paf.promise.exclusiveJoin(kj::mv(loop));
}

void AgentSession::finish(SessionEnd end) {
  if (end_ && end_->isWaiting()) end_->fulfill(kj::mv(end));
}

void AgentSession::taskFailed(kj::Exception&& exception) {
  if (end_ && end_->isWaiting()) end_->reject(kj::mv(exception));
}

void AgentSession::log(const std::string& line) {
  fprintf(stderr, "fc-agent: %s\n", line.c_str());
  std::string bounded = line.substr(0, wire::MAX_TEXT_BYTES);
  if (!isValidUtf8(bounded)) bounded = "(log line not UTF-8)";
  tasks_.add(writer_.send(Log{bounded}));
}

kj::Promise<void> AgentSession::readLoop() {
  return readMessage(deps_.stream)
      .then([this](std::optional<Message> message) -> kj::Promise<void> {
        if (!message) return kj::READY_NOW;  // the host closed the channel
        return handle(std::move(*message)).then([this]() { return readLoop(); });
      });
}

kj::Promise<void> AgentSession::handle(Message message) {
  if (helloReceived_ && std::holds_alternative<Hello>(message))
    return newHost(std::get<Hello>(message));
  if (awaitingResume_ && !std::holds_alternative<Resume>(message)) {
    KJ_FAIL_REQUIRE("a restored guest's new host must send resume after hello",
                    messageName(message));
  }
  if (!helloReceived_) {
    auto* hello = std::get_if<Hello>(&message);
    if (hello == nullptr) {
      KJ_FAIL_REQUIRE("host's first message is not hello", messageName(message));
    }
    if (hello->protocolVersion != wire::PROTOCOL_VERSION) {
      std::string why = "protocol version mismatch: host speaks " +
                        std::to_string(hello->protocolVersion) + ", agent speaks " +
                        std::to_string(wire::PROTOCOL_VERSION);
      fprintf(stderr, "fc-agent: %s\n", why.c_str());
      return writer_.send(Log{why}).then(
          [why]() -> kj::Promise<void> { KJ_FAIL_REQUIRE("agent session ended", why); });
    }
    helloReceived_ = true;
    return kj::READY_NOW;
  }
  return std::visit(
      [this](auto& m) -> kj::Promise<void> {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, RunPlan>) {
          startContainer(m);
        } else if constexpr (std::is_same_v<T, ExecRequest>) {
          startExec(m);
        } else if constexpr (std::is_same_v<T, Stdin>) {
          feedStdin(m);
        } else if constexpr (std::is_same_v<T, WindowSize>) {
          resize(m);
        } else if constexpr (std::is_same_v<T, SetClock>) {
          setClock(m.realtimeNs);
        } else if constexpr (std::is_same_v<T, Freeze>) {
          freeze();
        } else if constexpr (std::is_same_v<T, Thaw>) {
          thaw(m.realtimeNs);
        } else if constexpr (std::is_same_v<T, Resume>) {
          resume(m);
        } else if constexpr (std::is_same_v<T, PowerOff>) {
          finish(SessionEnd{SessionEnd::Reason::kPowerOff, {}});
        } else {
          log(std::string("ignored a message the host may not send: ") + messageName(Message(m)));
        }
        return kj::READY_NOW;
      },
      message);
}

void AgentSession::setClock(int64_t realtimeNs) {
  if (realtimeNs == 0) return;
  try {
    deps_.clock.set(realtimeNs);
  } catch (const kj::Exception& e) {
    log(std::string("set clock: ") + e.getDescription().cStr());
  }
}

void AgentSession::freeze() {
  if (frozen_) {
    tasks_.add(writer_.sendWhileHeld(Frozen{"already frozen"}));
    return;
  }
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { deps_.system.freezeFilesystems(); })) {
    tasks_.add(writer_.send(Frozen{std::string("freeze: ") + e->getDescription().cStr()}));
    return;
  }
  // `frozen` is the last frame before the pause: from here both directions are quiet.
  tasks_.add(writer_.send(Frozen{}));
  writer_.hold();
  frozen_ = true;
}

void AgentSession::thaw(int64_t realtimeNs) {
  if (!frozen_) {
    log("ignored thaw: not frozen");
    return;
  }
  setClock(realtimeNs);
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { deps_.system.thawFilesystems(); })) {
    log(std::string("thaw: ") + e->getDescription().cStr());
  }
  frozen_ = false;
  writer_.release();
}

kj::Promise<void> AgentSession::newHost(const Hello& hello) {
  // Only a clone restored from a snapshot meets a second host, and it was frozen then.
  KJ_REQUIRE(frozen_ && !awaitingResume_, "a second hello outside a restore");
  KJ_REQUIRE(hello.protocolVersion == wire::PROTOCOL_VERSION,
             "the new host speaks another protocol", hello.protocolVersion);
  awaitingResume_ = true;
  return writer_.sendWhileHeld(Hello{wire::PROTOCOL_VERSION, agentVersion_});
}

void AgentSession::resume(const Resume& message) {
  KJ_REQUIRE(awaitingResume_, "resume without a new host's hello");
  awaitingResume_ = false;
  // The source's exec streams belong to its host's clients: end them here, silently.
  // Their ids are free for the new host at once; they live on apart until reaped.
  std::set<uint32_t> orphans;
  for (auto it = streams_.begin(); it != streams_.end();) {
    if (it->first == kContainerStream) {
      ++it;
      continue;
    }
    auto& stream = *it->second;
    stream.orphaned = true;
    stream.child.kill(SIGKILL);
    orphans.insert(it->first);
    orphans_[&stream] = kj::mv(it->second);
    it = streams_.erase(it);
  }
  setClock(message.realtimeNs);
  // Thawed first: the identity is written to the root file system (/etc/machine-id).
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { deps_.system.thawFilesystems(); })) {
    log(std::string("thaw: ") + e->getDescription().cStr());
  }
  remountVolumes(message.volumes);
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                 deps_.system.setHostname(message.hostname);
                 deps_.system.setMachineId(message.machineId);
                 deps_.system.addEntropy(message.entropy);
               })) {
    log(std::string("clone identity: ") + e->getDescription().cStr());
  }
  frozen_ = false;
  writer_.release([&orphans](const Message& m) {
    uint32_t id = kContainerStream;
    if (auto* o = std::get_if<Output>(&m)) id = o->streamId;
    if (auto* x = std::get_if<Exit>(&m)) id = x->streamId;
    if (auto* a = std::get_if<StdinAck>(&m)) id = a->streamId;
    return orphans.count(id) == 0;
  });
}

void AgentSession::remountVolumes(const std::vector<VolumeSpec>& volumes) {
  for (const auto& volume : volumes) {
    // The source's client speaks on the port the clone no longer serves: ended first, which
    // fails whatever waits on its mount (ENOTCONN) instead of leaving it hanging.
    volumeClients_.erase(volume.hostTag);
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   pid_t client = deps_.system.remountVolume(volume);
                   if (client > 0) {
                     volumeClients_[volume.hostTag] = kj::heap<ChildProcess>(client, deps_.events);
                   }
                 })) {
      log("volume " + volume.hostTag + " in the clone: " + e->getDescription().cStr());
    }
  }
}

void AgentSession::startContainer(const RunPlan& plan) {
  if (containerRequested_) {
    log("ignored a second run plan");
    return;
  }
  containerRequested_ = true;
  setClock(plan.clockRealtimeNs);
  if (!plan.hostname.empty()) {
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { deps_.system.setHostname(plan.hostname); })) {
      log(std::string("hostname: ") + e->getDescription().cStr());
    }
  }
  if (plan.guestNetwork) {
    KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                        [&]() { deps_.system.configureNetwork(*plan.guestNetwork); })) {
      log(std::string("network: ") + e->getDescription().cStr());
    }
  }
  SpawnedProcess process;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                 // The volumes first: the container binds their mount points.
                 for (const auto& volume : plan.volumes) {
                   pid_t client = deps_.system.mountVolume(volume);
                   if (client > 0) {
                     volumeClients_[volume.hostTag] = kj::heap<ChildProcess>(client, deps_.events);
                   }
                 }
                 process = deps_.launcher.startContainer(plan);
               })) {
    log(std::string("cannot start the container: ") + e->getDescription().cStr());
    tasks_.add(writer_.send(Exit{kContainerStream, 127, 0}).then([this]() {
      finish(SessionEnd{SessionEnd::Reason::kContainerExited, ExitStatus{127, 0}});
    }));
    return;
  }
  startStream(kContainerStream, false, kj::mv(process));
  // Reported once the container really runs, so the host's "started" means exec -c can find it.
  tasks_.add(deps_.launcher.containerRunning(deps_.events).then([this]() {
    return writer_.send(ContainerStarted{});
  }));
}

void AgentSession::startExec(const ExecRequest& request) {
  if (request.id == kContainerStream || streams_.count(request.id) != 0) {
    log("ignored exec request with id " + std::to_string(request.id) + " (0 or in use)");
    return;
  }
  SpawnedProcess process;
  KJ_IF_MAYBE (e,
               kj::runCatchingExceptions([&]() { process = deps_.launcher.startExec(request); })) {
    log("exec " + request.command[0] + ": " + e->getDescription().cStr());
    tasks_.add(writer_.send(Exit{request.id, 127, 0}));
    return;
  }
  startStream(request.id, request.tty, kj::mv(process));
}

void AgentSession::startStream(uint32_t id, bool tty, SpawnedProcess process) {
  auto stream = kj::heap<ProcessStream>(id, tty, process.pid, deps_.events);
  using Flags = kj::LowLevelAsyncIoProvider;
  stream->outFd = process.stdoutFd.get();
  if (tty) stream->ptyFd = stream->outFd;
  stream->out = deps_.io.wrapInputFd(process.stdoutFd.release(), Flags::TAKE_OWNERSHIP);
  if (!tty) {
    stream->errFd = process.stderrFd.get();
    stream->err = deps_.io.wrapInputFd(process.stderrFd.release(), Flags::TAKE_OWNERSHIP);
  }
  if (process.stdinFd.get() >= 0) {
    stream->in = deps_.io.wrapOutputFd(process.stdinFd.release(), Flags::TAKE_OWNERSHIP);
  }
  auto& s = *stream;
  streams_[id] = kj::mv(stream);
  tasks_.add(superviseStream(s));
}

kj::Promise<void> AgentSession::pump(ProcessStream& s, kj::AsyncInputStream& in, OutputKind kind,
                                     std::string& buffer) {
  buffer.resize(wire::MAX_DATA_BYTES);
  // evalNow: a read that fails at once throws from tryRead() itself instead of rejecting.
  auto read = kj::evalNow([&]() { return in.tryRead(buffer.data(), 1, buffer.size()); });
  if (s.tty) {
    // A pty master reports EIO once the last slave fd is closed: that is its end of stream.
    read = read.catch_([](kj::Exception&&) -> size_t { return 0; });
  }
  return read.then([this, &s, &in, kind, &buffer](size_t n) -> kj::Promise<void> {
    if (n == 0) {
      (kind == OutputKind::kStdout ? s.outFd : s.errFd) = -1;
      return kj::READY_NOW;
    }
    s.outputRead = true;
    if (s.orphaned) return pump(s, in, kind, buffer);  // drained, not sent
    ++s.sending;
    return writer_.send(Output{s.id, kind, buffer.substr(0, n)})
        .then([this, &s, &in, kind, &buffer]() {
          --s.sending;
          return pump(s, in, kind, buffer);
        });
  });
}

kj::Promise<void> AgentSession::superviseStream(ProcessStream& s) {
  auto out = pump(s, *s.out, OutputKind::kStdout, s.outBuffer).eagerlyEvaluate(nullptr);
  kj::Promise<void> err = kj::READY_NOW;
  if (s.err) err = pump(s, *s.err, OutputKind::kStderr, s.errBuffer).eagerlyEvaluate(nullptr);
  auto outputs = out.then([err = kj::mv(err)]() mutable { return kj::mv(err); });
  uint32_t id = s.id;
  return s.child.exited()
      .then([this, &s, outputs = kj::mv(outputs)](ExitStatus status) mutable {
        s.outputRead = false;
        return outputs.exclusiveJoin(outputGrace(s)).then([status]() { return status; });
      })
      .then([this, id, &s](ExitStatus status) -> kj::Promise<void> {
        if (s.orphaned) {
          orphans_.erase(&s);
          return kj::READY_NOW;
        }
        streams_.erase(id);
        return writer_.send(Exit{id, status.code, status.signal}).then([this, id, status]() {
          if (id == kContainerStream) {
            finish(SessionEnd{SessionEnd::Reason::kContainerExited, status});
          }
        });
      });
}

kj::Promise<void> AgentSession::outputGrace(ProcessStream& s) {
  return deps_.timer.afterDelay(kOutputGrace).then([this, &s]() -> kj::Promise<void> {
    // Output still flowing, waiting for the host to take it, or ready to be read (a starved
    // guest sees its timer and its fds at once) is no grandchild holding the stream open idle:
    // a loaded host must not cut a command's last output off.
    if (s.outputRead || s.sending > 0 || outputReady(s)) {
      s.outputRead = false;
      return outputGrace(s);
    }
    log("stream " + std::to_string(s.id) + ": output still open after exit; not waiting");
    return kj::READY_NOW;
  });
}

bool AgentSession::outputReady(const ProcessStream& s) {
  std::vector<pollfd> fds;
  for (int fd : {s.outFd, s.errFd}) {
    if (fd >= 0) fds.push_back(pollfd{fd, POLLIN, 0});
  }
  // Readable, or hung up (the end of output, still to be read): either way not idle.
  return !fds.empty() && ::poll(fds.data(), fds.size(), 0) > 0;
}

void AgentSession::feedStdin(const Stdin& message) {
  auto it = streams_.find(message.streamId);
  if (it == streams_.end() || !it->second->in) {
    // The process may have exited (or closed its stdin) while the host was still sending.
    return;
  }
  auto& s = *it->second;
  std::string data = message.data;
  uint32_t acked = static_cast<uint32_t>(data.size());
  if (s.stdinPending + acked > wire::STDIN_WINDOW_BYTES) {
    log("stream " + std::to_string(s.id) + ": host overran the stdin window; data dropped");
    tasks_.add(writer_.send(StdinAck{s.id, acked}));
    return;
  }
  if (message.eof && s.tty) data += '\x04';  // VEOF: a pty's end of input
  if (!data.empty()) {
    s.stdinPending += acked;
    // The ack goes out once the process took the bytes (or its stdin went away), from inside
    // the queue the stream owns: after the stream's exit, nothing more is acked.
    s.stdinTail = s.stdinTail.addBranch()
                      .then([&s, data = std::move(data)]() mutable -> kj::Promise<void> {
                        if (!s.in) return kj::READY_NOW;
                        auto& bytes = data;
                        return s.in->write(bytes.data(), bytes.size()).attach(kj::mv(data));
                      })
                      .catch_([&s](kj::Exception&&) { s.in = nullptr; })  // reader went away
                      .then([this, &s, acked]() {
                        s.stdinPending -= acked;
                        if (acked > 0 && !s.orphaned) {
                          tasks_.add(writer_.send(StdinAck{s.id, acked}));
                        }
                      })
                      .fork();
  }
  if (message.eof && !s.tty) {
    s.stdinTail = s.stdinTail.addBranch().then([&s]() { s.in = nullptr; }).fork();
  }
}

void AgentSession::resize(const WindowSize& message) {
  auto it = streams_.find(message.streamId);
  if (it == streams_.end() || !it->second->tty) return;
  struct winsize ws = {};
  ws.ws_row = message.rows;
  ws.ws_col = message.cols;
  if (ioctl(it->second->ptyFd, TIOCSWINSZ, &ws) < 0) {
    log("stream " + std::to_string(message.streamId) + ": TIOCSWINSZ failed");
  }
}

}  // namespace fcvm::agent
