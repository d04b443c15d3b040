// libFuzzer target: the agent channel's byte stream as a hostile guest could write it, read the way
// the host reads it (readMessage: framing bounds, then every field's checks). A refusal is a
// kj::Exception; anything else escaping, a crash, or an accepted message that breaks the
// protocol's guarantees is a finding. The guarantees checked: what decode() accepts, encode()
// accepts too (a receiver never takes a message that its own side could not send), and it decodes
// back to the same message.
//
// `agent_frame_fuzz -write_seeds=DIR` writes a seed corpus of valid frame sequences.
#include <capnp/serialize.h>
#include <kj/async.h>
#include <kj/exception.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "agent/frame_io.h"
#include "agent/messages.h"
#include "tests/support/fuzz_seeds.h"

namespace {

using namespace fcvm::agent;

// The input as a stream that always has its bytes ready, as a socket with everything buffered.
class BufferStream final : public kj::AsyncInputStream {
 public:
  BufferStream(const uint8_t* data, size_t size) : data_(data), left_(size) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    size_t n = std::min(maxBytes, left_);
    std::memcpy(buffer, data_, n);
    data_ += n;
    left_ -= n;
    return n;
  }

 private:
  const uint8_t* data_;
  size_t left_;
};

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "an accepted frame breaks a guarantee: %s\n", what);
    std::abort();
  }
}

std::string frameOf(const Message& message) {
  auto builder = encode(message);
  auto words = capnp::messageToFlatArray(*builder);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

void checkAccepted(const Message& message) {
  std::string frame;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { frame = frameOf(message); })) {
    std::fprintf(stderr, "%s\n", e->getDescription().cStr());
    check(false, "decode() accepted what encode() refuses");
  }
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  BufferStream again(reinterpret_cast<const uint8_t*>(frame.data()), frame.size());
  auto decoded = readMessage(again).wait(ws);
  check(decoded.has_value() && *decoded == message, "a message does not survive a round trip");
}

void writeSeeds(const std::string& dir) {
  std::vector<std::vector<Message>> seeds = {
      {Hello{2, "0.1.0"}},
      {Hello{2, "0.1.0"}, ContainerStarted{}, Output{0, OutputKind::kStdout, "hello\n"},
       Exit{0, 0, 0}},
      {Output{7, OutputKind::kStderr, std::string(300, 'x')}, StdinAck{7, 300}, Exit{7, 137, 9}},
      {Log{"agent: something happened"}, Frozen{""}, Frozen{"cannot freeze /"}},
      {RunPlan{.image = "localhost/busybox:latest",
               .command = {"sh", "-c", "echo hi"},
               .env = {"A=1"},
               .volumes = {{"v0", "/data", true, 1}},
               .hostname = "web"}},
      {Resume{42, "clone-1", std::string(32, 'a'), std::string(64, 'e'), {{"v0", "/d", false, 1}}}},
  };
  fcvm::testing::SeedWriter corpus(dir);
  for (const auto& sequence : seeds) {
    std::string bytes;
    for (const auto& message : sequence) bytes += frameOf(message);
    corpus.add(bytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  fcvm::testing::writeSeedsIfAsked(*argc, *argv, writeSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<Message> accepted;
  {
    kj::EventLoop loop;
    kj::WaitScope ws(loop);
    BufferStream in(data, size);
    // Frame after frame until the stream ends or a frame is refused, as the host's channel does
    // (a refused frame closes it).
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   while (auto message = readMessage(in).wait(ws)) {
                     accepted.push_back(std::move(*message));
                   }
                 })) {
      // A refusal: the expected outcome for most inputs.
    }
  }
  for (const auto& message : accepted) checkAccepted(message);
  return 0;
}
