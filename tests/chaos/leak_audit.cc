#include "tests/chaos/leak_audit.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/process_identity.h"
#include "base/subprocess.h"
#include "tests/support/vm_fixture.h"

namespace fcvm::testing {
namespace {

namespace fs = std::filesystem;

std::string readAll(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Entries of `dir` (none if it does not exist).
std::vector<fs::path> entriesOf(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) out.push_back(entry.path());
  return out;
}

}  // namespace

LeakAudit::LeakAudit(const FcvmInstance& fcvm, std::set<std::string> vmIds,
                     std::set<std::string> snapshotIds)
    : fcvm_(fcvm), vmIds_(std::move(vmIds)), snapshotIds_(std::move(snapshotIds)) {}

std::vector<std::string> LeakAudit::stateTable() const {
  std::vector<std::string> leaks;
  for (const auto& [what, args] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"VM", {"ls", "--json"}}, {"snapshot", {"snapshot", "ls", "--json"}}}) {
    auto r = fcvm_.fcvm(args, std::nullopt, kVmDeadline);
    if (r.exitCode != 0) {
      leaks.push_back(fmt::format("fcvm {} failed: {}", args[0], r.output));
      continue;
    }
    for (const auto& entry : nlohmann::json::parse(r.output)) {
      leaks.push_back(fmt::format("state table: {} {} ({}) is still listed", what,
                                  entry.value("name", entry.value("tag", std::string("?"))),
                                  entry.value("state", std::string("?"))));
    }
  }
  return leaks;
}

std::vector<std::string> LeakAudit::host() const {
  std::vector<std::string> leaks;
  processes(leaks);
  networks(leaks);
  files(leaks);
  return leaks;
}

void LeakAudit::processes(std::vector<std::string>& leaks) const {
  for (const char* program :
       {"fcvm-supervisor", "fcvm-worker", "qemu-system", "fcvm-uffd-server"}) {
    for (pid_t pid : fcvm_.processesOf(program)) {
      leaks.push_back(fmt::format("process: {} pid {} is still running", program, pid));
    }
  }
  // netd outlives its supervisor by design (the next one adopts it), but never more than one.
  auto netds = fcvm_.processesOf("fcvm-netd");
  if (netds.size() > 1) {
    leaks.push_back(fmt::format("process: {} fcvm-netd processes of one instance", netds.size()));
  }
  // Volume servers name no path of ours: they are found by the directory they serve, which is
  // the instance's own.
  const std::string instance = fcvm_.dir().path().string() + "/";
  for (const auto& proc : entriesOf("/proc")) {
    std::string pid = proc.filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (readProcessFile(std::stoi(pid), "comm") != "fuse-pipe\n") continue;
    for (const auto& fd : entriesOf(proc / "fd")) {
      std::error_code ec;
      auto target = fs::read_symlink(fd, ec).string();
      if (!ec && target.starts_with(instance)) {
        leaks.push_back(
            fmt::format("process: fuse-pipe server pid {} still serves {}", pid, target));
        break;
      }
    }
  }
}

void LeakAudit::networks(std::vector<std::string>& leaks) const {
  auto rules = runCommand({"iptables-save"}, CommandOptions::withTimeout(std::chrono::seconds(30)));
  if (rules.exitCode != 0) leaks.push_back("iptables-save failed: " + rules.output);
  for (const auto& id : vmIds_) {
    if (fs::exists("/run/netns/fcvm-" + id)) {
      leaks.push_back("network namespace: /run/netns/fcvm-" + id);
    }
    const std::string link = "fcvm" + id.substr(0, 8) + "h";
    if (fs::exists("/sys/class/net/" + link)) leaks.push_back("link: " + link);
    std::istringstream lines(rules.output);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("fcvm:" + id) != std::string::npos) leaks.push_back("iptables: " + line);
    }
  }
  for (const auto& record : entriesOf(fcvm_.dataDir() / "netd")) {
    if (record.extension() == ".json") leaks.push_back("netd record: " + record.string());
  }
}

void LeakAudit::files(std::vector<std::string>& leaks) const {
  const auto storage = fcvm_.dataDir() / "storage";
  std::istringstream mounts(readAll("/proc/self/mountinfo"));
  for (std::string line; std::getline(mounts, line);) {
    if (line.find(fcvm_.dir().path().string()) != std::string::npos) {
      leaks.push_back("mount: " + line);
    }
  }
  for (const auto& file : entriesOf(fcvm_.memoryDir()))
    leaks.push_back("memory file: " + file.string());
  for (const auto& id : vmIds_) {
    for (const auto& path :
         {storage / "vms" / id, fcvm_.runtimeDir() / "vms" / id, fcvm_.dataDir() / "vms" / id,
          fcvm_.dataDir() / "vms" / (id + ".json")}) {
      if (fs::exists(path)) leaks.push_back("VM file: " + path.string());
    }
    for (const char* hierarchy : {"", "memory", "pids", "cpu"}) {
      auto cgroup = fs::path("/sys/fs/cgroup") / hierarchy / "fcvm" / id;
      if (fs::exists(cgroup)) leaks.push_back("cgroup: " + cgroup.string());
    }
  }
  for (const auto& id : snapshotIds_) {
    for (const auto& path : {storage / "snapshots" / id, fcvm_.dataDir() / "snapshots" / id}) {
      if (fs::exists(path)) leaks.push_back("snapshot file: " + path.string());
    }
  }
  for (const auto& record : entriesOf(fcvm_.dataDir() / "vms")) {
    leaks.push_back("VM record: " + record.string());
  }
  for (const auto& record : entriesOf(fcvm_.dataDir() / "snapshots")) {
    leaks.push_back("snapshot record: " + record.string());
  }
}

}  // namespace fcvm::testing
