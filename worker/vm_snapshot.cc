#include "worker/vm_snapshot.h"

#include "base/error.h"
#include "ipc/rpc_error.h"

namespace fcvm::worker {
namespace {

constexpr char kStateFdName[] = "fcvm-state";

// Guest RAM stays in its memory file (the snapshot takes a copy of that file); only device state
// goes through the migration stream. Events make QEMU report the migration's end.
kj::Promise<void> setCapabilities(QmpClient& qmp) {
  nlohmann::json caps = nlohmann::json::array({{{"capability", "x-ignore-shared"}, {"state", true}},
                                               {{"capability", "events"}, {"state", true}}});
  return qmp.execute("migrate-set-capabilities", {{"capabilities", caps}}).ignoreResult();
}

bool migrationEnded(const nlohmann::json& data) {
  auto status = data.value("status", std::string());
  return status == "completed" || status == "failed" || status == "cancelled";
}

kj::Promise<void> migrate(QmpClient& qmp, int stateFd, const char* command, const char* uriKey) {
  return setCapabilities(qmp)
      .then([&qmp, stateFd] {
        return qmp.execute("getfd", {{"fdname", kStateFdName}}, stateFd).ignoreResult();
      })
      .then([&qmp, command, uriKey] {
        auto ended = qmp.waitForEvent("MIGRATION", migrationEnded);
        return qmp.execute(command, {{uriKey, std::string("fd:") + kStateFdName}})
            .then([ended = kj::mv(ended)](nlohmann::json) mutable { return kj::mv(ended); });
      })
      .then([](nlohmann::json data) {
        auto status = data.value("status", std::string());
        if (status != "completed") {
          ipc::throwRpcError(kj::str("QEMU could not migrate the device state: ", status.c_str()));
        }
      });
}

template <typename T>
T field(const nlohmann::json& machine, const char* name) {
  if (!machine.contains(name)) throw Error(fmt::format("snapshot machine: no '{}'", name));
  try {
    return machine.at(name).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(fmt::format("snapshot machine: '{}' has the wrong type", name));
  }
}

}  // namespace

kj::Promise<void> saveDeviceState(QmpClient& qmp, int stateFd) {
  return migrate(qmp, stateFd, "migrate", "uri");
}

kj::Promise<void> loadDeviceState(QmpClient& qmp, int stateFd) {
  return migrate(qmp, stateFd, "migrate-incoming", "uri");
}

nlohmann::json describeMachine(const QemuConfig& config) {
  nlohmann::json disks = nlohmann::json::array();
  for (const auto& d : config.extraDisks) {
    disks.push_back({{"path", d.path.string()}, {"read_only", d.readOnly}});
  }
  nlohmann::json channels = nlohmann::json::array();
  for (const auto& c : config.channels) channels.push_back(c.name);
  return {{"qemu", config.qemu},
          {"accel", config.accel},
          {"cpus", config.cpus},
          {"memory_mib", config.memoryMib},
          {"kernel", config.kernel.string()},
          {"initramfs", config.initramfs.string()},
          {"kernel_command_line", kernelCommandLine(config)},
          {"extra_disks", disks},
          {"channels", channels},
          {"network", {{"mode", config.network.mode}, {"mac", config.network.mac}}}};
}

QemuConfig machineFromDescription(const nlohmann::json& machine) {
  if (!machine.is_object()) throw Error("snapshot machine: not an object");
  QemuConfig config;
  config.qemu = field<std::string>(machine, "qemu");
  config.accel = field<std::string>(machine, "accel");
  if (config.accel != "kvm" && config.accel != "tcg") {
    throw Error("snapshot machine: unknown accelerator " + config.accel);
  }
  config.cpus = field<unsigned>(machine, "cpus");
  config.memoryMib = field<unsigned>(machine, "memory_mib");
  if (config.cpus == 0 || config.cpus > 64 || config.memoryMib == 0 || config.memoryMib > 1 << 20) {
    throw Error("snapshot machine: CPUs or memory out of range");
  }
  config.kernel = field<std::string>(machine, "kernel");
  config.initramfs = field<std::string>(machine, "initramfs");
  config.kernelCommandLine = field<std::string>(machine, "kernel_command_line");
  for (const auto& d : field<nlohmann::json>(machine, "extra_disks")) {
    config.extraDisks.push_back({field<std::string>(d, "path"), field<bool>(d, "read_only")});
  }
  auto network = field<nlohmann::json>(machine, "network");
  config.network.mode = field<std::string>(network, "mode");
  config.network.mac = field<std::string>(network, "mac");
  if (config.network.mode != "bridged" && config.network.mode != "rootless" &&
      config.network.mode != "none") {
    throw Error("snapshot machine: unknown network mode " + config.network.mode);
  }
  for (const auto& c : field<nlohmann::json>(machine, "channels")) {
    if (!c.is_string()) throw Error("snapshot machine: a channel name is not a string");
    config.channels.push_back({c.get<std::string>(), {}});
  }
  return config;
}

}  // namespace fcvm::worker
