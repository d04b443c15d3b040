// The fcvm and fcvm-supervisor binaries as a user runs them: each test gets its own data and
// runtime dirs, so its own supervisor, and stops it (killing it if need be) when it ends.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "base/process_identity.h"
#include "base/spawn.h"
#include "base/subprocess.h"
#include "tests/support/fcvm_instance.h"
#include "tests/support/tmpfs_mount.h"

namespace fcvm {
namespace {

using nlohmann::json;

class CliTest : public ::testing::Test, protected testing::FcvmInstance {
 protected:
  // Live fcvm-supervisor processes serving this test's runtime dir.
  std::vector<pid_t> supervisorPids() const { return processesOf("fcvm-supervisor"); }

  json fcvmJson(std::vector<std::string> args, std::optional<uid_t> uid = std::nullopt) {
    auto r = fcvm(args, uid);
    EXPECT_EQ(r.exitCode, 0) << r.output;
    return json::parse(r.output);
  }

  // A durable record as a supervisor would have left it.
  void writeRecord(const std::string& id, const std::string& name, uid_t owner,
                   const std::string& state, pid_t workerPid = 0, uint64_t workerStart = 0,
                   int version = 1) {
    std::filesystem::create_directories(dataDir() / "vms");
    json record = {{"version", version},
                   {"id", id},
                   {"name", name},
                   {"owner_uid", owner},
                   {"state", state},
                   {"health", "unknown"},
                   {"image", "localhost/test:latest"},
                   {"reason", ""},
                   {"network", ""},
                   {"worker_pid", workerPid},
                   {"worker_start_time", workerStart},
                   {"created_at_ns", 1},
                   {"updated_at_ns", 1}};
    std::ofstream(dataDir() / "vms" / (id + ".json")) << record.dump();
  }

  // A worker that died: a reaped child's pid and start time (read while it is unreaped, so
  // /proc still has it).
  static std::pair<pid_t, uint64_t> deadWorker() {
    SpawnSpec spec;
    spec.argv = {"/bin/true"};
    auto child = spawn(spec);
    pid_t pid = child.pid();
    auto start = processStartTime(pid);
    child.wait();
    if (!start) throw std::runtime_error("no start time for a child");
    return {pid, *start};
  }

  std::vector<std::string> names(const json& list) {
    std::vector<std::string> out;
    for (const auto& vm : list) out.push_back(vm.at("name"));
    return out;
  }
};

TEST_F(CliTest, LsJsonStartsASupervisorAndPrintsAnEmptyList) {
  ASSERT_TRUE(supervisorPids().empty());
  auto r = fcvm({"ls", "--json"});
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(json::parse(r.output), json::array());
  auto status = fcvmJson({"supervisor", "status", "--json"});
  EXPECT_TRUE(status.at("running").get<bool>());
  EXPECT_EQ(supervisorPids(), std::vector<pid_t>{status.at("pid").get<pid_t>()});

  auto stop = fcvm({"supervisor", "stop"});
  EXPECT_EQ(stop.exitCode, 0) << stop.output;
  EXPECT_TRUE(supervisorPids().empty());
  EXPECT_FALSE(std::filesystem::exists(socket()));
}

TEST_F(CliTest, TenConcurrentLsCallsStartExactlyOneSupervisor) {
  std::vector<std::thread> threads;
  std::vector<CommandResult> results(10);
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = fcvm({"ls", "--json"}); });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_EQ(r.exitCode, 0) << r.output;
    EXPECT_EQ(json::parse(r.output), json::array());
  }
  EXPECT_EQ(countInLog("fcvm-supervisor " FCVM_VERSION " starting"), 1);
  EXPECT_EQ(supervisorPids().size(), 1u);
}

TEST_F(CliTest, DoctorJsonNamesTheAcceleratorAndWhy) {
  auto r = fcvm({"doctor", "--json"});
  ASSERT_EQ(r.exitCode, 0) << r.output;
  auto report = json::parse(r.output);
  auto accel = report.at("accelerator");
  EXPECT_TRUE(accel.at("name") == "kvm" || accel.at("name") == "tcg") << accel;
  EXPECT_FALSE(accel.at("reason").get<std::string>().empty());
  std::set<std::string> checks;
  for (const auto& c : report.at("checks")) checks.insert(c.at("name"));
  for (const char* name : {"qemu", "kvm", "reflink", "userfaultfd", "volumes", "service", "limits",
                           "slirp4netns", "iptables", "podman"}) {
    EXPECT_TRUE(checks.count(name)) << name;
  }
  EXPECT_TRUE(report.at("healthy").get<bool>()) << report.dump(2);
}

// After a downgrade, the older fcvm's supervisor refuses to start on a newer fcvm's records and
// says so in one line, instead of ignoring them (and reusing their names, or removing their disks).
TEST_F(CliTest, ARecordOfANewerFcvmStopsTheSupervisorWithAClearError) {
  writeRecord("00000000000000f1", "from-the-future", 0, "running", 0, 0, 99);
  auto r = fcvm({"ls"});
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.output.find("00000000000000f1.json is in format 99, newer than this fcvm's 1: a "
                          "newer fcvm wrote it; run that one"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_TRUE(supervisorPids().empty());
  EXPECT_TRUE(std::filesystem::exists(dataDir() / "vms" / "00000000000000f1.json"));
}

// A first `fcvm setup` on a file system without room for the artifacts says so before it starts,
// instead of failing in debootstrap with a half-built rootfs.
TEST_F(CliTest, SetupRefusesToStartShortOfSpace) {
  testing::TmpfsMount small(dataDir(), 64);
  auto r = fcvm({"setup"});
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.output.find("not enough free space in " + dataDir().string() +
                          " for the guest artifacts (kernel, initramfs, a bookworm rootfs with "
                          "podman): "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(" MiB free, 2048 MiB needed"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dataDir() / "storage.btrfs"));
}

// `system df` counts what is on disk and what of it is in use; `system prune` removes exactly
// what nothing uses: ended VMs (the caller's own; root: all), artifacts that are neither current
// nor named by a snapshot, and with --all image disks no snapshot names. Snapshots, the current
// artifacts and whatever a snapshot names stay. (A running QEMU's files: VmTest.DetachedRun...)
TEST_F(CliTest, SystemDfCountsWhatIsUsedAndPruneRemovesExactlyTheRest) {
  constexpr uid_t kBob = 60013;
  auto storage = dataDir() / "storage";
  auto write = [](const std::filesystem::path& file, size_t bytes) {
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file) << std::string(bytes, 'x');
  };
  auto artifacts = storage / "artifacts";
  for (const char* file : {"kernel/k1/vmlinux", "initramfs/i1/initramfs.cpio",
                           "rootfs/r1/rootfs.ext4", "kernel/k0/vmlinux", "rootfs/r0/rootfs.ext4"}) {
    write(artifacts / file, 64 << 10);
  }
  std::ofstream(artifacts / "current.json")
      << json{{"kernel", "k1"}, {"initramfs", "i1"}, {"rootfs", "r1"}, {"kernel_version", "1"}};
  write(storage / "images/v4-named/store.ext4", 64 << 10);
  write(storage / "images/v4-unused/store.ext4", 64 << 10);
  auto snapshot = storage / "snapshots/5555555555555555";
  write(snapshot / "memory.img", 64 << 10);
  std::ofstream(snapshot / "restore.json")
      << json{{"machine",
               {{"kernel", (artifacts / "kernel/k0/vmlinux").string()},
                {"extra_disks", {{{"path", (storage / "images/v4-named/store.ext4").string()}}}}}}};
  writeRecord("00000000000000a1", "mine-old", 0, "stopped");
  writeRecord("00000000000000b1", "bobs-old", kBob, "stopped");  // a failed VM's disk goes at once
  for (const char* id : {"00000000000000a1", "00000000000000b1"}) {
    write(storage / "vms" / id / "rootfs.ext4", 64 << 10);
    write(dataDir() / "vms" / id / "console.log", 4 << 10);
  }
  auto row = [](const json& usage, const std::string& kind) {
    for (const auto& r : usage) {
      if (r.at("kind") == kind) return r;
    }
    throw std::runtime_error("no row " + kind + " in " + usage.dump());
  };

  auto usage = fcvmJson({"system", "df", "--json"});
  EXPECT_EQ(row(usage, "artifacts").at("total"), 5);
  EXPECT_EQ(row(usage, "artifacts").at("active"), 4);
  EXPECT_EQ(row(usage, "images").at("total"), 2);
  EXPECT_EQ(row(usage, "images").at("active"), 1);
  EXPECT_EQ(row(usage, "vm_disks").at("total"), 2);
  EXPECT_EQ(row(usage, "vm_disks").at("active"), 0);
  EXPECT_GE(row(usage, "vm_disks").at("reclaimable_bytes").get<uint64_t>(), 2u * (64 << 10));
  EXPECT_EQ(row(usage, "snapshots").at("total"), 1);
  auto bobs = fcvmJson({"system", "df", "--json"}, kBob);
  EXPECT_EQ(row(bobs, "vm_disks").at("total"), 1);  // only Bob's own
  EXPECT_EQ(row(bobs, "snapshots").at("total"), 0);
  EXPECT_EQ(row(bobs, "artifacts").at("total"), 5);  // shared

  auto unconfirmed = fcvm({"system", "prune"});
  EXPECT_EQ(unconfirmed.exitCode, 1);
  EXPECT_NE(unconfirmed.output.find("pass -f to confirm"), std::string::npos) << unconfirmed.output;

  auto byBob = fcvmJson({"system", "prune", "-f", "--json"}, kBob);
  EXPECT_EQ(byBob.at("vms"), json::array({"bobs-old"}));
  EXPECT_EQ(byBob.at("artifacts"), 0);
  EXPECT_NE(byBob.at("skipped").get<std::string>().find("root prunes them"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(storage / "vms/00000000000000b1"));
  EXPECT_TRUE(std::filesystem::exists(storage / "vms/00000000000000a1"));
  EXPECT_TRUE(std::filesystem::exists(artifacts / "rootfs/r0"));

  auto byRoot = fcvmJson({"system", "prune", "-f", "--json"});
  EXPECT_EQ(byRoot.at("vms"), json::array({"mine-old"}));
  EXPECT_EQ(byRoot.at("artifacts"), 1);
  EXPECT_EQ(byRoot.at("images"), 0);
  EXPECT_GE(byRoot.at("reclaimed_bytes").get<uint64_t>(), 2u * (64 << 10));
  EXPECT_FALSE(std::filesystem::exists(storage / "vms/00000000000000a1"));
  EXPECT_FALSE(std::filesystem::exists(dataDir() / "vms/00000000000000a1"));
  EXPECT_FALSE(std::filesystem::exists(artifacts / "rootfs/r0"));
  EXPECT_TRUE(std::filesystem::exists(storage / "images/v4-unused"));

  auto everything = fcvmJson({"system", "prune", "--all", "-f", "--json"});
  EXPECT_EQ(everything.at("vms"), json::array());
  EXPECT_EQ(everything.at("images"), 1);
  EXPECT_FALSE(std::filesystem::exists(storage / "images/v4-unused"));
  for (const char* kept :
       {"artifacts/kernel/k1", "artifacts/initramfs/i1", "artifacts/rootfs/r1",
        "artifacts/kernel/k0", "images/v4-named", "snapshots/5555555555555555"}) {
    EXPECT_TRUE(std::filesystem::exists(storage / kept)) << kept;
  }
  EXPECT_EQ(fcvmJson({"ls", "--json"}), json::array());
}

TEST_F(CliTest, UsersSeeAndRemoveOnlyTheirOwnVms) {
  constexpr uid_t kAlice = 60011, kBob = 60012;
  writeRecord("00000000000000a1", "web-a", kAlice, "stopped");
  writeRecord("00000000000000b1", "web-b", kBob, "failed");
  ASSERT_EQ(fcvm({"supervisor", "start"}).exitCode, 0);

  EXPECT_EQ(names(fcvmJson({"ls", "--json"}, kAlice)), std::vector<std::string>{"web-a"});
  EXPECT_EQ(names(fcvmJson({"ls", "--json"}, kBob)), std::vector<std::string>{"web-b"});
  EXPECT_EQ(names(fcvmJson({"ls", "--json"})).size(), 2u);  // root sees all

  auto steal = fcvm({"rm", "--name", "web-a"}, kBob);
  EXPECT_EQ(steal.exitCode, 1);
  EXPECT_EQ(steal.output, "fcvm: error: no VM named 'web-a'\n");
  auto peek = fcvm({"inspect", "--name", "web-a"}, kBob);
  EXPECT_EQ(peek.exitCode, 1);
  auto stop = fcvm({"supervisor", "stop"}, kBob);
  EXPECT_EQ(stop.exitCode, 1);
  EXPECT_NE(stop.output.find("may not stop"), std::string::npos) << stop.output;

  EXPECT_EQ(fcvmJson({"inspect", "--name", "web-a"}, kAlice).at("owner_uid"), kAlice);
  EXPECT_EQ(fcvm({"rm", "--name", "web-a"}, kAlice).exitCode, 0);
  EXPECT_EQ(names(fcvmJson({"ls", "--json"})), std::vector<std::string>{"web-b"});
  EXPECT_FALSE(std::filesystem::exists(dataDir() / "vms" / "00000000000000a1.json"));
}

// Re-adoption of live workers is tested with real VMs (vm_e2e_test); here, records whose worker
// died while no supervisor ran, and a restart taking over the state table.
TEST_F(CliTest, RestartedSupervisorFailsOrphansAndTakesOverTheStateTable) {
  auto [dead, deadStart] = deadWorker();
  writeRecord("2222222222222222", "orphan", 0, "running", dead, deadStart);
  writeRecord("3333333333333333", "done", 0, "stopped");

  auto first = fcvmJson({"supervisor", "start", "--json"});
  EXPECT_EQ(first.at("adopted_vms"), 0);
  auto firstEpoch = first.at("state_epoch").get<uint64_t>();
  auto vms = fcvmJson({"ls", "--json"});
  ASSERT_EQ(vms.size(), 2u);
  for (const auto& vm : vms) {
    if (vm.at("name") == "orphan") {
      EXPECT_EQ(vm.at("state"), "failed");
      EXPECT_EQ(vm.at("reason"), "worker exited while the supervisor was down");
    } else {
      EXPECT_EQ(vm.at("state"), "stopped");
    }
  }

  // Wait for its death, not just send the signal: a dying supervisor still accepts connections.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, first.at("pid").get<pid_t>(), 0));
  ASSERT_GE(pidfd, 0);
  ASSERT_EQ(::kill(first.at("pid").get<pid_t>(), SIGKILL), 0);
  pollfd gone{pidfd, POLLIN, 0};
  ASSERT_EQ(::poll(&gone, 1, -1), 1);
  ::close(pidfd);
  // The next command finds no supervisor and starts a new one, which takes over the state table.
  auto again = fcvmJson({"ls", "--json"});
  EXPECT_EQ(again.size(), 2u);
  auto second = fcvmJson({"supervisor", "status", "--json"});
  EXPECT_NE(second.at("pid"), first.at("pid"));
  EXPECT_EQ(second.at("state_epoch").get<uint64_t>(), firstEpoch + 1);
  EXPECT_EQ(fcvm({"rm", "--name", "orphan"}).exitCode, 0);
  EXPECT_EQ(fcvmJson({"ls", "--json"}).size(), 1u);
}

// What a reboot takes away comes back when the supervisor starts: the storage's loopback mount
// (without `fcvm setup`), and VMs that were running are failed with the reason.
TEST_F(CliTest, AfterAHostRestartTheSupervisorMountsTheStorageAndFailsVmsThatRan) {
  auto storage = dataDir() / "storage";
  auto image = dataDir() / "storage.btrfs";
  std::filesystem::create_directories(storage);
  ASSERT_EQ(runCommand({"truncate", "-s", "1G", image.string()}).exitCode, 0);
  ASSERT_EQ(runCommand({"mkfs.btrfs", "-q", image.string()}).exitCode, 0);
  // Whatever the test's outcome, the mount goes before the test's directories do.
  struct Unmount {
    std::filesystem::path dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{storage};
  std::ofstream(dataDir() / "boot-id") << "00000000-0000-0000-0000-000000000000\n";
  auto [dead, deadStart] = deadWorker();
  writeRecord("4444444444444444", "before-reboot", 0, "running", dead, deadStart);

  fcvmJson({"supervisor", "start", "--json"});
  struct stat mounted {
  }, parent{};
  ASSERT_EQ(::stat(storage.c_str(), &mounted), 0);
  ASSERT_EQ(::stat(dataDir().c_str(), &parent), 0);
  EXPECT_NE(mounted.st_dev, parent.st_dev) << "the storage was not mounted again";
  auto vms = fcvmJson({"ls", "--json"});
  ASSERT_EQ(vms.size(), 1u);
  EXPECT_EQ(vms[0].at("state"), "failed");
  EXPECT_EQ(vms[0].at("reason"), "the host restarted");
  std::ifstream stamp(dataDir() / "boot-id");
  std::string bootId;
  std::getline(stamp, bootId);
  EXPECT_EQ(bootId.size(), 36u);
  EXPECT_NE(bootId, "00000000-0000-0000-0000-000000000000");
}

}  // namespace
}  // namespace fcvm
