// libFuzzer target: what fcvm-netd decodes before it changes the host's networking. The first
// input byte picks the decoder and the VM's address slot:
//   even: the rest is a createNetwork request (a Cap'n Proto message, as netd's RPC reads it);
//   odd:  the rest is a network record (netd's JSON file under <data dir>/netd/).
// A refusal is an fcvm::Error, a JSON or a Cap'n Proto exception. Anything else escaping, a crash,
// or an accepted input whose plan could carry text into iptables-restore input (a NUL, a space or
// a newline in a field, a line that is not a rule) is a finding; an accepted record must also
// survive being written and read back unchanged.
//
// `netd_request_fuzz -write_seeds=DIR` writes a seed corpus of valid and nearly valid inputs.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "netd/network_plan.h"
#include "netd/network_records.h"
#include "netd/request_decoder.h"
#include "tests/support/fuzz_seeds.h"

namespace {

using fcvm::netd::NetworkPlan;
using fcvm::netd::NetworkRecord;
using fcvm::netd::NetworkRequest;

// netd's own reader limits (netd_daemon.cc).
constexpr uint64_t kMaxMessageWords = 64 * 1024;
constexpr int kNestingLimit = 16;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "accepted input breaks a guarantee: %s\n", what);
    std::abort();
  }
}

bool onlyOf(std::string_view text, std::string_view alphabet) {
  return text.find_first_not_of(alphabet) == std::string_view::npos;
}

constexpr std::string_view kDigitsAndDots = "0123456789.";

void checkRequest(const NetworkRequest& r) {
  check(r.vmId.size() == 16 && onlyOf(r.vmId, "0123456789abcdef"), "vm id");
  check(r.instance.size() == 4 && onlyOf(r.instance, "0123456789abcdef"), "instance tag");
  check(r.ports.size() <= 64, "port count");
  for (const auto& p : r.ports) {
    check(p.hostPort != 0 && p.guestPort != 0, "port number");
    check(p.protocol == "tcp" || p.protocol == "udp", "protocol");
    check(p.hostIp.size() <= 15 && onlyOf(p.hostIp, kDigitsAndDots), "host address");
  }
  check(r.dns.size() <= 3, "resolver count");
  for (const auto& d : r.dns) check(!d.empty() && onlyOf(d, kDigitsAndDots), "resolver");
}

// iptables-restore input: table headers, chain declarations, rules and COMMIT, in printable
// ASCII; each rule's words are of the characters rules are written with.
void checkRules(const std::string& rules) {
  std::istringstream lines(rules);
  for (std::string line; std::getline(lines, line);) {
    check(line == "*nat" || line == "*filter" || line == "COMMIT" || line.starts_with(":") ||
              line.starts_with("-A ") || line.starts_with("-I "),
          "a line that is not a rule");
    check(onlyOf(line, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .:/,-_[]*"),
          "a character no rule is written with");
    check(line.find("  ") == std::string::npos, "an empty word");
  }
  check(!rules.empty() && rules.back() == '\n', "unterminated rules");
}

void checkPlan(const NetworkPlan& p) {
  for (const auto* name : {&p.hostVeth, &p.nsVeth, &p.tap}) {
    check(!name->empty() && name->size() <= 15, "interface name length (IFNAMSIZ)");
  }
  check(p.netns == "fcvm-" + p.vmId, "namespace name");
  check(onlyOf(p.resolver, kDigitsAndDots), "resolver");
  check(p.hostChains().size() == 4, "chains");
  checkRules(p.hostRules());
  checkRules(p.namespaceRules());
}

void fuzzRequest(uint32_t slot, const uint8_t* data, size_t size) {
  // Word-aligned, as netd's stream reader hands it to capnp.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  std::memcpy(words.begin(), data, words.size() * sizeof(capnp::word));
  NetworkRequest request;
  try {
    capnp::FlatArrayMessageReader reader(words,
                                         capnp::ReaderOptions{kMaxMessageWords, kNestingLimit});
    request = fcvm::netd::decodeNetworkRequest(reader.getRoot<fcvm::rpc::NetworkRequest>());
  } catch (const fcvm::Error&) {
    return;
  } catch (const kj::Exception&) {
    return;
  }
  checkRequest(request);
  request.instance = "0a1b";  // what netd does next: its own tag
  NetworkPlan plan;
  try {
    plan = fcvm::netd::planNetwork(request, slot, "127.0.0.53");
  } catch (const fcvm::Error&) {
    check(slot >= fcvm::netd::kSlots, "a decoded request that does not plan");
    return;
  }
  checkPlan(plan);
}

void fuzzRecord(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  NetworkRecord record;
  try {
    record = fcvm::netd::parseNetworkRecord(text);
  } catch (const fcvm::Error&) {
    return;
  } catch (const nlohmann::json::exception&) {
    return;
  }
  checkRequest(record.request);
  check(record.slot < fcvm::netd::kSlots, "slot");
  check(onlyOf(record.hostResolver, kDigitsAndDots), "host resolver");
  checkPlan(record.plan());
  auto again = fcvm::netd::parseNetworkRecord(fcvm::netd::formatNetworkRecord(record));
  check(fcvm::netd::formatNetworkRecord(again) == fcvm::netd::formatNetworkRecord(record),
        "a record that does not read back as written");
}

std::string requestBytes(const std::string& vmId, const std::vector<fcvm::ipc::PortMapping>& ports,
                         const std::vector<std::string>& dns) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<fcvm::rpc::NetworkRequest>();
  request.setVmId(capnp::Text::Reader(vmId.data(), vmId.size()));
  auto list = request.initPorts(static_cast<unsigned>(ports.size()));
  for (unsigned i = 0; i < ports.size(); ++i) {
    list[i].setHostPort(ports[i].hostPort);
    list[i].setGuestPort(ports[i].guestPort);
    list[i].setProtocol(ports[i].protocol);
    list[i].setHostIp(capnp::Text::Reader(ports[i].hostIp.data(), ports[i].hostIp.size()));
  }
  auto resolvers = request.initDns(static_cast<unsigned>(dns.size()));
  for (unsigned i = 0; i < dns.size(); ++i) {
    resolvers.set(i, capnp::Text::Reader(dns[i].data(), dns[i].size()));
  }
  auto flat = capnp::messageToFlatArray(message);
  auto bytes = flat.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

void writeSeeds(const std::string& dir) {
  const std::string id = "0123456789abcdef";
  std::vector<std::string> seeds = {
      requestBytes(id, {}, {}),
      requestBytes(id, {{8080, 80, "tcp", ""}, {5353, 53, "udp", "127.0.0.1"}}, {"192.0.2.53"}),
      requestBytes(id, {{1, 65535, "tcp", "10.0.0.1"}}, {"127.0.0.53", "192.0.2.1", "192.0.2.2"}),
      // Nearly valid: a NUL and a newline after an address, a bad id, a space.
      requestBytes(id, {{80, 80, "tcp", std::string("1.2.3.4\0\n-F", 11)}}, {}),
      requestBytes(id, {}, {std::string("1.1.1.1\0\nCOMMIT", 15)}),
      requestBytes("0123456789ABCDEF", {}, {}),
      requestBytes(id, {{80, 80, "tcp ", ""}}, {}),
  };
  std::vector<std::string> records = {
      R"({"format":1,"vm_id":"0123456789abcdef","instance":"0a1b","slot":7,"ports":[],)"
      R"("dns":[],"host_resolver":"127.0.0.53"})",
      R"({"format":1,"vm_id":"0123456789abcdef","instance":"0a1b","slot":16383,"ports":[)"
      R"({"host_port":8080,"guest_port":80,"protocol":"tcp","host_ip":"127.0.0.1"}],)"
      R"("dns":["192.0.2.53"],"host_resolver":""})",
      R"({"format":1,"vm_id":"0123456789abcdef","instance":"0a1b","slot":16384,"ports":[],)"
      R"("dns":[],"host_resolver":"1.1.1.1\u0000 x"})",
  };
  fcvm::testing::SeedWriter corpus(dir);
  for (const auto& seed : seeds) {
    for (const uint8_t selector : {uint8_t{0}, uint8_t{254}}) corpus.add(selector, seed);
  }
  for (const auto& record : records) corpus.add(1, record);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  fcvm::testing::writeSeedsIfAsked(*argc, *argv, writeSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  if (selector & 1) {
    fuzzRecord(data + 1, size - 1);
  } else {
    // Slots from the first to past the last of the pool.
    const uint32_t slot = (selector >> 1) * 130u;
    fuzzRequest(slot, data + 1, size - 1);
  }
  return 0;
}
