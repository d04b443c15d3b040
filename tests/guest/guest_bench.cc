// `make bench-guest`: where a guest's start-up time goes, each figure beside the baseline of the
// same kernel booting a trivial /init that powers off at once. Medians of a few runs.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>

#include "base/error.h"
#include "tests/guest/guest_vm.h"
#include "worker/image_cache.h"

namespace fcvm::testing {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRuns = 3;
constexpr const char* kImage = "localhost/fcvm-test-busybox:latest";

double seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double bootToContainer(kj::AsyncIoContext& io, const setup::GuestArtifacts& artifacts,
                       const std::filesystem::path& imagesDir, bool waitForStart) {
  auto start = Clock::now();
  worker::ImageCache images(imagesDir);
  auto prepared =
      images.prepare({kImage, -1, Credentials{}, {}}, (imagesDir / "bench.log").string());
  GuestVmOptions options;
  options.imageDisk = prepared.disk;
  GuestVm vm(io, artifacts, options);
  agent::RunPlan plan;
  plan.image = kImage;
  plan.command = {"true"};
  vm.wait(vm.agent().runContainer(plan));
  if (waitForStart) {
    vm.waitContainerStarted();
  } else {
    auto r = vm.waitStream(agent::kContainerStream);
    if (r.code != 0) throw Error("container failed: " + r.err);
  }
  return seconds(start);
}

int run() {
  auto io = kj::setupAsyncIo();
  auto artifacts = testArtifacts();
  TempDir dir("fcvm-bench-guest");
  auto initramfs = bareInitramfs(dir);
  auto shared = testDataDir() / "images";

  double bare = median(measureRuns(kRuns, [&] { return bareBootSeconds(artifacts, initramfs); }));
  double agent = median(measureRuns(kRuns, [&] {
    GuestVm vm(io, artifacts);
    double t = vm.secondsToAgent();
    vm.powerOff();
    return t;
  }));
  double started =
      median(measureRuns(kRuns, [&] { return bootToContainer(io, artifacts, shared, true); }));
  int fresh = 0;
  double firstRun = median(measureRuns(kRuns, [&] {
    // A new image cache each time: the export and unpack happen inside the measurement.
    return bootToContainer(io, artifacts, dir / fmt::format("images-{}", fresh++), false);
  }));
  double secondRun =
      median(measureRuns(kRuns, [&] { return bootToContainer(io, artifacts, shared, false); }));

  fmt::print("guest start-up under {}, median of {} runs (kernel {})\n", "tcg", kRuns,
             artifacts.kernelVersion);
  fmt::print("{:<46} {:>9} {:>8}\n", "", "seconds", "x bare");
  auto row = [&](const char* what, double s) {
    fmt::print("{:<46} {:>9.2f} {:>8.2f}\n", what, s, s / bare);
  };
  row("bare boot: kernel to trivial /init, power off", bare);
  row("boot to fc-agent ready (hello)", agent);
  row("boot to container started", started);
  row("run `true`, first run of the image (export)", firstRun);
  row("run `true`, second run of the image (cached)", secondRun);
  return 0;
}

}  // namespace
}  // namespace fcvm::testing

int main() { return fcvm::testing::benchMain("bench-guest", fcvm::testing::run); }
