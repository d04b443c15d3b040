// The host <-> agent messages as plain values, and their codec. Decoding is where the wire is
// checked: a frame that is not one well-formed, in-bounds message of ipc/agent.capnp is rejected
// here with a kj::Exception, so neither side ever acts on a half-valid message. Which messages a
// side may receive, and which stream ids exist, is the receiver's state and checked there.
#pragma once

#include <capnp/message.h>
#include <kj/memory.h>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace fcvm::agent {

inline constexpr uint32_t kContainerStream = 0;

enum class NetworkMode { kNone, kHost };
enum class OutputKind { kStdout, kStderr };

struct Hello {
  uint32_t protocolVersion = 0;
  std::string agentVersion;

  bool operator==(const Hello&) const = default;
};

struct VolumeSpec {
  std::string hostTag;
  std::string guestPath;
  bool readOnly = false;
  uint8_t port = 0;  // which of the volume's two ports its server is on (wire::Volume)

  bool operator==(const VolumeSpec&) const = default;
};

// The name QEMU gives port `port` (0 or 1) of volume `tag` (wire::Volume).
std::string volumePortName(const std::string& tag, unsigned port);

struct GuestNetwork {
  std::string address;  // IPv4 dotted quad
  uint8_t prefixLength = 24;
  std::string gateway;
  std::vector<std::string> nameservers;

  bool operator==(const GuestNetwork&) const = default;
};

struct RunPlan {
  std::string image;
  std::vector<std::string> command;
  std::vector<std::string> env;
  std::string user;
  std::string workdir;
  bool privileged = false;
  std::vector<VolumeSpec> volumes;
  NetworkMode network = NetworkMode::kNone;
  int64_t clockRealtimeNs = 0;
  std::string hostname;                      // a valid hostname, or empty
  std::optional<GuestNetwork> guestNetwork;  // with NetworkMode::kHost: eth0's configuration

  bool operator==(const RunPlan&) const = default;
};

struct ContainerStarted {
  bool operator==(const ContainerStarted&) const = default;
};

struct Output {
  uint32_t streamId = 0;
  OutputKind kind = OutputKind::kStdout;
  std::string data;

  bool operator==(const Output&) const = default;
};

struct Exit {
  uint32_t streamId = 0;
  int32_t code = 0;
  int32_t signal = 0;

  bool operator==(const Exit&) const = default;
};

struct ExecRequest {
  uint32_t id = 0;
  bool inContainer = false;
  std::vector<std::string> command;
  std::vector<std::string> env;
  bool tty = false;
  uint16_t rows = 0;
  uint16_t cols = 0;
  bool stdin = false;

  bool operator==(const ExecRequest&) const = default;
};

struct Stdin {
  uint32_t streamId = 0;
  std::string data;
  bool eof = false;

  bool operator==(const Stdin&) const = default;
};

struct WindowSize {
  uint32_t streamId = 0;
  uint16_t rows = 0;
  uint16_t cols = 0;

  bool operator==(const WindowSize&) const = default;
};

struct SetClock {
  int64_t realtimeNs = 0;

  bool operator==(const SetClock&) const = default;
};

struct PowerOff {
  bool operator==(const PowerOff&) const = default;
};

struct StdinAck {
  uint32_t streamId = 0;
  uint32_t bytes = 0;

  bool operator==(const StdinAck&) const = default;
};

struct Log {
  std::string line;

  bool operator==(const Log&) const = default;
};

struct Freeze {
  bool operator==(const Freeze&) const = default;
};

struct Frozen {
  std::string error;  // empty: frozen

  bool operator==(const Frozen&) const = default;
};

struct Thaw {
  int64_t realtimeNs = 0;

  bool operator==(const Thaw&) const = default;
};

// A clone's identity, given when it is restored from a snapshot.
struct Resume {
  int64_t realtimeNs = 0;
  std::string hostname;             // a valid hostname
  std::string machineId;            // 32 lowercase hex digits
  std::string entropy;              // 32..512 bytes
  std::vector<VolumeSpec> volumes;  // the run plan's, each on its other port now

  bool operator==(const Resume&) const = default;
};

using Message =
    std::variant<Hello, RunPlan, ContainerStarted, Output, Exit, ExecRequest, Stdin, WindowSize,
                 SetClock, PowerOff, Log, StdinAck, Freeze, Frozen, Thaw, Resume>;

// The message's union member name ("output", "execRequest", ...), for errors and logs.
const char* messageName(const Message& message);

// Builds the frame for `message`. Throws kj::Exception if the message breaks the bounds the
// receiver enforces (text or data too long, too many items): a sender never produces a frame
// its peer must reject.
kj::Own<capnp::MallocMessageBuilder> encode(const Message& message);

// Copies out and checks one received frame: a known union member; every Text at most
// maxTextBytes, valid UTF-8 without NUL; Data within maxDataBytes (Output data not empty);
// lists within maxListItems; enums known. Throws kj::Exception (FAILED) otherwise.
Message decode(capnp::MessageReader& frame);

// True if `bytes` is well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
bool isValidUtf8(std::string_view bytes);

}  // namespace fcvm::agent
