#include "cli/vm_view.h"

#include <capnp/schema.h>
#include <fmt/format.h>
#include <time.h>

#include <map>

namespace fcvm::cli {
namespace {

template <typename Enum>
std::string enumName(Enum value) {
  auto enumerants = capnp::Schema::from<Enum>().getEnumerants();
  auto index = static_cast<uint16_t>(value);
  if (index >= enumerants.size()) return "invalid";
  return enumerants[index].getProto().getName().cStr();
}

// "127.0.0.1:8080->80/tcp", as podman shows a published port.
std::string portText(rpc::PortMapping::Reader p) {
  return fmt::format("{}{}->{}/{}",
                     p.getHostIp().size() > 0 ? std::string(p.getHostIp().cStr()) + ":" : "",
                     p.getHostPort(), p.getGuestPort(), p.getProtocol().cStr());
}

nlohmann::json volumesToJson(capnp::List<rpc::Volume>::Reader volumes) {
  nlohmann::json out = nlohmann::json::array();
  for (auto v : volumes) {
    out.push_back({{"host", v.getHostPath().cStr()},
                   {"guest", v.getGuestPath().cStr()},
                   {"read_only", v.getReadOnly()}});
  }
  return out;
}

}  // namespace

std::string formatTimestamp(int64_t unixNs) {
  time_t seconds = static_cast<time_t>(unixNs / 1000000000);
  tm utc{};
  ::gmtime_r(&seconds, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

nlohmann::json vmToJson(rpc::VmInfo::Reader vm) {
  nlohmann::json j = {
      {"id", vm.getId().cStr()},
      {"name", vm.getName().cStr()},
      {"owner_uid", vm.getOwnerUid()},
      {"state", enumName(vm.getState())},
      {"health", enumName(vm.getHealth())},
      {"exit_code", nullptr},
      {"reason", vm.getReason().cStr()},
      {"image", vm.getImage().cStr()},
      {"network", vm.getNetwork().cStr()},
      {"worker_pid", vm.getWorkerPid()},
      {"created_at", formatTimestamp(vm.getCreatedAtNs())},
      {"updated_at", formatTimestamp(vm.getUpdatedAtNs())},
      {"restart_policy", vm.getRestartPolicy().size() > 0 ? vm.getRestartPolicy().cStr() : "no"},
      {"restart_count", vm.getRestartCount()},
  };
  if (vm.getHasExitCode()) j["exit_code"] = vm.getExitCode();
  nlohmann::json ports = nlohmann::json::array();
  for (auto p : vm.getPorts()) ports.push_back(portText(p));
  j["ports"] = ports;
  j["volumes"] = volumesToJson(vm.getVolumes());
  j["snapshot"] = vm.hasSnapshot() && vm.getSnapshot().size() > 0
                      ? nlohmann::json(vm.getSnapshot().cStr())
                      : nlohmann::json(nullptr);
  return j;
}

nlohmann::json vmMemoryToJson(rpc::VmMemory::Reader m) {
  auto known = [](uint64_t bytes) { return bytes > 0 ? nlohmann::json(bytes) : nlohmann::json(); };
  bool guest = m.getGuestReported();
  return {{"guest_total_bytes", guest ? nlohmann::json(m.getGuestTotalBytes()) : nlohmann::json()},
          {"guest_available_bytes",
           guest ? nlohmann::json(m.getGuestAvailableBytes()) : nlohmann::json()},
          {"host_pss_bytes", known(m.getHostPssBytes())},
          {"host_anon_bytes", known(m.getHostAnonBytes())},
          {"reason", m.getReason().cStr()}};
}

nlohmann::json serveToJson(rpc::ServeInfo::Reader serve) {
  return {{"id", serve.getId().cStr()},
          {"snapshot", serve.getSnapshotTag().cStr()},
          {"owner_uid", serve.getOwnerUid()},
          {"pid", serve.getPid()},
          {"state", serve.getState().cStr()},
          {"reason", serve.getReason().cStr()},
          {"started_at", formatTimestamp(serve.getStartedAtNs())}};
}

nlohmann::json snapshotToJson(rpc::SnapshotInfo::Reader s) {
  return {{"id", s.getId().cStr()},
          {"tag", s.getTag().cStr()},
          {"owner_uid", s.getOwnerUid()},
          {"state", s.getState().cStr()},
          {"source_vm", s.getSourceVm().cStr()},
          {"image", s.getImage().cStr()},
          {"created_at", formatTimestamp(s.getCreatedAtNs())},
          {"pause_ms", s.getPauseNs() / 1e6},
          {"memory_bytes", s.getMemoryBytes()},
          {"clones", s.getClones()},
          {"volumes", volumesToJson(s.getVolumes())},
          {"serve", s.getHasServe() ? serveToJson(s.getServe()) : nlohmann::json(nullptr)}};
}

std::string snapshotTable(capnp::List<rpc::SnapshotInfo>::Reader snapshots) {
  std::string out =
      fmt::format("{:<20} {:<16} {:<8} {:<20} {:>7} {:>9}  {:<16} {:>6}  {}\n", "TAG", "ID",
                  "STATE", "SOURCE", "MEMORY", "PAUSE", "SERVE", "CLONES", "CREATED");
  for (auto s : snapshots) {
    std::string serve = "-";
    if (s.getHasServe()) {
      serve = fmt::format("{} {}", s.getServe().getState().cStr(), s.getServe().getPid());
    }
    out += fmt::format("{:<20} {:<16} {:<8} {:<20} {:>4} MiB {:>6.1f} ms  {:<16} {:>6}  {}\n",
                       s.getTag().cStr(), s.getId().cStr(), s.getState().cStr(),
                       s.getSourceVm().cStr(), s.getMemoryBytes() >> 20, s.getPauseNs() / 1e6,
                       serve, s.getClones(), formatTimestamp(s.getCreatedAtNs()));
  }
  return out;
}

std::string serveTable(capnp::List<rpc::ServeInfo>::Reader serves) {
  std::string out = fmt::format("{:<20} {:<16} {:>8}  {:<9} {}\n", "SNAPSHOT SERVED", "ID", "PID",
                                "STATE", "STARTED");
  for (auto s : serves) {
    out += fmt::format(
        "{:<20} {:<16} {:>8}  {:<9} {}{}\n", s.getSnapshotTag().cStr(), s.getId().cStr(),
        s.getPid(), s.getState().cStr(), formatTimestamp(s.getStartedAtNs()),
        s.getReason().size() > 0 ? std::string(" (") + s.getReason().cStr() + ")" : std::string());
  }
  return out;
}

std::string vmTable(capnp::List<rpc::VmInfo>::Reader vms) {
  std::string out =
      fmt::format("{:<20} {:<16} {:<9} {:<9} {:>4}  {:<30} {:<20} {:<20} {}\n", "NAME", "ID",
                  "STATE", "HEALTH", "EXIT", "IMAGE", "CREATED", "NETWORK", "PORTS");
  for (auto vm : vms) {
    std::string exit = vm.getHasExitCode() ? std::to_string(vm.getExitCode()) : "-";
    // "bridged 172.30.0.2 via 10.213.0.2" is shown without the namespace's side.
    std::string network = vm.getNetwork().cStr();
    network = network.substr(0, network.find(" via "));
    std::string ports;
    for (auto p : vm.getPorts()) ports += (ports.empty() ? "" : ",") + portText(p);
    out += fmt::format("{:<20} {:<16} {:<9} {:<9} {:>4}  {:<30} {:<20} {:<20} {}\n",
                       vm.getName().cStr(), vm.getId().cStr(), enumName(vm.getState()),
                       enumName(vm.getHealth()), exit, vm.getImage().cStr(),
                       formatTimestamp(vm.getCreatedAtNs()), network.empty() ? "-" : network,
                       ports.empty() ? "-" : ports);
  }
  return out;
}

std::string formatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, kUnits[unit]);
}

nlohmann::json diskUsageToJson(capnp::List<rpc::DiskUsage>::Reader usage) {
  auto out = nlohmann::json::array();
  for (auto row : usage) {
    out.push_back({{"kind", row.getKind().cStr()},
                   {"total", row.getTotal()},
                   {"active", row.getActive()},
                   {"bytes", row.getBytes()},
                   {"reclaimable_bytes", row.getReclaimable()}});
  }
  return out;
}

std::string diskUsageTable(capnp::List<rpc::DiskUsage>::Reader usage) {
  static const std::map<std::string, std::string> kTitles = {{"artifacts", "Artifacts"},
                                                             {"images", "Image disks"},
                                                             {"vm_disks", "VM disks"},
                                                             {"snapshots", "Snapshots"},
                                                             {"logs", "Logs"}};
  std::string out = fmt::format("{:<12} {:>6} {:>7} {:>11}  {}\n", "TYPE", "TOTAL", "ACTIVE",
                                "SIZE", "RECLAIMABLE");
  for (auto row : usage) {
    auto title = kTitles.find(row.getKind().cStr());
    unsigned percent = row.getBytes() == 0
                           ? 0
                           : static_cast<unsigned>(row.getReclaimable() * 100 / row.getBytes());
    out += fmt::format("{:<12} {:>6} {:>7} {:>11}  {} ({}%)\n",
                       title == kTitles.end() ? row.getKind().cStr() : title->second,
                       row.getTotal(), row.getActive(), formatBytes(row.getBytes()),
                       formatBytes(row.getReclaimable()), percent);
  }
  return out;
}

nlohmann::json storageItemsToJson(capnp::List<rpc::StorageItem>::Reader items) {
  auto out = nlohmann::json::array();
  for (auto item : items) {
    out.push_back({{"kind", item.getKind().cStr()},
                   {"path", item.getPath().cStr()},
                   {"owner", item.getOwner().cStr()},
                   {"bytes", item.getBytes()},
                   {"in_use", item.getInUse()}});
  }
  return out;
}

std::string storageItemsTable(capnp::List<rpc::StorageItem>::Reader items) {
  std::string out =
      fmt::format("{:<10} {:<6} {:>11}  {:<16}  {}\n", "KIND", "IN USE", "SIZE", "OWNER", "PATH");
  for (auto item : items) {
    out += fmt::format("{:<10} {:<6} {:>11}  {:<16}  {}\n", item.getKind().cStr(),
                       item.getInUse() ? "yes" : "no", formatBytes(item.getBytes()),
                       item.getOwner().size() > 0 ? item.getOwner().cStr() : "-",
                       item.getPath().cStr());
  }
  return out;
}

nlohmann::json pruneReportToJson(rpc::PruneReport::Reader report) {
  auto vms = nlohmann::json::array();
  for (auto name : report.getVms()) vms.push_back(name.cStr());
  nlohmann::json out = {{"vms", vms},
                        {"artifacts", report.getArtifacts()},
                        {"images", report.getImages()},
                        {"startup_snapshots", report.getStartupSnapshots()},
                        {"reclaimed_bytes", report.getReclaimedBytes()}};
  if (report.getSkipped().size() > 0) out["skipped"] = report.getSkipped().cStr();
  return out;
}

std::string pruneReportText(rpc::PruneReport::Reader report) {
  std::string out;
  if (report.getVms().size() > 0) {
    out += "Removed VMs:\n";
    for (auto name : report.getVms()) out += fmt::format("  {}\n", name.cStr());
  }
  if (report.getStartupSnapshots() > 0) {
    out += fmt::format("Removed {} start-up snapshot{}\n", report.getStartupSnapshots(),
                       report.getStartupSnapshots() == 1 ? "" : "s");
  }
  out += fmt::format("Removed {} artifact{} and {} image disk{}\n", report.getArtifacts(),
                     report.getArtifacts() == 1 ? "" : "s", report.getImages(),
                     report.getImages() == 1 ? "" : "s");
  if (report.getSkipped().size() > 0) out += fmt::format("Left: {}\n", report.getSkipped().cStr());
  out += fmt::format("Total reclaimed space: {}\n", formatBytes(report.getReclaimedBytes()));
  return out;
}

}  // namespace fcvm::cli
