#include "cli/fcvm_cli.h"

#include <capnp/message.h>
#include <kj/async-unix.h>
#include <kj/exception.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/install_layout.h"
#include "base/spawn.h"
#include "base/subprocess.h"
#include "base/unique_fd.h"
#include "cli/container_io.h"
#include "cli/doctor.h"
#include "cli/run_progress.h"
#include "cli/supervisor_endpoint.h"
#include "cli/supervisor_session.h"
#include "cli/vm_view.h"
#include "ipc/file_handle.h"
#include "ipc/rpc_error.h"
#include "ipc/vm_spec.h"
#include "setup/guest_setup.h"

namespace fcvm::cli {
namespace {

using nlohmann::json;

constexpr std::chrono::milliseconds kSupervisorReadyTimeout{30000};
constexpr int kSupervisorStopTimeoutMs = 15000;

struct RunArgs {
  std::string image, workdir, user, accel = "auto", healthCmd, healthCheck, network = "auto",
                                    pull = "missing", restart = "no";
  bool tlsVerify = true;
  std::vector<std::string> command, env, ports, maps, dns;
  bool detach = false, privileged = false, rm = false, verbose = false, quiet = false,
       noSnapshotCache = false;
  unsigned cpus = 1, memMib = 256, rootfsMib = 0;
};

struct ExecArgs {
  bool inContainer = false, interactive = false, tty = false;
  std::vector<std::string> command;
};

// Everything the parsed options feed; the chosen command's action reads it.
struct Options {
  std::optional<std::string> socket;
  bool json = false;
  bool force = false;
  bool all = false;      // system prune --all
  bool verbose = false;  // system df -v
  bool follow = false;
  unsigned timeoutSeconds = 10;
  std::string condition = "running";
  std::string logSource = "container";
  std::string name;
  RunArgs run;
  ExecArgs exec;
  std::string tag;  // snapshot commands
  int32_t pid = 0;  // snapshot create --pid (a worker), snapshot run --pid (a serve process)
};

// How long `fcvm rm -f` and a Ctrl-C'd foreground run give the guest to power off.
constexpr uint32_t kInterruptStopMs = 2000;

class Commands {
 public:
  Commands(const CliContext& context, const Options& options) : ctx_(context), opt_(options) {}

  int version() {
    if (opt_.json) {
      ctx_.out << json{{"version", FCVM_VERSION}}.dump() << "\n";
    } else {
      ctx_.out << "fcvm " << FCVM_VERSION << "\n";
    }
    return 0;
  }

  int ls() {
    SupervisorSession session(connect(true));
    auto reply = session.api().listVmsRequest().send().wait(session.waitScope());
    if (opt_.json) {
      json list = json::array();
      for (auto vm : reply.getVms()) list.push_back(vmToJson(vm));
      ctx_.out << list.dump(2) << "\n";
    } else {
      ctx_.out << vmTable(reply.getVms());
      auto serves = session.api().listServesRequest().send().wait(session.waitScope());
      if (serves.getServes().size() > 0) ctx_.out << "\n" << serveTable(serves.getServes());
    }
    return 0;
  }

  int systemDf() {
    SupervisorSession session(connect(true));
    auto reply = session.api().diskUsageRequest().send().wait(session.waitScope());
    if (opt_.json) {
      auto usage = diskUsageToJson(reply.getUsage());
      // podman's -v adds the items; in JSON as an object, so the plain form stays a list.
      if (opt_.verbose) usage = {{"usage", usage}, {"items", storageItemsToJson(reply.getItems())}};
      ctx_.out << usage.dump(2) << "\n";
    } else {
      ctx_.out << diskUsageTable(reply.getUsage());
      if (opt_.verbose) ctx_.out << "\n" << storageItemsTable(reply.getItems());
    }
    return 0;
  }

  int systemPrune() {
    if (!opt_.force) confirmPrune();
    SupervisorSession session(connect(true));
    auto request = session.api().pruneRequest();
    request.setAll(opt_.all);
    auto reply = request.send().wait(session.waitScope());
    if (opt_.json) {
      ctx_.out << pruneReportToJson(reply.getReport()).dump(2) << "\n";
    } else {
      ctx_.out << pruneReportText(reply.getReport());
    }
    return 0;
  }

  // podman's question before a prune; without a terminal to ask on, -f must say yes.
  void confirmPrune() {
    if (::isatty(STDIN_FILENO) != 1) {
      throw Error("system prune removes data: pass -f to confirm (stdin is not a terminal)");
    }
    ctx_.err << "WARNING! This will remove:\n"
             << "  - all your stopped and failed VMs (their disks and logs)\n"
             << "  - your start-up snapshots that no VM runs from\n"
             << "  - guest artifacts that no VM or snapshot uses (root)\n";
    if (opt_.all) ctx_.err << "  - image disks that no VM or snapshot uses (root)\n";
    ctx_.err << "Are you sure you want to continue? [y/N] ";
    ctx_.err.flush();
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") throw Error("nothing was removed");
  }

  int inspect() {
    SupervisorSession session(connect(true));
    auto request = session.api().getVmRequest();
    request.setName(opt_.name);
    auto reply = request.send().wait(session.waitScope());
    auto j = vmToJson(reply.getVm());
    j["memory"] = nullptr;
    auto state = reply.getVm().getState();
    if (state == rpc::VmState::RUNNING || state == rpc::VmState::HEALTHY) {
      auto memory = session.api().vmMemoryRequest();
      memory.setName(opt_.name);
      // The VM may end meanwhile: its figures are then unknown, and the reason says why.
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                     auto answer = memory.send().wait(session.waitScope());
                     j["memory"] = vmMemoryToJson(answer.getMemory());
                   })) {
        capnp::MallocMessageBuilder unknown;
        auto m = unknown.initRoot<rpc::VmMemory>();
        m.setReason(ipc::messageOf(*e));
        j["memory"] = vmMemoryToJson(m.asReader());
      }
    }
    ctx_.out << j.dump(2) << "\n";
    return 0;
  }

  int rm() {
    SupervisorSession session(connect(true));
    auto request = session.api().removeVmRequest();
    request.setName(opt_.name);
    request.setForce(opt_.force);
    request.send().wait(session.waitScope());
    ctx_.out << opt_.name << "\n";
    return 0;
  }

  int podmanRun() {
    const RunArgs& run = opt_.run;
    // Ctrl-C and SIGTERM must reach the event loop, which exists only after the session does.
    kj::UnixEventPort::captureSignal(SIGINT);
    kj::UnixEventPort::captureSignal(SIGTERM);
    // The options are checked before anything else happens (no supervisor is started for a
    // command line that is wrong).
    capnp::MallocMessageBuilder spec;
    fillSpec(spec.initRoot<rpc::VmSpec>());
    SupervisorSession session(connect(true));
    auto progress = runProgress(session);
    auto request = session.api().runVmRequest();
    request.setSpec(spec.getRoot<rpc::VmSpec>().asReader());
    pullImage(*progress);
    fillImageSource(request);
    request.setDetach(run.detach);
    request.setAutoRemove(run.rm);
    request.setNoSnapshotCache(run.noSnapshotCache);
    if (!run.detach) request.setOutput(kj::heap<FdOutputSink>([&] { progress->done(); }));
    // The supervisor answers once the image is ready (exported and unpacked on its first run)
    // and the VM is booting.
    progress->show(fmt::format("preparing {}, starting its VM", run.image));
    auto reply = request.send().wait(session.waitScope());
    progress->clear();
    std::string name = reply.getVm().getName().cStr();
    if (run.verbose) {
      ctx_.err << fmt::format(
          "fcvm: VM {} (id {}); its console and worker logs are in the "
          "supervisor's data dir under vms/{}/\n",
          name, reply.getVm().getId().cStr(), reply.getVm().getId().cStr());
    }
    if (run.detach) {
      ctx_.out << name << "\n";
      return 0;
    }
    auto vm = reply.getVm();
    if (vm.hasSnapshot() && vm.getSnapshot().size() > 0) {
      progress->show(
          fmt::format("starting VM {} from start-up snapshot {}", name, vm.getSnapshot().cStr()));
    } else {
      progress->show(fmt::format("booting VM {}", name));
    }
    return followForeground(session, reply.getLease(), name, *progress);
  }

  int snapshotCreate() {
    if (opt_.name.empty() == (opt_.pid == 0)) throw Error("give either --name or --pid");
    SupervisorSession session(connect(true));
    auto request = session.api().createSnapshotRequest();
    request.setName(opt_.name);
    request.setWorkerPid(opt_.pid);
    request.setTag(opt_.tag);
    auto snapshotReply = request.send().wait(session.waitScope());
    auto snapshot = snapshotReply.getSnapshot();
    if (opt_.json) {
      ctx_.out << snapshotToJson(snapshot).dump(2) << "\n";
    } else {
      ctx_.out << fmt::format("snapshot '{}' ({}) of VM {}: paused {:.1f} ms, {} MiB of memory\n",
                              snapshot.getTag().cStr(), snapshot.getId().cStr(),
                              snapshot.getSourceVm().cStr(), snapshot.getPauseNs() / 1e6,
                              snapshot.getMemoryBytes() >> 20);
    }
    return 0;
  }

  int snapshotLs() {
    SupervisorSession session(connect(true));
    auto reply = session.api().listSnapshotsRequest().send().wait(session.waitScope());
    if (opt_.json) {
      json list = json::array();
      for (auto s : reply.getSnapshots()) list.push_back(snapshotToJson(s));
      ctx_.out << list.dump(2) << "\n";
    } else {
      ctx_.out << snapshotTable(reply.getSnapshots());
    }
    return 0;
  }

  int snapshotRm() {
    SupervisorSession session(connect(true));
    auto request = session.api().removeSnapshotRequest();
    request.setTag(opt_.tag);
    request.setForce(opt_.force);
    request.send().wait(session.waitScope());
    ctx_.out << opt_.tag << "\n";
    return 0;
  }

  int snapshotServe() {
    kj::UnixEventPort::captureSignal(SIGINT);
    kj::UnixEventPort::captureSignal(SIGTERM);
    SupervisorSession session(connect(true));
    auto request = session.api().serveSnapshotRequest();
    request.setTag(opt_.tag);
    request.setDetach(opt_.run.detach);
    auto reply = request.send().wait(session.waitScope());
    auto serve = reply.getServe();
    if (opt_.json) {
      ctx_.out << serveToJson(serve).dump(2) << "\n";
    } else {
      ctx_.out << fmt::format("serving snapshot '{}': fcvm-uffd-server pid {} (id {})\n",
                              serve.getSnapshotTag().cStr(), serve.getPid(), serve.getId().cStr());
    }
    ctx_.out.flush();
    if (opt_.run.detach) return 0;
    // Until interrupted: the lease lives in this process, and its end stops the serving.
    auto lease = reply.getLease();
    auto& io = session.io();
    auto ended = lease.waitRequest().send().then([](auto) {
      throw Error("the snapshot's serve process ended");
      return 1;
    });
    auto interrupted = [&](int signo) {
      return io.unixEventPort.onSignal(signo).then([&](siginfo_t info) {
        auto stop = session.api().stopServeRequest();
        stop.setTag(opt_.tag);
        return stop.send().ignoreResult().then([info] { return 128 + info.si_signo; });
      });
    };
    return ended.exclusiveJoin(interrupted(SIGINT))
        .exclusiveJoin(interrupted(SIGTERM))
        .wait(session.waitScope());
  }

  int snapshotStop() {
    SupervisorSession session(connect(true));
    auto request = session.api().stopServeRequest();
    request.setTag(opt_.tag);
    request.send().wait(session.waitScope());
    ctx_.out << opt_.tag << "\n";
    return 0;
  }

  int snapshotRun() {
    const RunArgs& run = opt_.run;
    if (opt_.tag.empty() == (opt_.pid == 0)) throw Error("give either --from or --pid");
    kj::UnixEventPort::captureSignal(SIGINT);
    kj::UnixEventPort::captureSignal(SIGTERM);
    SupervisorSession session(connect(true));
    // The snapshot's volumes are opened here, with this user's rights, as `run --map` does.
    auto inspect = session.api().inspectSnapshotRequest();
    inspect.setTag(opt_.tag);
    inspect.setServePid(opt_.pid);
    auto snapshotReply = inspect.send().wait(session.waitScope());
    auto snapshot = snapshotReply.getSnapshot();
    auto request = session.api().runCloneRequest();
    request.setTag(opt_.tag);
    request.setServePid(opt_.pid);
    request.setSnapshotId(snapshot.getId());
    openVolumes(snapshot.getVolumes(), request.initVolumeDirs(snapshot.getVolumes().size()));
    request.setName(opt_.name);
    request.setDetach(run.detach);
    request.setAutoRemove(run.rm);
    auto ports = parsedPorts();
    ipc::encodePorts(ports, request.initPorts(static_cast<unsigned>(ports.size())));
    auto progress = runProgress(session);
    if (!run.detach) request.setOutput(kj::heap<FdOutputSink>([&] { progress->done(); }));
    progress->show(fmt::format("restoring snapshot {}", snapshot.getTag().cStr()));
    auto reply = request.send().wait(session.waitScope());
    progress->clear();
    std::string name = reply.getVm().getName().cStr();
    if (run.detach) {
      ctx_.out << name << "\n";
      return 0;
    }
    progress->show(fmt::format("resuming VM {}", name));
    return followForeground(session, reply.getLease(), name, *progress);
  }

  int exec() {
    const ExecArgs& args = opt_.exec;
    if (args.tty) kj::UnixEventPort::captureSignal(SIGWINCH);
    SupervisorSession session(connect(true));
    auto request = session.api().execRequest();
    request.setName(opt_.name);
    auto spec = request.initRequest();
    spec.setInContainer(args.inContainer);
    auto command = spec.initCommand(static_cast<unsigned>(args.command.size()));
    for (unsigned i = 0; i < command.size(); ++i) command.set(i, args.command[i]);
    spec.setTty(args.tty);
    if (args.tty) {
      auto size = terminalSize().value_or(WindowSize{24, 80});
      spec.setRows(size.rows);
      spec.setCols(size.cols);
    }
    spec.setStdin(args.interactive);
    request.setOutput(kj::heap<FdOutputSink>());
    auto process = request.send().wait(session.waitScope()).getProcess();
    std::optional<RawTerminal> raw;
    if (args.tty && args.interactive) raw.emplace();
    auto& io = session.io();
    kj::Promise<void> input = kj::READY_NOW;
    if (args.interactive) input = sendStdin(io, process).eagerlyEvaluate(nullptr);
    kj::Promise<void> resizing = kj::READY_NOW;
    if (args.tty) resizing = forwardWindowSize(io, process).eagerlyEvaluate(nullptr);
    try {
      auto exitReply = process.waitRequest().send().wait(session.waitScope());
      return exitReply.getExit().getCode();
    } catch (const kj::Exception& e) {
      if (!isLostConnection(e)) throw;
      raw.reset();  // the terminal back as it was before the line is written
      throw lostSupervisor(session, opt_.name, Lost::kExec);
    }
  }

  int logs() {
    SupervisorSession session(connect(true));
    auto request = session.api().logsRequest();
    request.setName(opt_.name);
    request.setFollow(opt_.follow);
    request.setSource(opt_.logSource == "console"  ? rpc::LogSource::CONSOLE
                      : opt_.logSource == "worker" ? rpc::LogSource::WORKER
                                                   : rpc::LogSource::CONTAINER);
    request.setOutput(kj::heap<FdOutputSink>());
    try {
      request.send().wait(session.waitScope());
    } catch (const kj::Exception& e) {
      if (!opt_.follow || !isLostConnection(e)) throw;
      throw lostSupervisor(session, opt_.name, Lost::kLogs);
    }
    return 0;
  }

  int stop() {
    SupervisorSession session(connect(true));
    auto request = session.api().stopVmRequest();
    request.setName(opt_.name);
    request.setTimeoutMs(opt_.timeoutSeconds * 1000);
    auto vmReply = request.send().wait(session.waitScope());
    auto vm = vmReply.getVm();
    if (opt_.json) {
      ctx_.out << vmToJson(vm).dump(2) << "\n";
    } else {
      ctx_.out << vm.getName().cStr() << "\n";
    }
    return 0;
  }

  int wait() {
    SupervisorSession session(connect(true));
    auto request = session.api().waitVmRequest();
    request.setName(opt_.name);
    request.setCondition(opt_.condition == "healthy" ? rpc::WaitCondition::HEALTHY
                         : opt_.condition == "ended" ? rpc::WaitCondition::ENDED
                                                     : rpc::WaitCondition::RUNNING);
    auto vmReply = request.send().wait(session.waitScope());
    auto vm = vmReply.getVm();
    if (opt_.json) {
      ctx_.out << vmToJson(vm).dump(2) << "\n";
    } else {
      auto j = vmToJson(vm);
      ctx_.out << j["state"].get<std::string>()
               << (vm.getHasExitCode() ? fmt::format(" {}", vm.getExitCode()) : "") << "\n";
    }
    return 0;
  }

  int doctor() {
    DoctorReport report = runDoctor(Paths::resolve(ctx_.uid, ctx_.env));
    if (opt_.json) {
      ctx_.out << toJson(report).dump(2) << "\n";
    } else {
      ctx_.out << formatReport(report);
    }
    return report.healthy() ? 0 : kExitError;
  }

  int setup() {
    setup::SetupOptions options{Paths::resolve(ctx_.uid, ctx_.env),
                                siblingBinary("fc-agent", "FCVM_AGENT_BIN"), opt_.force, &ctx_.err};
    auto report = setup::runSetup(options);
    if (opt_.json) {
      ctx_.out << setup::toJson(report).dump(2) << "\n";
    } else {
      ctx_.out << fmt::format("fcvm setup: guest artifacts ready in {:.1f} s\n", report.seconds);
    }
    return 0;
  }

  int supervisorStart() {
    auto endpoint = resolveEndpoint(ctx_.uid, ctx_.env, opt_.socket);
    ensureSupervisor(endpoint, kSupervisorReadyTimeout);
    return supervisorStatus();
  }

  int supervisorStatus() {
    auto endpoint = resolveEndpoint(ctx_.uid, ctx_.env, opt_.socket);
    if (!isAnswering(endpoint.socket)) {
      if (opt_.json) {
        ctx_.out << json{{"running", false}, {"socket", endpoint.socket.string()}}.dump(2) << "\n";
      } else {
        ctx_.out << "fcvm-supervisor is not running (socket " << endpoint.socket.string() << ")\n";
      }
      return kExitNotRunning;
    }
    SupervisorSession session(endpoint.socket);
    auto statusReply = session.api().statusRequest().send().wait(session.waitScope());
    auto s = statusReply.getStatus();
    if (opt_.json) {
      ctx_.out << json{{"running", true},
                       {"version", s.getVersion().cStr()},
                       {"pid", s.getPid()},
                       {"uid", s.getUid()},
                       {"started_at", formatTimestamp(s.getStartedAtNs())},
                       {"data_dir", s.getDataDir().cStr()},
                       {"runtime_dir", s.getRuntimeDir().cStr()},
                       {"socket", s.getSocket().cStr()},
                       {"vms", s.getVmCount()},
                       {"state_epoch", s.getStateEpoch()},
                       {"adopted_vms", s.getAdoptedVms()}}
                      .dump(2)
               << "\n";
    } else {
      ctx_.out << fmt::format(
          "fcvm-supervisor {} running, pid {} (uid {}), since {}\n  socket  {}\n  data    {}\n"
          "  runtime {}\n  VMs     {} visible to you, {} re-adopted at start\n",
          s.getVersion().cStr(), s.getPid(), s.getUid(), formatTimestamp(s.getStartedAtNs()),
          s.getSocket().cStr(), s.getDataDir().cStr(), s.getRuntimeDir().cStr(), s.getVmCount(),
          s.getAdoptedVms());
    }
    return 0;
  }

  int supervisorStop() {
    auto endpoint = resolveEndpoint(ctx_.uid, ctx_.env, opt_.socket);
    if (!isAnswering(endpoint.socket)) {
      ctx_.out << "fcvm-supervisor is not running\n";
      return 0;
    }
    SupervisorSession session(endpoint.socket);
    auto pid = session.api().statusRequest().send().wait(session.waitScope()).getStatus().getPid();
    // Watch the process itself: its exit, not the reply, is what "stopped" means.
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    try {
      session.api().shutdownRequest().send().wait(session.waitScope());
    } catch (const kj::Exception& e) {
      // The supervisor may close the connection before its reply is flushed.
      if (e.getType() != kj::Exception::Type::DISCONNECTED) throw;
    }
    if (pidfd) {
      pollfd pfd{pidfd.get(), POLLIN, 0};
      int n = retryEintr([&] { return ::poll(&pfd, 1, kSupervisorStopTimeoutMs); });
      if (n == 0) throw Error(fmt::format("fcvm-supervisor (pid {}) did not exit in time", pid));
    }
    ctx_.out << "fcvm-supervisor stopped (pid " << pid << ")\n";
    return 0;
  }

  // A foreground VM: its output arrives through the sink this CLI passed; the lease lives in this
  // process, so if it dies, however it dies, the supervisor stops the VM. Ctrl-C and SIGTERM stop
  // it too; the exit code is the container's.
  // `progress` shows until the container runs (or writes, or ends).
  int followForeground(SupervisorSession& session, rpc::VmLease::Client lease,
                       const std::string& name, RunProgress& progress) {
    auto& io = session.io();
    auto wait = session.api().waitVmRequest();
    wait.setName(name);
    wait.setCondition(rpc::WaitCondition::RUNNING);
    // Its failure (the VM ended first) is the lease's to report.
    auto running =
        wait.send()
            .then([&](auto) { progress.done(); }, [&](kj::Exception&&) { progress.done(); })
            .eagerlyEvaluate(nullptr);
    auto exited = lease.waitRequest().send().then(
        [](auto result) { return static_cast<int>(result.getExit().getCode()); });
    auto interrupted = [&](int signo) {
      return io.unixEventPort.onSignal(signo).then([&, name](siginfo_t info) {
        auto stop = session.api().stopVmRequest();
        stop.setName(name);
        stop.setTimeoutMs(kInterruptStopMs);
        return stop.send().ignoreResult().then([info] { return 128 + info.si_signo; });
      });
    };
    exited = exited.then([&](int code) {
      progress.done();
      return code;
    });
    try {
      return exited.exclusiveJoin(interrupted(SIGINT))
          .exclusiveJoin(interrupted(SIGTERM))
          .wait(session.waitScope());
    } catch (const kj::Exception& e) {
      if (!isLostConnection(e)) throw;
      throw lostSupervisor(session, name, Lost::kForegroundRun);
    }
  }

 private:
  enum class Lost { kForegroundRun, kExec, kLogs };

  // The connection to the supervisor went away while this command waited on it (it stopped or
  // restarted). A new one, started if need be, is asked what became of VM `name`, so the user
  // reads that in one line instead of a bare "connection lost". A foreground VM is stopped by the
  // new supervisor (its lease ended with the old one): this waits for that.
  Error lostSupervisor(SupervisorSession& session, const std::string& name, Lost during) {
    // A supervisor killed a moment ago may still hold its socket as it exits: it answers a
    // connect, then the connection is lost or refused. Each such failure shows it gone, so the
    // next attempt starts (or reaches) the new one.
    constexpr int kAttempts = 5;
    for (int attempt = 1;; ++attempt) {
      try {
        session.reconnect(connect(true));
        return askAfterLost(session, name, during);
      } catch (const kj::Exception& e) {
        if (isLostConnection(e) && attempt < kAttempts) continue;
        return Error(
            fmt::format("{}, and asking it again failed too: {}", kLostConnection, describe(e)));
      } catch (const Error& e) {
        if (attempt < kAttempts) continue;
        return Error(
            fmt::format("{}, and it could not be started again: {}", kLostConnection, e.what()));
      }
    }
  }

  // What a new supervisor says of VM `name` (see lostSupervisor).
  Error askAfterLost(SupervisorSession& session, const std::string& name, Lost during) {
    if (during == Lost::kForegroundRun) {
      auto request = session.api().waitVmRequest();
      request.setName(name);
      request.setCondition(rpc::WaitCondition::ENDED);
      try {
        request.send().wait(session.waitScope());
        return Error(fmt::format(
            "{}; VM '{}' was stopped with it: a foreground VM ends with its client's connection",
            kLostConnection, name));
      } catch (const kj::Exception& e) {
        if (isLostConnection(e)) throw;
        // Gone already: --rm removed it once stopped.
        return Error(fmt::format(
            "{}; VM '{}' was stopped and removed with it: a foreground VM ends with its "
            "client's connection",
            kLostConnection, name));
      }
    }
    auto request = session.api().getVmRequest();
    request.setName(name);
    auto reply = request.send().wait(session.waitScope());
    std::string state = vmToJson(reply.getVm())["state"];
    if (during == Lost::kExec) {
      return Error(fmt::format(
          "{}; VM '{}' is {}; what the command prints from then on, and its exit code, cannot "
          "reach this terminal",
          kLostConnection, name, state));
    }
    return Error(fmt::format("{}; VM '{}' is {}: `fcvm logs -f --name {}` follows it again",
                             kLostConnection, name, state, name));
  }

  void fillSpec(rpc::VmSpec::Builder out) {
    const RunArgs& run = opt_.run;
    ipc::VmSpec spec;
    spec.name = opt_.name;
    spec.image = run.image;
    spec.command = run.command;
    for (const std::string& e : run.env) {
      if (e.find('=') != std::string::npos) {
        spec.env.push_back(e);
      } else if (auto value = ctx_.env(e.c_str())) {
        spec.env.push_back(e + "=" + *value);  // -e NAME passes this environment's value
      } else {
        throw Error(fmt::format("-e {}: no such variable in this environment", e));
      }
    }
    spec.workdir = run.workdir;
    spec.user = run.user;
    spec.privileged = run.privileged;
    if (run.cpus == 0 || run.cpus > ipc::kMaxCpus) {
      throw Error(fmt::format("--cpu {} is outside 1..{}", run.cpus, ipc::kMaxCpus));
    }
    spec.cpus = run.cpus;
    spec.memoryMib = run.memMib;
    spec.rootfsSizeMib = run.rootfsMib;
    spec.accel = run.accel;
    spec.healthCmd = run.healthCmd;
    spec.healthCheckUrl = run.healthCheck;
    spec.network = run.network;
    spec.ports = parsedPorts();
    for (const auto& m : run.maps) spec.volumes.push_back(ipc::parseVolumeMapping(m));
    spec.dns = run.dns;
    spec.restart = ipc::parseRestartPolicy(run.restart);
    ipc::encodeVmSpec(spec, out);
  }

  std::vector<ipc::PortMapping> parsedPorts() const {
    std::vector<ipc::PortMapping> ports;
    for (const auto& p : opt_.run.ports) ports.push_back(ipc::parsePortMapping(p));
    return ports;
  }

  // The status line of a run, on stderr when it is a terminal and -q was not given.
  kj::Own<RunProgress> runProgress(SupervisorSession& session) {
    return kj::heap<RunProgress>(STDERR_FILENO, !opt_.run.quiet && ::isatty(STDERR_FILENO) == 1,
                                 session.io().provider->getTimer());
  }

  // An image from a registry is pulled here, by podman running as this user into this user's
  // storage (root's for root), with its progress on stderr; the VM then takes it from there.
  void pullImage(RunProgress& progress) {
    const RunArgs& run = opt_.run;
    if (ipc::isArchiveImage(run.image) || run.pull == "never") return;
    // localhost/ names images made on this host (podman import, build): there is nothing to pull.
    if (run.image.starts_with("localhost/")) return;
    if (run.pull == "missing" && runCommand({"podman", "image", "exists", run.image},
                                            CommandOptions::withTimeout(std::chrono::seconds(60)))
                                         .exitCode == 0) {
      return;
    }
    progress.clear();  // podman shows its own
    SpawnSpec spec;
    spec.argv = {"podman", "pull", fmt::format("--tls-verify={}", run.tlsVerify), run.image};
    if (run.quiet) spec.argv.insert(spec.argv.begin() + 2, "--quiet");
    spec.env = environmentWith({});
    // Progress to our stderr, never into the container's stdout; with -q not even the image id.
    spec.fds = {{2, 2}};
    if (!run.quiet) spec.fds[1] = 2;
    int status = spawn(spec).wait();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw Error(fmt::format("podman pull {} failed ({}); see the lines above", run.image,
                              describeWaitStatus(status)));
    }
  }

  // The image is read with this user's rights: an archive is opened here and passed as an fd; an
  // image in podman storage is looked up by podman running as this user, in the storage these
  // variables point at.
  void fillImageSource(rpc::Supervisor::RunVmParams::Builder request) {
    const std::string& image = opt_.run.image;
    if (ipc::isArchiveImage(image)) {
      auto path = image.substr(image.find(':') + 1);
      try {
        request.setImageArchive(ipc::fileHandle(ipc::openRegularFile(path)));
      } catch (const Error& e) {
        throw Error(fmt::format("image archive: {}", e.what()));
      }
    }
    std::vector<std::string> env;
    for (const auto& name : ipc::podmanEnvNames()) {
      if (auto value = ctx_.env(name.c_str())) env.push_back(name + "=" + *value);
    }
    auto list = request.initPodmanEnv(static_cast<unsigned>(env.size()));
    for (unsigned i = 0; i < list.size(); ++i) list.set(i, env[i]);
    // Each --map directory too: what the VM may reach there is what this user could.
    auto volumes = request.getSpec().getVolumes();
    openVolumes(volumes, request.initVolumeDirs(volumes.size()));
  }

  // Opens each volume's host directory as this user, for the supervisor (which never opens them
  // by path itself).
  static void openVolumes(capnp::List<rpc::Volume>::Reader volumes,
                          capnp::List<rpc::FileHandle, capnp::Kind::INTERFACE>::Builder dirs) {
    for (unsigned i = 0; i < volumes.size(); ++i) {
      try {
        dirs.set(i, ipc::fileHandle(ipc::openDirectory(volumes[i].getHostPath().cStr())));
      } catch (const Error& e) {
        throw Error(fmt::format("--map: {}", e.what()));
      }
    }
  }

  std::filesystem::path connect(bool autostart) {
    auto endpoint = resolveEndpoint(ctx_.uid, ctx_.env, opt_.socket);
    if (autostart) ensureSupervisor(endpoint, kSupervisorReadyTimeout);
    return endpoint.socket;
  }

  const CliContext& ctx_;
  const Options& opt_;
};

// CLI11 reports a mistyped command as "A subcommand is required"; name the word instead.
std::optional<std::string> unknownCommand(CLI::App& app, const std::vector<std::string>& args) {
  CLI::App* current = &app;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") break;
    if (arg == "--socket") {
      ++i;
      continue;
    }
    if (arg.starts_with("-")) continue;
    if (current->get_subcommands({}).empty()) break;
    CLI::App* next = nullptr;
    std::string known;
    for (auto* sub : current->get_subcommands({})) {
      if (sub->check_name(arg)) next = sub;
      known += (known.empty() ? "" : ", ") + sub->get_name();
    }
    if (next == nullptr) {
      return fmt::format("unknown command '{}' (expected one of: {})", arg, known);
    }
    current = next;
  }
  return std::nullopt;
}

void addJsonFlag(CLI::App* cmd, Options& opt) {
  cmd->add_flag("--json", opt.json, "Print JSON for scripts");
}

void addNameOption(CLI::App* cmd, Options& opt) {
  cmd->add_option("--name", opt.name, "The VM's name")->required();
}

}  // namespace

int runCli(const std::vector<std::string>& args, const CliContext& context) {
  Options opt;
  Commands commands(context, opt);
  std::function<int()> action;

  CLI::App app{
      "fcvm: run OCI containers in microVMs, one container per VM, and clone running VMs "
      "from snapshots",
      "fcvm"};
  app.require_subcommand(1);
  app.fallthrough();  // global options (--socket) may follow the command
  app.add_option("--socket", opt.socket,
                 "Supervisor socket (default: FCVM_SOCKET, else the runtime dir's)");
  app.footer(
      "Environment: FCVM_DATA_DIR (default /var/lib/fcvm for root), FCVM_RUNTIME_DIR (default "
      "/run/fcvm for root), FCVM_SOCKET.\nExit codes: 0 ok, 1 error, 2 usage, 3 not implemented "
      "yet, 4 supervisor not running.");

  auto on = [&](CLI::App* cmd, std::function<int()> f) {
    cmd->callback([&action, f] { action = f; });
  };

  auto version = app.add_subcommand("version", "Print fcvm's version");
  addJsonFlag(version, opt);
  on(version, [&] { return commands.version(); });

  auto setup = app.add_subcommand("setup",
                                  "Build or fetch the guest kernel, initramfs and rootfs "
                                  "into the data dir (idempotent)");
  setup->add_flag("--force", opt.force, "Rebuild every artifact");
  addJsonFlag(setup, opt);
  on(setup, [&] { return commands.setup(); });

  RunArgs& run = opt.run;
  auto podman = app.add_subcommand("podman", "Podman-compatible commands");
  podman->require_subcommand(1);
  auto podmanRun = podman->add_subcommand("run", "Run a container in its own microVM");
  podmanRun->add_option("--name", opt.name, "VM name (unique per user; default: generated)");
  podmanRun->add_flag("-d,--detach", run.detach, "Print the name and return at once");
  podmanRun->add_flag("--rm", run.rm, "Remove the VM's disk and records when it exits");
  podmanRun->add_flag("-q,--quiet", run.quiet,
                      "No status line on a terminal while the image is prepared and the VM boots");
  podmanRun->add_flag("--no-snapshot-cache", run.noSnapshotCache,
                      "Boot the VM cold: neither start from nor build a start-up snapshot (by "
                      "default the first run of a configuration is snapshotted just before its "
                      "container starts, and later runs start from that snapshot)");
  podmanRun
      ->add_option("--restart", run.restart,
                   "no|always|on-failure[:N]|unless-stopped: start the VM again (from its image) "
                   "when it ends, also after a host restart (always); needs -d")
      ->capture_default_str();
  podmanRun->add_option("--cpu", run.cpus, "vCPUs")->capture_default_str();
  podmanRun->add_option("--mem", run.memMib, "Guest memory in MiB")->capture_default_str();
  // Repeatable options take one value each time, so what follows is the image and its command.
  podmanRun->add_option("-e,--env", run.env, "K=V environment for the container")
      ->allow_extra_args(false);
  podmanRun->add_option("-w,--workdir", run.workdir, "Working directory in the container");
  podmanRun->add_option("-u,--user", run.user, "User in the container");
  podmanRun->add_flag("--privileged", run.privileged, "Run the container privileged");
  podmanRun
      ->add_option("-p,--publish", run.ports,
                   "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]: a port of the container on the "
                   "host (repeatable)")
      ->allow_extra_args(false);
  podmanRun
      ->add_option("--network", run.network,
                   "bridged (root's default: its own namespace, NAT), rootless (others' "
                   "default: a user-mode stack, no privilege) or none (loopback only)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "bridged", "rootless", "none"}));
  podmanRun->add_option("--dns", run.dns, "A resolver for the guest instead of the host's")
      ->allow_extra_args(false);
  podmanRun
      ->add_option("--map,-v", run.maps,
                   "HOSTDIR:GUESTPATH[:ro]: share a host directory (read and written with your "
                   "rights) at GUESTPATH in the container; repeatable")
      ->allow_extra_args(false);
  podmanRun->add_option("--rootfs-size", run.rootfsMib, "Grow the VM's disk to this many MiB");
  podmanRun->add_option("--accel", run.accel, "auto|kvm|tcg")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}));
  podmanRun->add_option("--health-cmd", run.healthCmd, "Command whose success means healthy");
  podmanRun
      ->add_option("--pull", run.pull,
                   "missing (pull an image from its registry unless it is in your storage), "
                   "always, or never")
      ->capture_default_str()
      ->check(CLI::IsMember({"missing", "always", "never"}));
  podmanRun
      ->add_option("--tls-verify", run.tlsVerify,
                   "Verify the registry's TLS certificate (--tls-verify=false for a local "
                   "registry without one)")
      ->capture_default_str();
  podmanRun->add_option("--health-check", run.healthCheck,
                        "http://[HOST]:PORT/PATH: a GET from the host (HOST: its loopback, where "
                        "a published port answers); 2xx or 3xx means healthy");
  podmanRun->add_flag("--verbose", run.verbose, "Say how to read the VM's console and worker logs");
  podmanRun->add_option("image", run.image, "Image (localhost/..., oci-archive:PATH, ...)")
      ->required();
  podmanRun->add_option("command", run.command, "Command and arguments for the container");
  podmanRun->positionals_at_end();  // options after the image belong to the container's command
  podmanRun->footer(
      "In the foreground the container's stdout and stderr are this command's, it exits with the "
      "container's exit code, and the VM stops when this command ends, however it ends.");
  on(podmanRun, [&] { return commands.podmanRun(); });

  auto ls = app.add_subcommand("ls", "List VMs (yours; root sees all)");
  addJsonFlag(ls, opt);
  on(ls, [&] { return commands.ls(); });

  auto inspect = app.add_subcommand("inspect", "Show one VM as JSON");
  addNameOption(inspect, opt);
  on(inspect, [&] { return commands.inspect(); });

  auto exec = app.add_subcommand("exec",
                                 "Run a command in a VM's guest OS, or with -c in its "
                                 "container");
  addNameOption(exec, opt);
  exec->add_flag("-c,--container", opt.exec.inContainer, "Run inside the container");
  exec->add_flag("-i,--interactive", opt.exec.interactive, "Pass stdin");
  exec->add_flag("-t,--tty", opt.exec.tty, "Allocate a pseudo-terminal");
  exec->add_option("command", opt.exec.command, "Command (after --)")->required();
  exec->footer("Exits with the command's exit code (128+N when a signal N ended it).");
  on(exec, [&] { return commands.exec(); });

  auto logs = app.add_subcommand("logs", "Show a VM's container output");
  addNameOption(logs, opt);
  logs->add_flag("-f,--follow", opt.follow, "Keep following until the container exits");
  logs->add_option("--source", opt.logSource,
                   "container (its stdout/stderr), console (the guest's serial console) or "
                   "worker (setup, QEMU, agent, states)")
      ->capture_default_str()
      ->check(CLI::IsMember({"container", "console", "worker"}));
  on(logs, [&] { return commands.logs(); });

  auto stop = app.add_subcommand("stop", "Stop a VM and wait until it has stopped");
  addNameOption(stop, opt);
  stop->add_option("-t,--time", opt.timeoutSeconds, "Seconds the guest gets to power off")
      ->capture_default_str();
  addJsonFlag(stop, opt);
  on(stop, [&] { return commands.stop(); });

  auto wait = app.add_subcommand("wait", "Wait until a VM is running, healthy or has ended");
  addNameOption(wait, opt);
  wait->add_option("--condition", opt.condition,
                   "running|healthy|ended (for good: not while --restart starts it again)")
      ->capture_default_str()
      ->check(CLI::IsMember({"running", "healthy", "ended"}));
  addJsonFlag(wait, opt);
  on(wait, [&] { return commands.wait(); });

  auto rm = app.add_subcommand("rm", "Remove a VM's disk and records");
  addNameOption(rm, opt);
  rm->add_flag("-f,--force", opt.force, "Stop it first if it is running");
  on(rm, [&] { return commands.rm(); });

  auto snapshot = app.add_subcommand("snapshot", "Snapshots of running VMs and their clones");
  snapshot->require_subcommand(1);
  auto snapCreate = snapshot->add_subcommand(
      "create", "Snapshot a running VM: it pauses for the copy and goes on");
  snapCreate->add_option("--name", opt.name, "The VM to snapshot");
  snapCreate->add_option("--pid", opt.pid, "The VM to snapshot, by its fcvm-worker's pid");
  snapCreate->add_option("--tag", opt.tag, "The snapshot's tag (unique per user)")->required();
  addJsonFlag(snapCreate, opt);
  snapCreate->footer(
      "The guest's file systems are frozen, the VM paused, its device state, memory and disk "
      "saved, then it resumes. Prints the pause time.");
  on(snapCreate, [&] { return commands.snapshotCreate(); });
  auto snapLs = snapshot->add_subcommand("ls", "List snapshots (yours; root sees all)");
  addJsonFlag(snapLs, opt);
  on(snapLs, [&] { return commands.snapshotLs(); });
  auto snapRm = snapshot->add_subcommand("rm", "Remove a snapshot");
  snapRm->add_option("tag", opt.tag, "Snapshot tag")->required();
  snapRm->add_flag("-f,--force", opt.force, "Stop its clones and serve process first");
  on(snapRm, [&] { return commands.snapshotRm(); });
  auto snapServe =
      snapshot->add_subcommand("serve", "Serve a snapshot's memory to clones (fcvm-uffd-server)");
  snapServe->add_option("tag", opt.tag, "Snapshot tag")->required();
  snapServe->add_flag("-d,--detach", run.detach, "Print the serve process and return");
  addJsonFlag(snapServe, opt);
  snapServe->footer(
      "In the foreground it serves until this command ends (Ctrl-C), then stops the snapshot's "
      "clones and the serve process. With -d it serves until 'fcvm snapshot stop TAG'.");
  on(snapServe, [&] { return commands.snapshotServe(); });
  auto snapStop = snapshot->add_subcommand(
      "stop", "Stop serving a snapshot: its clones stop, then its serve process");
  snapStop->add_option("tag", opt.tag, "Snapshot tag")->required();
  on(snapStop, [&] { return commands.snapshotStop(); });
  auto snapRun = snapshot->add_subcommand("run", "Start a clone from a snapshot");
  snapRun->add_option("--from", opt.tag, "Snapshot tag");
  snapRun->add_option("--pid", opt.pid, "The snapshot served by this fcvm-uffd-server pid");
  snapRun->add_option("--name", opt.name, "The clone's name and hostname (default: generated)");
  snapRun->add_flag("-d,--detach", run.detach, "Print the name and return at once");
  snapRun->add_flag("--rm", run.rm, "Remove the clone's disk and records when it exits");
  snapRun->add_flag("-q,--quiet", run.quiet, "No status line on a terminal while the clone starts");
  snapRun
      ->add_option("-p,--publish", run.ports,
                   "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]: the clone's own published port")
      ->allow_extra_args(false);
  snapRun->footer(
      "The clone goes on from the snapshot with its own name, disk, clock and identity; its "
      "memory is the snapshot's, shared with every other clone until written. In the foreground "
      "its output from the snapshot on is this command's, and it exits with the container's "
      "code.");
  on(snapRun, [&] { return commands.snapshotRun(); });

  auto doctor = app.add_subcommand("doctor",
                                   "What this host can do: KVM/TCG, reflink, uffd, "
                                   "fuse, network tools");
  addJsonFlag(doctor, opt);
  on(doctor, [&] { return commands.doctor(); });

  auto system =
      app.add_subcommand("system", "What fcvm keeps on disk, and removing what is unused");
  system->require_subcommand(1);
  auto systemDf = system->add_subcommand("df",
                                         "Disk used by artifacts, image disks, VMs, "
                                         "snapshots and logs, and what a prune would free");
  systemDf->add_flag("-v,--verbose", opt.verbose, "List every item: path, size, owner, in use");
  addJsonFlag(systemDf, opt);
  systemDf->footer(
      "Your VMs and snapshots (root: everyone's) and the shared artifacts and image disks. ACTIVE "
      "counts what is in use: the current artifacts and any a running VM or a snapshot names, the "
      "disks and logs of VMs that have not ended. Sizes are blocks allocated: a reflinked disk "
      "counts the extents it shares too.");
  on(systemDf, [&] { return commands.systemDf(); });
  auto systemPrune = system->add_subcommand(
      "prune", "Remove stopped VMs, unused start-up snapshots and artifacts");
  systemPrune->add_flag("-a,--all", opt.all, "Also remove image disks that no VM or snapshot uses");
  systemPrune->add_flag("-f,--force", opt.force, "Do not ask for confirmation");
  addJsonFlag(systemPrune, opt);
  systemPrune->footer(
      "Removes your stopped and failed VMs (root: everyone's), as rm does. Root (or a user's own "
      "supervisor) also removes guest artifacts that are not the current set and that no running "
      "VM or snapshot names, and with --all image disks that none names; they are made again when "
      "needed. Start-up snapshots (the run cache) that no VM runs from go too; other snapshots "
      "stay: 'fcvm snapshot rm' removes them.");
  on(systemPrune, [&] { return commands.systemPrune(); });

  auto supervisor = app.add_subcommand("supervisor", "The fcvm-supervisor daemon");
  supervisor->require_subcommand(1);
  auto supStatus = supervisor->add_subcommand("status", "Is it running, where, since when");
  addJsonFlag(supStatus, opt);
  on(supStatus, [&] { return commands.supervisorStatus(); });
  auto supStart = supervisor->add_subcommand("start", "Start it unless it is running");
  addJsonFlag(supStart, opt);
  on(supStart, [&] { return commands.supervisorStart(); });
  auto supStop = supervisor->add_subcommand("stop", "Stop it and wait until it has exited");
  on(supStop, [&] { return commands.supervisorStop(); });

  if (auto unknown = unknownCommand(app, args)) {
    context.err << "fcvm: error: " << *unknown << "\nRun 'fcvm --help' for usage.\n";
    return kExitUsage;
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend() - 1);
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {  // --help and friends
      app.exit(e, context.out, context.err);
      return 0;
    }
    context.err << "fcvm: error: " << e.what() << "\n"
                << "Run 'fcvm --help' for usage.\n";
    return kExitUsage;
  }

  try {
    return action ? action() : kExitUsage;
  } catch (const Error& e) {
    context.err << "fcvm: error: " << e.what() << "\n";
  } catch (const kj::Exception& e) {
    context.err << "fcvm: error: " << describe(e) << "\n";
  } catch (const std::exception& e) {
    context.err << "fcvm: error: " << e.what() << "\n";
  }
  return kExitError;
}

}  // namespace fcvm::cli
