#include "worker/http_probe.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "base/error.h"
#include "base/unique_fd.h"

namespace fcvm::worker {
namespace {

TEST(HttpProbeTest, StatusLines) {
  EXPECT_EQ(httpStatus("HTTP/1.1 200 OK"), 200);
  EXPECT_EQ(httpStatus("HTTP/1.0 302 Found"), 302);
  EXPECT_EQ(httpStatus("HTTP/1.1 503 Service Unavailable"), 503);
  EXPECT_EQ(httpStatus("SSH-2.0-OpenSSH"), 0);
  EXPECT_EQ(httpStatus("HTTP/1.1 2x0 OK"), 0);
  EXPECT_EQ(httpStatus(""), 0);
}

TEST(HttpProbeTest, UrlsOfTheHealthCheck) {
  auto check = ipc::parseHttpCheck("http://:8080/healthz");
  EXPECT_EQ(check.host, "127.0.0.1");
  EXPECT_EQ(check.port, 8080);
  EXPECT_EQ(check.path, "/healthz");
  check = ipc::parseHttpCheck("http://10.1.2.3:80");
  EXPECT_EQ(check.host, "10.1.2.3");
  EXPECT_EQ(check.path, "/");
  EXPECT_THROW(ipc::parseHttpCheck("https://:443/"), Error);
  EXPECT_THROW(ipc::parseHttpCheck("http://example.com:80/"), Error);
  EXPECT_THROW(ipc::parseHttpCheck("http://:0/"), Error);
  EXPECT_THROW(ipc::parseHttpCheck("http://:80/a b"), Error);
}

// A server on loopback that answers one request with `answer`; its port.
struct OneShotServer {
  explicit OneShotServer(std::string answer) {
    listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listener.get(), 1);
    socklen_t length = sizeof addr;
    ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &length);
    port = ntohs(addr.sin_port);
    thread = std::thread([this, answer = std::move(answer)] {
      UniqueFd client(::accept(listener.get(), nullptr, nullptr));
      char buf[1024];
      (void)!::read(client.get(), buf, sizeof buf);  // the request
      (void)!::write(client.get(), answer.data(), answer.size());
    });
  }
  ~OneShotServer() { thread.join(); }
  UniqueFd listener;
  uint16_t port = 0;
  std::thread thread;
};

TEST(HttpProbeTest, AnswersDecideAndFailuresAreUnhealthy) {
  auto io = kj::setupAsyncIo();
  {
    OneShotServer ok("HTTP/1.1 204 No Content\r\n\r\n");
    EXPECT_TRUE(httpProbe(io, {"127.0.0.1", ok.port, "/"}, 10 * kj::SECONDS).wait(io.waitScope));
  }
  {
    OneShotServer bad("HTTP/1.1 500 Oops\r\n\r\n");
    EXPECT_FALSE(httpProbe(io, {"127.0.0.1", bad.port, "/"}, 10 * kj::SECONDS).wait(io.waitScope));
  }
  uint16_t closed;
  {
    OneShotServer garbage("nonsense that is long enough\r\n");
    closed = garbage.port;
    EXPECT_FALSE(
        httpProbe(io, {"127.0.0.1", garbage.port, "/"}, 10 * kj::SECONDS).wait(io.waitScope));
  }
  // Nobody listens any more: refused, so unhealthy.
  EXPECT_FALSE(httpProbe(io, {"127.0.0.1", closed, "/"}, 10 * kj::SECONDS).wait(io.waitScope));
}

}  // namespace
}  // namespace fcvm::worker
