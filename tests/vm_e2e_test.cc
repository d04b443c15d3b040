// `fcvm podman run / exec / logs / stop / rm / wait` end to end: the real CLI, supervisor,
// workers, QEMU (TCG here) and podman in the guest, with the busybox test image. Each test has its
// own fcvm instance (data and runtime dirs, supervisor); the guest artifacts come from the guest
// fixture's `fcvm setup`. Waiting is done on events (`fcvm wait`, output arriving), never by
// sleeping; the containers' own `sleep` loops are their workload.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/fcvm_instance.h"
#include "tests/support/pseudo_terminal.h"
#include "tests/support/running_command.h"
#include "tests/support/tmpfs_mount.h"
#include "tests/support/vm_fixture.h"

namespace fcvm {
namespace {

using nlohmann::json;
using testing::FcvmInstance;
using testing::RunningCommand;

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The seccomp mode of each thread of process `pid` ("2": filtered), from /proc.
std::vector<std::string> seccompModesOf(pid_t pid) {
  std::vector<std::string> modes;
  std::error_code ec;
  auto tasks = std::filesystem::path("/proc") / std::to_string(pid) / "task";
  for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
    std::ifstream in(task.path() / "status");
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("Seccomp:")) modes.push_back(line.substr(line.find_last_of(" \t") + 1));
    }
  }
  return modes;
}

// A VM's QEMU runs jailed (worker/qemu_jail.h): a uid of the jail range (returned), the same for
// every id, no capabilities, no_new_privs, its own mount and PID namespaces, and a root that
// shows none of the host's data: not this instance's files, not the guest storage (other VMs').
uid_t expectJailed(pid_t qemu, const FcvmInstance& fcvm) {
  auto proc = std::filesystem::path("/proc") / std::to_string(qemu);
  std::map<std::string, std::string> status;
  std::istringstream lines(readFile(proc / "status"));
  for (std::string line; std::getline(lines, line);) {
    auto colon = line.find(':');
    if (colon != std::string::npos) status[line.substr(0, colon)] = line.substr(colon + 2);
  }
  std::istringstream uids(status["Uid"]);
  std::set<uid_t> distinct;
  for (uid_t uid; uids >> uid;) distinct.insert(uid);
  EXPECT_EQ(distinct.size(), 1u) << status["Uid"];
  uid_t uid = distinct.empty() ? 0 : *distinct.begin();
  EXPECT_GE(uid, 1'900'000'000u) << status["Uid"];
  EXPECT_EQ(status["CapPrm"], "0000000000000000");
  EXPECT_EQ(status["CapEff"], "0000000000000000");
  EXPECT_EQ(status["NoNewPrivs"], "1");
  for (const char* ns : {"mnt", "pid"}) {
    EXPECT_NE(std::filesystem::read_symlink(proc / "ns" / ns),
              std::filesystem::read_symlink(std::filesystem::path("/proc/self/ns") / ns))
        << ns;
  }
  auto root = proc / "root";
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    auto name = entry.path().filename().string();
    EXPECT_TRUE(name == "usr" || name == "dev" || name == "proc" || name == "etc" ||
                name == "bin" || name == "sbin" || name.starts_with("lib"))
        << "the jail shows /" << name;
  }
  for (const auto& hidden : {fcvm.dataDir(), fcvm.runtimeDir(), fcvm.memoryDir(),
                             testing::guestStorage(), std::filesystem::path("/tmp")}) {
    EXPECT_FALSE(std::filesystem::exists(root / hidden.relative_path())) << hidden;
  }
  return uid;
}

class VmTest : public testing::VmFixture {
 protected:
  std::string runDetached(const std::string& name, const std::vector<std::string>& command) {
    std::vector<std::string> args = {"podman", "run", "-d", "--name", name, testing::kTestImage};
    args.insert(args.end(), command.begin(), command.end());
    return ok(args);
  }
  void waitFor(const std::string& name, const std::string& condition) {
    auto out = ok({"wait", "--name", name, "--condition", condition});
    ASSERT_FALSE(out.empty());
  }
  // The VM id the supervisor logged for `name`.
  std::string idOf(const std::string& name) {
    std::regex re("runs VM " + name + " \\(([0-9a-f]{16})\\)");
    std::smatch m;
    std::string log = readFile(fcvm_.log());
    if (!std::regex_search(log, m, re)) throw std::runtime_error("no id for " + name);
    return m[1];
  }
  // Nothing of VM `id` is left: no worker, no QEMU, no runtime files, no disk, no records.
  void expectNothingLeftOf(const std::string& id) {
    EXPECT_TRUE(fcvm_.processesOf("fcvm-worker").empty());
    EXPECT_TRUE(fcvm_.processesOf("qemu-system").empty());
    EXPECT_FALSE(std::filesystem::exists(fcvm_.runtimeDir() / "vms" / id));
    EXPECT_FALSE(std::filesystem::exists(fcvm_.memoryDir() / (id + ".mem")));
    EXPECT_FALSE(std::filesystem::exists(testing::guestStorage() / "vms" / id));
    EXPECT_FALSE(std::filesystem::exists(fcvm_.dataDir() / "vms" / id));
    EXPECT_FALSE(std::filesystem::exists(fcvm_.dataDir() / "vms" / (id + ".json")));
    for (const char* hierarchy : {"", "memory", "pids", "cpu"}) {
      EXPECT_FALSE(std::filesystem::exists(std::filesystem::path("/sys/fs/cgroup") / hierarchy /
                                           "fcvm" / id))
          << hierarchy;
    }
  }
  // The cgroup of `pid` in the hierarchy of `controller` (v1), or its v2 cgroup ("").
  static std::string cgroupOf(pid_t pid, const std::string& controller) {
    std::istringstream lines(readFile("/proc/" + std::to_string(pid) + "/cgroup"));
    for (std::string line; std::getline(lines, line);) {
      auto first = line.find(':'), second = line.find(':', first + 1);
      std::string controllers = "," + line.substr(first + 1, second - first - 1) + ",";
      bool match = controller.empty()
                       ? controllers == ",,"
                       : controllers.find("," + controller + ",") != std::string::npos;
      if (match) return line.substr(second + 1);
    }
    return "";
  }
};

TEST_F(VmTest, ForegroundRunStreamsOutputExitsWithTheCodeAndLeavesNothing) {
  auto errFile = fcvm_.dir() / "stderr";
  auto r = fcvm_.fcvm({"podman", "run", "--rm", "--name", "fg", testing::kTestImage, "sh", "-c",
                       "echo out; echo err >&2; exit 7"},
                      std::nullopt, testing::kVmDeadline, errFile.string());
  EXPECT_EQ(r.exitCode, 7) << r.output << readFile(errFile) << supervisorLogTail();
  EXPECT_EQ(r.output, "out\n");
  EXPECT_EQ(readFile(errFile), "err\n");
  EXPECT_EQ(fcvm_.fcvmJson({"ls", "--json"}), json::array());
  expectNothingLeftOf(idOf("fg"));
}

TEST_F(VmTest, DetachedRunExecLogsStopAndRm) {
  EXPECT_EQ(runDetached("web", {"sh", "-c",
                                "echo before; while [ ! -e /tmp/go ]; do sleep 0.2; done; "
                                "echo after; sleep 600"}),
            "web\n");
  waitFor("web", "healthy");
  auto healthy = inspect("web");
  EXPECT_EQ(healthy.at("health"), "healthy");
  // inspect shows a running VM's memory: its guest kernel's view of its 256 MiB, and what its
  // VMM costs the host.
  const auto& vmMemory = healthy.at("memory");
  ASSERT_TRUE(vmMemory.is_object()) << healthy.dump(2);
  EXPECT_EQ(vmMemory.at("reason"), "") << vmMemory.dump(2);
  auto guestTotal = vmMemory.at("guest_total_bytes").get<uint64_t>();
  EXPECT_GT(guestTotal, 128ull << 20) << vmMemory.dump(2);
  EXPECT_LE(guestTotal, 256ull << 20) << vmMemory.dump(2);
  EXPECT_GT(vmMemory.at("guest_available_bytes").get<uint64_t>(), 0u) << vmMemory.dump(2);
  EXPECT_LT(vmMemory.at("guest_available_bytes").get<uint64_t>(), guestTotal) << vmMemory.dump(2);
  EXPECT_GT(vmMemory.at("host_pss_bytes").get<uint64_t>(), 16ull << 20) << vmMemory.dump(2);
  EXPECT_GT(vmMemory.at("host_anon_bytes").get<uint64_t>(), 0u) << vmMemory.dump(2);

  // The worker runs under its filter on every thread, QEMU under its own (-sandbox).
  auto workerModes = seccompModesOf(inspect("web").at("worker_pid").get<pid_t>());
  EXPECT_FALSE(workerModes.empty());
  for (const auto& mode : workerModes) EXPECT_EQ(mode, "2");
  auto qemus = fcvm_.processesOf("qemu-system");
  ASSERT_EQ(qemus.size(), 1u);
  auto qemuModes = seccompModesOf(qemus[0]);
  EXPECT_FALSE(qemuModes.empty());
  for (const auto& mode : qemuModes) EXPECT_EQ(mode, "2");
  expectJailed(qemus[0], fcvm_);

  // The worker and QEMU are held by the VM's cgroup: its 256 MiB of guest memory plus the VMM's
  // allowance, 512 pids, its one vCPU plus one for the VMM. (This host's cgroup layout decides
  // v1 or v2; one of them must be there.)
  std::string id = inspect("web").at("id");
  const std::filesystem::path cgroups = "/sys/fs/cgroup";
  bool v2 = std::filesystem::exists(cgroups / "cgroup.controllers");
  ASSERT_TRUE(v2 || std::filesystem::exists(cgroups / "memory" / "fcvm" / id))
      << "no cgroup of VM " << id << ": " << supervisorLogTail();
  for (pid_t pid : {inspect("web").at("worker_pid").get<pid_t>(), qemus[0]}) {
    for (const char* controller : {"memory", "pids", "cpu"}) {
      EXPECT_EQ(cgroupOf(pid, v2 ? "" : controller), "/fcvm/" + id) << pid << " " << controller;
    }
  }
  const std::string memory = std::to_string((uint64_t{256} + 512) << 20) + "\n";
  if (v2) {
    EXPECT_EQ(readFile(cgroups / "fcvm" / id / "memory.max"), memory);
    EXPECT_EQ(readFile(cgroups / "fcvm" / id / "pids.max"), "512\n");
    EXPECT_EQ(readFile(cgroups / "fcvm" / id / "cpu.max"), "200000 100000\n");
  } else {
    EXPECT_EQ(readFile(cgroups / "memory" / "fcvm" / id / "memory.limit_in_bytes"), memory);
    EXPECT_EQ(readFile(cgroups / "pids" / "fcvm" / id / "pids.max"), "512\n");
    EXPECT_EQ(readFile(cgroups / "cpu" / "fcvm" / id / "cpu.cfs_quota_us"), "200000\n");
  }

  // What the running VM uses is in use: the kernel and the image disk its QEMU holds (a jailed
  // QEMU is given them as fds). A prune leaves them, and the VM, which has not ended.
  std::vector<std::filesystem::path> held;
  for (const auto& fd :
       std::filesystem::directory_iterator("/proc/" + std::to_string(qemus[0]) + "/fd")) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(fd.path(), ec);
    if (!ec) held.push_back(target);
  }
  auto kernel = std::find_if(held.begin(), held.end(), [](const std::filesystem::path& p) {
    return p.filename() == "vmlinux";
  });
  ASSERT_NE(kernel, held.end());
  auto kernelDir = kernel->parent_path();
  auto imageDisk = std::find_if(held.begin(), held.end(), [](const std::filesystem::path& p) {
    return p.string().find("/images/") != std::string::npos;
  });
  ASSERT_NE(imageDisk, held.end());
  auto imageFile = imageDisk->string();
  auto imageDir = imageDisk->parent_path();
  auto df = json::parse(ok({"system", "df", "-v", "--json"}));
  std::set<std::string> inUse;
  for (const auto& item : df.at("items")) {
    // As the kernel names them: QEMU's open files have no symlinks, this instance's storage is one.
    if (item.at("in_use").get<bool>()) {
      inUse.insert(std::filesystem::weakly_canonical(item.at("path").get<std::string>()).string());
    }
  }
  EXPECT_TRUE(inUse.count(kernelDir.string())) << kernelDir << " " << df.dump(2);
  EXPECT_TRUE(inUse.count(imageDir.string())) << imageDir << " " << df.dump(2);
  auto pruned = json::parse(ok({"system", "prune", "-f", "--json"}));
  EXPECT_EQ(pruned.at("vms"), json::array());
  EXPECT_TRUE(std::filesystem::exists(imageFile));
  EXPECT_EQ(inspect("web").at("state"), "healthy");

  // stdin piped through, in the guest OS.
  CommandOptions pipeOptions;
  pipeOptions.timeout = testing::kVmDeadline;
  pipeOptions.extraEnv = fcvm_.env();
  auto piped =
      runCommand({"sh", "-c", "echo hi | \"$0\" exec -i --name web -- cat", FcvmInstance::binary()},
                 pipeOptions);
  EXPECT_EQ(piped.exitCode, 0);
  EXPECT_EQ(piped.output, "hi\n");

  // -c runs inside the container (podman sets container=podman there), without -c the guest OS.
  EXPECT_EQ(ok({"exec", "-c", "--name", "web", "--", "sh", "-c", "echo [$container]"}),
            "[podman]\n");
  EXPECT_EQ(ok({"exec", "--name", "web", "--", "sh", "-c", "echo [$container]"}), "[]\n");
  auto code = fcvm({"exec", "-c", "--name", "web", "--", "sh", "-c", "exit 3"});
  EXPECT_EQ(code.exitCode, 3);

  // -t gets a pty with a window size (the default 24x80 without a local terminal).
  EXPECT_EQ(ok({"exec", "-t", "--name", "web", "--", "sh", "-c", "test -t 1 && stty size"}),
            "24 80\r\n");

  // A container that wants more memory than its VM has is killed in its own guest (the guest
  // kernel's OOM killer: 137, SIGKILL), and nothing else is: the VM beside it answers on.
  auto hog = fcvm({"podman", "run", "--rm", "--mem", "256", testing::kTestImage, "awk",
                   "BEGIN { s = \"0123456789abcdef\"; while (1) s = s s }"});
  EXPECT_EQ(hog.exitCode, 137) << hog.output;
  EXPECT_EQ(ok({"exec", "--name", "web", "--", "echo", "still"}), "still\n");

  // logs -f: attached once "before" arrived, it must then follow "after" live.
  auto env = fcvm_.env();
  RunningCommand follow({FcvmInstance::binary(), "logs", "-f", "--name", "web"}, env);
  ASSERT_TRUE(follow.readUntil("before\n"));
  ok({"exec", "-c", "--name", "web", "--", "touch", "/tmp/go"});
  ASSERT_TRUE(follow.readUntil("after\n"));
  EXPECT_EQ(follow.output(), "before\nafter\n");

  auto stopped = json::parse(ok({"stop", "--name", "web", "--json"}));
  EXPECT_EQ(stopped.at("state"), "stopped");
  EXPECT_TRUE(inspect("web").at("memory").is_null());           // nothing runs, nothing to show
  EXPECT_EQ(WEXITSTATUS(follow.finish()), 0);                   // logs -f ends with the container
  EXPECT_EQ(ok({"logs", "--name", "web"}), "before\nafter\n");  // kept after the stop
  // The worker's own log, readable through the supervisor (the data dir may not be).
  auto workerLog = ok({"logs", "--name", "web", "--source", "worker"});
  EXPECT_NE(workerLog.find("state healthy"), std::string::npos) << workerLog;

  EXPECT_TRUE(
      std::filesystem::exists(testing::guestStorage() / "vms" / id));  // the disk stays until rm
  EXPECT_EQ(ok({"rm", "--name", "web"}), "web\n");
  EXPECT_EQ(fcvm_.fcvmJson({"ls", "--json"}), json::array());
  expectNothingLeftOf(id);
}

// A container that prints far more than the log's cap leaves at most the cap on disk, and `logs`
// still shows its newest output, up to the last line. The same for a guest that floods its serial
// console (hostile, or a kernel in trouble): the worker caps console.log as it records it.
TEST_F(VmTest, EndlessOutputStaysUnderTheLogCapsAndLogsShowTheNewest) {
  constexpr uint64_t kCap = 4 << 20;           // the least a container log's cap may be
  constexpr uint64_t kConsoleCap = 256 << 10;  // FCVM_LOG_MAX_BYTES: console and process logs
  auto started = fcvm({"supervisor", "start"}, std::nullopt,
                      {"FCVM_CONTAINER_LOG_MAX_BYTES=" + std::to_string(kCap),
                       "FCVM_LOG_MAX_BYTES=" + std::to_string(kConsoleCap)});
  ASSERT_EQ(started.exitCode, 0) << started.output;
  ok({"podman", "run", "-d", "--privileged", "--name", "chatty", testing::kTestImage, "sh", "-c",
      "head -c 1000000 /dev/zero | tr '\\0' x > /dev/ttyS0; echo the-console-end > /dev/ttyS0; "
      "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 12000000; echo; echo the-last-line"});
  waitFor("chatty", "ended");
  std::string id = inspect("chatty").at("id");
  auto vmDir = fcvm_.dataDir() / "vms" / id;
  auto log = vmDir / "container.log";
  auto previous = log;
  previous += ".1";
  ASSERT_TRUE(std::filesystem::exists(previous)) << "the log never rotated";
  EXPECT_LE(std::filesystem::file_size(log) + std::filesystem::file_size(previous), kCap);
  CommandOptions logsOptions;
  logsOptions.timeout = testing::kVmDeadline;
  logsOptions.extraEnv = fcvm_.env();
  logsOptions.outputFile = (fcvm_.dir() / "logs.out").string();
  ASSERT_EQ(runCommand({FcvmInstance::binary(), "logs", "--name", "chatty"}, logsOptions).exitCode,
            0);
  auto shown = readFile(logsOptions.outputFile);
  EXPECT_LE(shown.size(), kCap);
  EXPECT_GT(shown.size(), kCap / 4);
  EXPECT_TRUE(shown.ends_with("0123456789abcdefghijklmnopqrstuvwxyz\nthe-last-line\n") ||
              shown.ends_with("\nthe-last-line\n"))
      << shown.substr(shown.size() > 200 ? shown.size() - 200 : 0);

  auto console = vmDir / "console.log";
  auto previousConsole = console;
  previousConsole += ".1";
  ASSERT_TRUE(std::filesystem::exists(previousConsole)) << "the console log never rotated";
  EXPECT_LE(std::filesystem::file_size(console) + std::filesystem::file_size(previousConsole),
            kConsoleCap);
  logsOptions.outputFile = (fcvm_.dir() / "console.out").string();
  ASSERT_EQ(runCommand({FcvmInstance::binary(), "logs", "--name", "chatty", "--source", "console"},
                       logsOptions)
                .exitCode,
            0);
  auto consoleShown = readFile(logsOptions.outputFile);
  EXPECT_LE(consoleShown.size(), kConsoleCap);
  auto end = consoleShown.find("the-console-end");
  ASSERT_NE(end, std::string::npos) << "the newest console output is not shown";
  EXPECT_NE(consoleShown.rfind(std::string(1000, 'x'), end), std::string::npos);

  ok({"rm", "--name", "chatty"});
  EXPECT_FALSE(std::filesystem::exists(previous));
  EXPECT_FALSE(std::filesystem::exists(previousConsole));
}

// Guest RAM is a file on tmpfs: a VM whose memory does not fit there is refused before it starts
// (rather than QEMU dying of SIGBUS once the guest touches the missing pages), and nothing of it
// is left.
TEST_F(VmTest, AVmWhoseMemoryDoesNotFitIsRefusedBeforeItStarts) {
  testing::TmpfsMount small(fcvm_.memoryDir(), 64);
  auto r = fcvm({"podman", "run", "--rm", "--mem", "256", testing::kTestImage, "true"});
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.output.find("not enough free space in " + fcvm_.memoryDir().string() +
                          " for the VM's 256 MiB of guest memory: "),
            std::string::npos)
      << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_EQ(fcvm_.fcvmJson({"ls", "--json"}), json::array());
  EXPECT_TRUE(fcvm_.processesOf("fcvm-worker").empty());
}

TEST_F(VmTest, TheImagesHealthcheckDecidesHealth) {
  // The image's HEALTHCHECK is `test -e /tmp/healthy`: not healthy until the file exists.
  ok({"podman", "run", "-d", "--name", "hc", "localhost/fcvm-test-health:latest", "sleep", "600"});
  waitFor("hc", "running");
  EXPECT_EQ(inspect("hc").at("health"), "starting");
  ok({"exec", "-c", "--name", "hc", "--", "touch", "/tmp/healthy"});
  waitFor("hc", "healthy");
  EXPECT_EQ(inspect("hc").at("health"), "healthy");
  ok({"rm", "-f", "--name", "hc"});
}

TEST_F(VmTest, NamesAreUniqueAndRmRefusesARunningVmUnlessForced) {
  runDetached("busy", {"sleep", "600"});
  waitFor("busy", "running");
  auto clash = fcvm({"podman", "run", "-d", "--name", "busy", testing::kTestImage, "true"});
  EXPECT_EQ(clash.exitCode, 1);
  EXPECT_NE(clash.output.find("a VM named 'busy' already exists"), std::string::npos)
      << clash.output;
  // A restart has no client: what only a client can give is refused up front, before any VM.
  auto volume = fcvm_.dir() / "volume";
  std::filesystem::create_directories(volume);
  for (const auto& [args, error] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--rm", "-d"}, "--restart and --rm conflict: a VM that restarts is kept"},
           {{}, "--restart needs -d: a foreground VM ends with its client"},
           {{"-d", "--map", volume.string() + ":/data"},
            "--restart cannot be used with --map: the directories are opened with the client's "
            "rights, and a restart has no client"}}) {
    std::vector<std::string> run = {"podman", "run", "--restart", "always"};
    run.insert(run.end(), args.begin(), args.end());
    run.insert(run.end(), {testing::kTestImage, "true"});
    auto refusedRun = fcvm(run);
    EXPECT_EQ(refusedRun.exitCode, 1);
    EXPECT_EQ(refusedRun.output, "fcvm: error: " + error + "\n");
  }
  auto badPolicy = fcvm({"podman", "run", "-d", "--restart", "sometimes", testing::kTestImage});
  EXPECT_EQ(badPolicy.exitCode, 1);
  EXPECT_EQ(badPolicy.output,
            "fcvm: error: --restart sometimes: use no, always, on-failure[:N] or unless-stopped\n");
  auto refused = fcvm({"rm", "--name", "busy"});
  EXPECT_EQ(refused.exitCode, 1);
  EXPECT_NE(refused.output.find("stop it first or use rm -f"), std::string::npos) << refused.output;
  std::string id = inspect("busy").at("id");
  ok({"rm", "-f", "--name", "busy"});
  EXPECT_EQ(fcvm_.fcvmJson({"ls", "--json"}), json::array());
  expectNothingLeftOf(id);
}

TEST_F(VmTest, KillingTheForegroundCliStopsTheVm) {
  auto env = fcvm_.env();
  // On a terminal, stderr says what the run waits for, and that line is gone once the
  // container's output starts.
  testing::PseudoTerminal terminal;
  RunningCommand run({FcvmInstance::binary(), "podman", "run", "--rm", "--name", "bound",
                      testing::kTestImage, "sh", "-c", "echo up; sleep 600"},
                     env, testing::kVmDeadline, false, terminal.slavePath());
  ASSERT_TRUE(run.readUntil("up\n"));
  EXPECT_EQ(run.output(), "up\n");  // never a status line in stdout
  terminal.waitUntil(
      [](const std::string& text) {
        return text.find("fcvm: booting VM bound... ") != std::string::npos &&
               text.ends_with("\r\x1b[K");
      },
      testing::kVmDeadline);
  EXPECT_NE(terminal.text().find("fcvm: preparing localhost/fcvm-test-busybox:latest, starting "
                                 "its VM... 0s"),
            std::string::npos)
      << terminal.text();
  std::string id = idOf("bound");
  auto killedAt = std::chrono::steady_clock::now();
  run.kill(SIGKILL);
  run.finish();
  // With --rm the VM's records go as soon as it has stopped: wait until nothing of it is listed.
  auto waited = fcvm({"wait", "--name", "bound", "--condition", "ended"});
  EXPECT_TRUE(waited.exitCode == 0 || waited.output.find("no VM named") != std::string::npos)
      << waited.output;
  std::cerr << "VM gone "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - killedAt).count()
            << " s after kill -9 of its CLI\n";
  EXPECT_EQ(fcvm_.fcvmJson({"ls", "--json"}), json::array());
  expectNothingLeftOf(id);
}

TEST_F(VmTest, KilledWorkerMarksTheVmFailedAndCleansUp) {
  runDetached("victim", {"sleep", "600"});
  waitFor("victim", "running");
  auto vm = inspect("victim");
  std::string id = vm.at("id");
  ASSERT_GT(vm.at("worker_pid").get<int>(), 0);
  ASSERT_EQ(::kill(vm.at("worker_pid").get<int>(), SIGKILL), 0);
  auto ended = json::parse(ok({"wait", "--name", "victim", "--condition", "ended", "--json"}));
  EXPECT_EQ(ended.at("state"), "failed");
  EXPECT_NE(ended.at("reason").get<std::string>().find("worker exited unexpectedly"),
            std::string::npos)
      << ended.dump();
  EXPECT_TRUE(fcvm_.processesOf("qemu-system").empty());
  EXPECT_FALSE(std::filesystem::exists(fcvm_.runtimeDir() / "vms" / id));
  EXPECT_FALSE(std::filesystem::exists(testing::guestStorage() / "vms" / id));
  ok({"rm", "--name", "victim"});
  expectNothingLeftOf(id);
}

TEST_F(VmTest, RestartedSupervisorReadoptsRunningVms) {
  const std::vector<std::string> names = {"a1", "a2", "a3"};
  for (const auto& n : names) runDetached(n, {"sleep", "600"});
  for (const auto& n : names) waitFor(n, "healthy");
  auto pids = fcvm_.processesOf("fcvm-supervisor");
  ASSERT_EQ(pids.size(), 1u);
  // Wait for its death, not just send the signal: a dying supervisor still accepts connections.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pids[0], 0));
  ASSERT_GE(pidfd, 0);
  ASSERT_EQ(::kill(pids[0], SIGKILL), 0);
  pollfd dead{pidfd, POLLIN, 0};
  ASSERT_EQ(::poll(&dead, 1, -1), 1);
  ::close(pidfd);

  auto status = fcvm_.fcvmJson({"supervisor", "start", "--json"});  // a new supervisor
  EXPECT_EQ(status.at("adopted_vms"), 3);
  for (const auto& n : names) {
    EXPECT_EQ(ok({"exec", "--name", n, "--", "echo", n}), n + "\n");
    EXPECT_EQ(inspect(n).at("state"), "healthy");
  }
  for (const auto& n : names) ok({"rm", "-f", "--name", n});
  EXPECT_EQ(fcvm_.fcvmJson({"ls", "--json"}), json::array());
  EXPECT_TRUE(fcvm_.processesOf("fcvm-worker").empty());
}

// A client whose supervisor dies mid-command reconnects to a new one (starting it) and says in one
// line what became of its VM: a `logs -f` and an `exec` of a detached VM, which runs on, and a
// foreground run, whose VM the new supervisor stops (its lease ended with the old one).
TEST_F(VmTest, ClientsWhoseSupervisorDiesSayWhatBecameOfTheirVm) {
  runDetached("bg", {"sh", "-c", "echo bg-up; sleep 600"});
  waitFor("bg", "running");
  auto env = fcvm_.env();
  const auto fcvmBin = FcvmInstance::binary();
  RunningCommand logs({fcvmBin, "logs", "-f", "--name", "bg"}, env, testing::kVmDeadline, true);
  ASSERT_TRUE(logs.readUntil("bg-up\n"));
  RunningCommand exec(
      {fcvmBin, "exec", "--name", "bg", "--", "sh", "-c", "echo exec-up; sleep 600"}, env,
      testing::kVmDeadline, true);
  ASSERT_TRUE(exec.readUntil("exec-up\n"));
  RunningCommand fg({fcvmBin, "podman", "run", "--name", "fg", testing::kTestImage, "sh", "-c",
                     "echo fg-up; sleep 600"},
                    env, testing::kVmDeadline, true);
  ASSERT_TRUE(fg.readUntil("fg-up\n"));

  auto pids = fcvm_.processesOf("fcvm-supervisor");
  ASSERT_EQ(pids.size(), 1u);
  ASSERT_EQ(::kill(pids[0], SIGKILL), 0);

  const std::string lost =
      "fcvm: error: lost the connection to fcvm-supervisor (it stopped or "
      "restarted); ";
  int status = fg.finish();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << fg.output();
  EXPECT_NE(fg.output().find(lost + "VM 'fg' was stopped with it: a foreground VM ends with its "
                                    "client's connection\n"),
            std::string::npos)
      << fg.output() << supervisorLogTail();
  status = exec.finish();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << exec.output();
  // bg is running or, its container up, healthy: either is the truth.
  EXPECT_TRUE(std::regex_search(exec.output(),
                                std::regex("VM 'bg' is (running|healthy); what the command prints "
                                           "from then on, and its exit code, cannot reach this "
                                           "terminal\n")))
      << exec.output();
  EXPECT_NE(exec.output().find(lost + "VM 'bg' is "), std::string::npos) << exec.output();
  status = logs.finish();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << logs.output();
  EXPECT_TRUE(std::regex_search(
      logs.output(),
      std::regex("VM 'bg' is (running|healthy): `fcvm logs -f --name bg` follows it again\n")))
      << logs.output();
  EXPECT_NE(logs.output().find(lost + "VM 'bg' is "), std::string::npos) << logs.output();

  // The new supervisor stopped the foreground VM and kept the detached one.
  EXPECT_EQ(inspect("fg").at("state"), "stopped");
  EXPECT_EQ(ok({"exec", "--name", "bg", "--", "echo", "still"}), "still\n");
  EXPECT_EQ(fcvm_.processesOf("qemu-system").size(), 1u);
  ok({"rm", "-f", "--name", "bg"});
  ok({"rm", "--name", "fg"});
}

// `make install`'s layout (cmake --install into a DESTDIR) runs a VM with nothing from the build
// tree: the CLI, supervisor and worker are the installed ones. Its systemd units pass systemd's
// own check, and the supervisor takes its socket from systemd (systemd-socket-activate plays the
// service manager's part: it binds the socket and starts the supervisor on the first client),
// re-adopting the VM that outlived the supervisor before it.
TEST_F(VmTest, TheInstalledLayoutRunsVmsAndSystemdStartsItsSupervisorOnTheFirstClient) {
  auto destdir = fcvm_.dir() / "destdir";
  CommandOptions install = CommandOptions::withTimeout(std::chrono::minutes(2));
  install.extraEnv = {"DESTDIR=" + destdir.string()};
  auto installed =
      runCommand({"cmake", "--install", FCVM_BUILD_DIR, "--prefix", "/usr/local"}, install);
  ASSERT_EQ(installed.exitCode, 0) << installed.output;
  auto prefix = destdir / "usr/local";
  auto libexec = prefix / "libexec/fcvm";
  for (const char* name : {"fcvm", "fcvm-supervisor", "fcvm-worker", "fcvm-netd",
                           "fcvm-uffd-server", "fc-agent", "fuse-pipe"}) {
    EXPECT_TRUE(std::filesystem::is_regular_file(libexec / name)) << name;
  }
  EXPECT_EQ(std::filesystem::read_symlink(prefix / "bin/fcvm"), "../libexec/fcvm/fcvm");
  auto units = prefix / "lib/systemd/system";
  EXPECT_NE(readFile(units / "fcvm-supervisor.service")
                .find("\nExecStart=/usr/local/libexec/fcvm/fcvm-supervisor\n"),
            std::string::npos);
  // Only our units: the staged root has no sysinit.target and the like to check against.
  auto verify = runCommand(
      {"systemd-analyze", "verify", "--man=no", "--recursive-errors=no",
       "--root=" + destdir.string(), "/usr/local/lib/systemd/system/fcvm-supervisor.socket",
       "/usr/local/lib/systemd/system/fcvm-supervisor.service"},
      install);
  EXPECT_EQ(verify.exitCode, 0) << verify.output;

  CommandOptions asUser = CommandOptions::withTimeout(testing::kVmDeadline);
  asUser.extraEnv = fcvm_.env();
  auto fcvm = [&](std::vector<std::string> args) {
    args.insert(args.begin(), (prefix / "bin/fcvm").string());
    auto r = runCommand(args, asUser);
    EXPECT_EQ(r.exitCode, 0) << args[1] << ": " << r.output;
    return r.output;
  };
  EXPECT_TRUE(json::parse(fcvm({"version", "--json"})).contains("version"));
  auto doctor = json::parse(fcvm({"doctor", "--json"}));
  EXPECT_TRUE(doctor.at("healthy").get<bool>()) << doctor.dump(2);
  fcvm({"podman", "run", "-d", "--name", "installed", testing::kTestImage, "sleep", "600"});
  fcvm({"wait", "--name", "installed", "--condition", "running"});
  auto exeOf = [](pid_t pid) {
    return std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe");
  };
  for (const char* program : {"fcvm-supervisor", "fcvm-worker"}) {
    auto pids = fcvm_.processesOf(program);
    ASSERT_EQ(pids.size(), 1u) << program;
    EXPECT_EQ(exeOf(pids[0]), libexec / program);
  }

  // Stopping the supervisor leaves the VM running, as `systemctl stop` (KillMode=process) does.
  fcvm({"supervisor", "stop"});
  ASSERT_EQ(fcvm_.processesOf("fcvm-worker").size(), 1u);
  std::vector<std::string> activate = {"/usr/bin/systemd-socket-activate", "-l",
                                       fcvm_.socket().string(), "-E", "PATH"};
  for (const auto& e : fcvm_.env()) activate.insert(activate.end(), {"-E", e});
  activate.insert(activate.end(),
                  {(libexec / "fcvm-supervisor").string(), "--log-file", fcvm_.log().string()});
  std::string command;
  for (const auto& word : activate) command += " '" + word + "'";
  // Its "Listening on" (stderr) says the socket is there before any client comes.
  RunningCommand manager({"/bin/sh", "-c", "exec" + command + " 2>&1"}, {});
  ASSERT_TRUE(manager.readUntil("Listening on"));
  EXPECT_EQ(fcvm({"exec", "--name", "installed", "--", "echo", "adopted"}), "adopted\n");
  EXPECT_EQ(fcvm_.countInLog("started by systemd"), 1);
  fcvm({"rm", "-f", "--name", "installed"});
  fcvm({"supervisor", "stop"});
  int status = manager.finish();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(fcvm_.processesOf("fcvm-worker").empty());
}

// A host restart, as far as it can be had without one: every fcvm process and QEMU killed, the
// runtime and memory dirs gone, a new boot id. (The storage mount's return is
// CliTest.AfterAHostRestart...: this storage is shared with other tests.) The next command
// starts a supervisor that fails the VM that ran with the reason, starts the --restart always
// one again, and a run needs no setup. Before that, restart policies at work: on-failure:1
// restarts a failing container once, then it stays ended.
TEST_F(VmTest, AfterAHostRestartRunningVmsShowWhyTheyEndedAndRestartAlwaysOnesRunAgain) {
  runDetached("before", {"sleep", "600"});
  ok({"podman", "run", "-d", "--restart", "always", "--name", "always", testing::kTestImage, "sh",
      "-c", "echo run; sleep 600"});
  ok({"podman", "run", "-d", "--restart", "on-failure:1", "--name", "flaky", testing::kTestImage,
      "sh", "-c", "echo attempt; exit 3"});
  // "ended" is for good: through its one restart.
  EXPECT_EQ(ok({"wait", "--name", "flaky", "--condition", "ended"}), "stopped 3\n");
  auto flaky = inspect("flaky");
  EXPECT_EQ(flaky.at("restart_count"), 1);
  EXPECT_EQ(flaky.at("restart_policy"), "on-failure:1");
  EXPECT_EQ(ok({"logs", "--name", "flaky"}), "attempt\nattempt\n");  // both runs, in order
  waitFor("before", "running");
  waitFor("always", "running");
  EXPECT_EQ(inspect("always").at("restart_count"), 0);

  // The supervisor first, and dead before the rest: one that saw its worker die would record it.
  for (const auto& programs : std::vector<std::vector<std::string>>{
           {"fcvm-supervisor"}, {"fcvm-worker", "qemu-system", "fcvm-netd"}}) {
    std::vector<int> pidfds;
    for (const auto& program : programs) {
      for (pid_t pid : fcvm_.processesOf(program)) {
        int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        if (pidfd < 0) continue;  // gone already
        pidfds.push_back(pidfd);
        ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
      }
    }
    ASSERT_FALSE(pidfds.empty()) << programs[0];
    for (int pidfd : pidfds) {
      pollfd dead{pidfd, POLLIN, 0};
      ASSERT_EQ(::poll(&dead, 1, -1), 1);
      ::close(pidfd);
    }
  }
  std::filesystem::remove_all(fcvm_.runtimeDir());
  std::filesystem::remove_all(fcvm_.memoryDir());
  std::ofstream(fcvm_.dataDir() / "boot-id") << "00000000-0000-0000-0000-000000000000\n";

  auto vm = inspect("before");
  EXPECT_EQ(vm.at("state"), "failed");
  EXPECT_EQ(vm.at("reason"), "the host restarted");
  EXPECT_EQ(ok({"podman", "run", "--rm", testing::kTestImage, "echo", "after"}), "after\n");
  waitFor("always", "running");
  auto always = inspect("always");
  EXPECT_EQ(always.at("restart_count"), 1);
  EXPECT_EQ(always.at("restart_policy"), "always");
  EXPECT_EQ(ok({"exec", "-c", "--name", "always", "--", "echo", "up"}), "up\n");
  EXPECT_EQ(ok({"logs", "--name", "always"}), "run\nrun\n");

  // A stop by its owner is final, for the restart policy and for the next supervisor too.
  ok({"stop", "--name", "always"});
  EXPECT_EQ(inspect("always").at("state"), "stopped");
  ok({"supervisor", "stop"});
  auto stopped = inspect("always");
  EXPECT_EQ(stopped.at("state"), "stopped");
  EXPECT_EQ(stopped.at("restart_count"), 1);
  for (const char* name : {"before", "always", "flaky"}) ok({"rm", "--name", name});
  EXPECT_EQ(fcvm_.fcvmJson({"ls", "--json"}), json::array());
}

// Per-user quotas from the supervisor's configuration file (root is held to them only when
// listed, as here), and a configuration with a mistake, which the supervisor refuses to start on.
TEST_F(VmTest, QuotasFromTheConfigFileLimitVmsMemoryAndSnapshots) {
  auto bad = fcvm_.dir() / "bad.json";
  std::ofstream(bad) << R"({"quotas": {"default": {"vm": 1}}})";
  auto refused = fcvm({"supervisor", "start"}, std::nullopt, {"FCVM_CONFIG=" + bad.string()});
  EXPECT_EQ(refused.exitCode, 1);
  EXPECT_NE(refused.output.find(
                bad.string() + ": quotas.default: unknown limit 'vm' (vms, memory_mib, snapshots)"),
            std::string::npos)
      << refused.output;

  auto config = fcvm_.dir() / "config.json";
  std::ofstream(config)
      << R"({"quotas": {"uids": {"0": {"vms": 1, "memory_mib": 384, "snapshots": 0}}}})";
  auto started = fcvm({"supervisor", "start"}, std::nullopt, {"FCVM_CONFIG=" + config.string()});
  ASSERT_EQ(started.exitCode, 0) << started.output;
  const std::string where = " (set in " + config.string() + ")";
  auto big = fcvm({"podman", "run", "-d", "--mem", "512", testing::kTestImage, "true"});
  EXPECT_EQ(big.exitCode, 1);
  EXPECT_EQ(big.output,
            "fcvm: error: uid 0 would use 512 MiB of guest memory with this VM's 512 "
            "MiB, over its quota of 384 MiB" +
                where + "\n");
  runDetached("one", {"sleep", "600"});
  waitFor("one", "running");
  auto two = fcvm({"podman", "run", "-d", "--name", "two", testing::kTestImage, "true"});
  EXPECT_EQ(two.exitCode, 1);
  EXPECT_EQ(two.output, "fcvm: error: uid 0 has 1 VM of its quota of 1 VM" + where +
                            "; stop or remove one first\n");
  auto snapshot = fcvm({"snapshot", "create", "--name", "one", "--tag", "kept"});
  EXPECT_EQ(snapshot.exitCode, 1);
  EXPECT_EQ(snapshot.output,
            "fcvm: error: uid 0 may keep no snapshots (quota set in " + config.string() + ")\n");
  ok({"rm", "-f", "--name", "one"});
  EXPECT_EQ(fcvm_.fcvmJson({"ls", "--json"}), json::array());
}

// Images are read with the rights of the user who runs the VM, never the supervisor's (root's):
// another user gets neither root's private archive nor an image from root's podman storage, but
// runs what it can read itself: its own archive, and its own rootless podman storage.
TEST_F(VmTest, AnotherUserRunsOnlyImagesItCouldReadItself) {
  ok({"supervisor", "start"});   // root's, host-wide: the other user cannot start it
  auto home = otherUsersHome();  // its rootless podman storage
  std::vector<std::string> userEnv = {"HOME=" + home.string()};
  auto asUser = [&](const std::vector<std::string>& args) {
    return fcvm_.fcvm(args, testing::kOtherUid, testing::kVmDeadline, "", userEnv);
  };

  auto rootOnly = testImageArchive("root-only.tar", 0);
  ASSERT_EQ(::chmod(rootOnly.c_str(), 0600), 0);
  auto denied = asUser({"podman", "run", "--rm", "oci-archive:" + rootOnly.string(), "true"});
  EXPECT_EQ(denied.exitCode, 1);
  EXPECT_EQ(denied.output,
            "fcvm: error: image archive: open " + rootOnly.string() + ": Permission denied\n");

  auto notTheirs = asUser({"podman", "run", "--rm", testing::kTestImage, "true"});
  EXPECT_EQ(notTheirs.exitCode, 1);
  EXPECT_NE(notTheirs.output.find(std::string("fcvm: error: image '") + testing::kTestImage +
                                  "' is not in the podman storage of uid 65534"),
            std::string::npos)
      << notTheirs.output;

  // Its own archive, readable by it, and an image in its own rootless storage (busybox, imported
  // by podman running as that user).
  auto own = fcvm_.dir() / "own.tar";
  std::filesystem::copy_file(rootOnly, own);
  ASSERT_EQ(::chown(own.c_str(), testing::kOtherUid, testing::kOtherUid), 0);
  auto tree = fcvm_.dir() / "tree";
  std::filesystem::create_directories(tree / "bin");
  std::filesystem::copy_file("/bin/busybox", tree / "bin" / "busybox");
  std::filesystem::create_symlink("busybox", tree / "bin" / "sh");
  CommandOptions podmanAsUser = CommandOptions::withTimeout(std::chrono::minutes(2));
  podmanAsUser.credentials = Credentials{testing::kOtherUid, testing::kOtherUid, {}};
  podmanAsUser.environment = {"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + home.string()};
  podmanAsUser.cwd = "/";
  auto imported = runCommand(
      {"sh", "-c", "tar -C \"$0\" -c . | podman import - localhost/mine:1", tree.string()},
      podmanAsUser);
  ASSERT_EQ(imported.exitCode, 0) << imported.output;
  auto fromArchive = asUser({"podman", "run", "-d", "--name", "from-archive",
                             "oci-archive:" + own.string(), "sh", "-c", "echo archive ok"});
  EXPECT_EQ(fromArchive.exitCode, 0) << fromArchive.output << supervisorLogTail();
  // This one stays up (its workload waits for /done) until its QEMU's jail is looked at.
  auto fromStorage =
      asUser({"podman", "run", "-d", "--name", "from-storage", "localhost/mine:1", "/bin/busybox",
              "sh", "-c", "echo storage ok; while [ ! -e /done ]; do sleep 0.2; done"});
  EXPECT_EQ(fromStorage.exitCode, 0) << fromStorage.output << supervisorLogTail();
  EXPECT_EQ(asUser({"wait", "--name", "from-storage", "--condition", "healthy"}).output,
            "healthy\n");
  auto fromStorageVm = fcvm_.fcvmJson({"inspect", "--name", "from-storage"}, testing::kOtherUid);
  // QEMU's -name is its VM's runtime dir.
  std::vector<pid_t> qemus;
  for (pid_t pid : fcvm_.processesOf("qemu-system")) {
    if (readFile("/proc/" + std::to_string(pid) + "/cmdline")
            .find(fromStorageVm.at("id").get<std::string>()) != std::string::npos) {
      qemus.push_back(pid);
    }
  }
  ASSERT_EQ(qemus.size(), 1u);
  // The user's VM runs as neither root nor the user: the user cannot trace or signal its QEMU.
  EXPECT_NE(expectJailed(qemus[0], fcvm_), testing::kOtherUid);
  auto workerModes = seccompModesOf(fromStorageVm.at("worker_pid").get<pid_t>());
  EXPECT_FALSE(workerModes.empty());
  for (const auto& mode : workerModes) EXPECT_EQ(mode, "2");
  // The file ends the container, and an exec in a container that stops can be cut short
  // before it reports (seen: 137 for a touch that worked); the container's end shows it did.
  asUser({"exec", "-c", "--name", "from-storage", "--", "/bin/busybox", "touch", "/done"});
  for (const char* name : {"from-archive", "from-storage"}) {
    auto ended = asUser({"wait", "--name", name, "--condition", "ended"});
    EXPECT_EQ(ended.output, "stopped 0\n") << name << ": " << ended.output;
  }
  EXPECT_EQ(asUser({"logs", "--name", "from-archive"}).output, "archive ok\n");
  EXPECT_EQ(asUser({"logs", "--name", "from-storage"}).output, "storage ok\n");
  // A rootless store holds whatever its owner put there, so its image cache entry is that user's.
  bool ownEntry = false;
  for (const auto& entry :
       std::filesystem::directory_iterator(testing::guestStorage() / "images")) {
    ownEntry |= entry.path().filename().string().starts_with("v4-u65534-");
  }
  EXPECT_TRUE(ownEntry);
}

TEST_F(VmTest, EightParallelVmsBecomeHealthyExitCleanlyAndStayPrivate) {
  constexpr int kVms = 8;
  std::vector<std::string> names;
  for (int i = 0; i < kVms; ++i) names.push_back("p" + std::to_string(i));
  std::vector<CommandResult> started(kVms);
  {
    std::vector<std::thread> clis;
    for (int i = 0; i < kVms; ++i) {
      clis.emplace_back([&, i] {
        started[i] = fcvm({"podman", "run", "-d", "--name", names[i], "--health-cmd",
                           "test -e /tmp/ready", testing::kTestImage, "sh", "-c",
                           "touch /tmp/ready; while [ ! -e /tmp/done ]; do sleep 0.5; done"});
      });
    }
    for (auto& t : clis) t.join();
  }
  for (int i = 0; i < kVms; ++i) ASSERT_EQ(started[i].exitCode, 0) << started[i].output;
  {
    std::vector<std::thread> waiters;
    std::vector<CommandResult> healthy(kVms);
    for (int i = 0; i < kVms; ++i) {
      waiters.emplace_back([&, i] {
        healthy[i] = fcvm({"wait", "--name", names[i], "--condition", "healthy"});
      });
    }
    for (auto& t : waiters) t.join();
    for (int i = 0; i < kVms; ++i) EXPECT_EQ(healthy[i].output, "healthy\n") << names[i];
  }
  EXPECT_EQ(fcvm_.fcvmJson({"ls", "--json"}).size(), static_cast<size_t>(kVms));
  // Each QEMU in a jail of its own: eight uids, no two alike.
  std::set<uid_t> jailUids;
  auto qemus = fcvm_.processesOf("qemu-system");
  EXPECT_EQ(qemus.size(), static_cast<size_t>(kVms));
  for (pid_t qemu : qemus) jailUids.insert(expectJailed(qemu, fcvm_));
  EXPECT_EQ(jailUids.size(), static_cast<size_t>(kVms));

  // Another user sees none of them and can touch none of them.
  EXPECT_EQ(fcvm_.fcvmJson({"ls", "--json"}, testing::kOtherUid), json::array());
  for (const auto& verb :
       std::vector<std::vector<std::string>>{{"exec", "--name", "p0", "--", "true"},
                                             {"stop", "--name", "p0"},
                                             {"logs", "--name", "p0"},
                                             {"rm", "-f", "--name", "p0"}}) {
    auto r = fcvm(verb, testing::kOtherUid);
    EXPECT_EQ(r.exitCode, 1) << verb[0];
    EXPECT_NE(r.output.find("no VM named 'p0'"), std::string::npos) << r.output;
  }

  {
    std::vector<std::thread> finishers;
    std::vector<CommandResult> ended(kVms);
    for (int i = 0; i < kVms; ++i) {
      finishers.emplace_back([&, i] {
        fcvm({"exec", "-c", "--name", names[i], "--", "touch", "/tmp/done"});
        ended[i] = fcvm({"wait", "--name", names[i], "--condition", "ended"});
      });
    }
    for (auto& t : finishers) t.join();
    for (int i = 0; i < kVms; ++i) EXPECT_EQ(ended[i].output, "stopped 0\n") << names[i];
  }
  EXPECT_TRUE(fcvm_.processesOf("fcvm-worker").empty());
  EXPECT_TRUE(fcvm_.processesOf("qemu-system").empty());
  for (const auto& n : names) ok({"rm", "--name", n});
}

}  // namespace
}  // namespace fcvm
