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
  return j;
}

std::string vmTable(capnp::List<rpc::VmInfo>::Reader vms) {
  std::string out = fmt::format("{:<20} {:<16} {:<9} {:<9} {:>4}  {:<30} {}\n", "NAME", "ID",
                                "STATE", "HEALTH", "EXIT", "IMAGE", "CREATED");
  for (auto vm : vms) {
    std::string exit = vm.getHasExitCode() ? std::to_string(vm.getExitCode()) : "-";
    out += fmt::format("{:<20} {:<16} {:<9} {:<9} {:>4}  {:<30} {}\n", vm.getName().cStr(),
                       vm.getId().cStr(), enumName(vm.getState()), enumName(vm.getHealth()), exit,
                       vm.getImage().cStr(), formatTimestamp(vm.getCreatedAtNs()));
  }
  return out;
}

}  // namespace fcvm::cli
