// What a snapshot and a clone's restore do to the guest as a whole: freeze and thaw its file
// systems around the pause, and give a clone its own identity (hostname, machine id, RNG seed).
#pragma once

#include <string>

namespace fcvm::agent {

class GuestSystem {
 public:
  virtual ~GuestSystem() = default;
  // Syncs and freezes the writable file systems, so a disk copied meanwhile is consistent.
  // Throws kj::Exception naming what failed; nothing stays frozen then.
  virtual void freezeFilesystems() = 0;
  virtual void thawFilesystems() = 0;  // what freezeFilesystems() froze; throws on failure
  virtual void setHostname(const std::string& hostname) = 0;
  virtual void setMachineId(const std::string& machineId) = 0;  // 32 hex digits
  virtual void addEntropy(const std::string& bytes) = 0;        // credited to the kernel's RNG
};

// The guest's PID 1: FIFREEZE/FITHAW on the root file system, sethostname(2), /etc/machine-id,
// RNDADDENTROPY on /dev/urandom.
class LinuxGuestSystem : public GuestSystem {
 public:
  void freezeFilesystems() override;
  void thawFilesystems() override;
  void setHostname(const std::string& hostname) override;
  void setMachineId(const std::string& machineId) override;
  void addEntropy(const std::string& bytes) override;
};

}  // namespace fcvm::agent
