// A client of QEMU's machine protocol (QMP) over the Unix socket QEMU's monitor chardev connects
// to: JSON objects, one per line. Commands carry an id and are answered in any order; events are
// handed to whoever waits for them. An fd can ride with a command (SCM_RIGHTS) for `getfd`.
// QEMU runs the guest, so what it sends is bounded and parsed defensively: a line over 1 MiB or
// that is not a JSON object ends the client with an error.
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fcvm::worker {

class QmpClient {
 public:
  // `stream` is a Unix socket's (accepted from a Unix listener: a capability stream, so fds can
  // be sent on it).
  explicit QmpClient(kj::Own<kj::AsyncIoStream> stream);
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Reads QEMU's greeting and enters command mode (qmp_capabilities). First, once.
  kj::Promise<void> handshake();

  // Runs `command`; resolves with its "return" value, rejects with QEMU's error text. With
  // `fd` >= 0 the fd goes along with the command (for getfd).
  kj::Promise<nlohmann::json> execute(const std::string& command,
                                      nlohmann::json arguments = nlohmann::json::object(),
                                      int fd = -1);

  // Resolves with the data of the next event `name` whose data `match` accepts. Events that
  // arrive before the call are not seen: call it before the command that causes the event.
  kj::Promise<nlohmann::json> waitForEvent(std::string name,
                                           std::function<bool(const nlohmann::json&)> match);

  // Why the client stopped working, empty while it works.
  const std::string& failure() const { return failure_; }

 private:
  struct EventWaiter {
    std::string name;
    std::function<bool(const nlohmann::json&)> match;
    kj::Own<kj::PromiseFulfiller<nlohmann::json>> fulfiller;
  };

  kj::Promise<nlohmann::json> readGreeting();
  kj::Promise<void> readLoop();
  void dispatch(nlohmann::json message);
  void fail(const std::string& reason);
  kj::Promise<std::string> nextLine();

  kj::Own<kj::AsyncIoStream> stream_;
  std::string buffer_;  // bytes read, not yet a whole line
  uint64_t nextId_ = 1;
  std::map<uint64_t, kj::Own<kj::PromiseFulfiller<nlohmann::json>>> pending_;
  std::vector<EventWaiter> waiters_;
  std::string failure_;
  kj::Promise<void> writes_ = kj::READY_NOW;
  kj::Promise<void> reading_ = nullptr;
};

}  // namespace fcvm::worker
