// fc-agent inside a real guest: `fcvm setup`'s kernel, initramfs and rootfs booted by QEMU
// microvm under TCG, a real podman in the guest running a locally built busybox image.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "base/sha256.h"
#include "base/subprocess.h"
#include "ipc/file_handle.h"
#include "ipc/vm_spec.h"
#include "tests/guest/guest_vm.h"
#include "worker/image_cache.h"

namespace fcvm::testing {
namespace {

constexpr const char* kImage = "localhost/fcvm-test-busybox:latest";

class GuestTest : public ::testing::Test {
 protected:
  GuestTest() : io_(std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo())) {}

  // Boots a guest with `image` (host storage or an archive) in its image store; `reference` is
  // set to the name the guest knows it by.
  std::unique_ptr<GuestVm> boot(const std::string& image = kImage,
                                std::string* reference = nullptr) {
    worker::ImageCache images(testDataDir() / "images");
    worker::ImageRequest request{image, -1, Credentials{}, {}};
    UniqueFd archive;
    if (ipc::isArchiveImage(image)) {
      archive = ipc::openRegularFile(image.substr(image.find(':') + 1));
      request.archiveFd = archive.get();
    }
    auto prepared = images.prepare(request, (testDataDir() / "logs" / "images.log").string());
    if (reference != nullptr) *reference = prepared.reference;
    GuestVmOptions options;
    options.imageDisk = prepared.disk;
    return std::make_unique<GuestVm>(*io_, testArtifacts(), options);
  }

  agent::RunPlan plan(std::vector<std::string> command) {
    agent::RunPlan p;
    p.image = kImage;
    p.command = std::move(command);
    return p;
  }

  // Runs `command` as the VM's container and returns what it printed and its exit.
  StreamResult runContainer(const agent::RunPlan& p) {
    auto vm = boot();
    vm->wait(vm->agent().runContainer(p));
    auto result = vm->waitStream(agent::kContainerStream);
    if (::testing::Test::HasFailure()) ADD_FAILURE() << vm->consoleTail();
    return result;
  }

  // Held by pointer: kj's destructors may throw, which a gtest fixture's may not.
  std::unique_ptr<kj::AsyncIoContext> io_;
};

TEST_F(GuestTest, StdoutAndStderrArriveSeparatelyWithTheExitCode) {
  auto r = runContainer(plan({"sh", "-c", "echo out; echo err >&2; echo more; exit 7"}));
  EXPECT_EQ(r.out, "out\nmore\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(r.code, 7);
}

class GuestExitCodeTest : public GuestTest, public ::testing::WithParamInterface<int> {};

TEST_P(GuestExitCodeTest, ContainerExitCodeIsReportedExactly) {
  int code = GetParam();
  auto r = runContainer(plan({"sh", "-c", "exit " + std::to_string(code)}));
  EXPECT_EQ(r.code, code) << r.err;
  EXPECT_EQ(r.signal, 0);
}

INSTANTIATE_TEST_SUITE_P(Codes, GuestExitCodeTest, ::testing::Values(0, 1, 42));

TEST_F(GuestTest, DeathBySigkillIsReportedAs137) {
  // The container's main process is PID 1 of its namespace, which ignores SIGKILL from inside:
  // the kill comes from the guest OS, as an OOM kill or `kill -9` on the host side would.
  auto vm = boot();
  vm->wait(vm->agent().runContainer(plan({"sh", "-c", "echo running; exec sleep 600"})));
  vm->waitForOutput(agent::kContainerStream, "running\n");
  agent::ExecRequest kill;
  kill.id = 1;
  kill.command = {"/bin/sh", "-c", "kill -9 $(pidof sleep)"};
  vm->wait(vm->agent().exec(kill));
  EXPECT_EQ(vm->waitStream(1).code, 0);
  auto r = vm->waitStream(agent::kContainerStream);
  EXPECT_EQ(r.code, 137) << r.err;
}

TEST_F(GuestTest, EnvWorkdirAndUserAreHonoured) {
  auto p = plan({"sh", "-c", "echo $GREETING; pwd; id -u"});
  p.env = {"GREETING=hello from the host"};
  p.workdir = "/tmp";
  p.user = "1000";
  auto r = runContainer(p);
  EXPECT_EQ(r.out, "hello from the host\n/tmp\n1000\n") << r.err;
  EXPECT_EQ(r.code, 0);
}

TEST_F(GuestTest, ExecInGuestAndInContainerWithPipedStdinAndPty) {
  auto vm = boot();
  vm->wait(vm->agent().runContainer(
      plan({"sh", "-c", "echo ready > /tmp/marker; echo running; exec sleep 600"})));
  vm->waitContainerStarted();
  vm->waitForOutput(agent::kContainerStream, "running\n");

  agent::ExecRequest guest;
  guest.id = 1;
  guest.command = {"/bin/sh", "-c", "cat; echo; cat /proc/1/comm"};
  guest.stdin = true;
  vm->wait(vm->agent().exec(guest));
  vm->wait(vm->agent().sendStdin(1, "piped into the guest", true));
  auto inGuest = vm->waitStream(1);
  EXPECT_EQ(inGuest.out, "piped into the guest\ninit\n") << inGuest.err << vm->consoleTail();
  EXPECT_EQ(inGuest.code, 0);

  agent::ExecRequest container;
  container.id = 2;
  container.inContainer = true;
  container.command = {"sh", "-c", "cat /tmp/marker; tr a-z A-Z; exit 3"};
  container.stdin = true;
  vm->wait(vm->agent().exec(container));
  vm->wait(vm->agent().sendStdin(2, "shout", true));
  auto inContainer = vm->waitStream(2);
  EXPECT_EQ(inContainer.out, "ready\nSHOUT") << inContainer.err;
  EXPECT_EQ(inContainer.code, 3);

  agent::ExecRequest tty;
  tty.id = 3;
  tty.inContainer = true;
  tty.tty = true;
  tty.rows = 31;
  tty.cols = 101;
  tty.command = {"sh", "-c", "stty size; test -t 1 && echo on-a-tty"};
  vm->wait(vm->agent().exec(tty));
  auto onTty = vm->waitStream(3);
  EXPECT_EQ(onTty.out, "31 101\r\non-a-tty\r\n") << onTty.err;
  EXPECT_EQ(onTty.err, "");  // a pty merges both streams
  EXPECT_EQ(onTty.code, 0);

  int status = vm->powerOff();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST_F(GuestTest, ImageFromAnOciArchiveRuns) {
  TempDir dir("fcvm-archive");
  auto archive = dir / "busybox.tar";
  auto saved =
      runCommand({"podman", "save", "--format", "oci-archive", "-o", archive.string(), kImage},
                 CommandOptions::withTimeout(std::chrono::minutes(2)));
  ASSERT_EQ(saved.exitCode, 0) << saved.output;
  std::string reference;
  auto vm = boot("oci-archive:" + archive.string(), &reference);
  EXPECT_EQ(reference.size(), 64u) << reference;  // the guest knows it by its image id
  auto p = plan({"sh", "-c", "echo from the archive"});
  p.image = reference;
  vm->wait(vm->agent().runContainer(p));
  auto r = vm->waitStream(agent::kContainerStream);
  EXPECT_EQ(r.out, "from the archive\n") << r.err;
  EXPECT_EQ(r.code, 0);
}

TEST_F(GuestTest, HundredMegabytesOfStdoutArriveIntact) {
  // The container prints 100 MiB of random bytes and, on stderr, their SHA-256.
  auto r = runContainer(plan(
      {"sh", "-c",
       "head -c 104857600 /dev/urandom > /tmp/data && sha256sum /tmp/data >&2 && cat /tmp/data"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.size(), 104857600u);
  EXPECT_EQ(r.err.substr(0, 64), sha256Hex(r.out));
}

}  // namespace
}  // namespace fcvm::testing
