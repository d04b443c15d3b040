#include "worker/vm_disk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file_copy.h"
#include "base/log.h"
#include "base/subprocess.h"
#include "base/unique_fd.h"

namespace fcvm::worker {
namespace {

constexpr auto kResizeTimeout = std::chrono::minutes(5);

void run(const std::vector<std::string>& argv, const std::string& what) {
  auto r =
      runCommand(argv, CommandOptions::withTimeout(
                           std::chrono::duration_cast<std::chrono::milliseconds>(kResizeTimeout)));
  // e2fsck exits 1 when it fixed something, which a fresh clone should not need but is harmless.
  if (r.exitCode != 0 && !(argv[0] == "e2fsck" && r.exitCode == 1)) {
    throw Error(
        fmt::format("{}: {} exited {}: {}", what, argv[0], r.exitCode, r.output.substr(0, 400)));
  }
}

}  // namespace

VmDiskInfo createVmDisk(const std::filesystem::path& base, const std::filesystem::path& path,
                        uint32_t sizeMib) {
  UniqueFd from(static_cast<int>(
      checkSys(::open(base.c_str(), O_RDONLY | O_CLOEXEC), "open base rootfs {}", base.string())));
  UniqueFd to(static_cast<int>(
      checkSys(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600),
               "create VM disk {}", path.string())));
  VmDiskInfo info{path, 0, true};
  try {
    info.reflinked = cloneOrCopy(from.get(), to.get(), base.string() + " to " + path.string());
    if (!info.reflinked) spdlog::warn("could not reflink {}; copied the whole disk", path.string());
    struct stat st {};
    checkSys(::fstat(to.get(), &st), "stat {}", path.string());
    info.sizeBytes = static_cast<uint64_t>(st.st_size);
    uint64_t wanted = uint64_t{sizeMib} << 20;
    if (wanted > info.sizeBytes) {
      checkSys(::ftruncate(to.get(), static_cast<off_t>(wanted)), "grow {}", path.string());
      to.reset();
      run({"e2fsck", "-f", "-p", path.string()}, "check the VM disk before growing it");
      run({"resize2fs", path.string()}, "grow the VM disk's file system");
      info.sizeBytes = wanted;
    }
    if (to) checkSys(::fsync(to.get()), "fsync {}", path.string());
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
    throw;
  }
  return info;
}

}  // namespace fcvm::worker
