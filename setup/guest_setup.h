// `fcvm setup`: builds or reuses every guest artifact (kernel, initramfs, rootfs) in the data dir
// and records them as the current set. Idempotent: a rerun with nothing to do only checks keys.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "base/paths.h"

namespace fcvm::setup {

struct SetupOptions {
  Paths paths;
  std::filesystem::path agentBinary;  // the static fc-agent to put in the initramfs
  bool force = false;                 // rebuild everything
  std::ostream* progress = nullptr;   // one line per step, as it happens
};

struct SetupStep {
  std::string name;  // kernel, initramfs, rootfs
  std::string key;
  std::filesystem::path path;
  bool built = false;
  double seconds = 0;
  std::string detail;
};

struct SetupReport {
  std::vector<SetupStep> steps;
  double seconds = 0;
};

// Needs root (debootstrap, device nodes). Throws fcvm::Error naming the step that failed and its
// log file.
SetupReport runSetup(const SetupOptions& options);

nlohmann::json toJson(const SetupReport& report);

}  // namespace fcvm::setup
