// --map volumes end to end: real VMs (TCG here) whose containers read and write host directories
// through the worker's sandboxed fuse-pipe servers and the guest's fuse-pipe clients.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "base/subprocess.h"
#include "tests/support/fcvm_instance.h"
#include "tests/support/vm_fixture.h"

namespace fcvm {
namespace {

std::string readAll(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The children of `pid` (every thread's), from /proc.
std::vector<pid_t> childrenOf(pid_t pid) {
  std::vector<pid_t> children;
  std::error_code ec;
  auto tasks = std::filesystem::path("/proc") / std::to_string(pid) / "task";
  for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
    std::istringstream in(readAll(task.path() / "children"));
    for (pid_t child; in >> child;) children.push_back(child);
  }
  return children;
}

std::string commandOf(pid_t pid) {
  auto cmdline = readAll("/proc/" + std::to_string(pid) + "/cmdline");
  for (auto& c : cmdline) {
    if (c == '\0') c = ' ';
  }
  return cmdline;
}

// The host directory a sandboxed fuse-pipe server serves: the source of its /volume mount.
std::string servedDirectoryOf(pid_t server) {
  std::istringstream lines(readAll("/proc/" + std::to_string(server) + "/mountinfo"));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string id, parent, device, root, mountpoint;
    fields >> id >> parent >> device >> root >> mountpoint;
    if (mountpoint == "/volume") return root;
  }
  return "";
}

class VolumeTest : public testing::VmFixture {
 protected:
  // The VM's fuse-pipe servers: its worker's children that serve a volume.
  std::vector<pid_t> volumeServers(const std::string& name) {
    std::vector<pid_t> servers;
    for (pid_t child : childrenOf(inspect(name).at("worker_pid").get<pid_t>())) {
      if (commandOf(child).find("fuse-pipe serve") != std::string::npos) servers.push_back(child);
    }
    return servers;
  }
};

// Root's VM: the container writes into one directory and the host sees the files with their
// owner and mode, the host's files reach the container, :ro refuses writes; a clone of the VM
// shares the directories through servers of its own; a hostile guest that
// takes a volume's channel over reaches nothing outside the directory; a killed server fails
// accesses instead of hanging them, the VM goes on, and rm leaves no server behind.
TEST_F(VolumeTest, ContainerAndHostShareTheDirectoryAndNothingElse) {
  testing::TempDir shared("fcvm-volume-rw"), readOnly("fcvm-volume-ro"), tools("fcvm-volume-tools"),
      outside("fcvm-volume-outside");
  std::ofstream(shared / "host-wrote.txt") << "hello from the host\n";
  std::ofstream(readOnly / "kept.txt") << "read me\n";
  std::ofstream(outside / "secret") << "host secret\n";
  std::filesystem::create_symlink(outside.path(), shared / "escape");
  std::filesystem::copy_file(FCVM_HOSTILE_PEER, tools / "peer");
  ok({"podman", "run", "-d", "--name", "vol", "--network", "none", "--map",
      shared.path().string() + ":/data", "-v", readOnly.path().string() + ":/ro:ro", "-v",
      tools.path().string() + ":/tools:ro", testing::kTestImage, "sleep", "3600"});
  ok({"wait", "--name", "vol", "--condition", "running"});
  EXPECT_EQ(inspect("vol").at("volumes"),
            nlohmann::json::parse(fmt::format(
                R"([{{"host":"{}","guest":"/data","read_only":false}},
                    {{"host":"{}","guest":"/ro","read_only":true}},
                    {{"host":"{}","guest":"/tools","read_only":true}}])",
                shared.path().string(), readOnly.path().string(), tools.path().string())));
  ASSERT_EQ(volumeServers("vol").size(), 3u)
      << fcvm({"logs", "--name", "vol", "--source", "console"}).output
      << fcvm({"logs", "--name", "vol", "--source", "worker"}).output;

  EXPECT_EQ(ok({"exec", "-c", "--name", "vol", "--", "sh", "-c",
                "cat /data/host-wrote.txt && echo made in the guest > /data/guest.txt && "
                "chmod 640 /data/guest.txt && mkdir /data/sub && echo deep > /data/sub/file && "
                "chown 1234:5678 /data/sub/file && cat /ro/kept.txt"}),
            "hello from the host\nread me\n");
  struct stat st {};
  ASSERT_EQ(::stat((shared / "guest.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(readAll(shared / "guest.txt"), "made in the guest\n");
  ASSERT_EQ(::stat((shared / "sub" / "file").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  // A file the host writes now reaches the running container; the symlink out of the volume is
  // the container's to resolve, in its own file system.
  std::ofstream(shared / "later.txt") << "written later\n";
  EXPECT_EQ(ok({"exec", "-c", "--name", "vol", "--", "cat", "/data/later.txt"}), "written later\n");
  auto viaLink = fcvm({"exec", "-c", "--name", "vol", "--", "cat", "/data/escape/secret"});
  EXPECT_NE(viaLink.exitCode, 0);
  EXPECT_EQ(viaLink.output.find("host secret"), std::string::npos) << viaLink.output;

  // The guest's root makes a device node (in the guest OS: podman gives containers no
  // CAP_MKNOD): a placeholder on the host, the node in the guest, opened by nobody.
  EXPECT_EQ(ok({"exec", "--name", "vol", "--", "sh", "-c",
                "mknod /run/fcvm/volumes/v0/null c 1 3 && stat -c '%F %t:%T' "
                "/run/fcvm/volumes/v0/null"}),
            "character special file 1:3\n");
  EXPECT_TRUE(std::filesystem::is_regular_file(shared / "null"));
  auto deviceOpened = fcvm({"exec", "-c", "--name", "vol", "--", "cat", "/data/null"});
  EXPECT_NE(deviceOpened.exitCode, 0);
  EXPECT_NE(deviceOpened.output.find("Permission denied"), std::string::npos)
      << deviceOpened.output;

  auto refused = fcvm({"exec", "-c", "--name", "vol", "--", "touch", "/ro/new"});
  EXPECT_NE(refused.exitCode, 0);
  EXPECT_NE(refused.output.find("Read-only file system"), std::string::npos) << refused.output;
  EXPECT_FALSE(std::filesystem::exists(readOnly / "new"));

  // A clone of the VM reads and writes the same directories through servers of its own: its
  // guest mounts each volume anew on the volume's other port, and the container sees the new
  // mount. The source goes on with its own servers.
  auto snapshot = nlohmann::json::parse(
      ok({"snapshot", "create", "--name", "vol", "--tag", "vol-snap", "--json"}));
  EXPECT_EQ(snapshot.at("volumes"), inspect("vol").at("volumes"));
  ok({"snapshot", "run", "--from", "vol-snap", "--name", "vol-clone", "-d"});
  ASSERT_EQ(volumeServers("vol-clone").size(), 3u)
      << fcvm({"logs", "--name", "vol-clone", "--source", "worker"}).output;
  std::ofstream(shared / "after-snapshot.txt") << "for the clone\n";
  EXPECT_EQ(ok({"exec", "-c", "--name", "vol-clone", "--", "sh", "-c",
                "cat /data/after-snapshot.txt /data/sub/file && echo from the clone > "
                "/data/clone.txt"}),
            "for the clone\ndeep\n")
      << fcvm({"logs", "--name", "vol-clone", "--source", "console"}).output;
  EXPECT_EQ(readAll(shared / "clone.txt"), "from the clone\n");
  auto cloneRefused = fcvm({"exec", "-c", "--name", "vol-clone", "--", "touch", "/ro/new"});
  EXPECT_NE(cloneRefused.output.find("Read-only file system"), std::string::npos)
      << cloneRefused.output;
  EXPECT_EQ(ok({"exec", "-c", "--name", "vol", "--", "cat", "/data/clone.txt"}),
            "from the clone\n");
  auto ofClone = fcvm({"snapshot", "create", "--name", "vol-clone", "--tag", "vol-snap2"});
  EXPECT_EQ(ofClone.output,
            "fcvm: error: VM 'vol-clone' is a clone of snapshot 'vol-snap'; clones cannot be "
            "snapshotted\n");
  ok({"rm", "-f", "--name", "vol-clone"});
  ok({"snapshot", "rm", "vol-snap"});

  // A hostile guest: root in the guest OS takes /data's channel over and sends raw frames.
  auto hostile = fcvm({"exec", "--name", "vol", "--", "/run/fcvm/volumes/v2/peer", "v0"});
  EXPECT_EQ(hostile.exitCode, 0) << hostile.output;
  EXPECT_EQ(hostile.output, fmt::format("dotdot {0}\nslash {0}\nnul {0}\nescape 0\n"
                                        "through-symlink {1}\nopen-symlink {2}\n"
                                        "mkdir-in-symlink {1}\nforged-inode {3}\n"
                                        "forged-handle {4}\nrename-out {0}\nclosed\n",
                                        EINVAL, ENOTDIR, ELOOP, ESTALE, EBADF));
  EXPECT_EQ(readAll(outside / "secret"), "host secret\n");
  EXPECT_FALSE(std::filesystem::exists(outside / "made"));
  EXPECT_TRUE(std::filesystem::exists(shared / "host-wrote.txt"));

  // A killed server: accesses fail at once (EIO or ENOTCONN), the VM goes on.
  auto servers = volumeServers("vol");
  pid_t roServer = -1;
  for (pid_t server : servers) {
    if (servedDirectoryOf(server) == readOnly.path().string()) roServer = server;
  }
  ASSERT_NE(roServer, -1);
  ASSERT_EQ(::kill(roServer, SIGKILL), 0);
  auto broken = fcvm({"exec", "-c", "--name", "vol", "--", "cat", "/ro/kept.txt"});
  EXPECT_NE(broken.exitCode, 0);
  EXPECT_TRUE(broken.output.find("Input/output error") != std::string::npos ||
              broken.output.find("not connected") != std::string::npos)
      << broken.output;
  EXPECT_EQ(ok({"exec", "--name", "vol", "--", "echo", "alive"}), "alive\n");

  ok({"rm", "-f", "--name", "vol"});
  for (pid_t server : servers) {
    EXPECT_FALSE(std::filesystem::exists("/proc/" + std::to_string(server) + "/cmdline") &&
                 commandOf(server).find("fuse-pipe serve") != std::string::npos)
        << "server " << server << " outlived its VM";
  }
}

// Another user's VM reaches a mapped directory with that user's rights only: a directory it
// cannot open is refused before any VM starts, and inside one it can, what only root may write
// stays unwritten even by the guest's root.
TEST_F(VolumeTest, AnotherUsersVolumeHasThatUsersRightsOnly) {
  ok({"supervisor", "start"});
  auto home = otherUsersHome();
  auto asUser = [&](const std::vector<std::string>& args) {
    return fcvm_.fcvm(args, testing::kOtherUid, testing::kVmDeadline, "",
                      {"HOME=" + home.string()});
  };
  testing::TempDir rootOnly("fcvm-volume-root");
  ASSERT_EQ(::chmod(rootOnly.path().c_str(), 0700), 0);
  auto denied = asUser({"podman", "run", "--rm", "--network", "none", "--map",
                        rootOnly.path().string() + ":/x", testing::kTestImage, "true"});
  EXPECT_EQ(denied.exitCode, 1);
  EXPECT_EQ(denied.output,
            "fcvm: error: --map: open " + rootOnly.path().string() + ": Permission denied\n");

  auto archive = testImageArchive("image.tar", testing::kOtherUid);
  testing::TempDir theirs("fcvm-volume-user");
  ASSERT_EQ(::chown(theirs.path().c_str(), testing::kOtherUid, testing::kOtherUid), 0);
  std::filesystem::create_directories(theirs / "roots");  // root's, 0755, inside theirs
  auto run =
      asUser({"podman", "run", "--rm", "--network", "none", "--map",
              theirs.path().string() + ":/data", "oci-archive:" + archive.string(), "sh", "-c",
              "echo mine > /data/mine.txt && touch /data/roots/x 2>&1; ls /data/roots | "
              "wc -l"});
  EXPECT_EQ(run.exitCode, 0) << run.output << supervisorLogTail();
  EXPECT_NE(run.output.find("Permission denied"), std::string::npos) << run.output;
  struct stat st {};
  ASSERT_EQ(::stat((theirs / "mine.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, testing::kOtherUid);
  EXPECT_EQ(readAll(theirs / "mine.txt"), "mine\n");
  EXPECT_FALSE(std::filesystem::exists(theirs / "roots" / "x"));
}

}  // namespace
}  // namespace fcvm
