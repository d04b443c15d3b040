// What every end-to-end test of real VMs starts from: a private fcvm installation sharing the
// guest fixture's artifacts and image cache, the busybox test image, a second uid, and `fcvm`
// commands run as a user would run them (expecting success where the test says so).
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/subprocess.h"
#include "base/unique_fd.h"
#include "tests/support/fcvm_instance.h"

namespace fcvm::testing {

constexpr char kTestImage[] = "localhost/fcvm-test-busybox:latest";
constexpr uid_t kOtherUid = 65534;
// Watchdogs for a loaded 2-core host under TCG; they bound a hang, they measure nothing.
constexpr auto kVmDeadline = std::chrono::seconds(600);

// The storage of the data dir where the guest fixture ran `fcvm setup` (FCVM_TEST_DATA_DIR).
inline std::filesystem::path guestStorage() {
  const char* dir = std::getenv("FCVM_TEST_DATA_DIR");
  if (dir == nullptr) throw std::runtime_error("FCVM_TEST_DATA_DIR is not set");
  return std::filesystem::path(dir) / "storage";
}

// A TCP port of the host's loopback that was free a moment ago (the kernel chose it).
inline uint16_t freeLoopbackPort() {
  UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t length = sizeof addr;
  ::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&addr), &length);
  return ntohs(addr.sin_port);
}

class VmFixture : public ::testing::Test {
 protected:
  VmFixture() : fcvm_(guestStorage()) {}

  CommandResult fcvm(const std::vector<std::string>& args, std::optional<uid_t> uid = std::nullopt,
                     const std::vector<std::string>& env = {}) {
    return fcvm_.fcvm(args, uid, kVmDeadline, "", env);
  }
  // Runs `fcvm ARGS`, expecting success; returns its output.
  std::string ok(const std::vector<std::string>& args) {
    auto r = fcvm(args);
    std::string line = "fcvm";
    for (const auto& a : args) line += " " + a;
    EXPECT_EQ(r.exitCode, 0) << line << "\n" << r.output << "\n" << supervisorLogTail();
    return r.output;
  }
  nlohmann::json inspect(const std::string& name) {
    return nlohmann::json::parse(ok({"inspect", "--name", name}));
  }
  // The test image as an oci-archive in this instance's directory, owned by `owner`: an image
  // another user may run (`oci-archive:PATH`) without a podman storage of its own.
  std::filesystem::path testImageArchive(const std::string& name, uid_t owner) {
    auto archive = fcvm_.dir() / name;
    auto saved = runCommand(
        {"podman", "save", "--format", "oci-archive", "-o", archive.string(), kTestImage},
        CommandOptions::withTimeout(std::chrono::minutes(2)));
    if (saved.exitCode != 0) throw std::runtime_error("podman save: " + saved.output);
    if (::chown(archive.c_str(), owner, owner) != 0) throw std::runtime_error("chown " + name);
    return archive;
  }
  // A HOME of the other user's own (where its rootless podman storage would be).
  std::filesystem::path otherUsersHome() {
    auto home = fcvm_.dir() / "home";
    std::filesystem::create_directories(home);
    if (::chown(home.c_str(), kOtherUid, kOtherUid) != 0) throw std::runtime_error("chown home");
    return home;
  }
  std::string supervisorLogTail() { return logTail(fcvm_.log()); }
  // The end of a log beside the supervisor's (netd.log, ...).
  std::string logTail(const std::filesystem::path& path, size_t bytes = 4000) {
    std::ifstream in(path);
    std::string log((std::istreambuf_iterator<char>(in)), {});
    return log.size() > bytes ? log.substr(log.size() - bytes) : log;
  }

  FcvmInstance fcvm_;
};

}  // namespace fcvm::testing
