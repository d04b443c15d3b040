#include "agent/control_port.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <poll.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

namespace fcvm::agent {

std::optional<std::string> findVirtioPort(const std::string& sysClassDir, const std::string& name,
                                          const std::string& devDir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(sysClassDir, ec)) {
    std::ifstream in(entry.path() / "name");
    std::string portName;
    if (!std::getline(in, portName)) continue;
    if (portName == name) return devDir + "/" + entry.path().filename().string();
  }
  return std::nullopt;
}

// Device discovery at boot has no event to wait on here (no udev): poll with a short period.
constexpr auto kPollPeriod = std::chrono::milliseconds(10);

std::string waitForVirtioPort(const std::string& name, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto found = findVirtioPort("/sys/class/virtio-ports", name)) return *found;
    KJ_REQUIRE(std::chrono::steady_clock::now() < deadline, "no virtio-serial port with this name",
               name);
    std::this_thread::sleep_for(kPollPeriod);
  }
}

kj::AutoCloseFd openControlPort(const std::string& name, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  kj::AutoCloseFd fd;
  std::string path;
  for (;;) {
    if (fd.get() < 0) {
      if (auto found = findVirtioPort("/sys/class/virtio-ports", name)) {
        int raw = open(found->c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (raw >= 0) {
          fd = kj::AutoCloseFd(raw);
          path = *found;
        }
      }
    }
    if (fd.get() >= 0) {
      struct pollfd p = {fd.get(), POLLIN | POLLOUT, 0};
      int n = poll(&p, 1, 0);
      if (n > 0 && (p.revents & POLLHUP) == 0) return fd;
    }
    KJ_REQUIRE(std::chrono::steady_clock::now() < deadline,
               fd.get() >= 0 ? "the host did not connect to the control port"
                             : "no virtio-serial port with this name",
               name, path);
    std::this_thread::sleep_for(kPollPeriod);
  }
}

}  // namespace fcvm::agent
