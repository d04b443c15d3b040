#include "ipc/container_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"

namespace fcvm::ipc {
namespace {

constexpr size_t kHeaderBytes = 8;

bool readFully(int fd, void* buf, size_t n, uint64_t offset) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = retryEintr([&] { return ::pread(fd, p, n, static_cast<off_t>(offset)); });
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

}  // namespace

std::filesystem::path previousLogOf(const std::filesystem::path& path) {
  auto previous = path;
  previous += ".1";
  return previous;
}

ContainerLogWriter::ContainerLogWriter(const std::filesystem::path& path, uint64_t cap)
    : path_(path),
      cap_(std::max(cap, kMinContainerLogCap)),
      fd_(static_cast<int>(checkSys(
          ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600),
          "open {}", path.string()))) {
  struct stat st {};
  checkSys(::fstat(fd_.get(), &st), "stat {}", path.string());
  size_ = static_cast<uint64_t>(st.st_size);
}

void ContainerLogWriter::rotate() {
  auto previous = previousLogOf(path_);
  checkSys(::rename(path_.c_str(), previous.c_str()), "rename {}", path_.string());
  fd_.reset(static_cast<int>(checkSys(
      ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600),
      "open {}", path_.string())));
  size_ = 0;
}

void ContainerLogWriter::append(rpc::OutputKind kind, std::string_view data) {
  while (!data.empty()) {
    auto chunk = data.substr(0, kMaxLogRecordBytes);
    data.remove_prefix(chunk.size());
    unsigned char header[kHeaderBytes] = {};
    auto length = static_cast<uint32_t>(chunk.size());
    for (int i = 0; i < 4; ++i) header[i] = static_cast<unsigned char>(length >> (8 * i));
    header[4] = static_cast<unsigned char>(kind);
    iovec iov[2] = {{header, sizeof header}, {const_cast<char*>(chunk.data()), chunk.size()}};
    size_t want = sizeof header + chunk.size();
    if (size_ > 0 && size_ + want > cap_ / 2) rotate();
    ssize_t n = retryEintr([&] { return ::writev(fd_.get(), iov, 2); });
    checkSys(n, "write {}", path_.string());
    if (static_cast<size_t>(n) != want) throw Error("short write to " + path_.string());
    size_ += want;
  }
}

ContainerLogReader::ContainerLogReader(const std::filesystem::path& path, uint64_t end) {
  auto open = [](const std::filesystem::path& p) {
    UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd && errno != ENOENT) throw SysError(errno, "open " + p.string());
    return fd;
  };
  // No rotation falls between the two opens: a reader and the writer share the worker's one
  // thread, and the supervisor reads only once the writer is gone.
  previous_.fd = open(previousLogOf(path));
  current_.fd = open(path);
  current_.end = end;
}

std::optional<LogRecord> ContainerLogReader::next() {
  if (auto record = nextOf(previous_)) return record;
  previous_.fd.reset();
  return nextOf(current_);
}

std::optional<LogRecord> ContainerLogReader::nextOf(File& file) {
  if (!file.fd || file.offset >= file.end) return std::nullopt;
  unsigned char header[kHeaderBytes];
  if (!readFully(file.fd.get(), header, sizeof header, file.offset)) return std::nullopt;
  uint32_t length = 0;
  for (int i = 0; i < 4; ++i) length |= uint32_t{header[i]} << (8 * i);
  if (length == 0 || length > kMaxLogRecordBytes || header[4] > 1 || header[5] != 0 ||
      header[6] != 0 || header[7] != 0) {
    return std::nullopt;
  }
  LogRecord record;
  record.kind = header[4] == 0 ? rpc::OutputKind::STDOUT : rpc::OutputKind::STDERR;
  record.data.resize(length);
  if (!readFully(file.fd.get(), record.data.data(), length, file.offset + sizeof header)) {
    return std::nullopt;
  }
  file.offset += sizeof header + length;
  return record;
}

kj::Promise<void> sendContainerLog(kj::Own<ContainerLogReader> reader,
                                   rpc::OutputSink::Client sink) {
  auto record = reader->next();
  if (!record) return kj::READY_NOW;
  auto request = sink.writeRequest();
  request.setKind(record->kind);
  request.setData(
      kj::arrayPtr(reinterpret_cast<const capnp::byte*>(record->data.data()), record->data.size()));
  return request.send().ignoreResult().then(
      [reader = kj::mv(reader), sink = kj::mv(sink)]() mutable {
        return sendContainerLog(kj::mv(reader), kj::mv(sink));
      });
}

}  // namespace fcvm::ipc

namespace fcvm::ipc {
namespace {

kj::Promise<void> sendChunks(kj::Own<UniqueFd> fd, uint64_t offset, rpc::OutputSink::Client sink) {
  static constexpr size_t kChunk = 65536;
  auto buffer = kj::heapArray<capnp::byte>(kChunk);
  ssize_t n = retryEintr(
      [&] { return ::pread(fd->get(), buffer.begin(), kChunk, static_cast<off_t>(offset)); });
  if (n <= 0) return kj::READY_NOW;
  auto request = sink.writeRequest();
  request.setKind(rpc::OutputKind::STDOUT);
  request.setData(buffer.slice(0, static_cast<size_t>(n)));
  return request.send().ignoreResult().then(
      [fd = kj::mv(fd), offset, n, sink = kj::mv(sink)]() mutable {
        return sendChunks(kj::mv(fd), offset + static_cast<uint64_t>(n), kj::mv(sink));
      });
}

}  // namespace

kj::Promise<void> sendTextFile(const std::filesystem::path& path, rpc::OutputSink::Client sink) {
  auto fd = kj::heap<UniqueFd>(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!*fd) {
    if (errno == ENOENT) return kj::READY_NOW;
    throw SysError(errno, "open " + path.string());
  }
  return sendChunks(kj::mv(fd), 0, kj::mv(sink));
}

}  // namespace fcvm::ipc
