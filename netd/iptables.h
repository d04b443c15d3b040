// Host and namespace firewall rules, changed only in atomic batches (iptables-restore --noflush):
// a batch applies whole or not at all, and other rules are left alone.
#pragma once

#include <string>
#include <vector>

namespace fcvm::netd {

// Applies `rules` (iptables-restore input) in the namespace `netnsFd`, or the host's for -1.
void applyRules(const std::string& rules, int netnsFd = -1);

// Removes the host's chains `chains` and every rule that jumps to them, in one batch per table;
// chains that do not exist are skipped, so this can be repeated.
void removeChains(const std::vector<std::string>& chains);

// Every host chain whose name starts with `prefix` (for finding what no record accounts for).
std::vector<std::string> hostChainsStartingWith(const std::string& prefix);

}  // namespace fcvm::netd
