// Finding and opening the control channel in the guest: the virtio-serial port whose name (set
// by QEMU's `-device virtserialport,name=fcvm.control`) appears in
// /sys/class/virtio-ports/<port>/name; its device node is /dev/<port>.
#pragma once

#include <kj/io.h>

#include <chrono>
#include <optional>
#include <string>

namespace fcvm::agent {

inline constexpr char kControlPortName[] = "fcvm.control";

// The /dev path of the port called `name` under `sysClassDir`, if one is there now.
std::optional<std::string> findVirtioPort(const std::string& sysClassDir, const std::string& name,
                                          const std::string& devDir = "/dev");

// Waits (up to `timeout`) for the port called `name` to appear; returns its /dev path. Throws
// kj::Exception on timeout.
std::string waitForVirtioPort(const std::string& name, std::chrono::milliseconds timeout);

// Waits (up to `timeout`) for the port to appear and for the host side to be connected (a
// virtio-serial port reports POLLHUP until then), and opens it read-write, close-on-exec.
// Throws kj::Exception on timeout.
kj::AutoCloseFd openControlPort(const std::string& name, std::chrono::milliseconds timeout);

}  // namespace fcvm::agent
