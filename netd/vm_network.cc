#include "netd/vm_network.h"

#include <spdlog/spdlog.h>

#include "base/error.h"
#include "netd/iptables.h"
#include "netd/net_namespace.h"
#include "netd/netlink.h"

namespace fcvm::netd {

UniqueFd buildNetwork(const NetworkPlan& plan) {
  try {
    createNetns(plan.netns);
    auto netns = openNetns(plan.netns);
    createVethPair(plan.hostVeth, plan.nsVeth, netns.get());
    addAddress(plan.hostVeth, plan.hostIp, 30);
    setLinkUp(plan.hostVeth);
    // The host routes the VMs' traffic; a published port reached from the host's loopback is
    // DNATed to the namespace and must be let out through the veth.
    writeSysctl("net/ipv4/ip_forward", "1");
    writeSysctl("net/ipv4/conf/" + plan.hostVeth + "/route_localnet", "1");
    UniqueFd tap;
    runInNetns(netns.get(), [&] {
      setLinkUp("lo");
      addAddress(plan.nsVeth, plan.nsIp, 30);
      setLinkUp(plan.nsVeth);
      addDefaultRoute(plan.hostIp);
      tap = openTap(plan.tap);
      setLinkMac(plan.tap, kGatewayMac);
      addAddress(plan.tap, kGatewayAddress, kGuestPrefix);
      setLinkUp(plan.tap);
      writeSysctl("net/ipv4/ip_forward", "1");
    });
    applyRules(plan.namespaceRules(), netns.get());
    applyRules(plan.hostRules());
    return tap;
  } catch (...) {
    try {
      tearDownNetwork(plan);
    } catch (const std::exception&) {
      // Logged step by step; the build's own failure is the one to report.
    }
    throw;
  }
}

void tearDownNetwork(const NetworkPlan& plan) {
  // Each step on its own: one that fails must not leave the others undone.
  std::string firstFailure;
  auto attempt = [&](const char* what, const std::function<void()>& step) {
    try {
      step();
    } catch (const std::exception& e) {
      spdlog::warn("VM {}: {}: {}", plan.vmId, what, e.what());
      if (firstFailure.empty()) firstFailure = fmt::format("{}: {}", what, e.what());
    }
  };
  attempt("remove its rules", [&] { removeChains(plan.hostChains()); });
  attempt("remove its veth", [&] { deleteLink(plan.hostVeth); });
  attempt("remove its namespace", [&] { deleteNetns(plan.netns); });
  if (!firstFailure.empty()) {
    throw Error(
        fmt::format("VM {}: its network was not fully removed ({})", plan.vmId, firstFailure));
  }
}

}  // namespace fcvm::netd
