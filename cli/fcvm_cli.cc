#include "cli/fcvm_cli.h"

#include <kj/exception.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/install_layout.h"
#include "base/unique_fd.h"
#include "cli/doctor.h"
#include "cli/supervisor_endpoint.h"
#include "cli/supervisor_session.h"
#include "cli/vm_view.h"
#include "setup/guest_setup.h"

namespace fcvm::cli {
namespace {

using nlohmann::json;

constexpr std::chrono::milliseconds kSupervisorReadyTimeout{30000};
constexpr int kSupervisorStopTimeoutMs = 15000;

// Everything the parsed options feed; the chosen command's action reads it.
struct Options {
  std::optional<std::string> socket;
  bool json = false;
  bool force = false;
  std::string name;
};

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
    }
    return 0;
  }

  int inspect() {
    SupervisorSession session(connect(true));
    auto request = session.api().getVmRequest();
    request.setName(opt_.name);
    auto reply = request.send().wait(session.waitScope());
    ctx_.out << vmToJson(reply.getVm()).dump(2) << "\n";
    return 0;
  }

  int rm() {
    SupervisorSession session(connect(true));
    if (opt_.force) {
      auto get = session.api().getVmRequest();
      get.setName(opt_.name);
      auto vm = get.send().wait(session.waitScope()).getVm();
      auto state = vm.getState();
      if (state != rpc::VmState::STOPPED && state != rpc::VmState::FAILED) {
        return notImplemented("rm -f of a running VM (stopping VMs comes with the VM worker)");
      }
    }
    auto request = session.api().removeVmRequest();
    request.setName(opt_.name);
    request.send().wait(session.waitScope());
    ctx_.out << opt_.name << "\n";
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
    auto s = session.api().statusRequest().send().wait(session.waitScope()).getStatus();
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

  int notImplemented(const std::string& what) {
    ctx_.err << "fcvm: " << what << " is not implemented yet\n";
    return kExitNotImplemented;
  }

 private:
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
  auto unimplemented = [&](CLI::App* cmd, std::string what) {
    on(cmd, [&commands, what] { return commands.notImplemented(what); });
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

  // `podman run` declares its full interface now, so --help already answers.
  struct RunSpec {
    std::string image, workdir, user, accel = "auto", healthCmd;
    std::vector<std::string> command, env, ports, maps;
    bool detach = false, privileged = false, rm = false, verbose = false;
    unsigned cpus = 1, memMib = 256, rootfsMib = 0;
  } run;
  auto podman = app.add_subcommand("podman", "Podman-compatible commands");
  podman->require_subcommand(1);
  auto podmanRun = podman->add_subcommand("run", "Run a container in its own microVM");
  podmanRun->add_option("--name", opt.name, "VM name (unique per user; default: generated)");
  podmanRun->add_flag("-d,--detach", run.detach, "Print the name and return at once");
  podmanRun->add_flag("--rm", run.rm, "Remove the VM's disk and records when it exits");
  podmanRun->add_option("--cpu", run.cpus, "vCPUs")->capture_default_str();
  podmanRun->add_option("--mem", run.memMib, "Guest memory in MiB")->capture_default_str();
  podmanRun->add_option("-e,--env", run.env, "K=V environment for the container");
  podmanRun->add_option("-w,--workdir", run.workdir, "Working directory in the container");
  podmanRun->add_option("-u,--user", run.user, "User in the container");
  podmanRun->add_flag("--privileged", run.privileged, "Run the container privileged");
  podmanRun->add_option("-p,--publish", run.ports, "HOSTPORT:GUESTPORT[/tcp|udp]");
  podmanRun->add_option("--map", run.maps, "HOST:GUEST[:ro] directory shared into the VM");
  podmanRun->add_option("--rootfs-size", run.rootfsMib, "Grow the VM's disk to this many MiB");
  podmanRun->add_option("--accel", run.accel, "auto|kvm|tcg")->capture_default_str();
  podmanRun->add_option("--health-cmd", run.healthCmd, "Command whose success means healthy");
  podmanRun->add_flag("--verbose", run.verbose, "Also show the guest console and agent logs");
  podmanRun->add_option("image", run.image, "Image (localhost/..., oci-archive:PATH, ...)")
      ->required();
  podmanRun->add_option("command", run.command, "Command and arguments for the container");
  unimplemented(podmanRun, "'fcvm podman run'");

  auto ls = app.add_subcommand("ls", "List VMs (yours; root sees all)");
  addJsonFlag(ls, opt);
  on(ls, [&] { return commands.ls(); });

  auto inspect = app.add_subcommand("inspect", "Show one VM as JSON");
  addNameOption(inspect, opt);
  on(inspect, [&] { return commands.inspect(); });

  bool inContainer = false, interactive = false, tty = false;
  std::vector<std::string> execCommand;
  auto exec = app.add_subcommand("exec",
                                 "Run a command in a VM's guest OS, or with -c in its "
                                 "container");
  addNameOption(exec, opt);
  exec->add_flag("-c,--container", inContainer, "Run inside the container");
  exec->add_flag("-i,--interactive", interactive, "Pass stdin");
  exec->add_flag("-t,--tty", tty, "Allocate a pseudo-terminal");
  exec->add_option("command", execCommand, "Command (after --)")->required();
  unimplemented(exec, "'fcvm exec'");

  bool follow = false;
  auto logs = app.add_subcommand("logs", "Show a VM's container output");
  addNameOption(logs, opt);
  logs->add_flag("-f,--follow", follow, "Keep following");
  unimplemented(logs, "'fcvm logs'");

  auto stop = app.add_subcommand("stop", "Stop a VM");
  addNameOption(stop, opt);
  unimplemented(stop, "'fcvm stop'");

  auto rm = app.add_subcommand("rm", "Remove a stopped VM's disk and records");
  addNameOption(rm, opt);
  rm->add_flag("-f,--force", opt.force, "Stop it first if it is running");
  on(rm, [&] { return commands.rm(); });

  std::string tag, from;
  auto snapshot = app.add_subcommand("snapshot", "Snapshots of running VMs and their clones");
  snapshot->require_subcommand(1);
  auto snapCreate = snapshot->add_subcommand("create", "Snapshot a running VM");
  addNameOption(snapCreate, opt);
  snapCreate->add_option("--tag", tag, "Snapshot tag")->required();
  unimplemented(snapCreate, "'fcvm snapshot create'");
  auto snapServe = snapshot->add_subcommand("serve", "Serve a snapshot's memory to clones");
  snapServe->add_option("tag", tag, "Snapshot tag")->required();
  unimplemented(snapServe, "'fcvm snapshot serve'");
  auto snapRun = snapshot->add_subcommand("run", "Start a clone from a snapshot");
  snapRun->add_option("--from", from, "Snapshot tag")->required();
  addNameOption(snapRun, opt);
  unimplemented(snapRun, "'fcvm snapshot run'");

  auto doctor = app.add_subcommand("doctor",
                                   "What this host can do: KVM/TCG, reflink, uffd, "
                                   "fuse, network tools");
  addJsonFlag(doctor, opt);
  on(doctor, [&] { return commands.doctor(); });

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
