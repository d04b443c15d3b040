// AgentSession on the host: the real session logic and real processes (DirectLauncher runs the
// commands as plain host commands instead of podman), talking to the real host side
// (fcvm::worker::AgentChannel) over a socketpair. Nothing here needs root or a VM.
#include "agent/session.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>

#include "agent/direct_launcher.h"
#include "ipc/agent.capnp.h"
#include "worker/agent_channel.h"

namespace fcvm::agent {
namespace {

class RecordingClock : public RealtimeClock {
 public:
  void set(int64_t realtimeNs) override { values.push_back(realtimeNs); }
  std::vector<int64_t> values;
};

// A named pipe a test process blocks on until the test writes to it: synchronisation by event.
struct TempFifo {
  TempFifo() {
    char dir[] = "/tmp/fcvm-agent-fifo-XXXXXX";
    if (::mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp");
    path = std::string(dir) + "/gate";
    if (::mkfifo(path.c_str(), 0600) != 0) throw std::runtime_error("mkfifo");
  }
  ~TempFifo() {
    ::unlink(path.c_str());
    ::rmdir(path.substr(0, path.rfind('/')).c_str());
  }
  void write(const std::string& text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);  // waits for the reader
    if (fd < 0 || ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      throw std::runtime_error("write " + path);
    }
    ::close(fd);
  }
  // Waits for a process to write the fifo and close it; returns what it wrote.
  std::string read() {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // waits for the writer
    if (fd < 0) throw std::runtime_error("open " + path);
    std::string text;
    char buffer[256];
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof buffer)) > 0) text.append(buffer, n);
    ::close(fd);
    return text;
  }
  std::string path;
};

class RecordingSystem : public GuestSystem {
 public:
  void freezeFilesystems() override {
    if (!freezeError.empty()) KJ_FAIL_REQUIRE(freezeError);
    calls.push_back("freeze");
  }
  void thawFilesystems() override { calls.push_back("thaw"); }
  void setHostname(const std::string& h) override { calls.push_back("hostname " + h); }
  void setMachineId(const std::string& id) override { calls.push_back("machine-id " + id); }
  void addEntropy(const std::string& bytes) override {
    calls.push_back("entropy " + std::to_string(bytes.size()));
  }
  void configureNetwork(const GuestNetwork& n) override {
    calls.push_back("network " + n.address + "/" + std::to_string(n.prefixLength) + " via " +
                    n.gateway);
  }
  pid_t mountVolume(const VolumeSpec& v) override {
    if (!volumeError.empty()) KJ_FAIL_REQUIRE(volumeError);
    calls.push_back("volume " + v.hostTag + " " + v.guestPath + (v.readOnly ? " ro" : ""));
    return -1;
  }
  pid_t remountVolume(const VolumeSpec& v) override {
    calls.push_back("remount " + v.hostTag + " port " + std::to_string(v.port));
    return -1;
  }
  std::vector<std::string> calls;
  std::string volumeError;
  std::string freezeError;
};

struct StreamResult {
  std::string out;
  std::string err;
  Exit exit;
};

class AgentSessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    kj::UnixEventPort::captureChildExit();
    signal(SIGPIPE, SIG_IGN);
  }

  AgentSessionTest() : io_(kj::setupAsyncIo()) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      throw std::runtime_error("socketpair failed");
    }
    using Flags = kj::LowLevelAsyncIoProvider;
    agentFd_ = fds[0];
    agentStream_ = io_.lowLevelProvider->wrapSocketFd(fds[0], Flags::TAKE_OWNERSHIP);
    hostFd_ = kj::AutoCloseFd(fds[1]);
    session_ =
        kj::heap<AgentSession>(SessionDeps{*agentStream_, *io_.lowLevelProvider, io_.unixEventPort,
                                           timer_, launcher_, clock_, system_},
                               "test-agent");
    end_ = session_->run().fork();
  }
  ~AgentSessionTest() noexcept override {}

  void connectHost() {
    host_ = kj::heap<worker::AgentChannel>(
        io_.lowLevelProvider->wrapSocketFd(hostFd_.release(),
                                           kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP),
        "test-host");
    auto hello = host_->handshake().wait(ws());
    EXPECT_EQ(hello.agentVersion, "test-agent");
  }

  // Reads events until stream `id` exits; other streams' events are kept for later calls.
  StreamResult collect(uint32_t id) {
    for (;;) {
      if (auto it = done_.find(id); it != done_.end()) {
        auto r = it->second;
        done_.erase(it);
        return r;
      }
      std::optional<worker::AgentEvent> event = nextEvent();
      if (!event) throw std::runtime_error("agent closed the channel");
      if (auto* out = std::get_if<Output>(&*event)) {
        auto& r = pending_[out->streamId];
        (out->kind == OutputKind::kStdout ? r.out : r.err) += out->data;
      } else if (std::holds_alternative<ContainerStarted>(*event)) {
        sawContainerStarted_ = true;
      } else if (auto* exit = std::get_if<Exit>(&*event)) {
        auto r = pending_[exit->streamId];
        pending_.erase(exit->streamId);
        r.exit = *exit;
        done_[exit->streamId] = r;
      } else if (auto* log = std::get_if<Log>(&*event)) {
        logs_.push_back(log->line);
      }
    }
  }

  // The host's next event. A session that fails while the host waits turns into a test failure,
  // not a hang. (One that ends normally has written everything before ending: keep reading.)
  worker::AgentEvent nextEvent() {
    using Event = std::optional<worker::AgentEvent>;
    auto failed =
        end_.addBranch().then([](SessionEnd) { return kj::Promise<Event>(kj::NEVER_DONE); },
                              [](kj::Exception&& e) -> kj::Promise<Event> {
                                throw std::runtime_error(std::string("the agent session failed: ") +
                                                         e.getDescription().cStr());
                              });
    auto event = host_->next().exclusiveJoin(kj::mv(failed)).wait(ws());
    if (!event) throw std::runtime_error("agent closed the channel");
    return std::move(*event);
  }

  // Reads events until the container has been reported started (output is kept in pending_).
  void awaitContainerStarted() {
    while (!sawContainerStarted_) {
      if (!absorb(nextEvent()))
        FAIL() << "unexpected event while waiting for the container to start";
    }
  }

  // Keeps output, container start and log events for later expectations; false for any other.
  bool absorb(const worker::AgentEvent& event) {
    if (auto* o = std::get_if<Output>(&event)) {
      (o->kind == OutputKind::kStdout ? pending_[o->streamId].out : pending_[o->streamId].err) +=
          o->data;
    } else if (std::holds_alternative<ContainerStarted>(event)) {
      sawContainerStarted_ = true;
    } else if (auto* log = std::get_if<Log>(&event)) {
      logs_.push_back(log->line);
    } else {
      return false;
    }
    return true;
  }

  // Reads events until stream `id` has printed exactly `text` on stdout (since the last call).
  void expectOutput(uint32_t id, const std::string& text) {
    std::string& out = pending_[id].out;
    while (out.size() < text.size()) {
      if (!absorb(nextEvent()))
        FAIL() << "unexpected event while waiting for output of stream " << id;
    }
    EXPECT_EQ(out, text);
    out.clear();
  }

  StreamResult runExec(ExecRequest request) {
    uint32_t id = request.id;
    host_->exec(request).wait(ws());
    return collect(id);
  }

  ExecRequest shell(uint32_t id, const std::string& script) {
    return ExecRequest{.id = id, .command = {"sh", "-c", script}};
  }

  // Sends `chunks` chunks of stdin to `id` as the window allows, while the caller reads events
  // (which carries the agent's acks). Resolves when all were sent or the stream went away.
  kj::Promise<void> produceStdin(uint32_t id, int chunks, bool eofAtEnd, std::string* sent) {
    if (chunks == 0) return kj::READY_NOW;
    std::string chunk(wire::MAX_DATA_BYTES, static_cast<char>('a' + chunks % 26));
    if (sent != nullptr) *sent += chunk;
    return host_->sendStdin(id, std::move(chunk), eofAtEnd && chunks == 1)
        .then([this, id, chunks, eofAtEnd, sent]() {
          return produceStdin(id, chunks - 1, eofAtEnd, sent);
        });
  }

  kj::WaitScope& ws() { return io_.waitScope; }

  // Runs the agent's event loop until it has reaped every child of this thread: then the exits
  // of the commands it started have reached their streams.
  void awaitChildrenReaped() {
    std::string children = "/proc/self/task/" + std::to_string(::gettid()) + "/children";
    for (;;) {
      ws().poll();
      std::ifstream in(children);
      std::string pids;
      std::getline(in, pids);
      if (pids.find_first_not_of(' ') == std::string::npos) return;
      io_.unixEventPort.wait();  // a SIGCHLD (or any other event) ends the wait
    }
  }

  // Moves the agent's clock on by whole grace periods, letting it act after each.
  void passGracePeriods(int count) {
    for (int i = 0; i < count; ++i) {
      timer_.advanceTo(timer_.now() + AgentSession::kOutputGrace);
      ws().poll();
    }
  }

  bool loggedOutputStillOpen(uint32_t id) const {
    std::string line = "stream " + std::to_string(id) + ": output still open after exit";
    for (const auto& l : logs_) {
      if (l.find(line) != std::string::npos) return true;
    }
    return false;
  }

  kj::AsyncIoContext io_;
  kj::TimerImpl timer_{kj::origin<kj::TimePoint>()};  // the session's: moved by the test
  int agentFd_ = -1;                                  // owned by agentStream_
  DirectLauncher launcher_;
  RecordingClock clock_;
  RecordingSystem system_;
  kj::Own<kj::AsyncIoStream> agentStream_;
  kj::AutoCloseFd hostFd_;
  kj::Own<AgentSession> session_;
  kj::ForkedPromise<SessionEnd> end_ = kj::Promise<SessionEnd>(SessionEnd{}).fork();
  kj::Own<worker::AgentChannel> host_;
  std::map<uint32_t, StreamResult> pending_;
  bool sawContainerStarted_ = false;
  std::map<uint32_t, StreamResult> done_;
  std::vector<std::string> logs_;
};

TEST_F(AgentSessionTest, ContainerStdoutAndStderrSeparateAndExitCode) {
  connectHost();
  host_
      ->runContainer(
          RunPlan{.image = "unused", .command = {"sh", "-c", "echo out; echo err >&2; exit 42"}})
      .wait(ws());
  auto r = collect(kContainerStream);
  EXPECT_TRUE(sawContainerStarted_);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(r.exit.code, 42);
  EXPECT_EQ(r.exit.signal, 0);
  auto end = end_.addBranch().wait(ws());
  EXPECT_EQ(end.reason, SessionEnd::Reason::kContainerExited);
  EXPECT_EQ(end.container.code, 42);
}

TEST_F(AgentSessionTest, ExitCodesAndSignalDeath) {
  connectHost();
  EXPECT_EQ(runExec(shell(1, "exit 0")).exit.code, 0);
  EXPECT_EQ(runExec(ExecRequest{.id = 2, .command = {"false"}}).exit.code, 1);
  auto killed = runExec(shell(3, "kill -9 $$"));
  EXPECT_EQ(killed.exit.code, 137);
  EXPECT_EQ(killed.exit.signal, 9);
  // The id is free again once its exit was reported.
  EXPECT_EQ(runExec(shell(1, "exit 5")).exit.code, 5);
}

// A command's output that waits on the host when the command exits is all delivered, however
// long the host takes to read it: that wait is no grandchild holding the stream open.
TEST_F(AgentSessionTest, OutputHeldUpByTheHostIsDeliveredWholeAfterTheCommandExits) {
  connectHost();
  int small = 4096;  // the channel holds a few KiB: the agent's send waits on the host at once
  ASSERT_EQ(::setsockopt(agentFd_, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  // Fits in the command's pipe, so the command exits while the host reads nothing.
  constexpr size_t kBytes = 60000;
  host_->exec(shell(1, "head -c " + std::to_string(kBytes) + " /dev/zero")).wait(ws());
  awaitChildrenReaped();
  passGracePeriods(3);
  auto r = collect(1);
  EXPECT_EQ(r.out.size(), kBytes);
  EXPECT_EQ(r.exit.code, 0);
  EXPECT_FALSE(loggedOutputStillOpen(1));
}

// A grandchild that keeps a command's output open and writes nothing does not hold the exit back
// beyond the grace period.
TEST_F(AgentSessionTest, AnIdleGrandchildHoldingTheOutputDelaysTheExitOnlyByTheGrace) {
  connectHost();
  TempFifo gate;
  // The test is the fifo's writer: closing it ends the cat, also when an expectation fails.
  kj::AutoCloseFd writer(::open(gate.path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_GE(writer.get(), 0);
  host_->exec(shell(1, "echo hi; cat " + gate.path + " >/dev/null &")).wait(ws());
  awaitChildrenReaped();  // the shell; its cat holds stderr open
  passGracePeriods(1);
  auto r = collect(1);
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_EQ(r.exit.code, 0);
  EXPECT_TRUE(loggedOutputStillOpen(1));
}

// A guest starved of CPU sees the grace's end and its last output at once: output ready when
// the grace ends is still read.
TEST_F(AgentSessionTest, OutputReadyWhenTheGraceEndsIsStillRead) {
  connectHost();
  TempFifo go;
  TempFifo written;
  host_
      ->exec(shell(1, "(cat " + go.path + " >/dev/null; echo late; echo > " + written.path + ") &"))
      .wait(ws());
  awaitChildrenReaped();  // the shell; the subshell holds the output open
  go.write("go\n");
  written.read();  // "late" waits in the pipe; the agent's loop has not run since
  passGracePeriods(1);
  auto r = collect(1);
  EXPECT_EQ(r.out, "late\n");
  EXPECT_EQ(r.exit.code, 0);
  EXPECT_FALSE(loggedOutputStillOpen(1));
}

TEST_F(AgentSessionTest, ConcurrentExecStreamsStaySeparate) {
  connectHost();
  host_->exec(shell(1, "for i in 1 2 3; do echo a$i; done")).wait(ws());
  host_->exec(shell(2, "for i in 1 2 3; do echo b$i >&2; done; exit 2")).wait(ws());
  auto b = collect(2);
  auto a = collect(1);
  EXPECT_EQ(a.out, "a1\na2\na3\n");
  EXPECT_EQ(a.err, "");
  EXPECT_EQ(b.err, "b1\nb2\nb3\n");
  EXPECT_EQ(b.exit.code, 2);
}

TEST_F(AgentSessionTest, ExecWithPipedStdin) {
  connectHost();
  host_
      ->exec(ExecRequest{
          .id = 4, .command = {"sh", "-c", "read a; read b; echo \"$b $a\"; cat"}, .stdin = true})
      .wait(ws());
  host_->sendStdin(4, "one\ntwo\n", false).wait(ws());
  host_->sendStdin(4, "rest", true).wait(ws());
  auto r = collect(4);
  EXPECT_EQ(r.out, "two one\nrest");
  EXPECT_EQ(r.exit.code, 0);
}

TEST_F(AgentSessionTest, LargeStdinAndOutputRoundTrip) {
  connectHost();
  host_->exec(ExecRequest{.id = 6, .command = {"cat"}, .stdin = true}).wait(ws());
  std::string expected;
  // Four times the stdin window: only flows if the agent acks what cat consumed.
  auto producer = produceStdin(6, 64, true, &expected).eagerlyEvaluate(nullptr);
  auto r = collect(6);
  producer.wait(ws());
  EXPECT_EQ(r.out.size(), expected.size());
  EXPECT_TRUE(r.out == expected);
}

TEST_F(AgentSessionTest, StdinForAProcessThatExitsDoesNotStallTheChannel) {
  connectHost();
  host_->exec(ExecRequest{.id = 2, .command = {"true"}, .stdin = true}).wait(ws());
  // Far more than the window, never read by `true`: the agent drops and acks it, or the stream
  // ends while the host still waits for the window (then the send fails).
  auto producer = produceStdin(2, 40, false, nullptr).then([]() {}, [](kj::Exception&&) {});
  auto eager = producer.eagerlyEvaluate(nullptr);
  EXPECT_EQ(collect(2).exit.code, 0);
  eager.wait(ws());
  EXPECT_EQ(runExec(shell(3, "echo still here")).out, "still here\n");
}

TEST_F(AgentSessionTest, ExecEnvironment) {
  connectHost();
  auto r = runExec(ExecRequest{
      .id = 1, .command = {"sh", "-c", "echo $FOO-$BAR"}, .env = {"FOO=foo", "BAR=b a r"}});
  EXPECT_EQ(r.out, "foo-b a r\n");
}

TEST_F(AgentSessionTest, PtyExec) {
  connectHost();
  auto r =
      runExec(ExecRequest{.id = 7,
                          .command = {"sh", "-c", "test -t 0 && test -t 1 && echo tty; stty size"},
                          .tty = true,
                          .rows = 33,
                          .cols = 101});
  EXPECT_NE(r.out.find("tty\r\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("33 101"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.exit.code, 0);
}

TEST_F(AgentSessionTest, PtyExecWithStdinAndResize) {
  connectHost();
  host_
      ->exec(ExecRequest{.id = 8,
                         .command = {"sh", "-c", "stty -echo; read x; echo got:$x; stty size"},
                         .tty = true,
                         .rows = 24,
                         .cols = 80,
                         .stdin = true})
      .wait(ws());
  host_->resize(8, 50, 120).wait(ws());
  host_->sendStdin(8, "hello\n", false).wait(ws());
  auto r = collect(8);
  EXPECT_NE(r.out.find("got:hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("50 120"), std::string::npos) << r.out;
  EXPECT_EQ(r.exit.code, 0);
}

TEST_F(AgentSessionTest, ProgramThatCannotStartExits127WithLog) {
  connectHost();
  auto r = runExec(ExecRequest{.id = 9, .command = {"/nonexistent/fcvm-test-program"}});
  EXPECT_EQ(r.exit.code, 127);
  ASSERT_EQ(logs_.size(), 1u);
  EXPECT_NE(logs_[0].find("/nonexistent/fcvm-test-program"), std::string::npos) << logs_[0];
}

TEST_F(AgentSessionTest, ContainerThatCannotStartEndsTheSession) {
  connectHost();
  host_->runContainer(RunPlan{.image = "x", .command = {"/nonexistent/fcvm-test-program"}})
      .wait(ws());
  auto r = collect(kContainerStream);
  EXPECT_EQ(r.exit.code, 127);
  EXPECT_EQ(end_.addBranch().wait(ws()).reason, SessionEnd::Reason::kContainerExited);
}

TEST_F(AgentSessionTest, VolumesAreMountedBeforeTheContainerStarts) {
  connectHost();
  host_
      ->runContainer(RunPlan{.image = "x",
                             .command = {"true"},
                             .volumes = {{"v0", "/data", true}, {"v1", "/rw", false}}})
      .wait(ws());
  EXPECT_EQ(collect(kContainerStream).exit.code, 0);
  EXPECT_EQ(system_.calls, (std::vector<std::string>{"volume v0 /data ro", "volume v1 /rw"}));
}

TEST_F(AgentSessionTest, AVolumeThatCannotBeMountedEndsTheSessionWithTheReason) {
  connectHost();
  system_.volumeError = "no virtio-serial port with this name";
  host_->runContainer(RunPlan{.image = "x", .command = {"true"}, .volumes = {{"v0", "/d", false}}})
      .wait(ws());
  EXPECT_EQ(collect(kContainerStream).exit.code, 127);
  ASSERT_EQ(logs_.size(), 1u);
  EXPECT_NE(logs_[0].find("no virtio-serial port"), std::string::npos) << logs_[0];
  EXPECT_EQ(end_.addBranch().wait(ws()).reason, SessionEnd::Reason::kContainerExited);
}

TEST_F(AgentSessionTest, ClockFromPlanAndSetClock) {
  connectHost();
  host_->setClock(1'234).wait(ws());
  host_->runContainer(RunPlan{.image = "x", .command = {"true"}, .clockRealtimeNs = 5'678})
      .wait(ws());
  collect(kContainerStream);
  EXPECT_EQ(clock_.values, (std::vector<int64_t>{1'234, 5'678}));
}

TEST_F(AgentSessionTest, PowerOffEndsTheSession) {
  connectHost();
  host_->powerOff().wait(ws());
  EXPECT_EQ(end_.addBranch().wait(ws()).reason, SessionEnd::Reason::kPowerOff);
}

TEST_F(AgentSessionTest, HostClosingEndsTheSession) {
  connectHost();
  host_ = nullptr;
  EXPECT_EQ(end_.addBranch().wait(ws()).reason, SessionEnd::Reason::kHostClosed);
}

TEST_F(AgentSessionTest, RunningProcessesAreKilledWithTheSession) {
  connectHost();
  host_->exec(ExecRequest{.id = 3, .command = {"sh", "-c", "echo up; exec cat"}, .stdin = true})
      .wait(ws());
  auto first = host_->next().wait(ws());
  ASSERT_TRUE(first && std::holds_alternative<Output>(*first));
  session_ = nullptr;  // kills and reaps `cat`; the host sees the channel's end
  agentStream_ = nullptr;
  EXPECT_FALSE(host_->next().wait(ws()).has_value());
}

TEST_F(AgentSessionTest, VersionMismatchIsReportedAndEndsTheSession) {
  auto raw = io_.lowLevelProvider->wrapSocketFd(hostFd_.release(),
                                                kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  FrameWriter writer(*raw);
  writer.send(Hello{wire::PROTOCOL_VERSION + 1, "future-host"}).wait(ws());
  auto hello = readMessage(*raw).wait(ws());
  ASSERT_TRUE(hello && std::holds_alternative<Hello>(*hello));
  auto log = readMessage(*raw).wait(ws());
  ASSERT_TRUE(log && std::holds_alternative<Log>(*log));
  EXPECT_NE(std::get<Log>(*log).line.find("protocol version mismatch"), std::string::npos);
  EXPECT_THROW(end_.addBranch().wait(ws()), kj::Exception);
}

TEST_F(AgentSessionTest, GarbageFromHostEndsTheSessionCleanly) {
  auto raw = io_.lowLevelProvider->wrapSocketFd(hostFd_.release(),
                                                kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  std::string garbage = "\xff\xff\xff\x7f garbage that is not a frame";
  raw->write(garbage.data(), garbage.size()).wait(ws());
  EXPECT_THROW(end_.addBranch().wait(ws()), kj::Exception);
}

// A frozen agent sends nothing new until thawed: what processes print meanwhile follows the thaw.
TEST_F(AgentSessionTest, FreezeFreezesFilesystemsAndHoldsOutputUntilThaw) {
  connectHost();
  TempFifo gate;
  host_
      ->runContainer(RunPlan{
          .image = "x", .command = {"sh", "-c", "echo one; cat " + gate.path + "; exec sleep 600"}})
      .wait(ws());
  expectOutput(kContainerStream, "one\n");
  awaitContainerStarted();
  host_->freeze().wait(ws());
  auto frozen = nextEvent();
  ASSERT_TRUE(std::holds_alternative<Frozen>(frozen));
  EXPECT_EQ(std::get<Frozen>(frozen).error, "");
  EXPECT_EQ(system_.calls, (std::vector<std::string>{"freeze"}));
  gate.write("two\n");  // the container prints it while the agent is frozen
  host_->thaw(9'999).wait(ws());
  expectOutput(kContainerStream, "two\n");
  EXPECT_EQ(system_.calls, (std::vector<std::string>{"freeze", "thaw"}));
  EXPECT_EQ(clock_.values, (std::vector<int64_t>{9'999}));
}

TEST_F(AgentSessionTest, AFailedFreezeHoldsNothing) {
  connectHost();
  host_->runContainer(RunPlan{.image = "x", .command = {"sh", "-c", "echo one; exec sleep 600"}})
      .wait(ws());
  expectOutput(kContainerStream, "one\n");
  awaitContainerStarted();
  system_.freezeError = "no freezing here";
  host_->freeze().wait(ws());
  auto frozen = nextEvent();
  ASSERT_TRUE(std::holds_alternative<Frozen>(frozen));
  EXPECT_NE(std::get<Frozen>(frozen).error.find("no freezing here"), std::string::npos);
  host_->thaw(0).wait(ws());
  EXPECT_EQ(runExec(shell(1, "echo still here")).out, "still here\n");
}

// A clone restored from a snapshot: the frozen agent meets a new host, which says hello and gives
// it its identity. The source host's exec streams end without a word to the new host, and the
// container's output goes on to it.
TEST_F(AgentSessionTest, ResumeUnderANewHostGivesTheCloneItsIdentityVolumesAndDropsOldExecs) {
  int cloneFd = ::dup(hostFd_.get());  // the same byte stream, as a restored clone's new host has
  ASSERT_GE(cloneFd, 0);
  connectHost();
  TempFifo gate;
  host_
      ->runContainer(
          RunPlan{.image = "x",
                  .command = {"sh", "-c", "echo one; cat " + gate.path + "; exec sleep 600"},
                  .volumes = {{"v0", "/data", false, 0}}})
      .wait(ws());
  expectOutput(kContainerStream, "one\n");
  host_->exec(ExecRequest{.id = 7, .command = {"sh", "-c", "echo old exec; exec sleep 600"}})
      .wait(ws());
  expectOutput(7, "old exec\n");
  awaitContainerStarted();
  host_->freeze().wait(ws());
  ASSERT_TRUE(std::holds_alternative<Frozen>(nextEvent()));

  host_ = kj::heap<worker::AgentChannel>(
      io_.lowLevelProvider->wrapSocketFd(cloneFd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP),
      "clone-host");
  EXPECT_EQ(host_->handshake().wait(ws()).agentVersion, "test-agent");
  std::string machineId(32, 'a');
  host_
      ->resume(
          Resume{4'242, "clone-1", machineId, std::string(64, 'e'), {{"v0", "/data", false, 1}}})
      .wait(ws());
  gate.write("two\n");
  expectOutput(kContainerStream, "two\n");
  // Stream ids are the new host's again: 7 is free, and nothing of the old stream 7 arrived (the
  // channel would have failed on it).
  EXPECT_EQ(runExec(shell(7, "echo new exec")).out, "new exec\n");
  EXPECT_EQ(host_->failure(), "");
  // The volume is mounted anew from its other port, where the clone's own server is.
  EXPECT_EQ(system_.calls, (std::vector<std::string>{"volume v0 /data", "freeze", "thaw",
                                                     "remount v0 port 1", "hostname clone-1",
                                                     "machine-id " + machineId, "entropy 64"}));
  EXPECT_EQ(clock_.values, (std::vector<int64_t>{4'242}));
}

TEST_F(AgentSessionTest, ASecondHelloOutsideARestoreEndsTheSession) {
  int rawFd = ::dup(hostFd_.get());
  ASSERT_GE(rawFd, 0);
  connectHost();
  auto raw = io_.lowLevelProvider->wrapSocketFd(rawFd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  FrameWriter writer(*raw);
  writer.send(Hello{wire::PROTOCOL_VERSION, "intruder"}).wait(ws());
  EXPECT_THROW(end_.addBranch().wait(ws()), kj::Exception);
}

}  // namespace
}  // namespace fcvm::agent
