// Transport: length-bounded frames on any connected byte stream (Unix socket, virtio-serial port).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "fuse-pipe/error.h"
#include "fuse-pipe/protocol.h"

namespace fcvm::fusepipe {

struct Frame {
  FrameHeader header;
  std::vector<uint8_t> payload;
};

// Reads frames from a stream fd it does not own. Used by one thread at a time.
//
// It reads ahead into a buffer of `bufferSize` bytes (0: never more than the current frame), so
// that small frames cost about one system call each. On a socket it never blocks in recv: it
// waits in poll for input, because a reader blocked in recv on a Unix stream socket is also woken
// by every "write space" event of that socket, that is each time the peer consumes what this side
// wrote, which for a request/reply stream doubled the wake-ups per round trip. A receive timeout
// (SO_RCVTIMEO) on the socket applies to that wait and fails the read with EAGAIN.
class FrameReader {
 public:
  explicit FrameReader(int fd, uint32_t maxPayload = kMaxFramePayload,
                       size_t bufferSize = 64 * 1024);

  // The next frame, or nullopt on end of stream at a frame boundary. Throws ProtocolError when the
  // declared length exceeds maxPayload (checked before allocating) or the stream ends mid-frame,
  // and SysError on read errors.
  std::optional<Frame> read();

  // Bytes of the stream already read past the last frame returned.
  bool hasBufferedBytes() const { return end_ > begin_; }

 private:
  // Reads exactly out.size() bytes; false if the stream ended before the first byte.
  bool readExact(std::span<uint8_t> out, bool allowEofAtStart);
  // Reads at least one byte (what the stream has, up to out.size()); 0 at the end of the stream.
  size_t readSome(std::span<uint8_t> out);

  int fd_;
  uint32_t maxPayload_;
  bool socket_ = true;      // recv and poll work on fd_; cleared on ENOTSOCK (pipes, files)
  int waitTimeoutMs_ = -1;  // from SO_RCVTIMEO
  std::vector<uint8_t> buffer_;
  size_t begin_ = 0;  // buffer_[begin_, end_) is read but not yet consumed
  size_t end_ = 0;
};

// Writes whole frames to a stream fd it does not own. Safe to call from several threads.
class FrameWriter {
 public:
  explicit FrameWriter(int fd) : fd_(fd) {}

  // Throws SysError if the stream is broken (EPIPE, ECONNRESET, ...).
  void write(FrameHeader header, std::span<const uint8_t> payload);

 private:
  int fd_;
  std::mutex mutex_;  // serialises whole frames on the stream
};

// The version handshake; each throws ProtocolError on a wrong magic, version or reply.
// The client sends its Hello and waits for the server's; the server answers a valid Hello with
// its own and refuses (with an EPROTONOSUPPORT reply) any other first frame.
// clientHandshake returns the server's Hello (its flags); serverHandshake sends `serverFlags`.
Hello clientHandshake(int fd);
void serverHandshake(int fd, uint32_t serverFlags = 0);

}  // namespace fcvm::fusepipe
