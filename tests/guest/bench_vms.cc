#include "tests/guest/bench_vms.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace fcvm::testing {
namespace {

std::string commandLine(const std::vector<std::string>& args) {
  std::string line = "fcvm";
  for (const auto& a : args) line += " " + a;
  return line;
}

std::string logTail(const FcvmInstance& fcvm) {
  std::ifstream in(fcvm.log());
  std::string log((std::istreambuf_iterator<char>(in)), {});
  return log.size() > 3000 ? log.substr(log.size() - 3000) : log;
}

// The kB field `key` of /proc/PID/FILE (status, smaps_rollup), in MiB.
double procFieldMib(pid_t pid, const char* file, const std::string& key) {
  auto path = fmt::format("/proc/{}/{}", pid, file);
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) / 1024;
  }
  throw Error(fmt::format("no {} in {} (has the process gone?)", key, path));
}

std::string commName(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/comm", pid));
  std::string name;
  std::getline(in, name);
  return name;
}

}  // namespace

std::string ok(const FcvmInstance& fcvm, const std::vector<std::string>& args) {
  auto r = fcvm.fcvm(args, std::nullopt, kCommandDeadline);
  if (r.exitCode != 0) {
    throw Error(fmt::format("`{}` {}:\n{}\nsupervisor log ends:\n{}", commandLine(args),
                            r.timedOut ? "timed out" : fmt::format("exited {}", r.exitCode),
                            r.output, logTail(fcvm)));
  }
  return r.output;
}

double secondsOf(const std::function<void()>& work) {
  auto start = std::chrono::steady_clock::now();
  work();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return fmt::format("{} {} {}", one, five, fifteen);
}

DetachedVms::DetachedVms(const FcvmInstance& fcvm, std::string image)
    : fcvm_(fcvm), image_(std::move(image)) {}

DetachedVms::~DetachedVms() {
  for (const auto& name : names_) {
    try {
      fcvm_.fcvm({"rm", "-f", "--name", name}, {}, kCommandDeadline);
    } catch (const std::exception&) {
      // Already failing; the instance's destructor kills what is left.
    }
  }
}

void DetachedVms::start(const std::string& name, const std::vector<std::string>& command,
                        const std::vector<std::string>& options) {
  names_.push_back(name);  // first: a half-started VM is removed too
  std::vector<std::string> args = {"podman", "run", "-d", "--name", name};
  args.insert(args.end(), options.begin(), options.end());
  args.push_back(image_);
  args.insert(args.end(), command.begin(), command.end());
  ok(fcvm_, args);
}

void DetachedVms::removeAll() {
  while (!names_.empty()) {
    ok(fcvm_, {"rm", "-f", "--name", names_.back()});
    names_.pop_back();
  }
}

Memory memoryOf(pid_t pid) {
  return {procFieldMib(pid, "status", "VmRSS"), procFieldMib(pid, "smaps_rollup", "Pss")};
}

pid_t qemuOf(pid_t worker) {
  for (const auto& task :
       std::filesystem::directory_iterator(fmt::format("/proc/{}/task", worker))) {
    std::ifstream in(task.path() / "children");
    pid_t child = 0;
    while (in >> child) {
      if (commName(child).rfind("qemu-system", 0) == 0) return child;
    }
  }
  throw Error(fmt::format("worker {} has no qemu-system child", worker));
}

pid_t workerOf(const FcvmInstance& fcvm, const std::string& name) {
  auto pid =
      nlohmann::json::parse(ok(fcvm, {"inspect", "--name", name})).at("worker_pid").get<pid_t>();
  if (pid <= 0) throw Error(fmt::format("VM {} has no worker pid", name));
  return pid;
}

}  // namespace fcvm::testing
