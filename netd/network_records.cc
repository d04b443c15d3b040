#include "netd/network_records.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/paths.h"
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
  if (j.at("format").get<int>() != kFormat) throw Error("unknown record format");
  NetworkRecord r;
  r.request.vmId = j.at("vm_id").get<std::string>();
  r.request.instance = j.at("instance").get<std::string>();
  r.slot = j.at("slot").get<uint32_t>();
  for (const auto& p : j.at("ports")) {
    r.request.ports.push_back(
        {p.at("host_port").get<uint16_t>(), p.at("guest_port").get<uint16_t>(),
         p.at("protocol").get<std::string>(), p.at("host_ip").get<std::string>()});
  }
  r.request.dns = j.at("dns").get<std::vector<std::string>>();
  r.hostResolver = j.at("host_resolver").get<std::string>();
  r.plan();  // checks it
  return r;
}

}  // namespace

NetworkRecords::NetworkRecords(std::filesystem::path dir) : dir_(std::move(dir)) {
  ensureOwnedDirectory(dir_, 0700);
}

std::map<std::string, NetworkRecord> NetworkRecords::loadAll() const {
  std::map<std::string, NetworkRecord> records;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    if (entry.path().extension() != ".json") continue;
    try {
      std::ifstream in(entry.path());
      auto record = fromJson(json::parse(in));
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
  std::string text = toJson(record).dump() + "\n";
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
