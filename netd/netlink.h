// The link, address and route changes netd makes, through rtnetlink (libnl-route-3), in the
// network namespace of the calling thread (see NetNamespace::run).
#pragma once

#include <string>

namespace fcvm::netd {

// A veth pair: `hostName` stays here, `peerName` is created in the namespace `peerNetnsFd`.
void createVethPair(const std::string& hostName, const std::string& peerName, int peerNetnsFd);
// Deletes the link `name` (a veth's peer goes with it); nothing if there is none.
void deleteLink(const std::string& name);
// Gives `name` the address `address/prefix`.
void addAddress(const std::string& name, const std::string& address, int prefix);
void setLinkUp(const std::string& name);
// Sets the link's MAC address (6 octets, "02:fc:...").
void setLinkMac(const std::string& name, const std::string& mac);
void addDefaultRoute(const std::string& gateway);

}  // namespace fcvm::netd
