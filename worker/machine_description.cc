#include "worker/machine_description.h"

#include "base/error.h"
#include "base/ids.h"
#include "base/json_field.h"

namespace fcvm::worker {
namespace {

constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxCommandLine = 4096;
constexpr size_t kMaxDisks = 16;
constexpr size_t kMaxChannels = 64;

template <typename T>
T field(const nlohmann::json& object, const char* name) {
  try {
    return jsonField<T>(object, name);
  } catch (const Error& e) {
    throw Error(fmt::format("snapshot machine: {}", e.what()));
  }
}

bool hasControlCharacters(const std::string& text) {
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

std::filesystem::path absolutePath(const nlohmann::json& object, const char* name) {
  auto text = field<std::string>(object, name);
  if (text.empty() || text[0] != '/' || text.size() > kMaxPath || hasControlCharacters(text)) {
    throw Error(fmt::format("snapshot machine: '{}' is not an absolute path", name));
  }
  return text;
}

// 02:fc:xx:xx:xx:xx, as the worker makes them (locally administered, lowercase).
bool isMacAddress(const std::string& mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    const char c = mac[i];
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    if (i % 3 == 2 ? c != ':' : !hex) return false;
  }
  return true;
}

}  // namespace

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
  // The clone runs the QEMU every VM runs; a description cannot name another program.
  if (field<std::string>(machine, "qemu") != config.qemu) {
    throw Error(fmt::format("snapshot machine: its QEMU is not {}", config.qemu));
  }
  config.accel = field<std::string>(machine, "accel");
  if (config.accel != "kvm" && config.accel != "tcg") {
    throw Error("snapshot machine: unknown accelerator " + config.accel);
  }
  config.cpus = field<unsigned>(machine, "cpus");
  config.memoryMib = field<unsigned>(machine, "memory_mib");
  if (config.cpus == 0 || config.cpus > 64 || config.memoryMib == 0 || config.memoryMib > 1 << 20) {
    throw Error("snapshot machine: CPUs or memory out of range");
  }
  config.kernel = absolutePath(machine, "kernel");
  config.initramfs = absolutePath(machine, "initramfs");
  config.kernelCommandLine = field<std::string>(machine, "kernel_command_line");
  if (config.kernelCommandLine.empty() || config.kernelCommandLine.size() > kMaxCommandLine ||
      hasControlCharacters(config.kernelCommandLine)) {
    throw Error("snapshot machine: a kernel command line of another form than a VM has");
  }
  auto disks = field<nlohmann::json>(machine, "extra_disks");
  if (!disks.is_array() || disks.size() > kMaxDisks) {
    throw Error("snapshot machine: 'extra_disks' is not a list of disks");
  }
  for (const auto& d : disks) {
    config.extraDisks.push_back({absolutePath(d, "path"), field<bool>(d, "read_only")});
  }
  auto network = field<nlohmann::json>(machine, "network");
  config.network.mode = field<std::string>(network, "mode");
  config.network.mac = field<std::string>(network, "mac");
  if (config.network.mode != "bridged" && config.network.mode != "rootless" &&
      config.network.mode != "none") {
    throw Error("snapshot machine: unknown network mode " + config.network.mode);
  }
  if (config.network.mode != "none" && !isMacAddress(config.network.mac)) {
    throw Error("snapshot machine: a MAC address of another form than fcvm makes");
  }
  auto channels = field<nlohmann::json>(machine, "channels");
  if (!channels.is_array() || channels.size() > kMaxChannels) {
    throw Error("snapshot machine: 'channels' is not a list of names");
  }
  for (const auto& c : channels) {
    if (!c.is_string() || !isValidName(c.get<std::string>())) {
      throw Error("snapshot machine: a channel name of another form than fcvm makes");
    }
    config.channels.push_back({c.get<std::string>(), {}});
  }
  return config;
}

}  // namespace fcvm::worker
