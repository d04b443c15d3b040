// A small tmpfs mounted over a test's directory for the test's length: a file system that runs
// short of space on purpose. Unmounted (lazily, should something still hold it) when it goes.
#pragma once

#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace fcvm::testing {

class TmpfsMount {
 public:
  TmpfsMount(std::filesystem::path at, unsigned sizeMib) : at_(std::move(at)) {
    std::filesystem::create_directories(at_);
    std::string options = "size=" + std::to_string(sizeMib) + "m,mode=0755";
    if (::mount("fcvm-test", at_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
      throw std::runtime_error("mount tmpfs on " + at_.string() + ": " + std::strerror(errno));
    }
  }
  ~TmpfsMount() { ::umount2(at_.c_str(), MNT_DETACH); }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

 private:
  std::filesystem::path at_;
};

}  // namespace fcvm::testing
