// Networking end to end: real VMs (TCG here) in bridged mode (fcvm-netd: namespace, TAP, veth,
// NAT, DNAT), in rootless mode (QEMU's user-mode stack) and with none. Traffic goes only to the
// host's loopback and to a network namespace this test creates, with a web server and a resolver
// of its own in it; nothing leaves the host.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>

#include "base/error.h"
#include "base/spawn.h"
#include "base/subprocess.h"
#include "tests/support/fcvm_instance.h"
#include "tests/support/running_command.h"
#include "tests/support/vm_fixture.h"

namespace fcvm {
namespace {

using nlohmann::json;
using testing::FcvmInstance;

// The guest serves this page on port 8080 with busybox httpd.
constexpr char kWebServer[] =
    "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 8080 -h "
    "/www";
constexpr char kServing[] = "wget -q -O /dev/null http://127.0.0.1:8080/";

// An HTTP/1.0 GET of / from the host's loopback: the body, or why it failed. The receive timeout
// bounds a hang; it measures nothing.
std::string httpGet(uint16_t port) {
  UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval timeout{60, 0};
  ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return "connect: " + errnoText(errno);
  }
  std::string request = "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (::write(sock.get(), request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    return "write: " + errnoText(errno);
  }
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(sock.get(), buf, sizeof buf)) > 0)
    response.append(buf, static_cast<size_t>(n));
  auto body = response.find("\r\n\r\n");
  return body == std::string::npos ? "no HTTP response: " + response : response.substr(body + 4);
}

// A network namespace of the test's own, joined to the host by a veth: 10.214.N.1 (host side),
// 10.214.N.2 (inside), where a web server and a resolver run. Everything goes with it.
class TestNetwork {
 public:
  TestNetwork() {
    uint16_t n = 0;
    if (::getrandom(&n, sizeof n, 0) != sizeof n) throw std::runtime_error("getrandom");
    n = static_cast<uint16_t>(n % 250 + 1);
    name_ = fmt::format("fcvmtest{}", n);
    hostIp_ = fmt::format("10.214.{}.1", n);
    ip_ = fmt::format("10.214.{}.2", n);
    sh(
        fmt::format("ip netns add {0} && ip link add {0}h type veth peer name eth0 netns {0} && "
                    "ip addr add {1}/30 dev {0}h && ip link set {0}h up && "
                    "ip -n {0} addr add {2}/30 dev eth0 && ip -n {0} link set eth0 up && "
                    "ip -n {0} link set lo up && ip -n {0} route add default via {1}",
                    name_, hostIp_, ip_));
    std::filesystem::create_directories(www_.path());
    std::ofstream(www_ / "index.html") << "hello from the test network\n";
    web_ = start({"ip", "netns", "exec", name_, "busybox", "httpd", "-f", "-p", ip_ + ":8000", "-h",
                  www_.path().string()});
    dns_ = start({"ip", "netns", "exec", name_, "dnsmasq", "--no-daemon", "--no-resolv",
                  "--no-hosts", "--pid-file=", "--listen-address=" + ip_, "--bind-interfaces",
                  "--address=/fcvm-test.example/" + ip_});
  }
  ~TestNetwork() {
    web_.kill();
    dns_.kill();
    runCommand({"ip", "link", "del", name_ + "h"});
    runCommand({"ip", "netns", "del", name_});
  }
  const std::string& ip() const { return ip_; }

 private:
  static void sh(const std::string& script) {
    auto r =
        runCommand({"sh", "-c", script}, CommandOptions::withTimeout(std::chrono::seconds(60)));
    if (r.exitCode != 0) throw std::runtime_error(script + ": " + r.output);
  }
  static ChildProcess start(std::vector<std::string> argv) {
    SpawnSpec spec;
    spec.argv = std::move(argv);
    spec.env = environmentWith({});
    return spawn(spec);
  }

  std::string name_, hostIp_, ip_;
  testing::TempDir www_{"fcvm-www"};
  ChildProcess web_, dns_;
};

class NetworkTest : public testing::VmFixture {
 protected:
  // The namespace side of a bridged VM's veth, from `inspect`: "bridged 172.30.0.2 via X".
  std::string nsIpOf(const std::string& name) {
    std::string network = inspect(name).at("network");
    std::smatch m;
    if (!std::regex_search(network, m, std::regex("via ([0-9.]+)"))) {
      throw std::runtime_error("no address in '" + network + "'");
    }
    return m[1];
  }
  // Every trace of this instance's networks on the host: namespaces, links, firewall chains.
  std::string leftovers() {
    std::string found;
    for (const auto& id : vmIds_) {
      if (std::filesystem::exists("/run/netns/fcvm-" + id)) found += " netns fcvm-" + id;
      if (runCommand({"ip", "link", "show", "fcvm" + id.substr(0, 8) + "h"}).exitCode == 0) {
        found += " link fcvm" + id.substr(0, 8) + "h";
      }
      for (const char* table : {"nat", "filter"}) {
        auto rules = runCommand({"iptables-save", "-t", table}).output;
        if (rules.find("-" + id.substr(0, 8) + "-") != std::string::npos) {
          found += std::string(" rules in ") + table;
        }
      }
    }
    return found;
  }
  void remember(const std::string& name) { vmIds_.push_back(inspect(name).at("id")); }

  std::vector<std::string> vmIds_;
};

// Bridged (root's default): a published port answers on the host's loopback, the guest reaches a
// server and a resolver outside through NAT, VMs cannot reach each other or the host's
// unpublished ports, two clones serve on ports of their own at once; a killed netd, a killed
// worker and removal leave nothing behind.
TEST_F(NetworkTest, BridgedVmsPublishPortsReachOutAndStayApart) {
  TestNetwork outside;
  uint16_t webPort = testing::freeLoopbackPort();
  ok({"podman", "run", "-d", "--name", "web", "-p", fmt::format("127.0.0.1:{}:8080", webPort),
      "--dns", outside.ip(), "--health-check", fmt::format("http://127.0.0.1:{}/", webPort),
      testing::kTestImage, "sh", "-c", kWebServer});
  ok({"podman", "run", "-d", "--name", "other", testing::kTestImage, "sleep", "3600"});
  for (const char* name : {"web", "other"}) {
    ok({"wait", "--name", name, "--condition", "healthy"});
    remember(name);
    EXPECT_TRUE(inspect(name).at("network").get<std::string>().starts_with("bridged 172.30.0.2"));
  }
  // The container's port is the VM's, published on the host (healthy: the host's GET of it got
  // a 200).
  EXPECT_EQ(httpGet(webPort), "hello from web\n");
  // Out through NAT, and names from the resolver given with --dns.
  EXPECT_EQ(ok({"exec", "-c", "--name", "web", "--", "wget", "-q", "-O", "-",
                "http://" + outside.ip() + ":8000/"}),
            "hello from the test network\n");
  // (busybox nslookup also asks for an AAAA record, which the test's resolver refuses.)
  auto lookup = fcvm({"exec", "-c", "--name", "web", "--", "nslookup", "fcvm-test.example"});
  EXPECT_NE(lookup.output.find("Address: " + outside.ip()), std::string::npos) << lookup.output;
  // Apart: the other VM reaches neither web's namespace nor a host port nobody published.
  auto reachWeb = fcvm({"exec", "--name", "other", "--", "wget", "-q", "-T", "3", "-O", "-",
                        "http://" + nsIpOf("web") + ":8080/"});
  EXPECT_NE(reachWeb.exitCode, 0) << reachWeb.output;
  UniqueFd hostService(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in any{};
  any.sin_family = AF_INET;
  ASSERT_EQ(::bind(hostService.get(), reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  ASSERT_EQ(::listen(hostService.get(), 4), 0);
  socklen_t length = sizeof any;
  ::getsockname(hostService.get(), reinterpret_cast<sockaddr*>(&any), &length);
  auto gateway = nsIpOf("other");
  gateway.back() = '1';  // the host's side of its /30
  auto reachHost = fcvm({"exec", "--name", "other", "--", "nc", "-w", "3", gateway,
                         std::to_string(ntohs(any.sin_port))});
  EXPECT_NE(reachHost.exitCode, 0) << reachHost.output;

  // Clones keep the guest's address, each in its own namespace, each with its own port.
  ok({"snapshot", "create", "--name", "web", "--tag", "web-snap"});
  uint16_t port1 = testing::freeLoopbackPort(), port2 = testing::freeLoopbackPort();
  ok({"snapshot", "run", "--from", "web-snap", "--name", "web1", "-d", "-p",
      fmt::format("127.0.0.1:{}:8080", port1)});
  ok({"snapshot", "run", "--from", "web-snap", "--name", "web2", "-d", "-p",
      fmt::format("127.0.0.1:{}:8080", port2)});
  for (const char* name : {"web1", "web2"}) {
    ok({"wait", "--name", name, "--condition", "healthy"});
    remember(name);
  }
  // The page was written before the snapshot: each clone serves the source's.
  EXPECT_EQ(httpGet(port1), "hello from web\n");
  EXPECT_EQ(httpGet(port2), "hello from web\n");
  EXPECT_EQ(httpGet(webPort), "hello from web\n");

  // A killed netd: the networks it built go on; the next network starts it again.
  auto netd = fcvm_.processesOf("fcvm-netd");
  ASSERT_EQ(netd.size(), 1u);
  ::kill(netd[0], SIGKILL);
  EXPECT_EQ(httpGet(port1), "hello from web\n");
  ok({"podman", "run", "--rm", "--name", "after", testing::kTestImage, "true"});
  // A killed worker: its network goes with the rest of the VM.
  auto otherId = inspect("other").at("id").get<std::string>();
  ::kill(inspect("other").at("worker_pid").get<pid_t>(), SIGKILL);
  EXPECT_EQ(ok({"wait", "--name", "other", "--condition", "ended"}), "failed\n");
  EXPECT_FALSE(std::filesystem::exists("/run/netns/fcvm-" + otherId))
      << supervisorLogTail() << logTail(fcvm_.log().parent_path() / "netd.log");

  ok({"snapshot", "rm", "-f", "web-snap"});
  for (const char* name : {"web", "web1", "web2", "other"}) ok({"rm", "-f", "--name", name});
  // Each removal answers once netd has taken the VM's network down.
  EXPECT_EQ(leftovers(), "") << logTail(fcvm_.log().parent_path() / "netd.log");
}

// Rootless (anyone else's default, no privilege at all) and none: a non-root user's VM publishes
// a port through QEMU's user-mode stack; that user cannot reach netd; none has only loopback.
TEST_F(NetworkTest, RootlessAndNoneNeedNoNetd) {
  ok({"supervisor", "start"});
  auto home = otherUsersHome();
  auto archive = testImageArchive("image.tar", testing::kOtherUid);
  uint16_t port = testing::freeLoopbackPort();
  auto run =
      fcvm({"podman", "run", "-d", "--name", "mine", "-p", fmt::format("127.0.0.1:{}:8080", port),
            "--health-cmd", kServing, "oci-archive:" + archive.string(), "sh", "-c", kWebServer},
           testing::kOtherUid, {"HOME=" + home.string()});
  ASSERT_EQ(run.exitCode, 0) << run.output << supervisorLogTail();
  ASSERT_EQ(fcvm({"wait", "--name", "mine", "--condition", "healthy"}, testing::kOtherUid).exitCode,
            0);
  auto info = json::parse(fcvm({"inspect", "--name", "mine"}, testing::kOtherUid).output);
  EXPECT_EQ(info.at("network"), "rootless");
  EXPECT_EQ(httpGet(port), "hello from mine\n");
  EXPECT_TRUE(fcvm_.processesOf("fcvm-netd").empty()) << "rootless needs no netd";
  // A port in use is a clear error before anything starts.
  auto clash = fcvm({"podman", "run", "--rm", "-p", fmt::format("127.0.0.1:{}:80", port),
                     "--network", "rootless", testing::kTestImage, "true"});
  EXPECT_EQ(clash.exitCode, 1);
  EXPECT_NE(clash.output.find(fmt::format("port 127.0.0.1:{}/tcp is already in use", port)),
            std::string::npos)
      << clash.output;
  // So is a privileged port: root's workers jail QEMU as an unprivileged uid.
  auto privileged = fcvm({"podman", "run", "--rm", "-p", "127.0.0.1:80:80", "--network", "rootless",
                          testing::kTestImage, "true"});
  EXPECT_EQ(privileged.exitCode, 1);
  EXPECT_NE(privileged.output.find("host port 80 is privileged"), std::string::npos)
      << privileged.output;
  // None: loopback only.
  EXPECT_EQ(ok({"podman", "run", "--rm", "--network", "none", testing::kTestImage, "ls",
                "/sys/class/net"}),
            "lo\n");
  // netd's socket, once it exists, is root's alone: connecting needs write permission on it.
  ok({"podman", "run", "--rm", "--name", "bridged", testing::kTestImage, "true"});
  struct stat st {};
  ASSERT_EQ(::stat((fcvm_.runtimeDir() / "netd.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 0077, 0u);
  ok({"rm", "-f", "--name", "mine"});
}

// Images from a registry: one the test runs on loopback (Debian's docker-registry), never a public
// one. The first run pulls (progress on stderr), the second finds the image in storage, --pull
// always pulls again; podman does the pulling as the user who runs the VM.
TEST_F(NetworkTest, ImagesComeFromARegistryOnLoopback) {
  uint16_t port = testing::freeLoopbackPort();
  auto config = fcvm_.dir() / "registry.yml";
  std::ofstream(config) << fmt::format(
      "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n"
      "http:\n  addr: 127.0.0.1:{}\n",
      (fcvm_.dir() / "registry").string(), port);
  testing::RunningCommand registry(
      {"/bin/sh", "-c", "exec docker-registry serve \"$0\" 2>&1", config.string()}, {});
  ASSERT_TRUE(registry.readUntil("listening on")) << registry.output();
  auto image = fmt::format("127.0.0.1:{}/fcvm/busybox:1", port);
  struct RemoveImage {  // the pulled image leaves the host's storage with the test
    std::string image;
    ~RemoveImage() { runCommand({"podman", "rmi", "-f", image}); }
  } removeImage{image};
  auto pushed = runCommand({"podman", "push", "--tls-verify=false", testing::kTestImage, image},
                           CommandOptions::withTimeout(std::chrono::minutes(2)));
  ASSERT_EQ(pushed.exitCode, 0) << pushed.output;

  auto run = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"podman", "run", "--rm", "--tls-verify=false"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {image, "echo", "from the registry"});
    auto err = fcvm_.dir() / "stderr";
    auto r = fcvm_.fcvm(args, std::nullopt, testing::kVmDeadline, err.string());
    std::ifstream in(err);
    std::string stderrText((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(r.exitCode, 0) << stderrText << supervisorLogTail();
    EXPECT_EQ(r.output, "from the registry\n");
    return stderrText;
  };
  EXPECT_NE(run({}).find("Writing manifest"), std::string::npos) << "the first run pulls";
  EXPECT_EQ(run({}).find("Copying"), std::string::npos) << "the second run does not";
  EXPECT_NE(run({"--pull", "always"}).find("Writing manifest"), std::string::npos);
  // A pull that fails is one clear error, and no VM is left.
  auto missing = fcvm({"podman", "run", "--rm", "--tls-verify=false",
                       fmt::format("127.0.0.1:{}/fcvm/none:1", port), "true"});
  EXPECT_EQ(missing.exitCode, 1);
  EXPECT_NE(missing.output.find("fcvm: error: podman pull 127.0.0.1:"), std::string::npos)
      << missing.output;
  EXPECT_EQ(fcvm({"ls", "--json"}).output, "[]\n");
}

}  // namespace
}  // namespace fcvm
