#include "tests/guest/guest_vm.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include <algorithm>
#include <fstream>

#include "base/error.h"
#include "base/install_layout.h"
#include "base/subprocess.h"
#include "ipc/listening_socket.h"
#include "setup/initramfs.h"

namespace fcvm::testing {

std::filesystem::path testDataDir() {
  const char* dir = std::getenv("FCVM_TEST_DATA_DIR");
  if (dir == nullptr || *dir == '\0') throw Error("FCVM_TEST_DATA_DIR is not set");
  return dir;
}

setup::GuestArtifacts testArtifacts() {
  auto artifacts = setup::currentArtifacts(testDataDir());
  if (!artifacts) {
    throw Error(
        fmt::format("no guest artifacts in {}: run `fcvm setup` with FCVM_DATA_DIR "
                    "set to it (ctest's guest_setup fixture does)",
                    testDataDir().string()));
  }
  return *artifacts;
}

GuestVm::GuestVm(kj::AsyncIoContext& io, const setup::GuestArtifacts& artifacts,
                 const GuestVmOptions& options)
    : io_(io) {
  auto start = std::chrono::steady_clock::now();
  // The host listens before QEMU starts; QEMU connects the port's chardev to it at startup.
  ipc::ListeningSocket control(dir_ / "control.sock", 0600);
  auto listener = io_.lowLevelProvider->wrapListenSocketFd(
      control.releaseFd(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                               kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                               kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);

  worker::QemuConfig config;
  config.accel = options.accel;
  config.memoryMib = options.memoryMib;
  config.kernel = artifacts.kernel;
  config.initramfs = artifacts.initramfs;
  config.rootDisk = artifacts.rootfs;
  config.rootDiskSnapshot = true;  // every test boots the same pristine image
  if (options.imageDisk) {
    config.extraDisks.push_back({*options.imageDisk, true});
    config.extraKernelArgs = "fcvm.images=/dev/vdb";  // fc-agent mounts it as podman's image store
  }
  config.channels = {{"fcvm.control", dir_ / "control.sock"}};
  config.consoleLog = dir_ / "console.log";
  qemu_ = std::make_unique<worker::QemuProcess>(config);

  try {
    auto stream = wait(listener->accept(), kBootDeadline);
    agent_ = kj::heap<worker::AgentChannel>(kj::mv(stream), "fcvm-guest-test");
    wait(agent_->handshake(), kBootDeadline);
  } catch (const kj::Exception& e) {
    throw Error(fmt::format("guest did not reach fc-agent: {}\n--- console ---\n{}",
                            e.getDescription().cStr(), consoleTail()));
  }
  secondsToAgent_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

GuestVm::~GuestVm() = default;

std::string GuestVm::consoleTail(size_t bytes) const {
  std::ifstream in(dir_ / "console.log");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  if (text.size() > bytes) text = text.substr(text.size() - bytes);
  return text;
}

void GuestVm::pump() {
  auto event = wait(agent_->next());
  if (!event) throw Error("fc-agent closed the control channel");
  if (auto* output = std::get_if<agent::Output>(&*event)) {
    auto& s = streams_[output->streamId];
    (output->kind == agent::OutputKind::kStdout ? s.out : s.err) += output->data;
  } else if (auto* exit = std::get_if<agent::Exit>(&*event)) {
    auto& s = streams_[exit->streamId];
    s.code = exit->code;
    s.signal = exit->signal;
    exited_[exit->streamId] = true;
  } else if (std::holds_alternative<agent::ContainerStarted>(*event)) {
    containerStarted_ = true;
  }
}

StreamResult GuestVm::waitStream(uint32_t id) {
  while (!exited_[id]) pump();
  return streams_[id];
}

void GuestVm::waitContainerStarted() {
  while (!containerStarted_) {
    if (exited_[agent::kContainerStream]) {
      throw Error("the container exited before it was reported started: " +
                  streams_[agent::kContainerStream].err);
    }
    pump();
  }
}

void GuestVm::waitForOutput(uint32_t id, const std::string& text) {
  while (streams_[id].out.find(text) == std::string::npos) {
    if (exited_[id]) {
      throw Error(
          fmt::format("stream {} exited before printing '{}': {}", id, text, streams_[id].err));
    }
    pump();
  }
}

int GuestVm::powerOff() {
  wait(agent_->powerOff());
  auto status =
      qemu_->waitExit(std::chrono::duration_cast<std::chrono::milliseconds>(kBootDeadline));
  if (!status) throw Error("the guest did not power off");
  return *status;
}

std::filesystem::path bareInitramfs(const TempDir& dir) {
  auto tree = dir / "bare";
  setup::makeInitramfsTree(tree);
  std::filesystem::copy_file(siblingBinary("fcvm-bare-init", "FCVM_BARE_INIT_BIN"), tree / "init");
  auto cpio = dir / "bare.cpio";
  setup::packInitramfs(tree, cpio);
  return cpio;
}

double bareBootSeconds(const setup::GuestArtifacts& artifacts,
                       const std::filesystem::path& initramfs, const std::string& accel) {
  worker::QemuConfig config;
  config.accel = accel;
  config.kernel = artifacts.kernel;
  config.initramfs = initramfs;
  auto start = std::chrono::steady_clock::now();
  worker::QemuProcess qemu(config);
  if (!qemu.waitExit(std::chrono::minutes(3))) throw Error("bare boot did not power off");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<double> measureRuns(int runs, const std::function<double()>& measure) {
  std::vector<double> samples;
  for (int i = 0; i < runs; ++i) samples.push_back(measure());
  std::sort(samples.begin(), samples.end());
  return samples;
}

double median(const std::vector<double>& sorted) {
  if (sorted.empty()) throw Error("median of no samples");
  return sorted[sorted.size() / 2];
}

int benchMain(const char* name, const std::function<int()>& run) {
  try {
    return run();
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", name, e.what());
  } catch (const kj::Exception& e) {
    fmt::print(stderr, "{}: {}\n", name, e.getDescription().cStr());
  }
  return 1;
}

}  // namespace fcvm::testing
