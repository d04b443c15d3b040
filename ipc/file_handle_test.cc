// FileHandle capabilities across a real Unix-socket RPC connection (RpcServer, RpcClient): the fd
// arrives with the capability, in both directions, and stays usable once copied.
#include "ipc/file_handle.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/error.h"
#include "ipc/listening_socket.h"
#include "ipc/rpc_client.h"
#include "ipc/rpc_server.h"
#include "ipc/uffd.capnp.h"

namespace fcvm::ipc {
namespace {

UniqueFd memfdWith(const std::string& text) {
  UniqueFd fd(::memfd_create("fcvm-test", MFD_CLOEXEC));
  EXPECT_EQ(::write(fd.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  return fd;
}

std::string contents(int fd) {
  char buf[64] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// A PageServer whose attachClone hands out a file, as fcvm-uffd-server does.
class FileServer final : public rpc::PageServer::Server {
 public:
  kj::Promise<void> attachClone(AttachCloneContext call) override {
    call.getResults().setMemory(fileHandle(memfdWith("from the server")));
    return kj::READY_NOW;
  }
};

TEST(FileHandleTest, AFileComesBackWithAnAnswer) {
  char dir[] = "/tmp/fcvm-fh-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  auto io = kj::setupAsyncIo();
  ListeningSocket socket(std::string(dir) + "/s.sock", 0600);
  auto listener = io.lowLevelProvider->wrapListenSocketFd(
      socket.releaseFd(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  RpcServer server(
      "test",
      [](kj::AsyncIoStream&) -> capnp::Capability::Client { return kj::heap<FileServer>(); },
      capnp::ReaderOptions{}, 1);
  auto serving = server.listen(*listener).eagerlyEvaluate(nullptr);
  RpcClient client(io, socket.path(), 1);
  auto api = client.bootstrap<rpc::PageServer>();
  auto request = api.attachCloneRequest();
  request.setVmId("0123456789abcdef");
  auto fd = request.send()
                .then([](auto reply) { return receiveFile(reply.getMemory(), "the file"); })
                .wait(io.waitScope);
  EXPECT_EQ(contents(fd.get()), "from the server");
  ::unlink(socket.path().c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace fcvm::ipc
