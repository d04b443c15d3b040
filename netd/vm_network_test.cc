// netd's networks made for real on this host (root): namespaces, veths, TAPs and iptables rules
// that the test creates for VM ids of its own and removes again, also when it fails.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "base/error.h"
#include "base/subprocess.h"
#include "netd/iptables.h"
#include "netd/net_namespace.h"
#include "netd/networks.h"
#include "tests/support/temp_dir.h"

namespace fcvm::netd {
namespace {

std::string randomId() {
  uint64_t bits = 0;
  if (::getrandom(&bits, sizeof bits, 0) != sizeof bits) throw std::runtime_error("getrandom");
  return fmt::format("{:016x}", bits);
}

bool hostLinkExists(const std::string& name) { return ::if_nametoindex(name.c_str()) != 0; }

sockaddr_in addressOf(const std::string& ip, uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  return addr;
}

// A TCP listener on an ephemeral port of `ip`, in the calling thread's namespace.
UniqueFd listenOn(const std::string& ip) {
  UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto addr = addressOf(ip, 0);
  checkSys(::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), "bind");
  checkSys(::listen(sock.get(), 4), "listen");
  return sock;
}

uint16_t portOf(int sock) {
  sockaddr_in addr{};
  socklen_t length = sizeof addr;
  ::getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &length);
  return ntohs(addr.sin_port);
}

bool connects(const std::string& ip, uint16_t port) {
  UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto addr = addressOf(ip, port);
  return ::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

std::string hostRules() {
  auto nat = runCommand({"iptables-save", "-t", "nat"});
  auto filter = runCommand({"iptables-save", "-t", "filter"});
  return nat.output + filter.output;
}

class NetworksTest : public ::testing::Test {
 protected:
  NetworksTest() { EXPECT_EQ(::geteuid(), 0u) << "netd's tests change the host's networking"; }
  std::unique_ptr<Networks> open() {
    return std::make_unique<Networks>(NetworkRecords(dir_ / "netd"), instanceTag(dir_.path()));
  }
  ~NetworksTest() override {
    // Whatever a failed test left: its records say what.
    try {
      open()->retain({});
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cleanup: " << e.what();
    }
  }
  testing::TempDir dir_{"fcvm-netd-test"};
};

TEST_F(NetworksTest, BuildsAndRemovesEverythingOfAVmsNetwork) {
  auto networks = open();
  NetworkRequest request{randomId(), "", {{41080, 80, "tcp", "127.0.0.1"}}, {"192.0.2.53"}};
  auto [plan, tap] = networks->create(request);
  ASSERT_TRUE(tap);
  EXPECT_TRUE(netnsExists(plan.netns));
  EXPECT_TRUE(hostLinkExists(plan.hostVeth));
  auto rules = hostRules();
  for (const auto& chain : plan.hostChains()) EXPECT_NE(rules.find(chain), std::string::npos);
  // In the namespace: the TAP with the gateway address, the veth with the namespace's address.
  auto netns = openNetns(plan.netns);
  CommandOptions inside;
  inside.netns = netns.get();
  auto addresses = runCommand({"ip", "-4", "-o", "addr"}, inside).output;
  EXPECT_NE(addresses.find("tap0    inet 172.30.0.1/24"), std::string::npos) << addresses;
  EXPECT_NE(addresses.find("veth0    inet " + plan.nsIp + "/30"), std::string::npos) << addresses;
  // The host reaches the namespace over the veth: a TCP connection to a listener in it.
  UniqueFd listener;
  runInNetns(netns.get(), [&] { listener = listenOn(plan.nsIp); });
  EXPECT_TRUE(connects(plan.nsIp, portOf(listener.get())));
  EXPECT_EQ(networks->list(), std::vector<std::string>{request.vmId});

  // The port is taken now: a second VM cannot publish it, and nothing of it is left.
  NetworkRequest clash{randomId(), "", {{41080, 8080, "tcp", ""}}, {}};
  try {
    networks->create(clash);
    FAIL() << "a published port was published twice";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already published"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(netnsExists("fcvm-" + clash.vmId));

  tap.reset();
  networks->destroy(request.vmId);
  EXPECT_FALSE(netnsExists(plan.netns));
  EXPECT_FALSE(hostLinkExists(plan.hostVeth));
  rules = hostRules();
  for (const auto& chain : plan.hostChains()) EXPECT_EQ(rules.find(chain), std::string::npos);
  EXPECT_TRUE(networks->list().empty());
  networks->destroy(request.vmId);  // again: nothing to do
}

TEST_F(NetworksTest, APortInUseOnTheHostIsAClearErrorBeforeAnythingIsBuilt) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t length = sizeof addr;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &length), 0);
  uint16_t port = ntohs(addr.sin_port);
  NetworkRequest request{randomId(), "", {{port, 80, "tcp", "127.0.0.1"}}, {}};
  try {
    open()->create(request);
    FAIL() << "a port in use was published";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              fmt::format("port 127.0.0.1:{}/tcp is already in use on the host", port));
  }
  EXPECT_FALSE(netnsExists("fcvm-" + request.vmId));
}

TEST_F(NetworksTest, ARestartedNetdFindsItsNetworksAndRetainsOnlyTheLiveOnes) {
  std::string keep = randomId(), drop = randomId();
  NetworkPlan keptPlan, droppedPlan;
  {
    auto networks = open();
    keptPlan = networks->create({keep, "", {}, {}}).first;
    droppedPlan = networks->create({drop, "", {}, {}}).first;
    EXPECT_NE(keptPlan.hostIp, droppedPlan.hostIp);
  }  // netd goes; its networks stay
  auto restarted = open();
  auto ids = restarted->list();
  std::sort(ids.begin(), ids.end());
  auto expected = std::vector<std::string>{keep, drop};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(ids, expected);
  restarted->retain({keep});
  EXPECT_TRUE(netnsExists(keptPlan.netns));
  EXPECT_FALSE(netnsExists(droppedPlan.netns));
  EXPECT_FALSE(hostLinkExists(droppedPlan.hostVeth));
  EXPECT_EQ(restarted->list(), std::vector<std::string>{keep});
}

}  // namespace
}  // namespace fcvm::netd
