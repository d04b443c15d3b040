#include "netd/network_plan.h"

#include <sstream>

#include "base/error.h"
#include "base/ids.h"
#include "base/ipv4_address.h"

namespace fcvm::netd {
namespace {

bool isLoopback(const std::string& ip) { return ip.starts_with("127."); }

std::string chain(const NetworkPlan& p, const char* suffix) {
  return p.chainPrefix + p.vmId.substr(0, 8) + "-" + suffix;
}

std::string comment(const NetworkPlan& p) { return "-m comment --comment fcvm:" + p.vmId; }

// The destination the guest's DNS (to the gateway, port 53) is DNATed to in the namespace: the
// resolver itself, or the host side of the veth when the resolver listens on the host's loopback.
std::string dnsTarget(const NetworkPlan& p) { return p.resolverOnLoopback ? p.hostIp : p.resolver; }

}  // namespace

std::string firstNameserver(const std::string& resolvConf) {
  std::istringstream lines(resolvConf);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string key, value;
    if (words >> key >> value && key == "nameserver" && isIpv4Address(value)) return value;
  }
  return "";
}

NetworkPlan planNetwork(const NetworkRequest& request, uint32_t slot,
                        const std::string& hostResolver) {
  if (!isHexId(request.vmId)) throw Error(fmt::format("'{}' is not a VM id", request.vmId));
  if (request.instance.size() != 4 ||
      request.instance.find_first_not_of("0123456789abcdef") != std::string::npos) {
    throw Error(fmt::format("'{}' is not a netd instance tag", request.instance));
  }
  if (slot >= kSlots) throw Error("no address left in the pool " + std::string(kPool));
  NetworkPlan p;
  p.vmId = request.vmId;
  p.slot = slot;
  p.chainPrefix = "FC" + request.instance + "-";
  p.netns = "fcvm-" + request.vmId;
  p.hostVeth = "fcvm" + request.vmId.substr(0, 8) + "h";
  p.nsVeth = "veth0";
  p.tap = "tap0";
  // 10.213.0.0/16 in /30s: slot S has .4S+1 (host) and .4S+2 (namespace).
  uint32_t base = (10u << 24) | (213u << 16) | (slot * 4);
  auto dotted = [](uint32_t a) {
    return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
  };
  p.hostIp = dotted(base + 1);
  p.nsIp = dotted(base + 2);
  for (const auto& port : request.ports) {
    if (port.hostPort == 0 || port.guestPort == 0 ||
        (port.protocol != "tcp" && port.protocol != "udp") ||
        (!port.hostIp.empty() && !isIpv4Address(port.hostIp))) {
      throw Error(fmt::format("invalid port mapping {}", ipc::toString(port)));
    }
    p.ports.push_back(port);
  }
  if (request.dns.size() > 3) throw Error("at most 3 resolvers");
  for (const auto& d : request.dns) {
    if (!isIpv4Address(d)) throw Error(fmt::format("resolver '{}' is not IPv4", d));
  }
  p.resolver = request.dns.empty() ? hostResolver : request.dns.front();
  if (!p.resolver.empty() && !isIpv4Address(p.resolver)) {
    throw Error(fmt::format("resolver '{}' is not IPv4", p.resolver));
  }
  p.resolverOnLoopback = isLoopback(p.resolver);
  return p;
}

std::vector<std::string> NetworkPlan::hostChains() const {
  return {chain(*this, "DNAT"), chain(*this, "SNAT"), chain(*this, "FWD"), chain(*this, "IN")};
}

std::string NetworkPlan::hostRules() const {
  auto dnat = chain(*this, "DNAT"), snat = chain(*this, "SNAT"), fwd = chain(*this, "FWD"),
       in = chain(*this, "IN");
  auto tag = comment(*this);
  std::string r = "*nat\n";
  r += fmt::format(":{} - [0:0]\n:{} - [0:0]\n", dnat, snat);
  r += fmt::format("-A PREROUTING -m addrtype --dst-type LOCAL {} -j {}\n", tag, dnat);
  r += fmt::format("-A OUTPUT -m addrtype --dst-type LOCAL {} -j {}\n", tag, dnat);
  r += fmt::format("-A POSTROUTING {} -j {}\n", tag, snat);
  for (const auto& port : ports) {
    r += fmt::format("-A {} {}-p {} -m {} --dport {} -j DNAT --to-destination {}:{}\n", dnat,
                     port.hostIp.empty() ? "" : "-d " + port.hostIp + "/32 ", port.protocol,
                     port.protocol, port.hostPort, nsIp, port.guestPort);
  }
  if (resolverOnLoopback) {
    for (const char* proto : {"udp", "tcp"}) {
      r += fmt::format(
          "-A {} -i {} -d {}/32 -p {} -m {} --dport 53 -j DNAT --to-destination {}:53\n", dnat,
          hostVeth, hostIp, proto, proto, resolver);
    }
  }
  // The VM's traffic leaves as the host; a published port reached from the host itself arrives
  // from the veth's host side.
  r += fmt::format("-A {} -s {}/32 -j MASQUERADE\n", snat, nsIp);
  r += fmt::format("-A {} -o {} -j MASQUERADE\n", snat, hostVeth);
  r += "COMMIT\n*filter\n";
  r += fmt::format(":{} - [0:0]\n:{} - [0:0]\n", fwd, in);
  r += fmt::format("-I FORWARD {} -j {}\n", tag, fwd);
  r += fmt::format("-I INPUT {} -j {}\n", tag, in);
  // No VM reaches another's namespace; out to anywhere else; in only what it answers or what
  // was published to it.
  r += fmt::format("-A {} -i {} -d {} -j DROP\n", fwd, hostVeth, kPool);
  r += fmt::format("-A {} -i {} -j ACCEPT\n", fwd, hostVeth);
  r += fmt::format("-A {} -o {} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT\n", fwd,
                   hostVeth);
  r += fmt::format("-A {} -o {} -j DROP\n", fwd, hostVeth);
  // The host's own services: none but the answers to its connections, and DNS when the resolver
  // is on the host's loopback.
  r += fmt::format("-A {} -i {} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n", in,
                   hostVeth);
  if (resolverOnLoopback) {
    for (const char* proto : {"udp", "tcp"}) {
      r += fmt::format("-A {} -i {} -p {} -m {} --dport 53 -m conntrack --ctstate DNAT -j ACCEPT\n",
                       in, hostVeth, proto, proto);
    }
  }
  r += fmt::format("-A {} -i {} -j DROP\n", in, hostVeth);
  r += "COMMIT\n";
  return r;
}

std::string NetworkPlan::namespaceRules() const {
  std::string r = "*nat\n";
  for (const auto& port : ports) {
    r += fmt::format("-A PREROUTING -i {} -p {} -m {} --dport {} -j DNAT --to-destination {}:{}\n",
                     nsVeth, port.protocol, port.protocol, port.guestPort, kGuestAddress,
                     port.guestPort);
  }
  if (!resolver.empty()) {
    for (const char* proto : {"udp", "tcp"}) {
      r += fmt::format(
          "-A PREROUTING -i {} -d {}/32 -p {} -m {} --dport 53 -j DNAT --to-destination {}:53\n",
          tap, kGatewayAddress, proto, proto, dnsTarget(*this));
    }
  }
  r += fmt::format("-A POSTROUTING -s {} -o {} -j MASQUERADE\n", kGuestSubnet, nsVeth);
  r += "COMMIT\n";
  return r;
}

}  // namespace fcvm::netd
