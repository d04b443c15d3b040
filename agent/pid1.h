// What only the guest's PID 1 does: mount the early filesystems in the initramfs, switch to the
// root disk, mount the system filesystems the container stack needs, bring up loopback, and
// power the machine off at the end. None of this is used by host tests.
#pragma once

#include <chrono>
#include <string>

namespace fcvm::agent {

// In the initramfs: /dev (devtmpfs), /proc, /sys, so modules load and devices appear.
void mountInitramfsBasics();

// Waits (up to `timeout`) for the node `device` to appear in /dev (virtio_blk probes disks
// asynchronously). Throws kj::Exception on timeout.
void waitForDevice(const std::string& device, std::chrono::milliseconds timeout);

// Waits (up to `timeout`) for `device`, mounts it read-write at `newRoot` as `fsType`, moves
// /dev onto the new root, makes the new root "/" (MS_MOVE + chroot, as busybox switch_root
// does) and chdirs to "/". The initramfs contents stay (they are small). Throws kj::Exception.
void switchRoot(const std::string& device, const std::string& fsType, const std::string& newRoot,
                std::chrono::milliseconds timeout);

// On the real root: /proc, /sys, /dev (devtmpfs, if not yet), /dev/pts, /dev/shm,
// /sys/fs/cgroup (cgroup2), /run and /tmp (tmpfs). Existing mounts are kept.
void mountSystem();

// When the kernel command line names an image store disk (fcvm.images=/dev/vdX), waits for it
// and mounts it read-only at `target`: the host's images, which podman lists as an additional
// image store.
void mountImageStore(const std::string& target, std::chrono::milliseconds timeout);

// PATH/HOME/TERM defaults for a PID 1 started by the kernel with an almost empty environment.
void setDefaultEnvironment();

// ip link set lo up (for --network host and for podman itself).
void bringUpLoopback();

// sync, then reboot(RB_POWER_OFF). Returns only if that failed (then PID 1 should exit, and
// the kernel panics, which with panic=-1 also ends the VM).
void powerOff();

}  // namespace fcvm::agent
