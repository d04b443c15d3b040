#include "ipc/vm_spec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/ids.h"
#include "base/ipv4_address.h"
#include "base/unique_fd.h"

namespace fcvm::ipc {
namespace {

constexpr size_t kMaxText = 4096;   // the agent's maxTextBytes
constexpr size_t kMaxItems = 1024;  // the agent's maxListItems
constexpr size_t kMaxImage = 127;   // VmRecord::image

std::string text(capnp::Text::Reader t, const char* field, size_t max = kMaxText) {
  if (t.size() > max) throw Error(fmt::format("{} is longer than {} bytes", field, max));
  std::string s(t.cStr(), t.size());
  if (s.find('\0') != std::string::npos) throw Error(fmt::format("{} contains a NUL byte", field));
  return s;
}

std::vector<std::string> texts(capnp::List<capnp::Text>::Reader list, const char* field) {
  if (list.size() > kMaxItems) throw Error(fmt::format("more than {} {}", kMaxItems, field));
  std::vector<std::string> out;
  for (auto t : list) out.push_back(text(t, field));
  return out;
}

constexpr size_t kMaxPorts = 64;

void checkPort(const PortMapping& p) {
  if (p.hostPort == 0 || p.guestPort == 0) throw Error("port 0 cannot be published");
  if (p.protocol != "tcp" && p.protocol != "udp") {
    throw Error(fmt::format("protocol '{}' is not tcp or udp", p.protocol));
  }
  if (!p.hostIp.empty() && !isIpv4Address(p.hostIp)) {
    throw Error(fmt::format("'{}' is not an IPv4 address", p.hostIp));
  }
}

// The guest agent's own rules for a container path (agent/podman_launcher.cc checkVolume), so a
// bad one is refused here, before a VM starts.
void checkVolume(const VolumeMapping& v) {
  auto checkPath = [](const std::string& path, const char* which) {
    if (path.empty() || path[0] != '/')
      throw Error(fmt::format("the {} path is not absolute", which));
    if (("/" + path + "/").find("/../") != std::string::npos) {
      throw Error(fmt::format("the {} path has a '..' component", which));
    }
  };
  checkPath(v.hostPath, "host");
  checkPath(v.guestPath, "guest");
  if (v.guestPath.find(':') != std::string::npos || v.guestPath.find(',') != std::string::npos) {
    throw Error("the guest path has a ':' or ','");
  }
  if (std::filesystem::path(v.guestPath).lexically_normal() == "/") {
    throw Error("the guest path is the container's root");
  }
}

}  // namespace

bool isArchiveImage(const std::string& image) {
  return image.starts_with("oci-archive:") || image.starts_with("docker-archive:");
}

const std::vector<std::string>& podmanEnvNames() {
  static const std::vector<std::string> names = {"HOME",
                                                 "XDG_DATA_HOME",
                                                 "XDG_CONFIG_HOME",
                                                 "XDG_RUNTIME_DIR",
                                                 "CONTAINERS_STORAGE_CONF",
                                                 "CONTAINERS_CONF",
                                                 "CONTAINERS_REGISTRIES_CONF",
                                                 "TMPDIR"};
  return names;
}

namespace {

constexpr size_t kMaxPodmanEnv = 16;

void checkPodmanEnvEntry(const std::string& e) {
  if (e.size() > kMaxText || e.find('\0') != std::string::npos) {
    throw Error("a podman environment variable is longer than 4096 bytes or has a NUL byte");
  }
  auto name = e.substr(0, e.find('='));
  const auto& names = podmanEnvNames();
  if (e.find('=') == std::string::npos ||
      std::find(names.begin(), names.end(), name) == names.end()) {
    throw Error(fmt::format("'{}' is not a podman environment variable fcvm passes on", name));
  }
}

}  // namespace

std::vector<std::string> decodePodmanEnv(capnp::List<capnp::Text>::Reader env) {
  if (env.size() > kMaxPodmanEnv) throw Error("more than 16 podman environment variables");
  std::vector<std::string> out;
  for (auto entry : env) {
    out.emplace_back(entry.cStr(), entry.size());
    checkPodmanEnvEntry(out.back());
  }
  return out;
}

void writePodmanEnvFile(const std::vector<std::string>& env, const std::string& path) {
  std::string text = nlohmann::json(env).dump() + "\n";
  UniqueFd fd(static_cast<int>(
      checkSys(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600),
               "create {}", path)));
  checkSys(::write(fd.get(), text.data(), text.size()), "write {}", path);
}

std::vector<std::string> readPodmanEnvFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_array() || j.size() > kMaxPodmanEnv) throw Error(fmt::format("{} is not a list", path));
  std::vector<std::string> out;
  for (const auto& e : j) {
    if (!e.is_string()) throw Error(fmt::format("{}: an entry is not a string", path));
    out.push_back(e.get<std::string>());
    checkPodmanEnvEntry(out.back());
  }
  return out;
}

RestartPolicy parseRestartPolicy(const std::string& textForm) {
  using Kind = RestartPolicy::Kind;
  auto colon = textForm.find(':');
  auto name = textForm.substr(0, colon);
  RestartPolicy policy;
  if (name == "no") {
    policy.kind = Kind::kNo;
  } else if (name == "always") {
    policy.kind = Kind::kAlways;
  } else if (name == "on-failure") {
    policy.kind = Kind::kOnFailure;
  } else if (name == "unless-stopped") {
    policy.kind = Kind::kUnlessStopped;
  } else {
    throw Error(
        fmt::format("--restart {}: use no, always, on-failure[:N] or unless-stopped", textForm));
  }
  if (colon != std::string::npos) {
    auto count = textForm.substr(colon + 1);
    if (policy.kind != Kind::kOnFailure) {
      throw Error(fmt::format("--restart {}: only on-failure takes a retry count", textForm));
    }
    if (count.empty() || count.size() > 6 ||
        count.find_first_not_of("0123456789") != std::string::npos) {
      throw Error(fmt::format("--restart {}: '{}' is not a retry count", textForm, count));
    }
    policy.maxRetries = static_cast<uint32_t>(std::stoul(count));
  }
  return policy;
}

std::string toString(const RestartPolicy& policy) {
  switch (policy.kind) {
    case RestartPolicy::Kind::kNo:
      return "no";
    case RestartPolicy::Kind::kAlways:
      return "always";
    case RestartPolicy::Kind::kOnFailure:
      return policy.maxRetries == 0 ? "on-failure"
                                    : fmt::format("on-failure:{}", policy.maxRetries);
    case RestartPolicy::Kind::kUnlessStopped:
      return "unless-stopped";
  }
  return "no";
}

VmSpec decodeVmSpec(rpc::VmSpec::Reader in) {
  VmSpec s;
  s.name = text(in.getName(), "the name", 63);
  if (!s.name.empty() && !isValidName(s.name)) {
    throw Error(fmt::format(
        "invalid VM name '{}': use 1-63 letters, digits, '_', '.' or '-', starting with a letter "
        "or digit",
        s.name));
  }
  s.image = text(in.getImage(), "the image reference", kMaxImage);
  if (s.image.empty()) throw Error("no image given");
  s.command = texts(in.getCommand(), "command arguments");
  if (in.getEnv().size() > kMaxItems) throw Error("too many environment variables");
  for (auto kv : in.getEnv()) {
    auto key = text(kv.getKey(), "an environment variable's name");
    if (key.empty() || key.find('=') != std::string::npos) {
      throw Error(fmt::format("invalid environment variable name '{}'", key));
    }
    s.env.push_back(key + "=" + text(kv.getValue(), "an environment variable's value"));
  }
  s.workdir = text(in.getWorkdir(), "the workdir");
  if (!s.workdir.empty() && s.workdir[0] != '/') {
    throw Error(fmt::format("workdir '{}' is not an absolute path", s.workdir));
  }
  s.user = text(in.getUser(), "the user");
  s.privileged = in.getPrivileged();
  s.cpus = in.getCpus() == 0 ? 1 : in.getCpus();
  if (s.cpus > kMaxCpus) throw Error(fmt::format("--cpu {} is more than {}", s.cpus, kMaxCpus));
  s.memoryMib = in.getMemoryMib() == 0 ? 256 : in.getMemoryMib();
  if (s.memoryMib < kMinMemoryMib || s.memoryMib > kMaxMemoryMib) {
    throw Error(
        fmt::format("--mem {} is outside {}..{} MiB", s.memoryMib, kMinMemoryMib, kMaxMemoryMib));
  }
  s.rootfsSizeMib = in.getRootfsSizeMib();
  if (s.rootfsSizeMib > kMaxRootfsMib) throw Error("--rootfs-size is larger than 1 TiB");
  switch (in.getAccel()) {
    case rpc::Accel::AUTO:
      s.accel = "auto";
      break;
    case rpc::Accel::KVM:
      s.accel = "kvm";
      break;
    case rpc::Accel::TCG:
      s.accel = "tcg";
      break;
    default:
      throw Error("unknown accelerator");
  }
  s.healthCmd = text(in.getHealthCmd(), "the health command");
  if (in.getVolumes().size() > kMaxVolumes) {
    throw Error(fmt::format("more than {} --map volumes", kMaxVolumes));
  }
  for (auto v : in.getVolumes()) {
    VolumeMapping volume{text(v.getHostPath(), "a --map host path", 4096),
                         text(v.getGuestPath(), "a --map guest path", 4096), v.getReadOnly()};
    checkVolume(volume);
    for (const auto& other : s.volumes) {
      if (other.guestPath == volume.guestPath) {
        throw Error(fmt::format("--map: {} is mapped twice", volume.guestPath));
      }
    }
    s.volumes.push_back(std::move(volume));
  }
  switch (in.getNetwork()) {
    case rpc::NetworkMode::AUTO:
      s.network = "auto";
      break;
    case rpc::NetworkMode::BRIDGED:
      s.network = "bridged";
      break;
    case rpc::NetworkMode::ROOTLESS:
      s.network = "rootless";
      break;
    case rpc::NetworkMode::NONE:
      s.network = "none";
      break;
    default:
      throw Error("unknown network mode");
  }
  s.ports = decodePorts(in.getPorts());
  if (!s.ports.empty() && s.network == "none") {
    throw Error("-p needs a network: --network none has none");
  }
  s.healthCheckUrl = text(in.getHealthCheck(), "the health check URL", 1024);
  if (!s.healthCheckUrl.empty()) parseHttpCheck(s.healthCheckUrl);
  if (in.getDns().size() > 3) throw Error("at most 3 --dns resolvers");
  for (auto d : in.getDns()) {
    s.dns.push_back(text(d, "a resolver", 15));
    if (!isIpv4Address(s.dns.back()))
      throw Error(fmt::format("--dns {} is not an IPv4 address", s.dns.back()));
  }
  switch (in.getRestart()) {
    case rpc::RestartPolicy::NO:
      s.restart.kind = RestartPolicy::Kind::kNo;
      break;
    case rpc::RestartPolicy::ALWAYS:
      s.restart.kind = RestartPolicy::Kind::kAlways;
      break;
    case rpc::RestartPolicy::ON_FAILURE:
      s.restart.kind = RestartPolicy::Kind::kOnFailure;
      break;
    case rpc::RestartPolicy::UNLESS_STOPPED:
      s.restart.kind = RestartPolicy::Kind::kUnlessStopped;
      break;
    default:
      throw Error("unknown restart policy");
  }
  s.restart.maxRetries = in.getRestartMaxRetries();
  if (s.restart.maxRetries != 0 && s.restart.kind != RestartPolicy::Kind::kOnFailure) {
    throw Error("only --restart on-failure takes a retry count");
  }
  return s;
}

std::vector<PortMapping> decodePorts(capnp::List<rpc::PortMapping>::Reader in) {
  if (in.size() > kMaxPorts) throw Error(fmt::format("more than {} ports", kMaxPorts));
  std::vector<PortMapping> ports;
  for (auto p : in) {
    PortMapping port{p.getHostPort(), p.getGuestPort(), text(p.getProtocol(), "a port's protocol"),
                     text(p.getHostIp(), "a port's host address", 15)};
    checkPort(port);
    for (const auto& other : ports) {
      if (other.hostPort == port.hostPort && other.protocol == port.protocol) {
        throw Error(
            fmt::format("host port {}/{} is published twice", port.hostPort, port.protocol));
      }
    }
    ports.push_back(std::move(port));
  }
  return ports;
}

void encodePorts(const std::vector<PortMapping>& ports,
                 capnp::List<rpc::PortMapping>::Builder out) {
  for (unsigned i = 0; i < out.size(); ++i) {
    out[i].setHostPort(ports[i].hostPort);
    out[i].setGuestPort(ports[i].guestPort);
    out[i].setProtocol(ports[i].protocol);
    out[i].setHostIp(ports[i].hostIp);
  }
}

VolumeMapping parseVolumeMapping(const std::string& textForm) {
  VolumeMapping volume;
  std::string rest = textForm;
  for (const char* mode : {":ro", ":rw"}) {
    if (rest.ends_with(mode)) {
      volume.readOnly = std::string_view(mode) == ":ro";
      rest.resize(rest.size() - 3);
      break;
    }
  }
  auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) {
    throw Error(fmt::format("--map {}: not HOSTDIR:GUESTPATH[:ro]", textForm));
  }
  volume.hostPath = std::filesystem::absolute(rest.substr(0, colon)).lexically_normal().string();
  if (volume.hostPath.size() > 1 && volume.hostPath.ends_with('/')) volume.hostPath.pop_back();
  volume.guestPath = rest.substr(colon + 1);
  try {
    checkVolume(volume);
  } catch (const Error& e) {
    throw Error(fmt::format("--map {}: {}", textForm, e.what()));
  }
  return volume;
}

PortMapping parsePortMapping(const std::string& textForm) {
  auto fail = [&](const std::string& why) -> PortMapping {
    throw Error(
        fmt::format("-p {}: {} (use [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp])", textForm, why));
  };
  PortMapping port;
  std::string rest = textForm;
  auto slash = rest.find('/');
  if (slash != std::string::npos) {
    port.protocol = rest.substr(slash + 1);
    rest.resize(slash);
  }
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    auto colon = rest.find(':', start);
    parts.push_back(rest.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (parts.size() == 3) {
    port.hostIp = parts[0];
    parts.erase(parts.begin());
  }
  if (parts.size() != 2) return fail("not HOSTPORT:GUESTPORT");
  auto number = [&](const std::string& s, const char* what) -> uint16_t {
    if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(s) == 0 || std::stoul(s) > 65535) {
      fail(fmt::format("{} '{}' is not a port number", what, s));
    }
    return static_cast<uint16_t>(std::stoul(s));
  };
  port.hostPort = number(parts[0], "host port");
  port.guestPort = number(parts[1], "guest port");
  try {
    checkPort(port);
  } catch (const Error& e) {
    fail(e.what());
  }
  return port;
}

HttpCheck parseHttpCheck(const std::string& url) {
  auto fail = [&](const std::string& why) -> HttpCheck {
    throw Error(fmt::format("--health-check {}: {} (use http://[HOST]:PORT/PATH)", url, why));
  };
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) return fail("not an http:// URL");
  std::string rest = url.substr(kScheme.size());
  HttpCheck check;
  auto slash = rest.find('/');
  if (slash != std::string::npos) {
    check.path = rest.substr(slash);
    rest.resize(slash);
  }
  if (check.path.find_first_of(" \r\n") != std::string::npos) return fail("a space in the path");
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) return fail("no port");
  if (colon > 0) check.host = rest.substr(0, colon);
  if (!isIpv4Address(check.host))
    return fail(fmt::format("'{}' is not an IPv4 address", check.host));
  auto port = rest.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) == 0 ||
      std::stoul(port) > 65535) {
    return fail(fmt::format("'{}' is not a port", port));
  }
  check.port = static_cast<uint16_t>(std::stoul(port));
  return check;
}

std::string toString(const PortMapping& p) {
  return fmt::format("{}{}:{}/{}", p.hostIp.empty() ? "" : p.hostIp + ":", p.hostPort, p.guestPort,
                     p.protocol);
}

void encodeVolumes(const std::vector<VolumeMapping>& volumes,
                   capnp::List<rpc::Volume>::Builder out) {
  for (unsigned i = 0; i < out.size(); ++i) {
    out[i].setHostPath(volumes[i].hostPath);
    out[i].setGuestPath(volumes[i].guestPath);
    out[i].setReadOnly(volumes[i].readOnly);
  }
}

void encodeVmSpec(const VmSpec& s, rpc::VmSpec::Builder out) {
  encodeVolumes(s.volumes, out.initVolumes(static_cast<unsigned>(s.volumes.size())));
  out.setName(s.name);
  out.setImage(s.image);
  auto command = out.initCommand(static_cast<unsigned>(s.command.size()));
  for (unsigned i = 0; i < command.size(); ++i) command.set(i, s.command[i]);
  auto env = out.initEnv(static_cast<unsigned>(s.env.size()));
  for (unsigned i = 0; i < env.size(); ++i) {
    auto eq = s.env[i].find('=');
    env[i].setKey(s.env[i].substr(0, eq));
    env[i].setValue(eq == std::string::npos ? "" : s.env[i].substr(eq + 1));
  }
  out.setWorkdir(s.workdir);
  out.setUser(s.user);
  out.setPrivileged(s.privileged);
  out.setCpus(static_cast<uint8_t>(s.cpus));
  out.setMemoryMib(s.memoryMib);
  out.setRootfsSizeMib(s.rootfsSizeMib);
  out.setAccel(s.accel == "kvm"   ? rpc::Accel::KVM
               : s.accel == "tcg" ? rpc::Accel::TCG
                                  : rpc::Accel::AUTO);
  out.setHealthCmd(s.healthCmd);
  out.setNetwork(s.network == "bridged"    ? rpc::NetworkMode::BRIDGED
                 : s.network == "rootless" ? rpc::NetworkMode::ROOTLESS
                 : s.network == "none"     ? rpc::NetworkMode::NONE
                                           : rpc::NetworkMode::AUTO);
  encodePorts(s.ports, out.initPorts(static_cast<unsigned>(s.ports.size())));
  out.setHealthCheck(s.healthCheckUrl);
  auto dns = out.initDns(static_cast<unsigned>(s.dns.size()));
  for (unsigned i = 0; i < dns.size(); ++i) dns.set(i, s.dns[i]);
  static_assert(static_cast<uint16_t>(rpc::RestartPolicy::UNLESS_STOPPED) ==
                    static_cast<uint16_t>(RestartPolicy::Kind::kUnlessStopped),
                "the wire's and the spec's restart policies are listed in the same order");
  out.setRestart(static_cast<rpc::RestartPolicy>(static_cast<uint16_t>(s.restart.kind)));
  out.setRestartMaxRetries(s.restart.maxRetries);
}

void writeVmSpecFile(const VmSpec& spec, const std::string& path) {
  capnp::MallocMessageBuilder message;
  encodeVmSpec(spec, message.initRoot<rpc::VmSpec>());
  UniqueFd fd(static_cast<int>(
      checkSys(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600),
               "create {}", path)));
  capnp::writeMessageToFd(fd.get(), message);
  checkSys(::fsync(fd.get()), "fsync {}", path);
}

VmSpec readVmSpecFile(const std::string& path) {
  UniqueFd fd(static_cast<int>(
      checkSys(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW), "open {}", path)));
  return readVmSpec(fd.get(), path);
}

VmSpec readVmSpec(int fd, const std::string& what) {
  try {
    capnp::ReaderOptions limits;
    limits.traversalLimitInWords = 1 << 20;
    capnp::StreamFdMessageReader reader(fd, limits);
    return decodeVmSpec(reader.getRoot<rpc::VmSpec>());
  } catch (const kj::Exception& e) {
    throw Error(fmt::format("read {}: {}", what, e.getDescription().cStr()));
  }
}

}  // namespace fcvm::ipc

namespace fcvm::ipc {

ExecSpec decodeExecSpec(rpc::ExecSpec::Reader in) {
  ExecSpec s;
  s.inContainer = in.getInContainer();
  s.command = texts(in.getCommand(), "command arguments");
  if (s.command.empty()) throw Error("no command given");
  s.env = texts(in.getEnv(), "environment variables");
  for (const auto& e : s.env) {
    if (e.find('=') == std::string::npos || e[0] == '=') {
      throw Error(fmt::format("environment entry '{}' is not NAME=VALUE", e));
    }
  }
  s.tty = in.getTty();
  s.rows = in.getRows();
  s.cols = in.getCols();
  s.stdin = in.getStdin();
  return s;
}

}  // namespace fcvm::ipc
