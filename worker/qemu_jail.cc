#include "worker/qemu_jail.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/error.h"
#include "base/paths.h"

namespace fcvm::worker {
namespace {

// QEMU's numbers for what the jail hands over, above every fixed number the worker gives it.
constexpr int kFirstJailFd = 64;

class Handover {
 public:
  explicit Handover(QemuConfig& config) : config_(config) {}

  // `fd` (ours) becomes QEMU's next number; returns that number.
  int give(UniqueFd fd) {
    int number = next_++;
    config_.inheritedFds[number] = fd.get();
    held_.push_back(std::move(fd));
    return number;
  }
  // `path` opened with `flags`, as QEMU's /dev/fd/N.
  std::string file(const std::filesystem::path& path, int flags) {
    return fmt::format("/dev/fd/{}", give(open(path, flags)));
  }
  // `path` as the fd set /dev/fdset/N: QEMU's block layer takes its disks from a set, without
  // opening anything, by the access it asks for. One fd each, of the disk's access: a writable
  // drive is opened for writing at once (auto-read-only=off, qemuCommandLine), since a read-only
  // fd beside it would keep the image locks of its first, read-only open for good.
  std::string fdSet(const std::filesystem::path& path, bool writable) {
    int set = ++sets_;
    config_.fdSets[give(open(path, writable ? O_RDWR : O_RDONLY))] = set;
    return fmt::format("/dev/fdset/{}", set);
  }
  // A socket connected to `path`, where we listen: QEMU's end.
  int connected(const std::filesystem::path& path) {
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) throw SysError(errno, "socket for QEMU");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.string().size() >= sizeof addr.sun_path) {
      throw Error(fmt::format("socket path too long: {}", path.string()));
    }
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    checkSys(retryEintr([&] {
               return ::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
             }),
             "connect QEMU to {}", path.string());
    return give(std::move(s));
  }
  std::vector<UniqueFd> release() { return std::move(held_); }

 private:
  static UniqueFd open(const std::filesystem::path& path, int flags) {
    UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC | O_NOCTTY));
    if (!fd) throw SysError(errno, fmt::format("open {} for QEMU", path.string()));
    return fd;
  }

  QemuConfig& config_;
  std::vector<UniqueFd> held_;
  int next_ = kFirstJailFd;
  int sets_ = 0;
};

// The kernel and initramfs are the host's artifacts, opened afresh by QEMU through /dev/fd/N as
// its own uid: they must be readable by everyone (they are public), and are refused otherwise
// with what to do.
void requireWorldReadable(const std::filesystem::path& path) {
  struct stat st {};
  checkSys(::stat(path.c_str(), &st), "stat {}", path.string());
  if ((st.st_mode & S_IROTH) == 0) {
    throw Error(fmt::format(
        "{} is not readable by everyone, and the VM's QEMU runs as an unprivileged uid: "
        "run `fcvm setup` again, or chmod a+r it",
        path.string()));
  }
}

}  // namespace

JailIdentity JailIdentity::acquire(const std::filesystem::path& lockDir, const JailUids& range) {
  ensureOwnedDirectory(lockDir, 0700);
  for (uint32_t i = 0; i < range.count; ++i) {
    uid_t uid = range.first + i;
    auto path = lockDir / std::to_string(uid);
    UniqueFd lock(::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!lock) throw SysError(errno, "open " + path.string());
    // Free: nobody holds it. Then shared, so that QEMU can hold it too; another worker may take
    // it in between (a conversion is not atomic), and then it is theirs.
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) == 0 &&
        ::flock(lock.get(), LOCK_SH | LOCK_NB) == 0) {
      JailIdentity identity;
      identity.lock_ = std::move(lock);
      identity.path_ = path;
      identity.uid_ = uid;
      return identity;
    }
    if (errno != EWOULDBLOCK) throw SysError(errno, "lock " + path.string());
  }
  throw Error(
      fmt::format("all {} uids for jailed VMMs ({}...) are in use: raise jail.uids in "
                  "the configuration file",
                  range.count, range.first));
}

UniqueFd JailIdentity::lockForQemu() const {
  UniqueFd lock(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!lock) throw SysError(errno, "open " + path_.string());
  checkSys(::flock(lock.get(), LOCK_SH | LOCK_NB), "lock {}", path_.string());
  return lock;
}

std::vector<UniqueFd> openForJail(QemuConfig& config) {
  const QemuJail& jail = *config.jail;
  if (config.rootDiskSnapshot) throw Error("a jailed QEMU has no place for a snapshot overlay");
  if (!config.ninePShares.empty()) throw Error("a jailed QEMU sees no host directory to share");
  if (config.consoleFd < 0 && !config.consoleLog.empty()) {
    throw Error("a jailed QEMU's console must be a socket it inherits");
  }
  Handover handover(config);
  if (jail.lock >= 0) {
    UniqueFd lock(::fcntl(jail.lock, F_DUPFD_CLOEXEC, 0));
    if (!lock) throw SysError(errno, "dup the jail's uid lock");
    handover.give(std::move(lock));
  }
  requireWorldReadable(config.kernel);
  config.kernel = handover.file(config.kernel, O_RDONLY);
  if (!config.initramfs.empty()) {
    requireWorldReadable(config.initramfs);
    config.initramfs = handover.file(config.initramfs, O_RDONLY);
  }
  if (!config.rootDisk.empty()) config.rootDisk = handover.fdSet(config.rootDisk, true);
  for (auto& disk : config.extraDisks) disk.path = handover.fdSet(disk.path, !disk.readOnly);
  // A clone's memory is already an fd (its snapshot's sealed image); a new VM's is a new file,
  // which QEMU sizes and maps shared: it must be the jail's.
  if (!config.memoryFile.empty() && !config.memoryFile.string().starts_with("/dev/fd/")) {
    UniqueFd memory(::open(config.memoryFile.c_str(),
                           O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!memory) throw SysError(errno, "create " + config.memoryFile.string());
    checkSys(::fchown(memory.get(), jail.uid, jail.gid), "chown {}", config.memoryFile.string());
    config.memoryFile = fmt::format("/dev/fd/{}", handover.give(std::move(memory)));
  }
  for (auto& channel : config.channels) {
    if (channel.fd < 0 && !channel.discard && !channel.socket.empty()) {
      channel.fd = handover.connected(channel.socket);
      channel.socket.clear();
    }
  }
  if (!config.qmpSocket.empty()) {
    config.qmpFd = handover.connected(config.qmpSocket);
    config.qmpSocket.clear();
  }
  return handover.release();
}

void confineInJail(SpawnSpec& spec, const QemuConfig& config) {
  const QemuJail& jail = *config.jail;
  Credentials credentials{jail.uid, jail.gid, {}};
  auto root = systemJailRoot(jail.dir.string());
  if (config.accel == "kvm") {
    // /dev/kvm is its group's (kvm): the jail's QEMU is in that group and no other, unless the
    // device is open to everyone anyway. Never root's group.
    struct stat st {};
    checkSys(::stat("/dev/kvm", &st), "stat /dev/kvm");
    if ((st.st_mode & 0006) != 0006) {
      if (st.st_gid == 0) {
        throw Error("/dev/kvm is for root's group only: give it a group of its own (kvm)");
      }
      credentials.groups.push_back(st.st_gid);
    }
    root.binds.push_back({"/dev/kvm", "/dev/kvm", true});
  }
  if (config.network.mode == "rootless") {
    // QEMU's user-mode stack forwards the guest's DNS to the host's resolvers.
    std::error_code ec;
    auto resolvConf = std::filesystem::canonical("/etc/resolv.conf", ec);
    if (!ec) root.binds.push_back({resolvConf.string(), "/etc/resolv.conf", false});
  }
  // The program itself must be in what the jail shows (/bin may lead there: as the host has it).
  if (auto program = findInPath(spec.argv[0])) {
    std::error_code ec;
    auto real = std::filesystem::canonical(*program, ec);
    if (ec || !real.string().starts_with("/usr/")) {
      throw Error(
          fmt::format("{} is outside /usr, and /usr is all of the host's programs a jailed "
                      "QEMU sees: install QEMU under /usr",
                      *program));
    }
  }
  spec.credentials = credentials;
  spec.noNewPrivs = true;
  spec.newNamespaces = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  // QEMU's user-mode stack (rootless) listens on the host's ports; a TAP works from anywhere.
  if (config.network.mode != "rootless") spec.newNamespaces |= CLONE_NEWNET;
  spec.jail = std::move(root);
  spec.cwd = "/";
}

}  // namespace fcvm::worker
