#include "netd/network_records.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_field.h"
#include "base/paths.h"
#include "base/small_file.h"
#include "base/unique_fd.h"

namespace fcvm::netd {
namespace {

using nlohmann::json;

constexpr int kFormat = 1;

json toJson(const NetworkRecord& r) {
  json ports = json::array();
  for (const auto& p : r.request.ports) {
    ports.push_back({{"host_port", p.hostPort},
                     {"guest_port", p.guestPort},
                     {"protocol", p.protocol},
                     {"host_ip", p.hostIp}});
  }
  return {{"format", kFormat},
          {"vm_id", r.request.vmId},
          {"instance", r.request.instance},
          {"slot", r.slot},
          {"ports", ports},
          {"dns", r.request.dns},
          {"host_resolver", r.hostResolver}};
}

NetworkRecord fromJson(const json& j) {
  if (jsonField<int>(j, "format") != kFormat) throw Error("unknown record format");
  NetworkRecord r;
  r.request.vmId = jsonField<std::string>(j, "vm_id");
  r.request.instance = jsonField<std::string>(j, "instance");
  r.slot = jsonField<uint32_t>(j, "slot");
  auto ports = jsonField<json>(j, "ports");
  if (!ports.is_array()) throw Error("'ports' is not a list");
  for (const auto& p : ports) {
    r.request.ports.push_back(
        {jsonField<uint16_t>(p, "host_port"), jsonField<uint16_t>(p, "guest_port"),
         jsonField<std::string>(p, "protocol"), jsonField<std::string>(p, "host_ip")});
  }
  auto dns = jsonField<json>(j, "dns");
  if (!dns.is_array()) throw Error("'dns' is not a list");
  for (const auto& d : dns) r.request.dns.push_back(jsonValue<std::string>(d, "dns"));
  r.hostResolver = jsonField<std::string>(j, "host_resolver");
  r.plan();  // checks it
  return r;
}

}  // namespace

std::string formatNetworkRecord(const NetworkRecord& record) {
  return toJson(record).dump() + "\n";
}

NetworkRecord parseNetworkRecord(std::string_view text) { return fromJson(json::parse(text)); }

NetworkRecords::NetworkRecords(std::filesystem::path dir) : dir_(std::move(dir)) {
  ensureOwnedDirectory(dir_, 0700);
}

std::map<std::string, NetworkRecord> NetworkRecords::loadAll() const {
  std::map<std::string, NetworkRecord> records;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    if (entry.path().extension() != ".json") continue;
    try {
      auto record = parseNetworkRecord(readSmallFile(entry.path()));
      records[record.request.vmId] = std::move(record);
    } catch (const std::exception& e) {
      spdlog::warn("network record {} is unreadable ({}); removed", entry.path().string(),
                   e.what());
      std::error_code ec;
      std::filesystem::remove(entry.path(), ec);
    }
  }
  return records;
}

void NetworkRecords::save(const NetworkRecord& record) const {
  auto path = dir_ / (record.request.vmId + ".json");
  auto tmp = path.string() + ".tmp";
  std::string text = formatNetworkRecord(record);
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) throw SysError(errno, "create " + tmp);
  checkSys(::write(fd.get(), text.data(), text.size()), "write {}", tmp);
  checkSys(::fsync(fd.get()), "fsync {}", tmp);
  std::filesystem::rename(tmp, path);
}

void NetworkRecords::remove(const std::string& vmId) const {
  std::error_code ec;
  std::filesystem::remove(dir_ / (vmId + ".json"), ec);
}

}  // namespace fcvm::netd
