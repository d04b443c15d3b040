#include "netd/iptables.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "base/error.h"
#include "base/subprocess.h"
#include "base/unique_fd.h"

namespace fcvm::netd {
namespace {

constexpr auto kTimeout = std::chrono::seconds(60);

void restore(const std::string& rules, int netnsFd) {
  // The rules reach iptables-restore on its stdin from a memfd: a file would stay behind when
  // netd is killed between writing and removing it.
  UniqueFd rulesFd(static_cast<int>(
      checkSys(::memfd_create("fcvm-netd-rules", MFD_CLOEXEC), "memfd_create for the rules")));
  for (size_t done = 0; done < rules.size();) {
    done += static_cast<size_t>(checkSys(
        ::write(rulesFd.get(), rules.data() + done, rules.size() - done), "write the rules"));
  }
  checkSys(::lseek(rulesFd.get(), 0, SEEK_SET), "rewind the rules");
  auto options = CommandOptions::withTimeout(kTimeout);
  options.netns = netnsFd;
  options.stdinFd = rulesFd.get();
  // --wait: for the xtables lock rather than fail when another tool holds it.
  auto r = runCommand({"iptables-restore", "--noflush", "--wait=60"}, options);
  if (r.exitCode != 0) {
    throw Error(
        fmt::format("iptables-restore failed (exit {}): {}", r.exitCode, r.output.substr(0, 400)));
  }
}

std::string save(const char* table) {
  auto r = runCommand({"iptables-save", "-t", table}, CommandOptions::withTimeout(kTimeout));
  if (r.exitCode != 0) throw Error(fmt::format("iptables-save -t {} failed: {}", table, r.output));
  return r.output;
}

// One table's batch: the jumps from built-in chains to `chains`, then the chains themselves.
// Empty if none of them is there.
std::string removalBatch(const char* table, const std::vector<std::string>& chains) {
  std::string jumps, flushes, deletions;
  std::istringstream lines(save(table));
  for (std::string line; std::getline(lines, line);) {
    for (const auto& chain : chains) {
      if (line.starts_with(":" + chain + " ")) {
        flushes += fmt::format("-F {}\n", chain);
        deletions += fmt::format("-X {}\n", chain);
      }
      // A rule of a built-in chain that jumps to ours: deleted by its exact specification.
      if (line.starts_with("-A ") && line.ends_with(" -j " + chain) &&
          !line.starts_with("-A " + chain + " ")) {
        jumps += "-D" + line.substr(2) + "\n";
      }
    }
  }
  if (jumps.empty() && flushes.empty()) return "";
  return fmt::format("*{}\n{}{}{}COMMIT\n", table, jumps, flushes, deletions);
}

}  // namespace

void applyRules(const std::string& rules, int netnsFd) { restore(rules, netnsFd); }

void removeChains(const std::vector<std::string>& chains) {
  // Each table on its own, listed afresh before each try: the host's rules change under us
  // (other tools, other fcvm instances), and a batch built from an older listing can be refused.
  constexpr int kTries = 3;
  std::string failures;
  for (const char* table : {"nat", "filter"}) {
    std::string error;
    for (int attempt = 0;; ++attempt) {
      try {
        auto batch = removalBatch(table, chains);
        if (batch.empty()) break;
        if (attempt == kTries) {
          error += " (still there after " + std::to_string(kTries) + " tries)";
          break;
        }
        restore(batch, -1);
      } catch (const std::exception& e) {
        error = e.what();
        if (attempt == kTries) break;
      }
    }
    if (!error.empty())
      failures += fmt::format("{}{}: {}", failures.empty() ? "" : "; ", table, error);
  }
  if (!failures.empty()) throw Error("remove firewall chains: " + failures);
}

std::vector<std::string> hostChainsStartingWith(const std::string& prefix) {
  std::vector<std::string> chains;
  for (const char* table : {"nat", "filter"}) {
    std::istringstream lines(save(table));
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with(":" + prefix)) {
        auto name = line.substr(1, line.find(' ') - 1);
        if (std::find(chains.begin(), chains.end(), name) == chains.end()) chains.push_back(name);
      }
    }
  }
  return chains;
}

}  // namespace fcvm::netd
