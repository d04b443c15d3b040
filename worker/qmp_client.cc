#include "worker/qmp_client.h"

#include <spdlog/spdlog.h>

#include "ipc/rpc_error.h"

namespace fcvm::worker {
namespace {

constexpr size_t kMaxLineBytes = 1 << 20;
constexpr size_t kReadChunk = 64 << 10;

kj::Exception qmpError(const std::string& what) {
  return ipc::rpcError(kj::str("QEMU monitor: ", what.c_str()));
}

}  // namespace

QmpClient::QmpClient(kj::Own<kj::AsyncIoStream> stream) : stream_(kj::mv(stream)) {}

QmpClient::~QmpClient() = default;

void QmpClient::fail(const std::string& reason) {
  if (!failure_.empty()) return;
  failure_ = reason;
  for (auto& [id, fulfiller] : pending_) fulfiller->reject(qmpError(reason));
  pending_.clear();
  for (auto& w : waiters_) w.fulfiller->reject(qmpError(reason));
  waiters_.clear();
}

kj::Promise<std::string> QmpClient::nextLine() {
  auto newline = buffer_.find('\n');
  if (newline != std::string::npos) {
    std::string line = buffer_.substr(0, newline);
    buffer_.erase(0, newline + 1);
    return line;
  }
  if (buffer_.size() > kMaxLineBytes) return qmpError("a line longer than 1 MiB");
  auto chunk = kj::heapArray<char>(kReadChunk);
  auto read = stream_->tryRead(chunk.begin(), 1, chunk.size());
  return read.then([this, chunk = kj::mv(chunk)](size_t n) -> kj::Promise<std::string> {
    if (n == 0) return qmpError("QEMU closed the monitor");
    buffer_.append(chunk.begin(), n);
    return nextLine();
  });
}

kj::Promise<void> QmpClient::handshake() {
  return nextLine()
      .then([this](std::string line) {
        auto greeting = nlohmann::json::parse(line, nullptr, false);
        if (!greeting.is_object() || !greeting.contains("QMP")) {
          kj::throwFatalException(qmpError("no QMP greeting"));
        }
        reading_ = readLoop().eagerlyEvaluate(
            [this](kj::Exception&& e) { fail(e.getDescription().cStr()); });
        return execute("qmp_capabilities");
      })
      .ignoreResult();
}

kj::Promise<void> QmpClient::readLoop() {
  return nextLine().then([this](std::string line) {
    auto message = nlohmann::json::parse(line, nullptr, false);
    if (!message.is_object()) {
      kj::throwFatalException(qmpError("a line that is not a JSON object"));
    }
    dispatch(std::move(message));
    return readLoop();
  });
}

void QmpClient::dispatch(nlohmann::json message) {
  if (message.contains("event")) {
    if (!message["event"].is_string()) return;
    auto name = message["event"].get<std::string>();
    auto data = message.value("data", nlohmann::json::object());
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
      if (it->name == name && it->match(data)) {
        it->fulfiller->fulfill(std::move(data));
        waiters_.erase(it);
        return;
      }
    }
    return;
  }
  if (!message.contains("id") || !message["id"].is_number_unsigned()) return;
  auto found = pending_.find(message["id"].get<uint64_t>());
  if (found == pending_.end()) return;
  auto fulfiller = kj::mv(found->second);
  pending_.erase(found);
  if (message.contains("return")) {
    fulfiller->fulfill(std::move(message["return"]));
    return;
  }
  std::string why = "an answer without return or error";
  if (message.contains("error") && message["error"].is_object()) {
    auto& error = message["error"];
    why = error.value("desc", std::string("unknown error"));
  }
  fulfiller->reject(qmpError(why));
}

kj::Promise<nlohmann::json> QmpClient::execute(const std::string& command, nlohmann::json arguments,
                                               int fd) {
  if (!failure_.empty()) return qmpError(failure_);
  uint64_t id = nextId_++;
  nlohmann::json request = {{"execute", command}, {"id", id}};
  if (!arguments.empty()) request["arguments"] = std::move(arguments);
  auto line = kj::heapString(request.dump() + "\n");
  auto reply = kj::newPromiseAndFulfiller<nlohmann::json>();
  pending_[id] = kj::mv(reply.fulfiller);
  writes_ = writes_.then([this, line = kj::mv(line), fd]() mutable {
    auto bytes = line.asBytes();
    kj::Promise<void> write = nullptr;
    auto fds = kj::heapArray<int>({fd});
    if (fd >= 0) {
      write = kj::downcast<kj::AsyncCapabilityStream>(*stream_).writeWithFds(bytes, nullptr, fds);
    } else {
      write = stream_->write(bytes.begin(), bytes.size());
    }
    return write.attach(kj::mv(line), kj::mv(fds));
  });
  writes_ = writes_.catch_([this](kj::Exception&& e) { fail(e.getDescription().cStr()); })
                .eagerlyEvaluate(nullptr);
  return kj::mv(reply.promise);
}

kj::Promise<nlohmann::json> QmpClient::waitForEvent(
    std::string name, std::function<bool(const nlohmann::json&)> match) {
  if (!failure_.empty()) return qmpError(failure_);
  auto event = kj::newPromiseAndFulfiller<nlohmann::json>();
  waiters_.push_back({std::move(name), std::move(match), kj::mv(event.fulfiller)});
  return kj::mv(event.promise);
}

}  // namespace fcvm::worker
