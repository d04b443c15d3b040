#include "fuse-pipe/endpoint.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <fstream>

#include "fuse-pipe/error.h"
#include "fuse-pipe/test_util.h"

namespace fcvm::fusepipe {
namespace {

TEST(EndpointTest, ParsesUnixPaths) {
  EXPECT_EQ(parseEndpoint("unix:/run/x.sock").unixPath, "/run/x.sock");
  EXPECT_EQ(parseEndpoint("unix:relative.sock").unixPath, "relative.sock");
  EXPECT_THROW(parseEndpoint("unix:"), std::invalid_argument);
  EXPECT_THROW(parseEndpoint("/run/x.sock"), std::invalid_argument);
  EXPECT_THROW(parseEndpoint("tcp:1.2.3.4:5"), std::invalid_argument);
}

TEST(EndpointTest, ListenConnectAndReplaceAStaleSocket) {
  testing::TempDir tmp;
  Endpoint endpoint{tmp / "s.sock"};
  {
    UniqueFd listener = listenEndpoint(endpoint);
    UniqueFd client = connectEndpoint(endpoint);
    UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_TRUE(accepted);
  }
  // The socket file is left behind; listening again replaces it.
  UniqueFd again = listenEndpoint(endpoint);
  EXPECT_TRUE(again);
}

TEST(EndpointTest, RefusesToReplaceAFileThatIsNotASocket) {
  testing::TempDir tmp;
  std::ofstream(tmp / "file") << "precious";
  EXPECT_THROW(listenEndpoint(Endpoint{tmp / "file"}), SysError);
  std::ifstream in(tmp / "file");
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST(EndpointTest, ConnectErrorsNameThePath) {
  testing::TempDir tmp;
  try {
    connectEndpoint(Endpoint{tmp / "missing.sock"});
    FAIL() << "connected to nothing";
  } catch (const SysError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.sock"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fcvm::fusepipe
