// Snapshots and clones end to end: the real CLI, supervisor, workers, fcvm-uffd-server, QEMU
// (TCG here) and podman in the guest. One source VM serves many assertions, since each boot costs
// seconds of TCG while a clone costs a fraction of one. Waiting is done on events (`fcvm wait`,
// output arriving, a pidfd), never by sleeping; the containers' own loops are their workload.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>

#include "base/unique_fd.h"
#include "tests/support/fcvm_instance.h"
#include "tests/support/running_command.h"
#include "tests/support/vm_fixture.h"

namespace fcvm {
namespace {

using nlohmann::json;
using testing::FcvmInstance;
using testing::RunningCommand;

// The source's container: file A, then a counter, one line per tick, until /stop appears.
constexpr char kCounter[] =
    "echo A > /A; i=0; while [ ! -e /stop ]; do i=$((i+1)); echo $i; sleep 0.1; done; exit 7";

int64_t hostSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The numbers a counter container printed, in order.
std::vector<long> counts(const std::string& output) {
  std::vector<long> out;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.find_first_not_of("0123456789") == std::string::npos) {
      out.push_back(std::stol(line));
    }
  }
  return out;
}

// Blocks until `pid` has exited (its pidfd), bounded by the watchdog.
void waitForDeath(pid_t pid) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return;  // already gone
  pollfd pfd{pidfd.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 60000), 1) << "pid " << pid << " did not die";
}

class SnapshotTest : public testing::VmFixture {
 protected:
  // Starts the counter container as `name` and waits until it has printed `until`.
  void startCounter(const std::string& name, long until) {
    // A VM of its own boot: a start-up snapshot's clone cannot be snapshotted, and its entry would
    // show in `snapshot ls`.
    ok({"podman", "run", "-d", "--no-snapshot-cache", "--name", name, testing::kTestImage, "sh",
        "-c", kCounter});
    ok({"wait", "--name", name, "--condition", "healthy"});
    followUntil(name, until);
  }
  // Follows `name`'s output until the counter has printed `number`.
  void followUntil(const std::string& name, long number) {
    RunningCommand follow({FcvmInstance::binary(), "logs", "-f", "--name", name}, fcvm_.env());
    ASSERT_TRUE(follow.readUntil("\n" + std::to_string(number) + "\n")) << follow.output();
  }
  json snapshotLs(std::optional<uid_t> uid = std::nullopt) {
    auto r = fcvm({"snapshot", "ls", "--json"}, uid);
    EXPECT_EQ(r.exitCode, 0) << r.output;
    return json::parse(r.output);
  }
};

// The feature fcvm exists for: a running container snapshotted, three clones going on from the
// snapshot point, each with its own disk, name and clock, while the source goes on too; the
// snapshot kept from other users; kills of a clone's worker and of the serve process.
TEST_F(SnapshotTest, ClonesGoOnFromTheSnapshotWithTheirOwnIdentityAndFiles) {
  startCounter("src", 5);
  auto created =
      json::parse(ok({"snapshot", "create", "--name", "src", "--tag", "snap", "--json"}));
  EXPECT_EQ(created.at("state"), "ready");
  EXPECT_EQ(created.at("source_vm"), "src");
  EXPECT_GT(created.at("pause_ms").get<double>(), 0);
  EXPECT_GT(created.at("memory_bytes").get<uint64_t>(), 0u);
  // The source goes on: it counts past what it had printed when the snapshot was done.
  auto printed = counts(ok({"logs", "--name", "src"}));
  ASSERT_FALSE(printed.empty());
  long atCreate = printed.back();
  followUntil("src", atCreate + 3);
  ok({"exec", "-c", "--name", "src", "--", "touch", "/B"});

  for (const char* name : {"c1", "c2", "c3"}) {
    EXPECT_EQ(ok({"snapshot", "run", "--from", "snap", "--name", name, "-d"}),
              std::string(name) + "\n");
  }
  for (const char* name : {"c1", "c2", "c3"}) {
    ok({"wait", "--name", name, "--condition", "healthy"});
    EXPECT_EQ(inspect(name).at("snapshot"), "snap");
    // It goes on from the snapshot point: past 5 (printed before the snapshot), not from 1, and
    // no later than the source was when the snapshot was done.
    RunningCommand follow({FcvmInstance::binary(), "logs", "-f", "--name", name}, fcvm_.env());
    ASSERT_TRUE(follow.readUntil("\n")) << name;
    auto first = counts(follow.output());
    ASSERT_FALSE(first.empty()) << name << ": " << follow.output();
    EXPECT_GT(first.front(), 5) << name;
    EXPECT_LE(first.front(), atCreate + 1) << name;
    // Its own files: A from before the snapshot, not B, which the source wrote after it.
    EXPECT_EQ(ok({"exec", "-c", "--name", name, "--", "sh", "-c",
                  "test -e /A && echo A; test -e /B && echo B; true"}),
              "A\n")
        << name;
    // Its own name, in the guest and in the container, and a clock set right after the restore.
    EXPECT_EQ(ok({"exec", "--name", name, "--", "hostname"}), std::string(name) + "\n");
    EXPECT_EQ(ok({"exec", "-c", "--name", name, "--", "hostname"}), std::string(name) + "\n");
    auto before = hostSeconds();
    auto guest = std::stol(ok({"exec", "--name", name, "--", "date", "+%s"}));
    auto after = hostSeconds();
    EXPECT_GE(guest, before - 1) << name;
    EXPECT_LE(guest, after + 1) << name;
  }
  // A file written in one clone is in no other VM.
  ok({"exec", "-c", "--name", "c1", "--", "touch", "/C"});
  for (const char* name : {"c2", "src"}) {
    EXPECT_EQ(fcvm({"exec", "-c", "--name", name, "--", "test", "-e", "/C"}).exitCode, 1) << name;
  }
  // Machine ids differ: each clone has its own.
  EXPECT_NE(ok({"exec", "--name", "c1", "--", "cat", "/etc/machine-id"}),
            ok({"exec", "--name", "c2", "--", "cat", "/etc/machine-id"}));

  // In the foreground, as with podman run: the output from the clone point on, the container's
  // exit code, and a lifetime bound to the command.
  {
    RunningCommand fg(
        {FcvmInstance::binary(), "snapshot", "run", "--from", "snap", "--name", "fg", "--rm"},
        fcvm_.env());
    ASSERT_TRUE(fg.readUntil("\n")) << fg.output();
    EXPECT_GT(counts(fg.output()).front(), 5);
    // An exec in a container that stops can be cut short before it reports (seen: 137 for this
    // touch, which had worked); the container's exit code 7 shows that it did.
    fcvm({"exec", "-c", "--name", "fg", "--", "touch", "/stop"});
    int status = fg.finish();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 7) << status << fg.output();
    EXPECT_EQ(fcvm({"inspect", "--name", "fg"}).exitCode, 1);  // --rm: gone
    RunningCommand bound(
        {FcvmInstance::binary(), "snapshot", "run", "--from", "snap", "--name", "bound"},
        fcvm_.env());
    ASSERT_TRUE(bound.readUntil("\n")) << bound.output();
    bound.kill(SIGKILL);
    EXPECT_EQ(ok({"wait", "--name", "bound", "--condition", "ended"}), "stopped 137\n");
    ok({"rm", "--name", "bound"});
  }

  // Another user neither sees, nor runs, nor removes root's snapshot.
  EXPECT_EQ(snapshotLs(testing::kOtherUid), json::array());
  auto run = fcvm({"snapshot", "run", "--from", "snap", "-d"}, testing::kOtherUid);
  EXPECT_EQ(run.exitCode, 1);
  EXPECT_EQ(run.output, "fcvm: error: no snapshot tagged 'snap'\n");
  EXPECT_EQ(fcvm({"snapshot", "rm", "snap"}, testing::kOtherUid).output,
            "fcvm: error: no snapshot tagged 'snap'\n");
  EXPECT_EQ(fcvm({"snapshot", "stop", "snap"}, testing::kOtherUid).exitCode, 1);

  // In use: rm refuses while clones run.
  auto busy = fcvm({"snapshot", "rm", "snap"});
  EXPECT_EQ(busy.exitCode, 1);
  EXPECT_NE(busy.output.find("is used by 3 clones"), std::string::npos) << busy.output;

  // kill -9 of a clone's worker: the same cleanup as any VM.
  auto c3 = inspect("c3");
  std::string c3id = c3.at("id");
  ::kill(c3.at("worker_pid").get<pid_t>(), SIGKILL);
  auto ended = ok({"wait", "--name", "c3", "--condition", "ended"});
  EXPECT_EQ(ended, "failed\n");
  EXPECT_FALSE(std::filesystem::exists(fcvm_.runtimeDir() / "vms" / c3id));
  EXPECT_FALSE(std::filesystem::exists(testing::guestStorage() / "vms" / c3id));

  // kill -9 of the serve process: the clones run on (their QEMU maps the image); the serve shows
  // failed with the reason and leaves nothing behind; the next clone starts a new one.
  auto snapshot = snapshotLs().at(0);
  ASSERT_TRUE(snapshot.at("serve").is_object());
  pid_t servePid = snapshot.at("serve").at("pid");
  std::string serveId = snapshot.at("serve").at("id");
  ::kill(servePid, SIGKILL);
  waitForDeath(servePid);
  auto failedServe = snapshotLs().at(0).at("serve");
  EXPECT_EQ(failedServe.at("state"), "failed");
  EXPECT_NE(failedServe.at("reason").get<std::string>().find("signal 9"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(fcvm_.runtimeDir() / "serves" / serveId));
  EXPECT_EQ(ok({"exec", "--name", "c1", "--", "echo", "alive"}), "alive\n");
  ok({"snapshot", "run", "--from", "snap", "--name", "c4", "-d"});
  ok({"wait", "--name", "c4", "--condition", "healthy"});
  EXPECT_EQ(snapshotLs().at(0).at("serve").at("state"), "serving");
  EXPECT_EQ(snapshotLs().at(0).at("clones"), 3);

  // Stopping the serving stops the clones, then the serve process; the source goes on.
  ok({"snapshot", "stop", "snap"});
  for (const char* name : {"c1", "c2", "c4"}) {
    EXPECT_EQ(inspect(name).at("state"), "stopped") << name;
  }
  EXPECT_TRUE(snapshotLs().at(0).at("serve").is_null());
  EXPECT_TRUE(fcvm_.processesOf("fcvm-uffd-server").empty());
  EXPECT_EQ(ok({"exec", "--name", "src", "--", "echo", "alive"}), "alive\n");

  auto id = snapshotLs().at(0).at("id").get<std::string>();
  EXPECT_EQ(ok({"snapshot", "rm", "snap"}), "snap\n");
  EXPECT_EQ(snapshotLs(), json::array());
  EXPECT_FALSE(std::filesystem::exists(testing::guestStorage() / "snapshots" / id));
  EXPECT_FALSE(std::filesystem::exists(fcvm_.dataDir() / "snapshots" / id));
}

// Blocks until an entry whose name starts with `prefix` is created in `dir`.
void waitForEntry(const std::filesystem::path& dir, const std::string& prefix, int inotify) {
  char buf[4096] __attribute__((aligned(8)));
  for (;;) {
    pollfd pfd{inotify, POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 600000), 1) << "nothing appeared in " << dir;
    ssize_t n = ::read(inotify, buf, sizeof buf);
    ASSERT_GT(n, 0);
    for (char* p = buf; p < buf + n;) {
      auto* event = reinterpret_cast<inotify_event*>(p);
      if (event->len > 0 && std::string(event->name).starts_with(prefix)) return;
      p += sizeof(inotify_event) + event->len;
    }
  }
}

// The supervisor dies while a snapshot is being made: the snapshot is whole or absent, and the
// source runs on, thawed. A restarted supervisor re-adopts serve processes and clones.
TEST_F(SnapshotTest, ASupervisorKilledMidSnapshotLeavesItWholeOrAbsentAndIsReadopted) {
  startCounter("src", 3);
  auto records = fcvm_.dataDir() / "snapshots";
  std::filesystem::create_directories(records);
  UniqueFd inotify(::inotify_init1(IN_CLOEXEC));
  ASSERT_GE(::inotify_add_watch(inotify.get(), records.c_str(), IN_CREATE), 0);
  pid_t supervisor = fcvm_.processesOf("fcvm-supervisor").at(0);
  RunningCommand create(
      {FcvmInstance::binary(), "snapshot", "create", "--name", "src", "--tag", "half"},
      fcvm_.env());
  waitForEntry(records, ".staging-", inotify.get());
  ::kill(supervisor, SIGKILL);
  waitForDeath(supervisor);
  create.finish();

  auto after = snapshotLs();  // starts a new supervisor
  ASSERT_LE(after.size(), 1u);
  if (!after.empty()) {
    EXPECT_EQ(after.at(0).at("state"), "ready");
  }
  for (const auto& entry : std::filesystem::directory_iterator(records)) {
    EXPECT_FALSE(entry.path().filename().string().starts_with(".staging-")) << entry.path();
  }
  // The source runs on, and its file system is not left frozen: it can write.
  EXPECT_EQ(ok({"exec", "--name", "src", "--", "sh", "-c", "touch /written && echo ok"}), "ok\n");
  auto printed = counts(ok({"logs", "--name", "src"}));
  ASSERT_FALSE(printed.empty());
  followUntil("src", printed.back() + 2);

  // A serve process and a clone outlive a supervisor killed again, and are re-adopted.
  if (after.empty()) ok({"snapshot", "create", "--name", "src", "--tag", "half"});
  auto serve = json::parse(ok({"snapshot", "serve", "half", "-d", "--json"}));
  pid_t servePid = serve.at("pid");
  ok({"snapshot", "run", "--pid", std::to_string(servePid), "--name", "clone", "-d"});
  ok({"wait", "--name", "clone", "--condition", "healthy"});
  supervisor = fcvm_.processesOf("fcvm-supervisor").at(0);
  ::kill(supervisor, SIGKILL);
  waitForDeath(supervisor);
  auto status = json::parse(ok({"supervisor", "start", "--json"}));  // a new one
  EXPECT_EQ(status.at("adopted_vms"), 2);
  auto snapshot = snapshotLs().at(0);
  EXPECT_EQ(snapshot.at("serve").at("pid"), servePid);
  EXPECT_EQ(snapshot.at("serve").at("state"), "serving");
  EXPECT_EQ(snapshot.at("clones"), 1);
  EXPECT_EQ(ok({"exec", "--name", "clone", "--", "hostname"}), "clone\n");
  // The serve process still hands out the image: another clone starts from it.
  ok({"snapshot", "run", "--from", "half", "--name", "clone2", "-d"});
  ok({"wait", "--name", "clone2", "--condition", "healthy"});
  ok({"snapshot", "rm", "-f", "half"});
  EXPECT_EQ(inspect("clone").at("state"), "stopped");
  EXPECT_TRUE(fcvm_.processesOf("fcvm-uffd-server").empty());
}

// The authorization matrix: each request of the supervisor's API (supervisor.capnp, through the
// CLI command that makes it) by the owner of a VM, a snapshot, a serve process and a clone, by
// another user, and by root. The other user is answered as if none of them existed and changes
// nothing of them; root may do what the owner may.
TEST_F(SnapshotTest, EveryRequestIsAnsweredAccordingToWhoAsks) {
  constexpr uid_t kOwner = testing::kOtherUid, kIntruder = 65533;
  ok({"supervisor", "start"});  // root's, host-wide: both users reach it
  auto archive = testImageArchive("owners.tar", kOwner);
  const std::vector<std::string> env = {"HOME=" + otherUsersHome().string()};
  auto as = [&](uid_t uid, const std::vector<std::string>& args) {
    return fcvm_.fcvm(args, uid, testing::kVmDeadline, "", env);
  };
  auto okAs = [&](uid_t uid, const std::vector<std::string>& args) {
    auto r = as(uid, args);
    EXPECT_EQ(r.exitCode, 0) << args[0] << " " << args[1] << ": " << r.output;
    return r.output;
  };

  okAs(kOwner, {"podman", "run", "-d", "--no-snapshot-cache", "--name", "vm",
                "oci-archive:" + archive.string(), "sh", "-c", "echo owned; sleep 600"});
  okAs(kOwner, {"wait", "--name", "vm", "--condition", "healthy"});
  okAs(kOwner, {"snapshot", "create", "--name", "vm", "--tag", "snap"});
  okAs(kOwner, {"snapshot", "run", "--from", "snap", "--name", "clone", "-d"});
  auto ownersVm = json::parse(okAs(kOwner, {"inspect", "--name", "vm"}));
  auto workerPid = std::to_string(ownersVm.at("worker_pid").get<int>());
  auto ownersSnapshot = snapshotLs(kOwner).at(0);
  auto serve = ownersSnapshot.at("serve");
  auto servePid = std::to_string(serve.at("pid").get<int>());

  // Another user: every request that names them is refused as if they did not exist.
  const std::string noVm = "fcvm: error: no VM named 'vm'\n";
  const std::string noSnapshot = "fcvm: error: no snapshot tagged 'snap'\n";
  for (const auto& [args, error] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"inspect", "--name", "vm"}, noVm},                                        // getVm
           {{"exec", "--name", "vm", "--", "true"}, noVm},                             // exec
           {{"logs", "--name", "vm"}, noVm},                                           // logs
           {{"wait", "--name", "vm", "--condition", "ended"}, noVm},                   // waitVm
           {{"stop", "--name", "vm"}, noVm},                                           // stopVm
           {{"rm", "-f", "--name", "vm"}, noVm},                                       // removeVm
           {{"snapshot", "create", "--name", "vm", "--tag", "mine"}, noVm},            // create...
           {{"snapshot", "create", "--pid", workerPid, "--tag", "mine"},               // ...by pid
            "fcvm: error: no VM of yours has its worker at pid " + workerPid + "\n"},  //
           {{"snapshot", "serve", "snap", "-d"}, noSnapshot},                          // serve
           {{"snapshot", "stop", "snap"}, noSnapshot},                                 // stopServe
           {{"snapshot", "run", "--from", "snap", "-d"}, noSnapshot},                  // runClone
           {{"snapshot", "run", "--pid", servePid, "-d"},                              // ...by pid
            "fcvm: error: no snapshot of yours is served by pid " + servePid + "\n"},  //
           {{"snapshot", "rm", "-f", "snap"}, noSnapshot},                             // remove
       }) {
    auto r = as(kIntruder, args);
    EXPECT_EQ(r.exitCode, 1) << args[0] << " " << args[1];
    EXPECT_EQ(r.output, error) << args[0] << " " << args[1];
  }
  auto shutdown = as(kIntruder, {"supervisor", "stop"});  // shutdown
  EXPECT_EQ(shutdown.exitCode, 1);
  EXPECT_NE(shutdown.output.find("may not stop"), std::string::npos) << shutdown.output;
  // Lists (listVms, listSnapshots with their serves, status, diskUsage) show none of it.
  EXPECT_EQ(json::parse(okAs(kIntruder, {"ls", "--json"})), json::array());
  EXPECT_EQ(snapshotLs(kIntruder), json::array());
  EXPECT_EQ(json::parse(okAs(kIntruder, {"supervisor", "status", "--json"})).at("vms"), 0);
  auto usage = json::parse(okAs(kIntruder, {"system", "df", "-v", "--json"}));
  auto cloneId = json::parse(okAs(kOwner, {"inspect", "--name", "clone"})).at("id");
  for (const auto& item : usage.at("items")) {
    for (const auto& id : {ownersVm.at("id"), cloneId, ownersSnapshot.at("id")}) {
      EXPECT_EQ(item.at("path").get<std::string>().find(id.get<std::string>()), std::string::npos)
          << item.dump();
    }
  }
  // A prune (prune) removes nothing of the owner's, not even an ended clone.
  okAs(kOwner, {"stop", "--name", "clone"});
  okAs(kIntruder, {"system", "prune", "-f"});
  EXPECT_EQ(json::parse(okAs(kOwner, {"inspect", "--name", "clone"})).at("state"), "stopped");

  // Root may do what the owner may.
  auto rootSees = fcvm_.fcvmJson({"ls", "--json"});
  EXPECT_EQ(rootSees.size(), 2u) << rootSees.dump();
  EXPECT_EQ(inspect("vm").at("owner_uid"), kOwner);
  EXPECT_EQ(ok({"exec", "-c", "--name", "vm", "--", "echo", "root"}), "root\n");
  EXPECT_EQ(ok({"logs", "--name", "vm"}), "owned\n");
  EXPECT_EQ(snapshotLs().size(), 1u);

  // And the owner, all of it.
  EXPECT_EQ(okAs(kOwner, {"exec", "--name", "vm", "--", "echo", "mine"}), "mine\n");
  okAs(kOwner, {"snapshot", "rm", "-f", "snap"});
  okAs(kOwner, {"rm", "-f", "--name", "vm"});
  okAs(kOwner, {"rm", "--name", "clone"});
  EXPECT_EQ(fcvm_.fcvmJson({"ls", "--json"}), json::array());
}

// Start-up snapshots (supervisor/startup_cache.h): the first run of a configuration is snapshotted
// before its container starts, later runs start from that snapshot with their own container; a new
// image digest supersedes the entry, --no-snapshot-cache boots cold, and two first runs at once
// build one entry.
TEST_F(SnapshotTest, LaterRunsStartFromTheFirstRunsStartupSnapshotWithTheirOwnContainer) {
  const std::string show = "echo $WHO $(hostname) $0";
  // The first run boots, and leaves its start-up snapshot (committed before its container
  // started, so before this run's output ends).
  // (Its health command, which would never pass, is its own: later runs do not inherit it.)
  EXPECT_EQ(ok({"podman", "run", "--rm", "--name", "first", "-e", "WHO=first", "--health-cmd",
                "test -e /never", testing::kTestImage, "sh", "-c", show, "one"}),
            "first first one\n");
  auto entries = snapshotLs();
  ASSERT_EQ(entries.size(), 1u) << entries.dump();
  auto tag = entries.at(0).at("tag").get<std::string>();
  EXPECT_TRUE(tag.starts_with("startup-")) << tag;
  EXPECT_EQ(entries.at(0).at("source_vm"), "first");

  // A later run starts from it, with its own command, env and name; its container runs, takes
  // exec and ends with its own code; it cannot be snapshotted in turn.
  ok({"podman", "run", "-d", "--name", "second", "-e", "WHO=second", testing::kTestImage, "sh",
      "-c", show + "; exec sleep 600", "two"});
  ok({"wait", "--name", "second", "--condition", "healthy"});
  EXPECT_EQ(inspect("second").at("snapshot"), tag);
  EXPECT_EQ(ok({"exec", "-c", "--name", "second", "--", "hostname"}), "second\n");
  auto refused = fcvm({"snapshot", "create", "--name", "second", "--tag", "again"});
  EXPECT_EQ(refused.exitCode, 1);
  EXPECT_NE(refused.output.find("--no-snapshot-cache"), std::string::npos) << refused.output;
  // Only `podman run` clones and serves an entry.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"snapshot", "run", "--from", tag, "-d"}, {"snapshot", "serve", tag, "-d"}}) {
    auto r = fcvm(args);
    EXPECT_EQ(r.exitCode, 1) << args[1];
    EXPECT_NE(r.output.find("is a start-up snapshot"), std::string::npos) << r.output;
  }
  ok({"stop", "--name", "second"});
  EXPECT_EQ(ok({"logs", "--name", "second"}), "second second two\n");
  ok({"rm", "--name", "second"});
  // ...or in the foreground, exiting with its own code.
  auto third = fcvm({"podman", "run", "--rm", "--name", "third", "-e", "WHO=third",
                     testing::kTestImage, "sh", "-c", show + "; exit 5", "three"});
  EXPECT_EQ(third.exitCode, 5);
  EXPECT_EQ(third.output, "third third three\n");

  // --no-snapshot-cache boots cold and builds nothing.
  ok({"podman", "run", "-d", "--no-snapshot-cache", "--name", "cold", testing::kTestImage, "true"});
  ok({"wait", "--name", "cold", "--condition", "ended"});
  EXPECT_TRUE(inspect("cold").at("snapshot").is_null()) << inspect("cold").dump();
  EXPECT_EQ(snapshotLs().size(), 1u);
  ok({"rm", "--name", "cold"});

  // The same image name with another digest: its first run boots, and its entry supersedes the
  // old one.
  auto archive = fcvm_.dir() / "image.tar";
  auto save = [&](const std::string& reference) {
    std::filesystem::remove(archive);
    auto saved =
        runCommand({"podman", "save", "--format", "oci-archive", "-o", archive.string(), reference},
                   CommandOptions::withTimeout(std::chrono::minutes(2)));
    ASSERT_EQ(saved.exitCode, 0) << saved.output;
  };
  const std::string image = "oci-archive:" + archive.string();
  save(testing::kTestImage);
  ok({"podman", "run", "--rm", image, "true"});
  auto before = snapshotLs();
  ASSERT_EQ(before.size(), 2u) << before.dump();
  std::string archiveEntry;
  for (const auto& e : before) {
    if (e.at("tag") != tag) archiveEntry = e.at("id");
  }
  // The archive names the image otherwise: other bytes, another digest.
  auto id = runCommand({"podman", "image", "inspect", "--format", "{{.Id}}", testing::kTestImage});
  ASSERT_EQ(id.exitCode, 0) << id.output;
  save(id.output.substr(0, id.output.find('\n')));
  ok({"podman", "run", "-d", "--name", "changed", image, "true"});
  ok({"wait", "--name", "changed", "--condition", "ended"});
  EXPECT_TRUE(inspect("changed").at("snapshot").is_null()) << inspect("changed").dump();
  auto after = snapshotLs();
  ASSERT_EQ(after.size(), 2u) << after.dump();
  for (const auto& e : after) EXPECT_NE(e.at("id"), archiveEntry) << after.dump();
  ok({"rm", "--name", "changed"});

  // Two first runs of a new configuration at once build one entry between them.
  std::vector<std::unique_ptr<RunningCommand>> runs;
  for (const char* name : {"twin1", "twin2"}) {
    runs.push_back(std::make_unique<RunningCommand>(
        std::vector<std::string>{FcvmInstance::binary(), "podman", "run", "-d", "--mem", "300",
                                 "--name", name, testing::kTestImage, "sleep", "600"},
        fcvm_.env()));
  }
  for (auto& run : runs) EXPECT_EQ(run->finish(), 0) << run->output();
  for (const char* name : {"twin1", "twin2"}) {
    ok({"wait", "--name", name, "--condition", "running"});
  }
  EXPECT_EQ(snapshotLs().size(), 3u) << snapshotLs().dump();
  for (const char* name : {"twin1", "twin2"}) ok({"rm", "-f", "--name", name});

  // system prune removes the start-up snapshots no VM runs from (a cache), never one a VM does.
  ok({"podman", "run", "-d", "--name", "clone", testing::kTestImage, "sleep", "600"});
  ok({"wait", "--name", "clone", "--condition", "running"});
  EXPECT_EQ(inspect("clone").at("snapshot"), tag);
  auto pruned = json::parse(ok({"system", "prune", "-f", "--json"}));
  EXPECT_EQ(pruned.at("startup_snapshots"), 2) << pruned.dump();
  auto left = snapshotLs();
  ASSERT_EQ(left.size(), 1u) << left.dump();
  EXPECT_EQ(left.at(0).at("tag"), tag);
  ok({"rm", "-f", "--name", "clone"});
}

}  // namespace
}  // namespace fcvm
