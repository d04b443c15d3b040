#include "netd/network_plan.h"

#include <gtest/gtest.h>

#include "base/error.h"

namespace fcvm::netd {
namespace {

NetworkRequest request(std::vector<ipc::PortMapping> ports = {},
                       std::vector<std::string> dns = {}) {
  return {"0123456789abcdef", "beef", std::move(ports), std::move(dns)};
}

TEST(NetworkPlanTest, NamesAndAddressesComeFromTheIdAndTheSlot) {
  auto p = planNetwork(request(), 0, "192.0.2.53");
  EXPECT_EQ(p.netns, "fcvm-0123456789abcdef");
  EXPECT_EQ(p.hostVeth, "fcvm01234567h");
  EXPECT_LE(p.hostVeth.size(), 15u);  // IFNAMSIZ
  EXPECT_EQ(p.hostIp, "10.213.0.1");
  EXPECT_EQ(p.nsIp, "10.213.0.2");
  auto later = planNetwork(request(), 300, "192.0.2.53");
  EXPECT_EQ(later.hostIp, "10.213.4.177");
  EXPECT_EQ(later.nsIp, "10.213.4.178");
  EXPECT_EQ(p.hostChains(),
            (std::vector<std::string>{"FCbeef-01234567-DNAT", "FCbeef-01234567-SNAT",
                                      "FCbeef-01234567-FWD", "FCbeef-01234567-IN"}));
}

TEST(NetworkPlanTest, PublishedPortsAreDnatedTwiceToTheGuest) {
  auto p = planNetwork(request({{8080, 80, "tcp", ""}, {5353, 53, "udp", "127.0.0.1"}}), 2,
                       "192.0.2.53");
  auto host = p.hostRules();
  EXPECT_NE(host.find("-A FCbeef-01234567-DNAT -p tcp -m tcp --dport 8080 -j DNAT "
                      "--to-destination 10.213.0.10:80"),
            std::string::npos)
      << host;
  EXPECT_NE(host.find("-d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination "
                      "10.213.0.10:53"),
            std::string::npos)
      << host;
  auto ns = p.namespaceRules();
  EXPECT_NE(ns.find("-A PREROUTING -i veth0 -p tcp -m tcp --dport 80 -j DNAT --to-destination "
                    "172.30.0.2:80"),
            std::string::npos)
      << ns;
  EXPECT_NE(ns.find("-A POSTROUTING -s 172.30.0.0/24 -o veth0 -j MASQUERADE"), std::string::npos);
}

TEST(NetworkPlanTest, DnsGoesToTheResolverOrThroughTheHostToItsLoopback) {
  auto direct = planNetwork(request({}, {"198.51.100.7"}), 0, "127.0.0.53");
  EXPECT_EQ(direct.resolver, "198.51.100.7");
  EXPECT_FALSE(direct.resolverOnLoopback);
  EXPECT_NE(direct.namespaceRules().find("--dport 53 -j DNAT --to-destination 198.51.100.7:53"),
            std::string::npos);
  auto loopback = planNetwork(request(), 0, "127.0.0.53");
  EXPECT_TRUE(loopback.resolverOnLoopback);
  EXPECT_NE(loopback.namespaceRules().find("--to-destination 10.213.0.1:53"), std::string::npos);
  EXPECT_NE(loopback.hostRules().find("--dport 53 -j DNAT --to-destination 127.0.0.53:53"),
            std::string::npos);
}

TEST(NetworkPlanTest, IsolationRulesKeepVmsApartAndTheHostClosed) {
  auto host = planNetwork(request(), 0, "").hostRules();
  EXPECT_NE(host.find("-A FCbeef-01234567-FWD -i fcvm01234567h -d 10.213.0.0/16 -j DROP"),
            std::string::npos);
  EXPECT_NE(host.find("-A FCbeef-01234567-IN -i fcvm01234567h -j DROP"), std::string::npos);
}

TEST(NetworkPlanTest, BadRequestsAreRefused) {
  auto bad = request();
  bad.vmId = "../../etc";
  EXPECT_THROW(planNetwork(bad, 0, ""), Error);
  bad = request();
  bad.instance = "x";
  EXPECT_THROW(planNetwork(bad, 0, ""), Error);
  EXPECT_THROW(planNetwork(request({{0, 80, "tcp", ""}}), 0, ""), Error);
  EXPECT_THROW(planNetwork(request({{80, 80, "sctp", ""}}), 0, ""), Error);
  EXPECT_THROW(planNetwork(request({{80, 80, "tcp", "localhost"}}), 0, ""), Error);
  EXPECT_THROW(planNetwork(request({}, {"dns.example"}), 0, ""), Error);
  EXPECT_THROW(planNetwork(request(), kSlots, ""), Error);
  // An address with a NUL inside: inet_pton would read only its first part, and the rest would
  // reach iptables-restore as a line of its own.
  const std::string injected("1.2.3.4\0\n-F", 11);
  EXPECT_THROW(planNetwork(request({{80, 80, "tcp", injected}}), 0, ""), Error);
  EXPECT_THROW(planNetwork(request({}, {injected}), 0, ""), Error);
  EXPECT_THROW(planNetwork(request(), 0, injected), Error);
}

TEST(NetworkPlanTest, FirstNameserverOfResolvConf) {
  EXPECT_EQ(firstNameserver("# comment\nsearch x\nnameserver 127.0.0.53\nnameserver 1.1.1.1\n"),
            "127.0.0.53");
  EXPECT_EQ(firstNameserver("nameserver fe80::1\nnameserver 192.0.2.1\n"), "192.0.2.1");
  EXPECT_EQ(firstNameserver(""), "");
}

}  // namespace
}  // namespace fcvm::netd
