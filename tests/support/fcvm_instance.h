// One private fcvm installation for a test: its own data and runtime dirs, so its own supervisor,
// workers and VMs, all stopped (killed if need be) when the test ends, also when it fails. The
// `fcvm` binary runs as a user would run it, optionally as another uid.
#pragma once

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/process_identity.h"
#include "base/subprocess.h"
#include "base/vm_cgroup.h"
#include "tests/support/temp_dir.h"

namespace fcvm::testing {

// Where an instance's guest RAM files live (FCVM_MEMORY_DIR).
enum class GuestMemoryOn {
  kTmpfs,  // under /dev/shm, as in production
  kDisk,   // in the instance's own dir, on the same disk as its data dir (to measure the cost)
};

class FcvmInstance {
 public:
  // `sharedStorage`: the storage dir of a data dir where `fcvm setup` ran (guest artifacts, image
  // cache); linked in so VM tests boot without running setup each. VM disks land there too, each
  // under its own id.
  explicit FcvmInstance(std::optional<std::filesystem::path> sharedStorage = std::nullopt,
                        GuestMemoryOn memoryOn = GuestMemoryOn::kTmpfs)
      : memoryDir_(memoryOn == GuestMemoryOn::kTmpfs ? memory_ / "mem" : dir_ / "mem") {
    // Other uids must reach the socket: the test dir is private by default.
    ::chmod(dir_.path().c_str(), 0755);
    if (sharedStorage) {
      std::filesystem::create_directories(dir_ / "data");
      std::filesystem::create_directory_symlink(*sharedStorage, dir_ / "data" / "storage");
    }
    env_ = {"FCVM_DATA_DIR=" + (dir_ / "data").string(),
            "FCVM_RUNTIME_DIR=" + (dir_ / "run").string(),
            "FCVM_MEMORY_DIR=" + memoryDir_.string()};
  }
  ~FcvmInstance() {
    // VMs and serve processes first (they outlive a stopped supervisor by design), then the
    // supervisor.
    for (pid_t pid : processesOf("fcvm-worker")) ::kill(pid, SIGKILL);
    for (pid_t pid : processesOf("fcvm-uffd-server")) ::kill(pid, SIGKILL);
    fcvm({"supervisor", "stop"});
    for (pid_t pid : processesOf("fcvm-supervisor")) ::kill(pid, SIGKILL);
    // The networks of VMs a failed test left: netd's records say what they are.
    for (pid_t pid : processesOf("fcvm-netd")) ::kill(pid, SIGKILL);
    if (std::filesystem::exists(dataDir() / "netd")) {
      runCommand({std::string(FCVM_BIN_DIR) + "/fcvm-netd", "--data-dir", dataDir().string(),
                  "--runtime-dir", runtimeDir().string(), "--remove-all"});
    }
    // Disks of VMs a failed test left behind live in the shared storage, not in our dirs; their
    // cgroups in the host's hierarchies.
    std::error_code ec;
    auto disks = dataDir() / "storage" / "vms";
    auto cgroups = VmCgroups::probe();
    for (const auto& entry : std::filesystem::directory_iterator(dataDir() / "vms", ec)) {
      if (entry.path().extension() == ".json") {
        std::filesystem::remove_all(disks / entry.path().stem(), ec);
        cgroups.remove(entry.path().stem());
      }
    }
    // So do snapshots' files: the bulk beside each record (or record being made).
    auto bulk = dataDir() / "storage" / "snapshots";
    for (const auto& entry : std::filesystem::directory_iterator(dataDir() / "snapshots", ec)) {
      std::string name = entry.path().filename();
      std::filesystem::remove_all(bulk / name, ec);
      if (name.starts_with(".staging-")) std::filesystem::remove_all(bulk / name.substr(9), ec);
    }
  }
  FcvmInstance(const FcvmInstance&) = delete;
  FcvmInstance& operator=(const FcvmInstance&) = delete;

  CommandResult fcvm(std::vector<std::string> args, std::optional<uid_t> uid = std::nullopt,
                     std::chrono::seconds timeout = std::chrono::seconds(60),
                     const std::string& errorFile = "",
                     const std::vector<std::string>& extraEnv = {}) const {
    args.insert(args.begin(), binary());
    if (uid) {
      auto id = std::to_string(*uid);
      args.insert(args.begin(),
                  {"setpriv", "--reuid=" + id, "--regid=" + id, "--clear-groups", "--"});
    }
    CommandOptions options;
    options.timeout = timeout;
    options.extraEnv = env();
    if (uid) options.extraEnv.push_back("FCVM_SOCKET=" + socket().string());
    options.extraEnv.insert(options.extraEnv.end(), extraEnv.begin(), extraEnv.end());
    options.errorFile = errorFile;
    return runCommand(args, options);
  }

  nlohmann::json fcvmJson(std::vector<std::string> args,
                          std::optional<uid_t> uid = std::nullopt) const {
    auto r = fcvm(args, uid);
    if (r.exitCode != 0) throw std::runtime_error("fcvm failed: " + r.output);
    return nlohmann::json::parse(r.output);
  }

  static std::string binary() { return std::string(FCVM_BIN_DIR) + "/fcvm"; }
  std::vector<std::string> env() const { return env_; }
  const TempDir& dir() const { return dir_; }
  std::filesystem::path dataDir() const { return dir_ / "data"; }
  std::filesystem::path runtimeDir() const { return dir_ / "run"; }
  std::filesystem::path memoryDir() const { return memoryDir_; }
  std::filesystem::path socket() const { return dir_ / "run" / "supervisor.sock"; }
  std::filesystem::path log() const { return dir_ / "data" / "logs" / "supervisor.log"; }

  // Live processes whose command line names `program` and this instance's runtime dir (QEMU is
  // found through its sockets, which live there).
  std::vector<pid_t> processesOf(const std::string& program) const {
    std::vector<pid_t> pids;
    std::string runtime = runtimeDir().string();
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      std::string name = entry.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      // The process may end while it is read.
      std::string cmdline = readProcessFile(std::stoi(name), "cmdline").value_or("");
      // Workers name the runtime dir as an argument; QEMU and serve processes sockets in it.
      bool byArgument =
          program == "fcvm-worker" || program == "fcvm-supervisor" || program == "fcvm-netd";
      if (cmdline.find(program) != std::string::npos &&
          cmdline.find(runtime + (byArgument ? std::string(1, '\0') : "/")) != std::string::npos) {
        pids.push_back(std::stoi(name));
      }
    }
    return pids;
  }

  int countInLog(const std::string& needle) const {
    std::ifstream in(log());
    std::string line;
    int n = 0;
    while (std::getline(in, line)) n += line.find(needle) != std::string::npos ? 1 : 0;
    return n;
  }

 private:
  TempDir dir_{"fcvm-e2e"};
  TempDir memory_{"fcvm-e2e", "/dev/shm"};  // guest RAM files, on tmpfs as in production
  std::filesystem::path memoryDir_;
  std::vector<std::string> env_;
};

}  // namespace fcvm::testing
