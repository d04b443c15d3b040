// FlushFilter: decides which flushes must reach the server. The kernel sends a flush at every
// close(2), for two reasons that matter here: the closing process's POSIX locks on the file go
// away (the server holds them), and a writer learns of write errors its filesystem reports only
// at close (NFS does; the server's flush closes a duplicate of its descriptor for that). A close
// of a file opened read-only by an owner that never locked it has neither, and the client answers
// it without a round trip: a file opened, read and closed costs the open only.
//
// Conservative by construction: an (inode, lock owner) pair is recorded before its lock request
// is sent, and it is forgotten only after a flush the server performed when no lock request of
// the pair was in flight as the flush started, nor sent until it ended (a lock request and a
// flush in flight together may be performed in either order). A pair that may hold a lock is never
// forgotten; one that holds none may be remembered longer than needed, which costs a round trip, no
// more.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_set>
#include <utility>

namespace fcvm::fusepipe {

class FlushFilter {
 public:
  using Owner = std::pair<uint64_t, uint64_t>;  // inode, lock owner

  // A handle opened for writing (its closes are always sent), and its release.
  void writerOpened(uint64_t handle);
  void released(uint64_t handle);

  // A lock request (not an unlock) of the pair is about to be sent; its reply arrived.
  void lockSent(Owner owner);
  void lockDone(Owner owner);

  // What a close of `handle` by `owner` needs: whether to send the flush, and what to pass to
  // flushDone() once the server performed it.
  struct Ticket {
    bool send = false;
    bool mayHoldLocks = false;
    bool noLockInFlight = false;  // when the flush started
    uint64_t generation = 0;
  };
  Ticket flushStarting(uint64_t handle, Owner owner) const;
  // The server performed the flush: the owner's locks on the file are gone, unless a lock request
  // of it was in flight when the flush started or was sent since.
  void flushDone(Owner owner, Ticket ticket);

  size_t lockOwnerCount() const;

 private:
  struct LockState {
    uint64_t generation = 0;  // lock requests sent so far
    uint32_t inFlight = 0;    // of those, not yet answered
  };
  mutable std::mutex mutex_;
  std::unordered_set<uint64_t> writers_;
  std::map<Owner, LockState> lockOwners_;
};

}  // namespace fcvm::fusepipe
