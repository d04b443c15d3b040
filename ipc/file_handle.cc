#include "ipc/file_handle.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "base/error.h"
#include "ipc/rpc_error.h"

namespace fcvm::ipc {
namespace {

class FileHandleServer final : public rpc::FileHandle::Server {
 public:
  explicit FileHandleServer(UniqueFd fd) : fd_(std::move(fd)) {}
  kj::Maybe<int> getFd() override { return fd_.get(); }

 private:
  UniqueFd fd_;
};

}  // namespace

rpc::FileHandle::Client fileHandle(UniqueFd fd) {
  return kj::heap<FileHandleServer>(std::move(fd));
}

rpc::FileHandle::Client fileHandleOf(const UniqueFd& fd) {
  UniqueFd copy(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!copy) throw SysError(errno, "dup a file to hand over");
  return fileHandle(std::move(copy));
}

UniqueFd openRegularFile(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) throw SysError(errno, "open " + path.string());
  struct stat st {};
  checkSys(::fstat(fd.get(), &st), "stat {}", path.string());
  if (!S_ISREG(st.st_mode)) throw Error(fmt::format("{} is not a regular file", path.string()));
  return fd;
}

UniqueFd openDirectory(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOTDIR) throw Error(fmt::format("{} is not a directory", path.string()));
    throw SysError(errno, "open " + path.string());
  }
  return fd;
}

namespace {

enum class Kind { kRegularFile, kDirectory, kAny };

kj::Promise<UniqueFd> receive(rpc::FileHandle::Client handle, std::string what, Kind kind) {
  auto fd = handle.getFd();
  // The received fd lives as long as the capability: the continuation holds it until the copy
  // (an attachment would be dropped before the continuation runs).
  return fd.then([handle = kj::mv(handle), what = std::move(what),
                  kind](kj::Maybe<int> received) mutable -> UniqueFd {
    int fd = -1;
    KJ_IF_MAYBE (f, received) {
      fd = *f;
    } else {
      throwRpcError(kj::str(what.c_str(), ": no file came with the request"));
    }
    // The received fd belongs to the capability; keep a copy of our own.
    UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!copy) throwRpcError(kj::str(what.c_str(), ": ", errnoText(errno).c_str()));
    struct stat st {};
    if (kind == Kind::kRegularFile && (::fstat(copy.get(), &st) != 0 || !S_ISREG(st.st_mode))) {
      throwRpcError(kj::str(what.c_str(), ": not a regular file"));
    }
    if (kind == Kind::kDirectory) {
      int flags = ::fcntl(copy.get(), F_GETFL);
      if (::fstat(copy.get(), &st) != 0 || !S_ISDIR(st.st_mode) || flags < 0 ||
          (flags & O_PATH) != 0 || (flags & O_ACCMODE) == O_WRONLY) {
        throwRpcError(kj::str(what.c_str(), ": not a directory opened for reading"));
      }
    }
    return copy;
  });
}

}  // namespace

kj::Promise<UniqueFd> receiveFile(rpc::FileHandle::Client handle, std::string what) {
  return receive(kj::mv(handle), std::move(what), Kind::kRegularFile);
}

kj::Promise<UniqueFd> receiveFd(rpc::FileHandle::Client handle, std::string what) {
  return receive(kj::mv(handle), std::move(what), Kind::kAny);
}

kj::Promise<UniqueFd> receiveDirectory(rpc::FileHandle::Client handle, std::string what) {
  return receive(kj::mv(handle), std::move(what), Kind::kDirectory);
}

}  // namespace fcvm::ipc
