// The guest test harness: boots `fcvm setup`'s artifacts directly with QEMU microvm (no
// supervisor, no worker) and connects to fc-agent's control channel, so the guest can be tested
// on its own. Each GuestVm has its own directory, sockets and QEMU; all go away with it.
#pragma once

#include <kj/async-io.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "setup/artifact_store.h"
#include "tests/support/temp_dir.h"
#include "worker/agent_channel.h"
#include "worker/qemu_vmm.h"

namespace fcvm::testing {

// Generous watchdog deadlines for a loaded 2-core host under TCG; they bound a hung guest, they
// are not performance assertions.
inline constexpr auto kBootDeadline = std::chrono::seconds(180);
inline constexpr auto kRunDeadline = std::chrono::seconds(300);

struct GuestVmOptions {
  std::string accel = "tcg";
  unsigned memoryMib = 256;
  std::optional<std::filesystem::path> imageDisk;  // from worker::ImageCache
};

// What one stream printed and how it ended.
struct StreamResult {
  std::string out;
  std::string err;
  int code = -1;
  int signal = 0;
};

class GuestVm {
 public:
  GuestVm(kj::AsyncIoContext& io, const setup::GuestArtifacts& artifacts,
          const GuestVmOptions& options = {});
  ~GuestVm();

  // The connected, handshaken channel to fc-agent.
  worker::AgentChannel& agent() { return *agent_; }
  worker::QemuProcess& qemu() { return *qemu_; }
  // The end of the guest console, for failure messages.
  std::string consoleTail(size_t bytes = 4000) const;

  // Reads events until stream `id` exits; other streams' output is kept for them.
  StreamResult waitStream(uint32_t id);
  // Waits for the agent's containerStarted (after runContainer): podman has been launched.
  void waitContainerStarted();
  // Waits until stream `id` has printed `text` on stdout: the way a test knows the container's
  // own process is running.
  void waitForOutput(uint32_t id, const std::string& text);
  // Asks the guest to power off and waits for QEMU to exit; returns QEMU's wait status.
  int powerOff();

  kj::WaitScope& waitScope() { return io_.waitScope; }
  template <typename T>
  T wait(kj::Promise<T> promise, std::chrono::seconds deadline = kRunDeadline) {
    return io_.provider->getTimer()
        .timeoutAfter(deadline.count() * kj::SECONDS, kj::mv(promise))
        .wait(io_.waitScope);
  }

  // Seconds from the constructor's start to the agent's hello.
  double secondsToAgent() const { return secondsToAgent_; }

 private:
  void pump();  // handles one event

  kj::AsyncIoContext& io_;
  TempDir dir_{"fcvm-guest"};
  std::unique_ptr<worker::QemuProcess> qemu_;
  kj::Own<worker::AgentChannel> agent_;
  std::map<uint32_t, StreamResult> streams_;
  std::map<uint32_t, bool> exited_;
  bool containerStarted_ = false;
  double secondsToAgent_ = 0;
};

// The artifacts of the guest tests' data dir (FCVM_TEST_DATA_DIR), which a CTest fixture fills
// with `fcvm setup`. Throws if setup has not run.
setup::GuestArtifacts testArtifacts();
std::filesystem::path testDataDir();

// The benchmarks' baseline: the guest kernel booting an initramfs that holds only a trivial /init
// (fcvm-bare-init, beside the running binary), which powers off at once. The initramfs is built
// in `dir`.
std::filesystem::path bareInitramfs(const TempDir& dir);
// Seconds from starting QEMU (under `accel`) with that initramfs until it has exited.
double bareBootSeconds(const setup::GuestArtifacts& artifacts,
                       const std::filesystem::path& initramfs, const std::string& accel = "tcg");

// `runs` results of `measure`, sorted; and the median of such results.
std::vector<double> measureRuns(int runs, const std::function<double()>& measure);
double median(const std::vector<double>& sorted);

// A benchmark's main(): runs `run` and turns any failure into one line "NAME: why" and exit 1.
int benchMain(const char* name, const std::function<int()>& run);

}  // namespace fcvm::testing
