#include "netd/netlink.h"

#include <net/if.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>

#include <memory>

#include "base/error.h"

namespace fcvm::netd {
namespace {

// One owner per libnl object: freeing it is the deleter's single job.
template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using Socket = std::unique_ptr<nl_sock, Deleter<nl_sock, nl_socket_free>>;
using Link = std::unique_ptr<rtnl_link, Deleter<rtnl_link, rtnl_link_put>>;
using Address = std::unique_ptr<nl_addr, Deleter<nl_addr, nl_addr_put>>;
using RouteAddress = std::unique_ptr<rtnl_addr, Deleter<rtnl_addr, rtnl_addr_put>>;
using Route = std::unique_ptr<rtnl_route, Deleter<rtnl_route, rtnl_route_put>>;

void check(int rc, const std::string& what) {
  if (rc < 0) throw Error(fmt::format("{}: {}", what, nl_geterror(rc)));
}

Socket connect() {
  Socket sock(nl_socket_alloc());
  if (!sock) throw Error("netlink: cannot allocate a socket");
  check(nl_connect(sock.get(), NETLINK_ROUTE), "netlink: connect");
  return sock;
}

Address parse(const std::string& text, int family) {
  nl_addr* raw = nullptr;
  check(nl_addr_parse(text.c_str(), family, &raw), "parse address " + text);
  return Address(raw);
}

int indexOf(const std::string& name) {
  int index = static_cast<int>(::if_nametoindex(name.c_str()));
  if (index == 0) throw SysError(errno, "find link " + name);
  return index;
}

}  // namespace

void createVethPair(const std::string& hostName, const std::string& peerName, int peerNetnsFd) {
  auto sock = connect();
  Link veth(rtnl_link_veth_alloc());
  if (!veth) throw Error("netlink: cannot allocate a veth");
  rtnl_link_set_name(veth.get(), hostName.c_str());
  rtnl_link* peer = rtnl_link_veth_get_peer(veth.get());
  rtnl_link_set_name(peer, peerName.c_str());
  rtnl_link_set_ns_fd(peer, peerNetnsFd);
  rtnl_link_put(peer);  // get_peer took a reference
  check(rtnl_link_add(sock.get(), veth.get(), NLM_F_CREATE | NLM_F_EXCL),
        fmt::format("create veth {}/{}", hostName, peerName));
}

void deleteLink(const std::string& name) {
  auto sock = connect();
  Link link(rtnl_link_alloc());
  rtnl_link_set_name(link.get(), name.c_str());
  int rc = rtnl_link_delete(sock.get(), link.get());
  if (rc == -NLE_NODEV || rc == -NLE_OBJ_NOTFOUND) return;
  check(rc, "delete link " + name);
}

void addAddress(const std::string& name, const std::string& address, int prefix) {
  auto sock = connect();
  RouteAddress addr(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(addr.get(), indexOf(name));
  auto local = parse(fmt::format("{}/{}", address, prefix), AF_INET);
  check(rtnl_addr_set_local(addr.get(), local.get()), "set address");
  check(rtnl_addr_add(sock.get(), addr.get(), 0),
        fmt::format("add {}/{} to {}", address, prefix, name));
}

void setLinkUp(const std::string& name) {
  auto sock = connect();
  rtnl_link* raw = nullptr;
  check(rtnl_link_get_kernel(sock.get(), 0, name.c_str(), &raw), "find link " + name);
  Link current(raw);
  Link change(rtnl_link_alloc());
  rtnl_link_set_flags(change.get(), IFF_UP);
  check(rtnl_link_change(sock.get(), current.get(), change.get(), 0), "bring up " + name);
}

void setLinkMac(const std::string& name, const std::string& mac) {
  auto sock = connect();
  rtnl_link* raw = nullptr;
  check(rtnl_link_get_kernel(sock.get(), 0, name.c_str(), &raw), "find link " + name);
  Link current(raw);
  Link change(rtnl_link_alloc());
  auto address = parse(mac, AF_LLC);
  rtnl_link_set_addr(change.get(), address.get());
  check(rtnl_link_change(sock.get(), current.get(), change.get(), 0), "set the MAC of " + name);
}

void addDefaultRoute(const std::string& gateway) {
  auto sock = connect();
  Route route(rtnl_route_alloc());
  auto dst = parse("0.0.0.0/0", AF_INET);
  check(rtnl_route_set_dst(route.get(), dst.get()), "route destination");
  rtnl_nexthop* hop = rtnl_route_nh_alloc();
  auto via = parse(gateway, AF_INET);
  rtnl_route_nh_set_gateway(hop, via.get());
  rtnl_route_add_nexthop(route.get(), hop);  // the route owns it now
  check(rtnl_route_add(sock.get(), route.get(), NLM_F_CREATE),
        "add the default route via " + gateway);
}

}  // namespace fcvm::netd
