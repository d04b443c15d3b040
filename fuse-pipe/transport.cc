#include "fuse-pipe/transport.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "fuse-pipe/error.h"

namespace fcvm::fusepipe {

FrameReader::FrameReader(int fd, uint32_t maxPayload, size_t bufferSize)
    : fd_(fd), maxPayload_(maxPayload), buffer_(bufferSize) {
  timeval timeout{};
  socklen_t length = sizeof timeout;
  if (::getsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, &length) == 0 &&
      (timeout.tv_sec != 0 || timeout.tv_usec != 0)) {
    waitTimeoutMs_ = static_cast<int>(timeout.tv_sec * 1000 + timeout.tv_usec / 1000);
  }
}

size_t FrameReader::readSome(std::span<uint8_t> out) {
  while (true) {
    ssize_t n = socket_ ? ::recv(fd_, out.data(), out.size(), MSG_DONTWAIT)
                        : ::read(fd_, out.data(), out.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (socket_ && errno == ENOTSOCK) {
      socket_ = false;
      continue;
    }
    if (socket_ && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd input{fd_, POLLIN, 0};
      int ready = ::poll(&input, 1, waitTimeoutMs_);
      if (ready < 0 && errno != EINTR) throwErrno("wait for a frame on fd", std::to_string(fd_));
      if (ready == 0) throwErrno("wait for a frame on fd", std::to_string(fd_), EAGAIN);
      continue;
    }
    throwErrno("read frame from fd", std::to_string(fd_));
  }
}

bool FrameReader::readExact(std::span<uint8_t> out, bool allowEofAtStart) {
  size_t done = std::min(end_ - begin_, out.size());
  std::copy_n(buffer_.begin() + static_cast<ptrdiff_t>(begin_), done, out.begin());
  begin_ += done;
  while (done < out.size()) {
    const size_t wanted = out.size() - done;
    // Large remainders go straight to their destination; small ones through the buffer, which
    // also picks up whatever follows them.
    const bool direct = wanted >= buffer_.size();
    size_t n = direct ? readSome(out.subspan(done)) : readSome(buffer_);
    if (n == 0) {
      if (done == 0 && allowEofAtStart) return false;
      throw ProtocolError("stream ended in the middle of a frame");
    }
    if (direct) {
      done += n;
      continue;
    }
    const size_t taken = std::min(n, wanted);
    std::copy_n(buffer_.begin(), taken, out.begin() + static_cast<ptrdiff_t>(done));
    done += taken;
    begin_ = taken;
    end_ = n;
  }
  return true;
}

std::optional<Frame> FrameReader::read() {
  uint8_t raw[kFrameHeaderSize];
  if (!readExact(raw, /*allowEofAtStart=*/true)) return std::nullopt;
  Frame frame;
  frame.header = decodeFrameHeader(raw);
  if (frame.header.payloadLength > maxPayload_) {
    throw ProtocolError("frame payload of " + std::to_string(frame.header.payloadLength) +
                        " bytes exceeds the limit of " + std::to_string(maxPayload_));
  }
  frame.payload.resize(frame.header.payloadLength);
  if (!frame.payload.empty()) readExact(frame.payload, /*allowEofAtStart=*/false);
  return frame;
}

void FrameWriter::write(FrameHeader header, std::span<const uint8_t> payload) {
  header.payloadLength = static_cast<uint32_t>(payload.size());
  uint8_t raw[kFrameHeaderSize];
  encodeFrameHeader(header, raw);
  iovec iov[2] = {{raw, sizeof raw}, {const_cast<uint8_t*>(payload.data()), payload.size()}};
  int iovIndex = 0;
  std::lock_guard lock(mutex_);
  while (iovIndex < 2) {
    if (iov[iovIndex].iov_len == 0) {
      ++iovIndex;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = &iov[iovIndex];
    msg.msg_iovlen = 2 - iovIndex;
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::writev(fd_, &iov[iovIndex], 2 - iovIndex);
    if (n < 0) {
      if (errno == EINTR) continue;
      throwErrno("write frame to fd", std::to_string(fd_));
    }
    size_t left = static_cast<size_t>(n);
    while (iovIndex < 2 && left >= iov[iovIndex].iov_len) {
      left -= iov[iovIndex].iov_len;
      ++iovIndex;
    }
    if (iovIndex < 2) {
      iov[iovIndex].iov_base = static_cast<uint8_t*>(iov[iovIndex].iov_base) + left;
      iov[iovIndex].iov_len -= left;
    }
  }
}

namespace {

void sendHello(int fd, uint16_t flags, int32_t error, uint32_t helloFlags) {
  WireWriter w;
  if (flags & kFrameReply) w.i32(error);
  encodeHello(w, Hello{.flags = helloFlags});
  FrameWriter(fd).write({.opcode = static_cast<uint16_t>(Opcode::kHello), .flags = flags},
                        w.buffer());
}

void checkHello(const Hello& hello) {
  if (hello.magic != kProtocolMagic) throw ProtocolError("peer is not a fuse-pipe endpoint");
  if (hello.version != kProtocolVersion) {
    throw ProtocolError("peer speaks fuse-pipe protocol version " + std::to_string(hello.version) +
                        ", this side speaks " + std::to_string(kProtocolVersion));
  }
}

Frame readHelloFrame(int fd) {
  // Unbuffered: what follows the hello belongs to the session's own reader.
  auto frame = FrameReader(fd, /*maxPayload=*/64, /*bufferSize=*/0).read();
  if (!frame) throw ProtocolError("peer closed the stream before the handshake");
  if (frame->header.opcode != static_cast<uint16_t>(Opcode::kHello)) {
    throw ProtocolError("first frame is " + std::string(opcodeName(frame->header.opcode)) +
                        ", expected hello");
  }
  return std::move(*frame);
}

}  // namespace

Hello clientHandshake(int fd) {
  sendHello(fd, 0, 0, 0);
  Frame frame = readHelloFrame(fd);
  WireReader r(frame.payload);
  int32_t error = r.i32();
  Hello hello = decodeHello(r);
  if (!r.finish()) throw ProtocolError("malformed hello reply");
  if (error != 0) {
    throw ProtocolError("server refused the handshake: " + std::generic_category().message(error));
  }
  checkHello(hello);
  return hello;
}

void serverHandshake(int fd, uint32_t serverFlags) {
  Frame frame = readHelloFrame(fd);
  WireReader r(frame.payload);
  Hello hello = decodeHello(r);
  try {
    if (!r.finish()) throw ProtocolError("malformed hello");
    checkHello(hello);
  } catch (const ProtocolError&) {
    try {
      sendHello(fd, kFrameReply, EPROTONOSUPPORT, 0);
    } catch (const SysError&) {
      // The peer is gone already; the handshake error below says what happened.
    }
    throw;
  }
  sendHello(fd, kFrameReply, 0, serverFlags);
}

}  // namespace fcvm::fusepipe
