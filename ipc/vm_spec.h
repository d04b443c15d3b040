// A VM's spec (ipc/common.capnp VmSpec) as the supervisor and the worker use it: decoded from the
// wire once, checked in full, then plain C++.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ipc/common.capnp.h"

namespace fcvm::ipc {

struct PortMapping {
  uint16_t hostPort = 0;
  uint16_t guestPort = 0;
  std::string protocol = "tcp";  // tcp or udp
  std::string hostIp;            // empty: every address of the host

  bool operator==(const PortMapping&) const = default;
};

// A host directory shared into the VM (--map HOST:GUEST[:ro]), served by fuse-pipe.
struct VolumeMapping {
  std::string hostPath;   // absolute, as the user named it (opened by the client, not by path)
  std::string guestPath;  // absolute in the container
  bool readOnly = false;

  bool operator==(const VolumeMapping&) const = default;
};

// When a VM that ended is started again (--restart, podman's flag). A stop or rm by the owner is
// final whatever the policy.
struct RestartPolicy {
  enum class Kind : uint8_t { kNo, kAlways, kOnFailure, kUnlessStopped };
  Kind kind = Kind::kNo;
  uint32_t maxRetries = 0;  // kOnFailure: at most this many restarts in a row; 0: no limit

  bool operator==(const RestartPolicy&) const = default;
};

// `no|always|on-failure[:N]|unless-stopped`. Throws fcvm::Error naming the problem.
RestartPolicy parseRestartPolicy(const std::string& text);
std::string toString(const RestartPolicy& policy);

struct VmSpec {
  std::string name;
  std::string image;
  std::vector<std::string> command;  // empty: the image's default
  std::vector<std::string> env;      // NAME=VALUE
  std::string workdir;
  std::string user;
  bool privileged = false;
  uint32_t cpus = 1;
  uint32_t memoryMib = 256;
  uint32_t rootfsSizeMib = 0;    // 0: the base rootfs's size
  std::string accel = "auto";    // auto|kvm|tcg
  std::string healthCmd;         // run with `sh -c` in the container; empty: none
  std::string network = "auto";  // auto|bridged|rootless|none; the supervisor resolves auto
  std::vector<PortMapping> ports;
  std::vector<VolumeMapping> volumes;
  std::vector<std::string> dns;  // IPv4 resolvers instead of the host's
  std::string healthCheckUrl;    // http://[HOST]:PORT/PATH; empty: none
  RestartPolicy restart;
};

// An HTTP health check's target. HOST defaults to the host's loopback, where a published port of
// the VM answers (bridged or rootless alike).
struct HttpCheck {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string path = "/";
};
// Throws fcvm::Error naming what is wrong with `url`.
HttpCheck parseHttpCheck(const std::string& url);

// `[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]`, as -p takes it. Throws fcvm::Error naming the problem.
PortMapping parsePortMapping(const std::string& text);
// A list of port mappings from the wire, checked (at most 64, each valid, none published twice);
// and to it, into a list already sized.
std::vector<PortMapping> decodePorts(capnp::List<rpc::PortMapping>::Reader ports);
void encodePorts(const std::vector<PortMapping>& ports, capnp::List<rpc::PortMapping>::Builder out);
std::string toString(const PortMapping& port);
// Volumes into a list already sized.
void encodeVolumes(const std::vector<VolumeMapping>& volumes,
                   capnp::List<rpc::Volume>::Builder out);

// `HOST:GUEST[:ro|:rw]`, as --map and -v take it; HOST made absolute against the working
// directory. Throws fcvm::Error naming the problem.
VolumeMapping parseVolumeMapping(const std::string& text);

// Limits a spec must keep (the guest agent refuses larger fields, the state table longer names).
inline constexpr uint32_t kMaxCpus = 16;
inline constexpr uint32_t kMinMemoryMib = 128;
inline constexpr uint32_t kMaxMemoryMib = 65536;
inline constexpr uint32_t kMaxRootfsMib = 1u << 20;  // 1 TiB
// Each volume is a virtio-serial port of its own beside the agent's (QEMU's max_ports).
inline constexpr uint32_t kMaxVolumes = 16;

// Decodes and checks `spec`; throws fcvm::Error naming the first bad field.
VmSpec decodeVmSpec(rpc::VmSpec::Reader spec);
void encodeVmSpec(const VmSpec& spec, rpc::VmSpec::Builder out);

// True for an image named as an archive file (oci-archive:PATH, docker-archive:PATH); the rest
// of the name after the prefix is the path.
bool isArchiveImage(const std::string& image);

// The environment variables a client may pass for the podman that reads its image storage, and
// the check of such a list: known names, at most 16 entries of 4 KiB, no NUL. Throws fcvm::Error.
const std::vector<std::string>& podmanEnvNames();
std::vector<std::string> decodePodmanEnv(capnp::List<capnp::Text>::Reader env);
// The same list as the supervisor hands it to a worker, beside the VM's spec file.
void writePodmanEnvFile(const std::vector<std::string>& env, const std::string& path);
std::vector<std::string> readPodmanEnvFile(const std::string& path);

// The spec file the supervisor hands a worker (a Cap'n Proto message).
void writeVmSpecFile(const VmSpec& spec, const std::string& path);
VmSpec readVmSpecFile(const std::string& path);
// The same from an open file (`what` names it in errors): every field checked as decodeVmSpec does.
VmSpec readVmSpec(int fd, const std::string& what);

}  // namespace fcvm::ipc

namespace fcvm::ipc {

// An exec request (ipc/common.capnp ExecSpec), checked.
struct ExecSpec {
  bool inContainer = false;
  std::vector<std::string> command;
  std::vector<std::string> env;
  bool tty = false;
  uint16_t rows = 0;
  uint16_t cols = 0;
  bool stdin = false;
};

ExecSpec decodeExecSpec(rpc::ExecSpec::Reader spec);

}  // namespace fcvm::ipc
