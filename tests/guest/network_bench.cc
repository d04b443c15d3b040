// `make bench-net`: traffic between the host and a guest through each network mode, side by side
// with the host's loopback as the baseline: throughput (a 64 MiB download from busybox httpd) and
// connection rate (sequential GETs of a tiny page), each as a ratio to loopback. Only loopback
// and the VMs' own networks carry traffic.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "base/error.h"
#include "base/spawn.h"
#include "base/unique_fd.h"
#include "tests/guest/bench_vms.h"
#include "tests/guest/guest_vm.h"
#include "tests/support/vm_fixture.h"

namespace fcvm::testing {
namespace {

constexpr int kRuns = 3;
constexpr int kConnections = 200;
constexpr size_t kBigBytes = 64 << 20;
constexpr char kServer[] =
    "mkdir -p /www && head -c 67108864 /dev/zero > /www/big && echo x > /www/small && "
    "exec httpd -f -p 8080 -h /www";

// GET `path` from 127.0.0.1:port; the bytes of the whole response.
size_t fetch(uint16_t port, const std::string& path) {
  UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  checkSys(::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), "connect {}",
           port);
  auto request = fmt::format("GET {} HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
  checkSys(::write(sock.get(), request.data(), request.size()), "send the request");
  size_t total = 0;
  std::vector<char> buf(1 << 16);
  ssize_t n;
  while ((n = ::read(sock.get(), buf.data(), buf.size())) > 0) total += static_cast<size_t>(n);
  return total;
}

struct Figures {
  std::vector<double> mbPerSecond, connectionsPerSecond;
};

Figures measure(uint16_t port) {
  Figures f;
  for (int i = 0; i < kRuns; ++i) {
    size_t bytes = 0;
    double s = secondsOf([&] { bytes = fetch(port, "/big"); });
    if (bytes < kBigBytes) throw Error(fmt::format("short download: {} bytes", bytes));
    f.mbPerSecond.push_back(bytes / 1e6 / s);
    s = secondsOf([&] {
      for (int c = 0; c < kConnections; ++c) fetch(port, "/small");
    });
    f.connectionsPerSecond.push_back(kConnections / s);
  }
  std::sort(f.mbPerSecond.begin(), f.mbPerSecond.end());
  std::sort(f.connectionsPerSecond.begin(), f.connectionsPerSecond.end());
  return f;
}

int run() {
  FcvmInstance fcvm(testDataDir() / "storage");
  ok(fcvm, {"supervisor", "start"});
  // The baseline: the same busybox httpd on the host's loopback.
  TempDir www("fcvm-bench-www");
  {
    std::ofstream big(www / "big", std::ios::binary);
    std::string zeros(1 << 20, '\0');
    for (size_t i = 0; i < kBigBytes >> 20; ++i) big << zeros;
    std::ofstream(www / "small") << "x\n";
  }
  uint16_t hostPort = freeLoopbackPort();
  SpawnSpec spec;
  spec.argv = {"busybox",          "httpd", "-f", "-p", fmt::format("127.0.0.1:{}", hostPort), "-h",
               www.path().string()};
  spec.env = environmentWith({});
  auto hostServer = spawn(spec);
  DetachedVms vms(fcvm, kImage);
  std::vector<std::pair<std::string, uint16_t>> modes = {{"bridged", freeLoopbackPort()},
                                                         {"rootless", freeLoopbackPort()}};
  for (const auto& [mode, port] : modes) {
    vms.start(mode, {"sh", "-c", kServer},
              {"--network", mode, "-p", fmt::format("127.0.0.1:{}:8080", port), "--health-check",
               fmt::format("http://127.0.0.1:{}/small", port)});
  }
  for (const auto& [mode, port] : modes) {
    ok(fcvm, {"wait", "--name", mode, "--condition", "healthy"});
  }
  // Rounds of each target in turn, so the host's load weighs on each alike.
  auto loopback = measure(hostPort);
  std::vector<Figures> guests;
  for (const auto& [mode, port] : modes) guests.push_back(measure(port));
  double baseMb = median(loopback.mbPerSecond), baseConn = median(loopback.connectionsPerSecond);
  fmt::print("host -> guest HTTP through a published port on 127.0.0.1, median of {}\n", kRuns);
  fmt::print("{:<36} {:>10} {:>9} {:>12} {:>9}\n", "", "MB/s", "x lo", "conn/s", "x lo");
  auto row = [&](const std::string& what, const Figures& f) {
    fmt::print("{:<36} {:>10.1f} {:>9.3f} {:>12.1f} {:>9.3f}\n", what, median(f.mbPerSecond),
               median(f.mbPerSecond) / baseMb, median(f.connectionsPerSecond),
               median(f.connectionsPerSecond) / baseConn);
  };
  row("host loopback (busybox httpd)", loopback);
  for (size_t i = 0; i < modes.size(); ++i) row("guest, --network " + modes[i].first, guests[i]);
  fmt::print("  a {} MiB file, and {} sequential GETs of a tiny page; guests under {}\n",
             kBigBytes >> 20, kConnections, "the accelerator fcvm chose (TCG here)");
  vms.removeAll();
  return 0;
}

}  // namespace
}  // namespace fcvm::testing

int main() { return fcvm::testing::benchMain("bench-net", fcvm::testing::run); }
