#include "netd/networks.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "base/error.h"
#include "base/host_port.h"
#include "base/sha256.h"
#include "netd/iptables.h"
#include "netd/vm_network.h"

namespace fcvm::netd {
namespace {

constexpr char kSlotLock[] = "/run/netns/.fcvm-slots.lock";

// flock on a file, held for the object's life (the kernel drops it if the process dies).
class HostLock {
 public:
  explicit HostLock(const char* path) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    fd_.reset(::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd_) throw SysError(errno, std::string("open ") + path);
    checkSys(retryEintr([&] { return ::flock(fd_.get(), LOCK_EX); }), "lock {}", path);
  }

 private:
  UniqueFd fd_;
};

bool overlaps(const ipc::PortMapping& a, const ipc::PortMapping& b) {
  return a.hostPort == b.hostPort && a.protocol == b.protocol &&
         (a.hostIp.empty() || b.hostIp.empty() || a.hostIp == b.hostIp);
}

}  // namespace

std::string hostResolver() {
  std::ifstream in("/etc/resolv.conf");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  return firstNameserver(text);
}

std::string instanceTag(const std::filesystem::path& dataDir) {
  return sha256Hex(std::filesystem::absolute(dataDir).string()).substr(0, 4);
}

Networks::Networks(NetworkRecords records, std::string instance)
    : records_(std::move(records)), instance_(std::move(instance)) {
  networks_ = records_.loadAll();
  std::set<std::string> known;
  for (const auto& [id, record] : networks_) {
    for (const auto& chain : record.plan().hostChains()) known.insert(chain);
  }
  std::vector<std::string> stray;
  for (const auto& chain : hostChainsStartingWith("FC" + instance_ + "-")) {
    if (known.count(chain) == 0) stray.push_back(chain);
  }
  if (!stray.empty()) {
    spdlog::info("removing {} firewall chains no network record accounts for", stray.size());
    removeChains(stray);
  }
}

void Networks::checkPortsFree(const NetworkRequest& request) const {
  for (const auto& port : request.ports) {
    for (const auto& [id, record] : networks_) {
      for (const auto& other : record.request.ports) {
        if (overlaps(port, other)) {
          throw Error(
              fmt::format("port {} is already published by another VM", ipc::toString(port)));
        }
      }
    }
    checkHostPortFree(port.hostIp, port.hostPort, port.protocol);
  }
}

uint32_t Networks::freeSlot() const {
  std::set<uint32_t> used;
  for (const auto& [id, record] : networks_) used.insert(record.slot);
  // And those the host has in use: another netd's (each test instance runs one) or a leftover.
  ifaddrs* addresses = nullptr;
  if (::getifaddrs(&addresses) == 0) {
    for (auto* a = addresses; a != nullptr; a = a->ifa_next) {
      if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
      uint32_t ip = ntohl(reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr);
      if ((ip >> 16) == ((10u << 8) | 213u)) used.insert((ip & 0xffff) / 4);
    }
    ::freeifaddrs(addresses);
  }
  for (uint32_t slot = 0; slot < kSlots; ++slot) {
    if (used.count(slot) == 0) return slot;
  }
  throw Error("every address of the pool " + std::string(kPool) + " is in use");
}

std::pair<NetworkPlan, UniqueFd> Networks::create(const NetworkRequest& request) {
  if (networks_.count(request.vmId) != 0) {
    throw Error(fmt::format("VM {} already has a network", request.vmId));
  }
  checkPortsFree(request);
  NetworkRequest owned = request;
  owned.instance = instance_;
  // Slots are chosen under a host-wide lock, held until the veth holds its address.
  HostLock lock(kSlotLock);
  NetworkRecord record{owned, freeSlot(), hostResolver()};
  auto plan = record.plan();
  // Recorded first: whatever happens from here, the record says what to remove.
  records_.save(record);
  networks_[request.vmId] = record;
  try {
    auto tap = buildNetwork(plan);
    spdlog::info("VM {}: namespace {}, {} ({}) <-> {} ({}), {} ports", request.vmId, plan.netns,
                 plan.hostVeth, plan.hostIp, plan.nsVeth, plan.nsIp, plan.ports.size());
    return {std::move(plan), std::move(tap)};
  } catch (...) {
    networks_.erase(request.vmId);
    records_.remove(request.vmId);
    throw;
  }
}

void Networks::destroy(const std::string& vmId) {
  auto it = networks_.find(vmId);
  if (it == networks_.end()) return;
  // Kept on record if anything stays behind: a later destroy, retain or netd start tries again.
  tearDownNetwork(it->second.plan());
  records_.remove(vmId);
  networks_.erase(it);
  spdlog::info("VM {}: network removed", vmId);
}

void Networks::retain(const std::vector<std::string>& vmIds) {
  std::vector<std::string> gone;
  for (const auto& [id, record] : networks_) {
    if (std::find(vmIds.begin(), vmIds.end(), id) == vmIds.end()) gone.push_back(id);
  }
  std::string failures;
  for (const auto& id : gone) {
    try {
      destroy(id);
    } catch (const std::exception& e) {
      failures += (failures.empty() ? "" : "; ") + std::string(e.what());
    }
  }
  if (!failures.empty()) throw Error(failures);
}

std::vector<std::string> Networks::list() const {
  std::vector<std::string> ids;
  for (const auto& [id, record] : networks_) ids.push_back(id);
  return ids;
}

}  // namespace fcvm::netd
