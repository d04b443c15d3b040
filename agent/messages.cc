#include "agent/messages.h"

#include <kj/debug.h>

#include <cstring>

#include "base/ids.h"
#include "base/ipv4_address.h"
#include "ipc/agent.capnp.h"

namespace fcvm::agent {
namespace {

// ---- decoding: every field is copied out and checked here -------------------------------------

std::string text(capnp::Text::Reader t, const char* field) {
  KJ_REQUIRE(t.size() <= wire::MAX_TEXT_BYTES, "agent frame: text field too long", field, t.size());
  std::string_view view(t.cStr(), t.size());
  KJ_REQUIRE(view.find('\0') == std::string_view::npos, "agent frame: NUL in text field", field);
  KJ_REQUIRE(isValidUtf8(view), "agent frame: text field is not valid UTF-8", field);
  return std::string(view);
}

std::string data(capnp::Data::Reader d, const char* field) {
  KJ_REQUIRE(d.size() <= wire::MAX_DATA_BYTES, "agent frame: data field too long", field, d.size());
  return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}

std::vector<std::string> textList(capnp::List<capnp::Text>::Reader list, const char* field) {
  KJ_REQUIRE(list.size() <= wire::MAX_LIST_ITEMS, "agent frame: list too long", field, list.size());
  std::vector<std::string> out;
  out.reserve(list.size());
  for (auto t : list) out.push_back(text(t, field));
  return out;
}

std::vector<VolumeSpec> decodeVolumes(capnp::List<wire::Volume>::Reader volumes) {
  KJ_REQUIRE(volumes.size() <= wire::MAX_LIST_ITEMS, "agent frame: too many volumes",
             volumes.size());
  std::vector<VolumeSpec> out;
  for (auto v : volumes) {
    KJ_REQUIRE(v.getPort() <= 1, "agent frame: volume port not 0 or 1", v.getPort());
    out.push_back(VolumeSpec{text(v.getHostTag(), "volume.hostTag"),
                             text(v.getGuestPath(), "volume.guestPath"), v.getReadOnly(),
                             v.getPort()});
  }
  return out;
}

RunPlan decodeRunPlan(wire::RunPlan::Reader r) {
  RunPlan plan;
  plan.image = text(r.getImage(), "runPlan.image");
  plan.command = textList(r.getCommand(), "runPlan.command");
  plan.env = textList(r.getEnv(), "runPlan.env");
  plan.user = text(r.getUser(), "runPlan.user");
  plan.workdir = text(r.getWorkdir(), "runPlan.workdir");
  plan.privileged = r.getPrivileged();
  plan.volumes = decodeVolumes(r.getVolumes());
  switch (r.getNetwork()) {
    case wire::NetworkMode::NONE:
      plan.network = NetworkMode::kNone;
      break;
    case wire::NetworkMode::HOST:
      plan.network = NetworkMode::kHost;
      break;
    default:
      KJ_FAIL_REQUIRE("agent frame: unknown network mode", static_cast<int>(r.getNetwork()));
  }
  plan.clockRealtimeNs = r.getClockRealtimeNs();
  plan.hostname = text(r.getHostname(), "runPlan.hostname");
  if (r.getHasGuestNetwork()) {
    auto n = r.getGuestNetwork();
    GuestNetwork network;
    network.address = text(n.getAddress(), "guestNetwork.address");
    network.prefixLength = n.getPrefixLength();
    network.gateway = text(n.getGateway(), "guestNetwork.gateway");
    KJ_REQUIRE(isIpv4Address(network.address) && isIpv4Address(network.gateway),
               "agent frame: guest network addresses are not IPv4");
    KJ_REQUIRE(network.prefixLength >= 1 && network.prefixLength <= 30,
               "agent frame: guest network prefix out of range", network.prefixLength);
    KJ_REQUIRE(n.getNameservers().size() <= 3, "agent frame: more than 3 nameservers");
    for (auto ns : n.getNameservers()) {
      network.nameservers.push_back(text(ns, "guestNetwork.nameservers"));
      KJ_REQUIRE(isIpv4Address(network.nameservers.back()), "agent frame: nameserver is not IPv4");
    }
    plan.guestNetwork = std::move(network);
  }
  KJ_REQUIRE(plan.hostname.empty() || isValidName(plan.hostname), "agent frame: invalid hostname",
             plan.hostname);
  return plan;
}

Resume decodeResume(wire::Resume::Reader r) {
  Resume resume;
  resume.realtimeNs = r.getRealtimeNs();
  resume.hostname = text(r.getHostname(), "resume.hostname");
  KJ_REQUIRE(isValidName(resume.hostname), "agent frame: invalid hostname", resume.hostname);
  resume.machineId = text(r.getMachineId(), "resume.machineId");
  KJ_REQUIRE(resume.machineId.size() == wire::MACHINE_ID_BYTES &&
                 resume.machineId.find_first_not_of("0123456789abcdef") == std::string::npos,
             "agent frame: machine id is not 32 lowercase hex digits");
  auto entropy = r.getEntropy();
  KJ_REQUIRE(entropy.size() >= 32 && entropy.size() <= wire::MAX_ENTROPY_BYTES,
             "agent frame: entropy outside 32..512 bytes", entropy.size());
  resume.entropy = std::string(reinterpret_cast<const char*>(entropy.begin()), entropy.size());
  resume.volumes = decodeVolumes(r.getVolumes());
  return resume;
}

Output decodeOutput(wire::Output::Reader r) {
  Output out;
  out.streamId = r.getStreamId();
  switch (r.getKind()) {
    case wire::OutputKind::STDOUT:
      out.kind = OutputKind::kStdout;
      break;
    case wire::OutputKind::STDERR:
      out.kind = OutputKind::kStderr;
      break;
    default:
      KJ_FAIL_REQUIRE("agent frame: unknown output kind", static_cast<int>(r.getKind()));
  }
  out.data = data(r.getData(), "output.data");
  KJ_REQUIRE(!out.data.empty(), "agent frame: empty output data");
  return out;
}

ExecRequest decodeExecRequest(wire::ExecRequest::Reader r) {
  ExecRequest e;
  e.id = r.getId();
  e.inContainer = r.getInContainer();
  e.command = textList(r.getCommand(), "execRequest.command");
  KJ_REQUIRE(!e.command.empty(), "agent frame: empty exec command");
  e.env = textList(r.getEnv(), "execRequest.env");
  e.tty = r.getTty();
  e.rows = r.getRows();
  e.cols = r.getCols();
  e.stdin = r.getStdin();
  return e;
}

// ---- encoding: the same bounds, so a sender never builds a frame its peer rejects --------------

void checkText(const std::string& s, const char* field) {
  KJ_REQUIRE(s.size() <= wire::MAX_TEXT_BYTES, "text field too long to send", field, s.size());
  KJ_REQUIRE(s.find('\0') == std::string::npos, "NUL in text field", field);
  KJ_REQUIRE(isValidUtf8(s), "text field is not valid UTF-8", field);
}

capnp::Text::Reader asText(const std::string& s, const char* field) {
  checkText(s, field);
  return capnp::Text::Reader(s.data(), s.size());
}

capnp::Data::Reader asData(const std::string& s, const char* field) {
  KJ_REQUIRE(s.size() <= wire::MAX_DATA_BYTES, "data field too long to send", field, s.size());
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

template <typename InitList>
void setTextList(InitList init, const std::vector<std::string>& items, const char* field) {
  KJ_REQUIRE(items.size() <= wire::MAX_LIST_ITEMS, "list too long to send", field, items.size());
  auto list = init(items.size());
  for (size_t i = 0; i < items.size(); ++i) list.set(i, asText(items[i], field));
}

template <typename InitList>
void setVolumes(InitList init, const std::vector<VolumeSpec>& volumes) {
  KJ_REQUIRE(volumes.size() <= wire::MAX_LIST_ITEMS, "too many volumes to send");
  auto out = init(volumes.size());
  for (size_t i = 0; i < volumes.size(); ++i) {
    KJ_REQUIRE(volumes[i].port <= 1, "volume port not 0 or 1");
    out[i].setHostTag(asText(volumes[i].hostTag, "volume.hostTag"));
    out[i].setGuestPath(asText(volumes[i].guestPath, "volume.guestPath"));
    out[i].setReadOnly(volumes[i].readOnly);
    out[i].setPort(volumes[i].port);
  }
}

struct Encoder {
  wire::Message::Builder m;

  void operator()(const Hello& h) {
    auto b = m.initHello();
    b.setProtocolVersion(h.protocolVersion);
    b.setAgentVersion(asText(h.agentVersion, "hello.agentVersion"));
  }
  void operator()(const RunPlan& p) {
    auto b = m.initRunPlan();
    b.setImage(asText(p.image, "runPlan.image"));
    setTextList([&](size_t n) { return b.initCommand(n); }, p.command, "runPlan.command");
    setTextList([&](size_t n) { return b.initEnv(n); }, p.env, "runPlan.env");
    b.setUser(asText(p.user, "runPlan.user"));
    b.setWorkdir(asText(p.workdir, "runPlan.workdir"));
    b.setPrivileged(p.privileged);
    setVolumes([&](size_t n) { return b.initVolumes(n); }, p.volumes);
    b.setNetwork(p.network == NetworkMode::kHost ? wire::NetworkMode::HOST
                                                 : wire::NetworkMode::NONE);
    b.setClockRealtimeNs(p.clockRealtimeNs);
    KJ_REQUIRE(p.hostname.empty() || isValidName(p.hostname), "invalid hostname to send");
    b.setHostname(asText(p.hostname, "runPlan.hostname"));
    if (p.guestNetwork) {
      const auto& g = *p.guestNetwork;
      KJ_REQUIRE(isIpv4Address(g.address) && isIpv4Address(g.gateway) && g.nameservers.size() <= 3,
                 "invalid guest network to send");
      b.setHasGuestNetwork(true);
      auto n = b.initGuestNetwork();
      n.setAddress(asText(g.address, "guestNetwork.address"));
      n.setPrefixLength(g.prefixLength);
      n.setGateway(asText(g.gateway, "guestNetwork.gateway"));
      auto list = n.initNameservers(static_cast<unsigned>(g.nameservers.size()));
      for (unsigned i = 0; i < list.size(); ++i) {
        KJ_REQUIRE(isIpv4Address(g.nameservers[i]), "invalid nameserver to send");
        list.set(i, asText(g.nameservers[i], "guestNetwork.nameservers"));
      }
    }
  }
  void operator()(const ContainerStarted&) { m.setContainerStarted(); }
  void operator()(const Output& o) {
    KJ_REQUIRE(!o.data.empty(), "empty output data");
    auto b = m.initOutput();
    b.setStreamId(o.streamId);
    b.setKind(o.kind == OutputKind::kStderr ? wire::OutputKind::STDERR : wire::OutputKind::STDOUT);
    b.setData(asData(o.data, "output.data"));
  }
  void operator()(const Exit& e) {
    auto b = m.initExit();
    b.setStreamId(e.streamId);
    b.setCode(e.code);
    b.setSignal(e.signal);
  }
  void operator()(const ExecRequest& e) {
    KJ_REQUIRE(!e.command.empty(), "empty exec command");
    auto b = m.initExecRequest();
    b.setId(e.id);
    b.setInContainer(e.inContainer);
    setTextList([&](size_t n) { return b.initCommand(n); }, e.command, "execRequest.command");
    setTextList([&](size_t n) { return b.initEnv(n); }, e.env, "execRequest.env");
    b.setTty(e.tty);
    b.setRows(e.rows);
    b.setCols(e.cols);
    b.setStdin(e.stdin);
  }
  void operator()(const Stdin& s) {
    auto b = m.initStdin();
    b.setStreamId(s.streamId);
    b.setData(asData(s.data, "stdin.data"));
    b.setEof(s.eof);
  }
  void operator()(const WindowSize& w) {
    auto b = m.initWindowSize();
    b.setStreamId(w.streamId);
    b.setRows(w.rows);
    b.setCols(w.cols);
  }
  void operator()(const SetClock& c) { m.initSetClock().setRealtimeNs(c.realtimeNs); }
  void operator()(const PowerOff&) { m.setPowerOff(); }
  void operator()(const Log& l) { m.initLog().setLine(asText(l.line, "log.line")); }
  void operator()(const StdinAck& a) {
    auto b = m.initStdinAck();
    b.setStreamId(a.streamId);
    b.setBytes(a.bytes);
  }
  void operator()(const Freeze&) { m.setFreeze(); }
  void operator()(const Frozen& f) { m.initFrozen().setError(asText(f.error, "frozen.error")); }
  void operator()(const Thaw& t) { m.initThaw().setRealtimeNs(t.realtimeNs); }
  void operator()(const Resume& r) {
    KJ_REQUIRE(isValidName(r.hostname), "invalid hostname to send");
    KJ_REQUIRE(r.machineId.size() == wire::MACHINE_ID_BYTES, "machine id of the wrong length");
    KJ_REQUIRE(r.entropy.size() >= 32 && r.entropy.size() <= wire::MAX_ENTROPY_BYTES,
               "entropy outside 32..512 bytes");
    auto b = m.initResume();
    b.setRealtimeNs(r.realtimeNs);
    b.setHostname(asText(r.hostname, "resume.hostname"));
    b.setMachineId(asText(r.machineId, "resume.machineId"));
    b.setEntropy(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(r.entropy.data()), r.entropy.size()));
    setVolumes([&](size_t n) { return b.initVolumes(n); }, r.volumes);
  }
};

}  // namespace

std::string volumePortName(const std::string& tag, unsigned port) {
  return "fcvm.volume." + tag + "." + std::to_string(port);
}

const char* messageName(const Message& message) {
  static constexpr const char* kNames[] = {
      "hello",      "runPlan",  "containerStarted", "output", "exit",     "execRequest", "stdin",
      "windowSize", "setClock", "powerOff",         "log",    "stdinAck", "freeze",      "frozen",
      "thaw",       "resume"};
  static_assert(std::size(kNames) == std::variant_size_v<Message>);
  return kNames[message.index()];
}

kj::Own<capnp::MallocMessageBuilder> encode(const Message& message) {
  auto builder = kj::heap<capnp::MallocMessageBuilder>();
  std::visit(Encoder{builder->initRoot<wire::Message>()}, message);
  return builder;
}

Message decode(capnp::MessageReader& frame) {
  auto m = frame.getRoot<wire::Message>();
  switch (m.which()) {
    case wire::Message::HELLO: {
      auto h = m.getHello();
      return Hello{h.getProtocolVersion(), text(h.getAgentVersion(), "hello.agentVersion")};
    }
    case wire::Message::RUN_PLAN:
      return decodeRunPlan(m.getRunPlan());
    case wire::Message::CONTAINER_STARTED:
      return ContainerStarted{};
    case wire::Message::OUTPUT:
      return decodeOutput(m.getOutput());
    case wire::Message::EXIT: {
      auto e = m.getExit();
      return Exit{e.getStreamId(), e.getCode(), e.getSignal()};
    }
    case wire::Message::EXEC_REQUEST:
      return decodeExecRequest(m.getExecRequest());
    case wire::Message::STDIN: {
      auto s = m.getStdin();
      return Stdin{s.getStreamId(), data(s.getData(), "stdin.data"), s.getEof()};
    }
    case wire::Message::WINDOW_SIZE: {
      auto w = m.getWindowSize();
      return WindowSize{w.getStreamId(), w.getRows(), w.getCols()};
    }
    case wire::Message::SET_CLOCK:
      return SetClock{m.getSetClock().getRealtimeNs()};
    case wire::Message::POWER_OFF:
      return PowerOff{};
    case wire::Message::LOG:
      return Log{text(m.getLog().getLine(), "log.line")};
    case wire::Message::STDIN_ACK: {
      auto a = m.getStdinAck();
      return StdinAck{a.getStreamId(), a.getBytes()};
    }
    case wire::Message::FREEZE:
      return Freeze{};
    case wire::Message::FROZEN:
      return Frozen{text(m.getFrozen().getError(), "frozen.error")};
    case wire::Message::THAW:
      return Thaw{m.getThaw().getRealtimeNs()};
    case wire::Message::RESUME:
      return decodeResume(m.getResume());
  }
  KJ_FAIL_REQUIRE("agent frame: unknown message type", static_cast<int>(m.which()));
}

bool isValidUtf8(std::string_view bytes) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

}  // namespace fcvm::agent
