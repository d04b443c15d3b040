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

ContainerLogWriter::ContainerLogWriter(const std::filesystem::path& path, uint64_t cap)
    : file_(path, std::max(cap, kMinContainerLogCap)) {}

void ContainerLogWriter::append(rpc::OutputKind kind, std::string_view data) {
  while (!data.empty()) {
    auto chunk = data.substr(0, kMaxLogRecordBytes);
    data.remove_prefix(chunk.size());
    unsigned char header[kHeaderBytes] = {};
    auto length = static_cast<uint32_t>(chunk.size());
    for (int i = 0; i < 4; ++i) header[i] = static_cast<unsigned char>(length >> (8 * i));
    header[4] = static_cast<unsigned char>(kind);
    iovec iov[2] = {{header, sizeof header}, {const_cast<char*>(chunk.data()), chunk.size()}};
    file_.append(iov);
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
  auto open = [](const std::filesystem::path& p) {
    auto fd = kj::heap<UniqueFd>(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!*fd && errno != ENOENT) throw SysError(errno, "open " + p.string());
    return fd;
  };
  // Both opened now, as ContainerLogReader does: a rotation meanwhile changes nothing read.
  auto previous = open(previousLogOf(path));
  auto current = open(path);
  auto sendCurrent = [current = kj::mv(current), sink]() mutable -> kj::Promise<void> {
    if (!*current) return kj::READY_NOW;
    return sendChunks(kj::mv(current), 0, kj::mv(sink));
  };
  if (!*previous) return sendCurrent();
  return sendChunks(kj::mv(previous), 0, sink).then(kj::mv(sendCurrent));
}

}  // namespace fcvm::ipc
