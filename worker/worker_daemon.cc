#include "worker/worker_daemon.h"

#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/capped_file.h"
#include "base/error.h"
#include "base/free_space.h"
#include "base/host_port.h"
#include "base/log.h"
#include "base/process_identity.h"
#include "ipc/agent.capnp.h"
#include "ipc/guest_network.h"
#include "ipc/listening_socket.h"
#include "ipc/ready_pipe.h"
#include "ipc/rpc_server.h"
#include "ipc/vm_spec.h"
#include "setup/artifact_store.h"
#include "worker/accelerator.h"
#include "worker/console_recorder.h"
#include "worker/image_cache.h"
#include "worker/machine_description.h"
#include "worker/qemu_jail.h"
#include "worker/qemu_vmm.h"
#include "worker/seccomp_policy.h"
#include "worker/vm_disk.h"
#include "worker/vm_runner.h"
#include "worker/vm_snapshot.h"
#include "worker/volume_server.h"
#include "worker/worker_service.h"

namespace fcvm::worker {
namespace {

// The supervisor passes a snapshot's three files in one call.
constexpr unsigned kSupervisorFds = 3;
// The descriptor numbers QEMU finds the snapshot's memory image (a clone) and its TAP (bridged) at.
constexpr int kCloneMemoryFd = 3;
constexpr int kQemuTapFd = 4;
constexpr int kQemuConsoleFd = 5;
// The least free space a VM starts with on the storage: its disk shares the base image's extents
// and grows only as the guest writes, but podman's own state in the guest needs that much at once.
constexpr uint64_t kMinFreeForVmDisk = uint64_t{512} << 20;
constexpr int kFirstQemuVolumeFd = 6;  // and on, one per volume

// What a worker prepares before its event loop exists.
struct PreparedVm {
  // The uid its QEMU runs as; released after QEMU is gone (the runner, which holds QEMU, goes
  // first).
  std::optional<JailIdentity> jailIdentity;
  std::unique_ptr<ipc::ListeningSocket> control;
  std::unique_ptr<ipc::ListeningSocket> qmp;
  std::unique_ptr<QemuProcess> qemu;
  agent::RunPlan plan;
  std::vector<std::string> healthCheck;
  std::optional<ipc::HttpCheck> httpCheck;
  std::filesystem::path memoryFile;
  std::filesystem::path rootDisk;
  std::string restoreInfo;  // what its clones need (JSON): the machine, the health check
  std::optional<RestoreFrom> restore;
  std::vector<VolumeServer> volumes;  // live as long as the worker (and die with it)
  UniqueFd console;                   // our end of the serial console's socket pair
};

// Removes the VM's runtime directory (sockets) and guest memory file on every way out of the
// worker but a kill, after which the supervisor does.
class RunDir {
 public:
  RunDir(std::filesystem::path path, std::filesystem::path memoryFile)
      : path_(std::move(path)), memoryFile_(std::move(memoryFile)) {
    ensureOwnedDirectory(path_.parent_path(), 0700);
    ensureOwnedDirectory(path_, 0700);
  }
  ~RunDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
    std::filesystem::remove(memoryFile_, ignored);
  }
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::filesystem::path memoryFile_;
};

// The sockets QEMU connects to (the host listens first), QEMU itself, and its pid on record: a
// supervisor that outlives this worker makes sure QEMU is gone before it calls the VM ended (QEMU
// also dies with the worker, but asynchronously).
void startQemu(PreparedVm& vm, QemuConfig& config, const RunDir& run, const Paths& paths,
               const std::filesystem::path& vmDir) {
  vm.control = std::make_unique<ipc::ListeningSocket>(run.path() / "control.sock", 0600);
  vm.qmp = std::make_unique<ipc::ListeningSocket>(run.path() / "qmp.sock", 0600);
  // The agent's channel first; a clone's machine names it already (its snapshot's, in order).
  auto control = std::find_if(config.channels.begin(), config.channels.end(),
                              [](const SerialChannel& c) { return c.name == "fcvm.control"; });
  if (control == config.channels.end()) {
    control = config.channels.insert(config.channels.begin(), {"fcvm.control", {}});
  }
  control->socket = vm.control->path();
  config.qmpSocket = vm.qmp->path();
  config.name = run.path().string();
  config.consoleLog = vmDir / "console.log";
  int console[2];
  checkSys(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console), "socketpair");
  vm.console.reset(console[0]);
  UniqueFd qemuConsole(console[1]);
  config.consoleFd = kQemuConsoleFd;
  config.inheritedFds[kQemuConsoleFd] = qemuConsole.get();
  // A user's own (non-root) supervisor has no other uid to give QEMU: it runs as that user, with
  // no more rights than the user has anyway.
  QemuConfig jailed = config;
  UniqueFd qemuLock;
  if (::geteuid() == 0) {
    vm.jailIdentity = JailIdentity::acquire(paths.jailUidLocks(), JailUids::load(paths.configFile));
    auto jailDir = run.path() / "jail";
    ensureOwnedDirectory(jailDir, 0700);
    qemuLock = vm.jailIdentity->lockForQemu();
    jailed.jail = QemuJail{vm.jailIdentity->uid(), vm.jailIdentity->gid(), jailDir, qemuLock.get()};
  }
  vm.qemu = std::make_unique<QemuProcess>(jailed);
  qemuLock.reset();  // QEMU holds its own
  {
    std::ofstream out(run.path() / "qemu.pid");
    out << vm.qemu->pid() << " " << processStartTime(vm.qemu->pid()).value_or(0) << "\n";
  }
  spdlog::info("qemu pid {} started ({} vCPU, {} MiB{}), {}", vm.qemu->pid(), config.cpus,
               config.memoryMib, config.incoming ? ", restoring" : "",
               jailed.jail ? fmt::format("jailed as uid {}", jailed.jail->uid)
                           : fmt::format("as uid {}, unjailed", ::geteuid()));
  // Which port each volume's server is on: a clone's are on the other ones.
  nlohmann::json volumes = nlohmann::json::array();
  for (const auto& v : vm.plan.volumes) volumes.push_back({{"tag", v.hostTag}, {"port", v.port}});
  vm.restoreInfo = nlohmann::json{
      {"machine", describeMachine(config)},
      {"health_check", vm.healthCheck},
      {"volumes",
       volumes}}.dump();
}

std::string randomBytes(size_t n);

// The VM's network card and what is behind it: the TAP netd made (bridged), or QEMU's user-mode
// stack with the published ports (rootless, checked free first: QEMU would only fail to start).
// A clone keeps its snapshot's MAC (`mac`); a new VM gets a random locally administered one.
void setUpNetwork(QemuConfig& config, const ipc::VmSpec& spec, const WorkerOptions& options,
                  const std::string& mac) {
  config.network.mode = spec.network;
  if (spec.network == "bridged") {
    if (options.tapFd < 0) throw Error("a bridged VM needs its TAP (--tap-fd)");
    config.network.tapFd = kQemuTapFd;
    config.inheritedFds[kQemuTapFd] = options.tapFd;
  } else if (spec.network == "rootless") {
    // Root's workers jail QEMU as an unprivileged uid, which cannot listen on privileged ports.
    unsigned unprivilegedStart = 1024;
    std::ifstream("/proc/sys/net/ipv4/ip_unprivileged_port_start") >> unprivilegedStart;
    for (const auto& port : spec.ports) {
      if (::geteuid() == 0 && port.hostPort < unprivilegedStart) {
        throw Error(fmt::format(
            "host port {} is privileged, and with --network rootless the VM's QEMU listens as an "
            "unprivileged uid: publish a port from {} up, or use --network bridged",
            port.hostPort, unprivilegedStart));
      }
      checkHostPortFree(port.hostIp, port.hostPort, port.protocol);
    }
    config.network.forwards = spec.ports;
  }
  if (!mac.empty()) {
    config.network.mac = mac;
  } else {
    auto bytes = randomBytes(4);
    config.network.mac =
        fmt::format("02:fc:{:02x}:{:02x}:{:02x}:{:02x}", static_cast<uint8_t>(bytes[0]),
                    static_cast<uint8_t>(bytes[1]), static_cast<uint8_t>(bytes[2]),
                    static_cast<uint8_t>(bytes[3]));
  }
}

// What the guest agent configures eth0 with; nullopt without a network.
std::optional<agent::GuestNetwork> guestNetworkOf(const ipc::VmSpec& spec) {
  if (spec.network != "bridged" && spec.network != "rootless") return std::nullopt;
  agent::GuestNetwork network{ipc::kGuestAddress, ipc::kGuestPrefix, ipc::kGatewayAddress, {}};
  if (spec.network == "bridged") {
    // The namespace answers DNS at the gateway, forwarding to --dns or the host's resolver.
    network.nameservers = {ipc::kGatewayAddress};
  } else {
    network.nameservers = spec.dns.empty() ? std::vector<std::string>{ipc::kRootlessDns} : spec.dns;
  }
  return network;
}

std::vector<std::string> healthCheckOf(const ipc::VmSpec& spec,
                                       const std::vector<std::string>& imageHealthCheck) {
  // --health-cmd wins over the image's HEALTHCHECK, as with podman.
  if (spec.healthCmd.empty()) return imageHealthCheck;
  return {"/bin/sh", "-c", spec.healthCmd};
}

// The VM's channel named `name`: a clone's machine names its channels already, a new VM gets it.
SerialChannel& channelNamed(QemuConfig& config, const std::string& name) {
  auto it = std::find_if(config.channels.begin(), config.channels.end(),
                         [&name](const SerialChannel& c) { return c.name == name; });
  if (it != config.channels.end()) return *it;
  return config.channels.emplace_back(SerialChannel{name, {}});
}

// Each --map volume: its sandboxed server, its channel as a port of the VM (QEMU holds the VM's
// end; once QEMU is gone the server sees the end of its stream and exits), and its place in the
// agent's plan. Volume i's server is on its port `ports[i]`; its other port leads nowhere (in a
// clone, the one its snapshot's client used: agent.capnp, Volume). Returns our copies of the VM's
// ends, to close once QEMU has its own.
std::vector<UniqueFd> startVolumes(PreparedVm& vm, QemuConfig& config, const ipc::VmSpec& spec,
                                   const WorkerOptions& options,
                                   const std::vector<uint8_t>& ports) {
  if (options.volumeFds.size() != spec.volumes.size()) {
    throw Error(fmt::format("{} --map volumes but {} directories (--volume-fd)",
                            spec.volumes.size(), options.volumeFds.size()));
  }
  auto owner = Credentials::ofUser(options.owner.uid, options.owner.gid);
  std::vector<UniqueFd> vmEnds;
  for (size_t i = 0; i < spec.volumes.size(); ++i) {
    const auto& volume = spec.volumes[i];
    UniqueFd dir(options.volumeFds[i]);  // the server has its own copy once started
    auto& server = vm.volumes.emplace_back(i, volume, dir.get(), owner, STDERR_FILENO);
    int qemuFd = kFirstQemuVolumeFd + static_cast<int>(i);
    vmEnds.push_back(server.takeVmEnd());
    config.inheritedFds[qemuFd] = vmEnds.back().get();
    for (uint8_t port : {0, 1}) {
      auto& channel = channelNamed(config, agent::volumePortName(server.tag(), port));
      channel.fd = port == ports[i] ? qemuFd : -1;
      channel.discard = port != ports[i];
    }
    vm.plan.volumes.push_back({server.tag(), volume.guestPath, volume.readOnly, ports[i]});
    spdlog::info("volume {}: {} at {}{}, fuse-pipe server pid {} on port {}", server.tag(),
                 volume.hostPath, volume.guestPath, volume.readOnly ? " (read-only)" : "",
                 server.pid(), ports[i]);
  }
  return vmEnds;
}

// A clone's volumes: the snapshot's (restore.json), each served on the port its snapshot did not
// use.
std::vector<uint8_t> clonePortsOf(const nlohmann::json& info, const ipc::VmSpec& spec) {
  std::vector<uint8_t> ports;
  if (info.contains("volumes")) {
    const auto& volumes = info["volumes"];
    if (!volumes.is_array()) throw Error("snapshot restore.json: volumes is not a list");
    for (const auto& v : volumes) {
      if (!v.is_object() || !v.contains("port") || !v["port"].is_number_unsigned() ||
          v["port"].get<unsigned>() > 1) {
        throw Error("snapshot restore.json: a volume without a port 0 or 1");
      }
      ports.push_back(static_cast<uint8_t>(1 - v["port"].get<unsigned>()));
    }
  }
  if (ports.size() != spec.volumes.size()) {
    throw Error(fmt::format("the snapshot's machine has {} volumes, its spec {}", ports.size(),
                            spec.volumes.size()));
  }
  return ports;
}

// The VM's image: prepared by this worker as its owner, or by the preparing step before it
// (prepareImageOnly), which left <vm dir>/image.json.
PreparedImage imageOf(const WorkerOptions& options, const ipc::VmSpec& spec) {
  auto vmDir = options.paths.vmDir(options.id);
  if (options.imagePrepared) return ipc::readPreparedImage(vmDir / "image.json");
  ImageRequest request{spec.image, options.imageFd, options.owner,
                       ipc::readPodmanEnvFile((vmDir / "podman-env.json").string())};
  auto image =
      ImageCache(options.paths.imageCacheDir()).prepare(request, (vmDir / "image.log").string());
  if (options.imageFd >= 0) ::close(options.imageFd);
  spdlog::info("image {} ready as {} ({})", spec.image, image.reference,
               image.built ? "prepared now" : "cached");
  return image;
}

// The container's part of the plan: what the agent gets once the guest is ready (its volumes are
// added by startVolumes).
void fillPlan(agent::RunPlan& plan, const ipc::VmSpec& spec, const std::string& imageReference) {
  plan.image = imageReference;
  plan.command = spec.command;
  plan.env = spec.env;
  plan.user = spec.user;
  plan.workdir = spec.workdir;
  plan.privileged = spec.privileged;
  plan.guestNetwork = guestNetworkOf(spec);
  plan.network = plan.guestNetwork ? agent::NetworkMode::kHost : agent::NetworkMode::kNone;
  plan.hostname = spec.name;
}

PreparedVm prepareBoot(const WorkerOptions& options, const ipc::VmSpec& spec, const RunDir& run) {
  const Paths& paths = options.paths;
  auto artifacts = setup::currentArtifacts(paths.dataDir);
  if (!artifacts) {
    throw Error(fmt::format("no guest artifacts in {}: run `fcvm setup` as root first",
                            paths.dataDir.string()));
  }
  // Refused now rather than failing half way: guest RAM is a file on tmpfs, where running short
  // would kill QEMU with SIGBUS in mid-run; the disk needs room for the guest's first writes.
  ensureOwnedDirectory(paths.memoryDir, 0700);
  requireFreeSpace(paths.memoryDir, uint64_t{spec.memoryMib} << 20,
                   fmt::format("the VM's {} MiB of guest memory", spec.memoryMib));
  requireFreeSpace(paths.storageDir(), kMinFreeForVmDisk, "a VM's disk");
  auto accel = chooseAccelerator({artifacts->kernel, paths.accelProbeCache()},
                                 parseAccelRequest(spec.accel));
  spdlog::info("accelerator {}: {}", accel.name, accel.reason);

  auto vmDir = paths.vmDir(options.id);
  auto image = imageOf(options, spec);

  auto diskDir = paths.vmDiskDir(options.id);
  std::filesystem::create_directories(diskDir);
  auto disk = createVmDisk(artifacts->rootfs, diskDir / "rootfs.ext4", spec.rootfsSizeMib);
  spdlog::info("disk {} ({} MiB, {})", disk.path.string(), disk.sizeBytes >> 20,
               disk.reflinked ? "reflinked" : "copied");

  PreparedVm vm;
  vm.healthCheck = healthCheckOf(spec, image.healthcheck);
  QemuConfig config;
  config.accel = accel.name;
  config.cpus = spec.cpus;
  config.memoryMib = spec.memoryMib;
  config.kernel = artifacts->kernel;
  config.initramfs = artifacts->initramfs;
  config.rootDisk = disk.path;
  // Guest RAM in a shared file, so the VM can be snapshotted and its clones share its pages.
  config.memoryFile = paths.vmMemoryFile(options.id);
  config.extraDisks.push_back({image.disk, true});
  config.extraKernelArgs = "fcvm.images=/dev/vdb";
  setUpNetwork(config, spec, options, "");
  auto volumeEnds =
      startVolumes(vm, config, spec, options, std::vector<uint8_t>(spec.volumes.size(), 0));
  startQemu(vm, config, run, paths, vmDir);
  if (options.tapFd >= 0) ::close(options.tapFd);  // QEMU holds the TAP and the volumes' ends now
  volumeEnds.clear();
  vm.memoryFile = config.memoryFile;
  vm.rootDisk = config.rootDisk;

  fillPlan(vm.plan, spec, image.reference);
  return vm;
}

std::string randomBytes(size_t n) {
  std::string bytes(n, '\0');
  for (size_t done = 0; done < n;) {
    ssize_t got = ::getrandom(bytes.data() + done, n - done, 0);
    checkSys(got, "getrandom");
    done += static_cast<size_t>(got);
  }
  return bytes;
}

// A clone: the snapshot's disk reflinked as its own, QEMU with the snapshot's machine waiting for
// the device state, guest memory the snapshot's image (from its serve process, by fd) mapped
// private, and a new identity for the guest.
PreparedVm prepareClone(const WorkerOptions& options, const ipc::VmSpec& spec, const RunDir& run) {
  const Paths& paths = options.paths;
  const auto& from = options.restoreDir;
  std::ifstream in(from / "restore.json");
  auto info = nlohmann::json::parse(in, nullptr, false);
  if (!info.is_object() || !info.contains("machine")) {
    throw Error(fmt::format("snapshot {} has no readable restore.json", from.string()));
  }
  QemuConfig config = machineFromDescription(info["machine"]);
  for (const auto& file : std::vector<std::filesystem::path>{config.kernel, config.initramfs}) {
    if (!std::filesystem::is_regular_file(file)) {
      throw Error(fmt::format("the snapshot needs {}, which is gone", file.string()));
    }
  }
  for (const auto& d : config.extraDisks) {
    if (!std::filesystem::is_regular_file(d.path)) {
      throw Error(fmt::format("the snapshot needs {}, which is gone", d.path.string()));
    }
  }
  if (options.memoryFd < 0) throw Error("a clone needs its snapshot's memory (--memory-fd)");
  requireFreeSpace(paths.storageDir(), kMinFreeForVmDisk, "a VM's disk");

  auto diskDir = paths.vmDiskDir(options.id);
  std::filesystem::create_directories(diskDir);
  auto disk = createVmDisk(from / "rootfs.ext4", diskDir / "rootfs.ext4", 0);
  spdlog::info("disk {} ({})", disk.path.string(), disk.reflinked ? "reflinked" : "copied");

  // A start-up snapshot was taken before its container started: this clone starts its own, from
  // its own spec, once the guest has resumed.
  bool startsContainer = info.value("startup", false);
  PreparedVm vm;
  std::vector<std::string> imageHealthCheck;
  if (info.contains("health_check") && info["health_check"].is_array()) {
    for (const auto& w : info["health_check"]) {
      if (w.is_string()) imageHealthCheck.push_back(w.get<std::string>());
    }
  }
  vm.healthCheck = spec.healthCmd.empty() ? imageHealthCheck : healthCheckOf(spec, {});
  config.rootDisk = disk.path;
  config.memoryFile = fmt::format("/dev/fd/{}", kCloneMemoryFd);
  config.memoryShared = false;  // copy-on-write: the image is every clone's, never written
  config.inheritedFds[kCloneMemoryFd] = options.memoryFd;
  config.incoming = true;
  if (config.network.mode != spec.network) {
    throw Error(fmt::format("the snapshot's network is {}, the clone's {}", config.network.mode,
                            spec.network));
  }
  setUpNetwork(config, spec, options, config.network.mac);
  auto volumeEnds = startVolumes(vm, config, spec, options, clonePortsOf(info, spec));
  startQemu(vm, config, run, paths, paths.vmDir(options.id));
  ::close(options.memoryFd);
  if (options.tapFd >= 0) ::close(options.tapFd);
  volumeEnds.clear();
  vm.rootDisk = config.rootDisk;

  RestoreFrom restore;
  restore.state.reset(::open((from / "state.bin").c_str(), O_RDONLY | O_CLOEXEC));
  if (!restore.state) throw SysError(errno, "open " + (from / "state.bin").string());
  restore.identity.hostname = spec.name;
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char c : randomBytes(agent::wire::MACHINE_ID_BYTES / 2)) {
    restore.identity.machineId += kHex[c >> 4];
    restore.identity.machineId += kHex[c & 15];
  }
  restore.identity.entropy = randomBytes(64);
  if (startsContainer) {
    // Its own image's health check and its own --health-cmd, never the first run's; its volumes
    // were never mounted: the plan mounts them.
    auto image = imageOf(options, spec);
    vm.healthCheck = healthCheckOf(spec, image.healthcheck);
    fillPlan(vm.plan, spec, image.reference);
    restore.startContainer = true;
  } else {
    restore.identity.volumes = vm.plan.volumes;
  }
  vm.restore = std::move(restore);
  return vm;
}

kj::Own<kj::ConnectionReceiver> wrapListener(kj::AsyncIoContext& io, ipc::ListeningSocket& s) {
  return io.lowLevelProvider->wrapListenSocketFd(s.releaseFd(),
                                                 kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                                                     kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                                                     kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
}

}  // namespace

int prepareImageOnly(const WorkerOptions& options) {
  try {
    auto vmDir = options.paths.vmDir(options.id);
    auto spec = ipc::readVmSpecFile((vmDir / "spec.bin").string());
    auto image = imageOf(options, spec);
    ipc::writePreparedImage(image, vmDir / "image.json");
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    ipc::reportFailure(options.readyFd, e.what());
    return 1;
  }
  ipc::reportReady(options.readyFd);
  return 0;
}

int runWorker(const WorkerOptions& options) {
  const Paths& paths = options.paths;
  // QEMU must not inherit the ready pipe, or the supervisor would never see it closed.
  if (options.readyFd) ::fcntl(*options.readyFd, F_SETFD, FD_CLOEXEC);
  auto vmDir = paths.vmDir(options.id);
  ipc::VmSpec spec;
  std::unique_ptr<RunDir> run;
  PreparedVm vm;
  try {
    spec = ipc::readVmSpecFile((vmDir / "spec.bin").string());
    run = std::make_unique<RunDir>(paths.vmRunDir(options.id), paths.vmMemoryFile(options.id));
    vm = options.restoreDir.empty() ? prepareBoot(options, spec, *run)
                                    : prepareClone(options, spec, *run);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    ipc::reportFailure(options.readyFd, e.what());
    return 1;
  }

  kj::UnixEventPort::captureSignal(SIGTERM);
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);  // the supervisor decides when a VM stops, not a terminal
  auto io = kj::setupAsyncIo();

  // Before the runner, so it records to the end of QEMU's output.
  ConsoleRecorder console(io, std::move(vm.console), vmDir / "console.log", processLogCap());
  RunnerParts parts;
  parts.vmName = spec.name;
  parts.vmm = std::move(vm.qemu);
  parts.control = wrapListener(io, *vm.control);
  parts.plan = vm.plan;
  parts.healthCheck = vm.healthCheck;
  if (!spec.healthCheckUrl.empty()) parts.httpCheck = ipc::parseHttpCheck(spec.healthCheckUrl);
  parts.containerLog = vmDir / "container.log";
  // Set in the supervisor's environment, which its workers inherit.
  parts.containerLogCap = logCapFromEnvironment(
      "FCVM_CONTAINER_LOG_MAX_BYTES", ipc::kDefaultContainerLogCap, ipc::kMinContainerLogCap);
  parts.finalStateFile = vmDir / "final-state.json";
  parts.qmp = wrapListener(io, *vm.qmp);
  parts.memoryFile = vm.memoryFile;
  parts.rootDisk = vm.rootDisk;
  parts.restore = std::move(vm.restore);
  VmRunner runner(io, std::move(parts));
  // A volume's server that ends (killed, crashed) is reaped and logged at once; from then on the
  // guest's accesses to that volume fail (EIO) and the VM goes on.
  std::vector<kj::Own<kj::UnixEventPort::FdObserver>> volumeObservers;
  std::vector<kj::Promise<void>> volumeWatches;  // after the observers: destroyed before them
  for (auto& server : vm.volumes) {
    auto& observer = *volumeObservers.emplace_back(kj::heap<kj::UnixEventPort::FdObserver>(
        io.unixEventPort, server.pidfd(), kj::UnixEventPort::FdObserver::OBSERVE_READ));
    volumeWatches.push_back(observer.whenBecomesReadable()
                                .then([&server] {
                                  auto status = server.reap();
                                  if (status && *status == 0) return;  // its VM's end
                                  spdlog::warn(
                                      "volume {}: its fuse-pipe server ended ({}); the "
                                      "guest's accesses to it fail",
                                      server.tag(),
                                      status ? describeWaitStatus(*status) : "unknown");
                                })
                                .eagerlyEvaluate(nullptr));
  }

  ipc::ListeningSocket socket(run->path() / "worker.sock", 0600);
  auto listener = wrapListener(io, socket);
  ipc::RpcServer server(
      "worker socket",
      [&runner, &vm](kj::AsyncIoStream&) -> capnp::Capability::Client {
        return kj::heap<WorkerService>(runner, vm.restoreInfo);
      },
      capnp::ReaderOptions{}, kSupervisorFds);
  auto serving = server.listen(*listener);

  // Confined before it says it is ready, and never ready unconfined: a worker that cannot load
  // its filter fails the run (its QEMU and volume servers die with it).
  try {
    confineWorker();
  } catch (const Error& e) {
    auto why = fmt::format("cannot confine the worker (seccomp): {}", e.what());
    spdlog::error("{}", why);
    ipc::reportFailure(options.readyFd, why);
    return 1;
  }
  ipc::reportReady(options.readyFd);

  auto onTerm = io.unixEventPort.onSignal(SIGTERM)
                    .then([&runner](siginfo_t) {
                      spdlog::info("SIGTERM: stopping the VM");
                      return runner.stop(std::chrono::seconds(5));
                    })
                    .eagerlyEvaluate(nullptr);
  runner.finished().exclusiveJoin(kj::mv(serving)).wait(io.waitScope);
  spdlog::info("worker done");
  return 0;
}

}  // namespace fcvm::worker
