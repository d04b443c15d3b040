// The agent's side of one control channel: the protocol logic with no PID-1 specifics, so it
// runs (and is tested) on any host. It greets the host, runs the container from the run plan
// (stream 0) and exec requests (their own streams) through a ProcessLauncher, forwards each
// process's stdout/stderr as Output frames, reports Exit once the process has exited and its
// output is drained, feeds Stdin (acking each chunk once the process took it, so the host keeps
// at most stdinWindowBytes in flight per stream), applies window sizes, and sets the clock.
// Output is paced by the channel: a pump reads its next chunk once the last frame was written,
// so a host that stops reading stops the process at its pipe. It ends when the
// container's exit has been reported, the host asks to power off, or the host closes the stream.
//
// Snapshots (see ipc/agent.capnp): `freeze` freezes the file systems and holds every further
// frame until `thaw`, or, in a clone restored from the snapshot, until a new host's `hello` and
// `resume`, which also ends the source host's exec streams and sets the clone's identity.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/time.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "agent/child_process.h"
#include "agent/frame_io.h"
#include "agent/guest_system.h"
#include "agent/process_launcher.h"
#include "agent/realtime_clock.h"

namespace fcvm::agent {

struct SessionEnd {
  enum class Reason { kContainerExited, kPowerOff, kHostClosed };
  Reason reason = Reason::kHostClosed;
  ExitStatus container;  // for kContainerExited
};

struct SessionDeps {
  kj::AsyncIoStream& stream;  // the control channel
  kj::LowLevelAsyncIoProvider& io;
  kj::UnixEventPort& events;  // child exits (captureChildExit() must have been called)
  kj::Timer& timer;
  ProcessLauncher& launcher;
  RealtimeClock& clock;
  GuestSystem& system;
};

class AgentSession : private kj::TaskSet::ErrorHandler {
 public:
  AgentSession(SessionDeps deps, std::string agentVersion);
  ~AgentSession() noexcept(false);
  AgentSession(const AgentSession&) = delete;
  AgentSession& operator=(const AgentSession&) = delete;

  // Rejects on a broken channel, a frame the agent cannot decode, or a host hello with another
  // protocol version (after telling the host in a Log frame).
  kj::Promise<SessionEnd> run();
  // A line for the host's log, sent right after the agent's hello (before run()).
  void logAfterHello(std::string line) { afterHello_ = std::move(line); }

  // After a stream's process exits, how long its output may stay open and idle (held by a
  // grandchild that writes nothing) before the agent stops reading and reports the exit anyway.
  // Time spent waiting for the host to take output does not count.
  static constexpr kj::Duration kOutputGrace = 2 * kj::SECONDS;

 private:
  struct ProcessStream;

  kj::Promise<void> readLoop();
  kj::Promise<void> handle(Message message);
  void startContainer(const RunPlan& plan);
  void startExec(const ExecRequest& request);
  void startStream(uint32_t id, bool tty, SpawnedProcess process);
  kj::Promise<void> superviseStream(ProcessStream& stream);
  kj::Promise<void> outputGrace(ProcessStream& stream);
  static bool outputReady(const ProcessStream& stream);
  kj::Promise<void> pump(ProcessStream& stream, kj::AsyncInputStream& in, OutputKind kind,
                         std::string& buffer);
  void freeze();
  void thaw(int64_t realtimeNs);
  kj::Promise<void> newHost(const Hello& hello);
  void resume(const Resume& resume);
  void remountVolumes(const std::vector<VolumeSpec>& volumes);
  void setClock(int64_t realtimeNs);
  void feedStdin(const Stdin& message);
  void resize(const WindowSize& message);
  void log(const std::string& line);
  void finish(SessionEnd end);
  void taskFailed(kj::Exception&& exception) override;

  SessionDeps deps_;
  const std::string agentVersion_;
  FrameWriter writer_;
  std::string afterHello_;
  bool helloReceived_ = false;
  bool containerRequested_ = false;
  bool frozen_ = false;          // file systems frozen, frames held
  bool awaitingResume_ = false;  // frozen, and a new host said hello: its resume comes next
  // The --map volumes' fuse-pipe clients; destroyed (killed) after the container's streams.
  std::map<std::string, kj::Own<ChildProcess>> volumeClients_;  // by volume tag
  std::map<uint32_t, kj::Own<ProcessStream>> streams_;
  // Exec streams of a restored clone's previous host: ended, no longer addressable by id.
  std::map<ProcessStream*, kj::Own<ProcessStream>> orphans_;
  kj::Own<kj::PromiseFulfiller<SessionEnd>> end_;
  kj::TaskSet tasks_;  // after streams_: tasks referencing streams are cancelled first
};

}  // namespace fcvm::agent
