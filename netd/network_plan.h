// What fcvm-netd builds for one VM in bridged mode, as plain data: names, addresses and the
// iptables rules, derived from the VM's id, its slot in the address pool and its request. Pure: the
// same plan is rebuilt from netd's record to tear the network down, so teardown removes exactly
// what setup made.
//
//   guest eth0 172.30.0.2/24 ── tap0 172.30.0.1/24 │ netns fcvm-<id> │ veth0 10.213.S.2/30 ──
//       ── fcvm<id8>h 10.213.S.1/30 (host) ── the host's routes
//
// Every VM (and every clone, whose guest address is frozen in its memory) has the same guest
// subnet, in a namespace of its own; the namespace NATs it to its veth address, which is unique.
// Published ports are DNATed on the host to the namespace, and there again to the guest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ipc/guest_network.h"
#include "ipc/vm_spec.h"

namespace fcvm::netd {

using ipc::kGatewayAddress;
using ipc::kGuestAddress;
using ipc::kGuestPrefix;
using ipc::kGuestSubnet;
// The host side: one /30 per VM slot.
inline constexpr char kPool[] = "10.213.0.0/16";
inline constexpr uint32_t kSlots = 16384;

struct NetworkRequest {
  std::string vmId;      // 16 hex digits
  std::string instance;  // 4 hex digits naming the netd that owns it (its chains carry it)
  std::vector<ipc::PortMapping> ports;
  std::vector<std::string> dns;  // resolvers; empty: the host's
};

struct NetworkPlan {
  std::string vmId;
  uint32_t slot = 0;
  std::string netns;     // fcvm-<id>, under /run/netns
  std::string hostVeth;  // fcvm<id8>h, in the host namespace
  std::string nsVeth;    // veth0, in the VM's namespace
  std::string tap;       // tap0, in the VM's namespace
  std::string hostIp;    // 10.213.S.1
  std::string nsIp;      // 10.213.S.2
  std::vector<ipc::PortMapping> ports;
  std::string resolver;             // where the guest's DNS goes: the request's, else the host's
  bool resolverOnLoopback = false;  // the host's resolver listens on 127.x (e.g. systemd-resolved)

  std::string chainPrefix;  // FC<instance>-: every host chain of this netd starts so

  // iptables-restore input. The host's rules live in chains of this VM's own (FC<inst>-<id8>-..),
  // jumped to from the built-in chains; the namespace's in its own tables, gone with it.
  std::string hostRules() const;
  std::string namespaceRules() const;
  // The VM's host chains, for teardown.
  std::vector<std::string> hostChains() const;
};

// Checks the request (id, ports, resolvers) and plans it for `slot`. `hostResolver` is the first
// nameserver of the host's resolv.conf, used when the request names none. Throws fcvm::Error.
NetworkPlan planNetwork(const NetworkRequest& request, uint32_t slot,
                        const std::string& hostResolver);

// The first IPv4 nameserver in resolv.conf text; empty if there is none.
std::string firstNameserver(const std::string& resolvConf);

}  // namespace fcvm::netd
