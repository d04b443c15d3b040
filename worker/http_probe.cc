#include "worker/http_probe.h"

#include <spdlog/spdlog.h>

namespace fcvm::worker {
namespace {

// The status line is all that is read: the rest of what the guest sends is not looked at.
constexpr size_t kMaxStatusLine = 1024;

}  // namespace

int httpStatus(std::string_view line) {
  if (!line.starts_with("HTTP/1.") || line.size() < 12 || line[8] != ' ') return 0;
  auto code = line.substr(9, 3);
  if (code.find_first_not_of("0123456789") != std::string_view::npos) return 0;
  return (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
}

kj::Promise<bool> httpProbe(kj::AsyncIoContext& io, const ipc::HttpCheck& check,
                            kj::Duration timeout) {
  auto request = kj::str("GET ", check.path.c_str(), " HTTP/1.0\r\nHost: ", check.host.c_str(),
                         "\r\nUser-Agent: fcvm-health\r\n\r\n");
  auto buffer = kj::heapArray<char>(kMaxStatusLine);
  auto& network = io.provider->getNetwork();
  auto probe =
      network.parseAddress(check.host.c_str(), check.port)
          .then([](kj::Own<kj::NetworkAddress> address) {
            return address->connect().attach(kj::mv(address));
          })
          .then([request = kj::mv(request)](kj::Own<kj::AsyncIoStream> stream) mutable {
            auto& s = *stream;
            return s.write(request.begin(), request.size())
                .attach(kj::mv(request))
                .then([stream = kj::mv(stream)]() mutable { return kj::mv(stream); });
          })
          .then([&b = *buffer.begin(), size = buffer.size()](kj::Own<kj::AsyncIoStream> stream) {
            auto& s = *stream;
            return s.read(&b, 12, size).attach(kj::mv(stream));
          })
          .then([buffer = kj::mv(buffer)](size_t n) mutable {
            std::string_view text(buffer.begin(), n);
            int status = httpStatus(text.substr(0, text.find('\r')));
            return status >= 200 && status < 400;
          });
  return io.provider->getTimer().timeoutAfter(timeout, kj::mv(probe)).catch_([](kj::Exception&& e) {
    spdlog::debug("health check: {}", e.getDescription().cStr());
    return false;
  });
}

}  // namespace fcvm::worker
