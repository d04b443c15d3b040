// `make chaos ROUNDS=N`: rounds of run, exec, stop, rm, snapshot, clone, volumes and networking
// against a private fcvm instance, each with a kill -9 of one of its processes at a random moment
// (supervisor, netd, a worker, a QEMU, a uffd-server, a fuse-pipe server or the CLI itself). Then
// every VM still listed must be what it is listed as, and once everything is removed and the
// supervisor stopped, the leak audit must find nothing. Exits 0 only then; prints every finding.
//
//   fcvm_chaos [--rounds N] [--seed S]      (needs FCVM_TEST_DATA_DIR: the guest fixture's)
//
// The kills land at random moments on purpose; nothing waits on time to synchronise. Every
// command runs under a deadline that bounds a hang, and a hang is a finding.
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/process_identity.h"
#include "base/unique_fd.h"
#include "tests/chaos/leak_audit.h"
#include "tests/support/running_command.h"
#include "tests/support/temp_dir.h"
#include "tests/support/vm_fixture.h"

namespace fcvm::testing {
namespace {

using nlohmann::json;

constexpr size_t kMostLiveVms = 3;  // two cores under TCG

enum class Victim { kSupervisor, kNetd, kWorker, kQemu, kUffdServer, kFusePipe, kCli };

const char* nameOf(Victim v) {
  switch (v) {
    case Victim::kSupervisor:
      return "fcvm-supervisor";
    case Victim::kNetd:
      return "fcvm-netd";
    case Victim::kWorker:
      return "fcvm-worker";
    case Victim::kQemu:
      return "qemu-system";
    case Victim::kUffdServer:
      return "fcvm-uffd-server";
    case Victim::kFusePipe:
      return "fuse-pipe";
    case Victim::kCli:
      return "fcvm (the CLI)";
  }
  return "?";
}

// Children of `parents` whose comm is `comm`.
std::vector<pid_t> childrenNamed(const std::vector<pid_t>& parents, const std::string& comm) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = readProcessFile(std::stoi(name), "stat").value_or("");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    auto open = stat.find('(');
    if (stat.substr(open + 1, close - open - 1) != comm) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (state == 'Z') continue;  // dead already, not yet reaped
    if (std::find(parents.begin(), parents.end(), ppid) != parents.end()) {
      out.push_back(std::stoi(name));
    }
  }
  return out;
}

class ChaosRun {
 public:
  ChaosRun(uint64_t seed) : rng_(seed), fcvm_(guestStorage()) {
    std::filesystem::create_directories(volume_.path() / "in");
  }

  // One operation, with a kill at a random moment while it runs. Returns false on a finding.
  bool round(int n) {
    auto vms = list();
    if (!vms) return false;
    auto args = pickOperation(n, *vms);
    std::string line;
    for (const auto& a : args) line += " " + a;
    std::vector<std::string> argv = {FcvmInstance::binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    RunningCommand cli(argv, fcvm_.env(), kVmDeadline);
    // The CLI is signalled through a pidfd: once reaped it cannot be confused with a new process.
    UniqueFd cliPidfd(static_cast<int>(::syscall(SYS_pidfd_open, cli.pid(), 0)));
    auto victim = pickVictim();
    // Most rounds kill, at a moment within the time a VM takes to boot under TCG here; the others
    // let VMs come up, so that there are running VMs to snapshot and snapshots to clone.
    const bool kills = std::uniform_int_distribution<int>(0, 3)(rng_) != 0;
    const auto when = std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 10000)(rng_));
    std::string killed = "nothing";
    {
      // The kill, from a thread of its own, at a random moment of the command or of what it
      // started (a VM booting after `run -d` returned): the moment is the chaos, nothing waits
      // on it.
      std::thread killer([&] {
        if (!kills) return;
        std::this_thread::sleep_for(when);
        killed = kill(victim, cliPidfd.get());
      });
      int status = 0;
      try {
        status = cli.finish();
      } catch (const std::exception& e) {
        finding(fmt::format("round {}: fcvm{} did not end: {}", n, line, e.what()));
      }
      // A VM started is waited for (a kill may land while it boots); whether it comes up
      // depends on the kill, that `wait` answers does not.
      if (startsVm(args) && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        auto waited =
            fcvm_.fcvm({"wait", "--name", args[nameIndex(args)], "--condition", "running"},
                       std::nullopt, kVmDeadline);
        if (waited.timedOut) finding(fmt::format("round {}: fcvm wait did not end", n));
      }
      killer.join();
      std::cout << fmt::format("round {}: fcvm{} -> {}; killed {}", n, line,
                               WIFEXITED(status) ? std::to_string(WEXITSTATUS(status)) : "signal",
                               killed)
                << std::endl;
    }
    return findings_.empty();
  }

  // Every VM listed is what it is listed as: a running one answers, an ended one has no process.
  bool settle() {
    auto vms = list();
    if (!vms) return false;
    for (const auto& vm : *vms) {
      std::string name = vm.at("name"), state = vm.at("state");
      if (state == "running" || state == "healthy" || state == "booting" || state == "creating") {
        auto r = fcvm_.fcvm({"wait", "--name", name, "--condition", "running"}, std::nullopt,
                            kVmDeadline);
        auto answer = fcvm_.fcvm({"exec", "--name", name, "--", "true"}, std::nullopt, kVmDeadline);
        if (r.exitCode == 0 && answer.exitCode == 0) continue;
        // It is not running after all: it must come to an end, and say so.
        auto ended =
            fcvm_.fcvm({"wait", "--name", name, "--condition", "ended"}, std::nullopt, kVmDeadline);
        if (ended.exitCode != 0 || ended.timedOut) {
          finding(fmt::format("VM {} is listed {} but does not answer ({}) and never ends ({})",
                              name, state, answer.output, ended.output));
        }
      }
    }
    // Ended VMs hold no process: QEMU and workers of this instance name their VM's id.
    vms = list();
    if (!vms) return false;
    for (const auto& vm : *vms) {
      std::string id = vm.at("id"), state = vm.at("state");
      if (state != "stopped" && state != "failed") continue;
      for (const char* program : {"fcvm-worker", "qemu-system"}) {
        for (pid_t pid : fcvm_.processesOf(program)) {
          if (readProcessFile(pid, "cmdline").value_or("").find(id) != std::string::npos) {
            finding(fmt::format("VM {} is listed {} but its {} (pid {}) runs", id, state, program,
                                pid));
          }
        }
      }
    }
    return findings_.empty();
  }

  // Removes everything through the CLI, stops the supervisor, and audits.
  bool removeAllAndAudit() {
    auto vms = list();
    if (vms) {
      for (const auto& vm : *vms) mustSucceed({"rm", "-f", "--name", vm.at("name")});
    }
    auto snapshots = fcvm_.fcvm({"snapshot", "ls", "--json"}, std::nullopt, kVmDeadline);
    if (snapshots.exitCode == 0) {
      for (const auto& s : json::parse(snapshots.output)) {
        snapshotIds_.insert(s.at("id").get<std::string>());
        mustSucceed({"snapshot", "rm", "-f", s.at("tag")});
      }
    }
    LeakAudit audit(fcvm_, vmIds_, snapshotIds_);
    for (const auto& leak : audit.stateTable()) finding(leak);
    mustSucceed({"supervisor", "stop"});
    for (const auto& leak : audit.host()) finding(leak);
    return findings_.empty();
  }

  const std::vector<std::string>& findings() const { return findings_; }
  const std::map<std::string, int>& kills() const { return kills_; }

 private:
  // The VMs listed now (ids remembered for the audit); nullopt, and a finding, if `ls` fails:
  // whatever was killed, the next command must be answered (a killed supervisor is restarted).
  std::optional<json> list() {
    auto r = fcvm_.fcvm({"ls", "--json"}, std::nullopt, kVmDeadline);
    if (r.exitCode != 0) {
      finding("fcvm ls failed: " + r.output);
      return std::nullopt;
    }
    auto vms = json::parse(r.output);
    for (const auto& vm : vms) vmIds_.insert(vm.at("id").get<std::string>());
    auto snapshots = fcvm_.fcvm({"snapshot", "ls", "--json"}, std::nullopt, kVmDeadline);
    if (snapshots.exitCode == 0) {
      tags_.clear();
      for (const auto& s : json::parse(snapshots.output)) {
        snapshotIds_.insert(s.at("id").get<std::string>());
        tags_.push_back(s.at("tag"));
      }
    }
    return vms;
  }

  static bool startsVm(const std::vector<std::string>& args) {
    return (args[0] == "podman" && args[1] == "run") || (args[0] == "snapshot" && args[1] == "run");
  }
  static size_t nameIndex(const std::vector<std::string>& args) {
    return static_cast<size_t>(std::find(args.begin(), args.end(), "--name") - args.begin()) + 1;
  }

  std::vector<std::string> pickOperation(int n, const json& vms) {
    std::vector<std::string> live, all;
    size_t active = 0;  // not ended: each costs CPU
    for (const auto& vm : vms) {
      all.push_back(vm.at("name"));
      std::string state = vm.at("state");
      if (state == "running" || state == "healthy") live.push_back(vm.at("name"));
      if (state != "stopped" && state != "failed") ++active;
    }
    auto any = [&](const std::vector<std::string>& names) {
      return names[std::uniform_int_distribution<size_t>(0, names.size() - 1)(rng_)];
    };
    const std::string name = "c" + std::to_string(n);
    // One entry per kind of operation, so that each kind comes up about as often as the others
    // that are possible now; snapshots and clones twice, as they need a running VM first.
    std::vector<std::vector<std::string>> choices;
    if (active < kMostLiveVms) {
      // A VM with a volume, or one with a published port in its own network.
      if (std::uniform_int_distribution<int>(0, 1)(rng_) == 0) {
        choices.push_back({"podman", "run", "-d", "--name", name, "--map",
                           volume_.path().string() + ":/data", kTestImage, "sh", "-c",
                           "echo " + name + " > /data/" + name + "; sleep 600"});
      } else {
        choices.push_back({"podman", "run", "-d", "--name", name, "--network", "bridged", "-p",
                           fmt::format("127.0.0.1:{}:80", freeLoopbackPort()), kTestImage, "sleep",
                           "600"});
      }
      if (!tags_.empty()) {
        std::vector<std::string> clone = {"snapshot", "run", "--from", any(tags_),
                                          "--name",   name,  "-d"};
        choices.insert(choices.end(), 2, clone);
      }
    }
    if (!live.empty()) {
      choices.push_back({"exec", "-c", "--name", any(live), "--", "sh", "-c", "ls /data; true"});
      choices.push_back({"stop", "--name", any(live)});
      if (tags_.size() < 2) {
        std::vector<std::string> snapshot = {"snapshot", "create", "--name",
                                             any(live),  "--tag",  "s" + name};
        choices.insert(choices.end(), 2, snapshot);
      }
    }
    if (!all.empty()) choices.push_back({"rm", "-f", "--name", any(all)});
    if (tags_.size() >= 2) choices.push_back({"snapshot", "rm", "-f", any(tags_)});
    return choices[std::uniform_int_distribution<size_t>(0, choices.size() - 1)(rng_)];
  }

  Victim pickVictim() {
    std::uniform_int_distribution<int> pick(0, 6);
    return static_cast<Victim>(pick(rng_));
  }

  std::vector<pid_t> processesOf(Victim victim) const {
    switch (victim) {
      case Victim::kFusePipe:
        return childrenNamed(fcvm_.processesOf("fcvm-worker"), "fuse-pipe");
      case Victim::kCli:
        return {};  // signalled through its pidfd
      default:
        return fcvm_.processesOf(nameOf(victim));
    }
  }

  // Kills one process of the victim's kind; if there is none now, one of another kind, the CLI
  // last (once it has ended, nothing is left to kill).
  std::string kill(Victim victim, int cliPidfd) {
    if (victim == Victim::kCli && cliRuns(cliPidfd) &&
        ::syscall(SYS_pidfd_send_signal, cliPidfd, SIGKILL, nullptr, 0) == 0) {
      ++kills_[nameOf(Victim::kCli)];
      return nameOf(Victim::kCli);
    }
    std::vector<Victim> others;
    others.reserve(6);
    for (int v = 0; v < 6; ++v) others.push_back(static_cast<Victim>(v));
    std::shuffle(others.begin(), others.end(), rng_);
    std::vector<Victim> order = {victim};
    order.insert(order.end(), others.begin(), others.end());
    for (Victim v : order) {
      auto pids = processesOf(v);
      if (pids.empty()) continue;
      pid_t pid = pids[std::uniform_int_distribution<size_t>(0, pids.size() - 1)(rng_)];
      // Through a pidfd, and until it is dead: the round goes on once the process is gone, not
      // while it still holds its sockets (a dying supervisor still accepts connections).
      UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
      if (!pidfd || ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0) != 0) {
        continue;  // gone meanwhile
      }
      pollfd dead{pidfd.get(), POLLIN, 0};
      ::poll(&dead, 1, -1);
      ++kills_[nameOf(v)];
      return fmt::format("{} (pid {})", nameOf(v), pid);
    }
    if (cliRuns(cliPidfd) && ::syscall(SYS_pidfd_send_signal, cliPidfd, SIGKILL, nullptr, 0) == 0) {
      ++kills_[nameOf(Victim::kCli)];
      return nameOf(Victim::kCli);
    }
    return "nothing (no process left)";
  }

  // Whether the CLI has not exited yet (it is reaped by the main thread, not here).
  static bool cliRuns(int pidfd) {
    siginfo_t info{};
    return ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == 0;
  }

  void mustSucceed(const std::vector<std::string>& args) {
    auto r = fcvm_.fcvm(args, std::nullopt, kVmDeadline);
    if (r.exitCode != 0) {
      std::string line;
      for (const auto& a : args) line += " " + a;
      finding(fmt::format("fcvm{} failed: {}", line, r.output));
    }
  }

  void finding(const std::string& what) {
    std::cout << "FINDING: " << what << std::endl;
    findings_.push_back(what);
  }

  std::mt19937_64 rng_;
  FcvmInstance fcvm_;
  TempDir volume_{"fcvm-chaos-volume"};
  std::vector<std::string> tags_;
  std::set<std::string> vmIds_, snapshotIds_;
  std::vector<std::string> findings_;
  std::map<std::string, int> kills_;
};

}  // namespace
}  // namespace fcvm::testing

int main(int argc, char** argv) {
  int rounds = 20;
  uint64_t seed = std::random_device{}();
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--rounds") {
      rounds = std::stoi(argv[i + 1]);
    } else if (flag == "--seed") {
      seed = std::stoull(argv[i + 1]);
    } else {
      std::cerr << "usage: fcvm_chaos [--rounds N] [--seed S]\n";
      return 2;
    }
  }
  std::cout << fmt::format("chaos: {} rounds, seed {}", rounds, seed) << std::endl;
  bool ok = true;
  {
    fcvm::testing::ChaosRun chaos(seed);
    for (int n = 0; n < rounds && ok; ++n) ok = chaos.round(n);
    ok = ok && chaos.settle();
    ok = chaos.removeAllAndAudit() && ok;
    std::string kills;
    for (const auto& [what, count] : chaos.kills()) kills += fmt::format(" {}x {};", count, what);
    std::cout << fmt::format("chaos: seed {}, {} rounds, kills:{} {} findings", seed, rounds, kills,
                             chaos.findings().size())
              << std::endl;
  }
  return ok ? 0 : 1;
}
