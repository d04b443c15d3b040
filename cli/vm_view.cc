#include "cli/vm_view.h"

#include <capnp/schema.h>
#include <fmt/format.h>
#include <time.h>

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

}  // namespace fcvm::cli
