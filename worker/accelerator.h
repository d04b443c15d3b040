// Which accelerator QEMU should use for guests on this host. KVM is chosen only when it can really
// run the guest kernel: a nested or paravirtual /dev/kvm may open fine and still fail on a stock
// kernel, so the probe boots the guest kernel once under KVM and caches the answer.
#pragma once

#include <filesystem>
#include <string>

namespace fcvm::worker {

enum class AccelRequest { kAuto, kKvm, kTcg };

struct AcceleratorChoice {
  std::string name;    // "kvm" or "tcg"
  std::string reason;  // one line a user can act on
  bool cached = false;
};

struct AcceleratorProbe {
  std::filesystem::path kernel;     // the guest kernel (vmlinux) from `fcvm setup`
  std::filesystem::path cacheFile;  // where the probe's verdict is kept
  std::string qemu = "qemu-system-x86_64";
};

// Decides for `request`. Forcing kvm when KVM cannot be opened is an error; forcing tcg always
// works.
AcceleratorChoice chooseAccelerator(const AcceleratorProbe& probe, AccelRequest request);

AccelRequest parseAccelRequest(const std::string& s);  // auto|kvm|tcg, else fcvm::Error

}  // namespace fcvm::worker
