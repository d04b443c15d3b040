// Transport: length-bounded frames on any connected byte stream (Unix socket, virtio-serial port).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "fuse-pipe/protocol.h"

namespace fcvm::fusepipe {

struct Frame {
  FrameHeader header;
  std::vector<uint8_t> payload;
};

// Reads frames from a stream fd it does not own. Used by one thread at a time.
class FrameReader {
 public:
  explicit FrameReader(int fd, uint32_t maxPayload = kMaxFramePayload)
      : fd_(fd), maxPayload_(maxPayload) {}

  // The next frame, or nullopt on end of stream at a frame boundary. Throws ProtocolError when the
  // declared length exceeds maxPayload (checked before allocating) or the stream ends mid-frame,
  // and std::system_error on read errors.
  std::optional<Frame> read();

 private:
  // Reads exactly out.size() bytes; false if the stream ended before the first byte.
  bool readExact(std::span<uint8_t> out, bool allowEofAtStart);

  int fd_;
  uint32_t maxPayload_;
};

// Writes whole frames to a stream fd it does not own. Safe to call from several threads.
class FrameWriter {
 public:
  explicit FrameWriter(int fd) : fd_(fd) {}

  // Throws std::system_error if the stream is broken (EPIPE, ECONNRESET, ...).
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
