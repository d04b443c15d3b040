// The guest side of a --map volume: `fc-agent volume-mount` mounts the fuse-pipe stream on the
// volume's virtio-serial port at the volume's mount point and serves the kernel's FUSE requests
// until it is unmounted or killed. The agent (PID 1) starts one per volume as its own process
// (agent/guest_system.h mountVolume); the fuse-pipe client is linked into fc-agent because the
// initramfs, gone after switch_root, is where fc-agent comes from.
//
//   fc-agent volume-mount --port /dev/vportNpM --mountpoint DIR [--read-only] [--ready-fd N]
#pragma once

namespace fcvm::agent {

inline constexpr char kVolumeMountCommand[] = "volume-mount";

// argv[0] is kVolumeMountCommand. Returns the process exit code.
int runVolumeClient(int argc, char** argv);

}  // namespace fcvm::agent
