#include "fuse-pipe/flush_filter.h"

namespace fcvm::fusepipe {

void FlushFilter::writerOpened(uint64_t handle) {
  std::lock_guard lock(mutex_);
  writers_.insert(handle);
}

void FlushFilter::released(uint64_t handle) {
  std::lock_guard lock(mutex_);
  writers_.erase(handle);
}

void FlushFilter::lockSent(Owner owner) {
  std::lock_guard lock(mutex_);
  LockState& s = lockOwners_[owner];
  ++s.generation;
  ++s.inFlight;
}

void FlushFilter::lockDone(Owner owner) {
  std::lock_guard lock(mutex_);
  auto it = lockOwners_.find(owner);
  if (it != lockOwners_.end() && it->second.inFlight > 0) --it->second.inFlight;
}

FlushFilter::Ticket FlushFilter::flushStarting(uint64_t handle, Owner owner) const {
  std::lock_guard lock(mutex_);
  Ticket ticket;
  if (auto it = lockOwners_.find(owner); it != lockOwners_.end()) {
    ticket.mayHoldLocks = true;
    ticket.noLockInFlight = it->second.inFlight == 0;
    ticket.generation = it->second.generation;
  }
  ticket.send = ticket.mayHoldLocks || writers_.contains(handle);
  return ticket;
}

void FlushFilter::flushDone(Owner owner, Ticket ticket) {
  if (!ticket.mayHoldLocks || !ticket.noLockInFlight) return;
  std::lock_guard lock(mutex_);
  auto it = lockOwners_.find(owner);
  if (it != lockOwners_.end() && it->second.inFlight == 0 &&
      it->second.generation == ticket.generation) {
    lockOwners_.erase(it);
  }
}

size_t FlushFilter::lockOwnerCount() const {
  std::lock_guard lock(mutex_);
  return lockOwners_.size();
}

}  // namespace fcvm::fusepipe
