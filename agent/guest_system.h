// What a snapshot and a clone's restore do to the guest as a whole: freeze and thaw its file
// systems around the pause, and give a clone its own identity (hostname, machine id, RNG seed).
#pragma once

#include <sys/types.h>

#include <string>

#include "agent/messages.h"

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
  // Brings up the VM's network interface with a static address, a default route through the
  // gateway, and the nameservers in /etc/resolv.conf.
  virtual void configureNetwork(const GuestNetwork& network) = 0;
  // Mounts the --map volume at kVolumeMountRoot/<tag> (agent/podman_launcher.h) with a fuse-pipe
  // client process of its own on the volume's port; returns that process's pid (-1 if there is
  // none to watch) once the mount exists. Throws kj::Exception naming the volume otherwise.
  // The mount is shared, so what is later mounted over it reaches the container's (rslave) bind.
  virtual pid_t mountVolume(const VolumeSpec& volume) = 0;
  // In a clone, once the caller has ended the snapshot's client (which aborts its connection):
  // mounts the volume anew from its port over the dead mount, as mountVolume() does.
  virtual pid_t remountVolume(const VolumeSpec& volume) = 0;
};

// The guest's PID 1: FIFREEZE/FITHAW on the root file system, sethostname(2), /etc/machine-id,
// RNDADDENTROPY on /dev/urandom, eth0 through the classic interface and route ioctls.
class LinuxGuestSystem : public GuestSystem {
 public:
  void freezeFilesystems() override;
  void thawFilesystems() override;
  void setHostname(const std::string& hostname) override;
  void setMachineId(const std::string& machineId) override;
  void addEntropy(const std::string& bytes) override;
  void configureNetwork(const GuestNetwork& network) override;
  pid_t mountVolume(const VolumeSpec& volume) override;
  pid_t remountVolume(const VolumeSpec& volume) override;
};

}  // namespace fcvm::agent
