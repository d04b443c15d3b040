// The conformance suite on real mounts (label `fuse`): locks against processes on the host,
// interrupts of blocking requests, permission edge cases as an unprivileged caller with
// supplementary groups, escape attempts, malformed frames sent to a running server over a raw
// socket, and server death or unmount with requests in flight. The operations of the everyday
// path are in mount_test.cc; both share mount_fixture.h.
#include <dirent.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <chrono>
#include <map>
#include <tuple>

#include "fuse-pipe/endpoint.h"
#include "fuse-pipe/mount_fixture.h"
#include "fuse-pipe/protocol.h"
#include "fuse-pipe/transport.h"

namespace fcvm::fusepipe {
namespace {

using namespace std::chrono_literals;

// 0 or the errno of fcntl(fd, cmd, lock on [start, start+len)).
int lockErrno(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = start;
  lock.l_len = len;
  return ::fcntl(fd, cmd, &lock) == 0 ? 0 : errno;
}

// The lock that F_GETLK reports as conflicting with a write lock on [start, start+len).
struct flock probeLock(int fd, off_t start, off_t len) {
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = start;
  lock.l_len = len;
  EXPECT_EQ(::fcntl(fd, F_GETLK, &lock), 0) << std::strerror(errno);
  return lock;
}

// A forked child that runs `body` and exits with its result; killed and reaped on destruction.
class Forked {
 public:
  explicit Forked(const std::function<int()>& body) {
    pid_ = ::fork();
    if (pid_ == 0) ::_exit(body());
  }
  ~Forked() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Forked(const Forked&) = delete;
  Forked& operator=(const Forked&) = delete;

  // The exit code (or 200 + signal number).
  int wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 200 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
};

// Waits until /proc/locks lists a process blocked on a lock of host inode `ino`. The kernel
// signals nothing when a lock request starts waiting, so this polls the one place where that
// state is visible, with a deadline; it is the only polling wait in the suite.
bool waitForBlockedLockOn(ino_t ino) {
  const std::string needle = ":" + std::to_string(ino) + " ";
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in("/proc/locks");
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("->") != std::string::npos && line.find(needle) != std::string::npos) {
        return true;
      }
    }
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

ino_t inodeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

// In a child: arms a periodic SIGALRM without SA_RESTART, so that a blocking call made afterwards
// is interrupted however late it starts blocking.
void armPeriodicAlarm() {
  struct sigaction action {};
  action.sa_handler = [](int) {};
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGALRM, &action, nullptr);
  itimerval timer{{0, 50000}, {0, 50000}};
  ::setitimer(ITIMER_REAL, &timer, nullptr);
}

class ConformanceTest : public MountTest {};

// ---- Locks: the server holds them, so they hold against processes on the host. ----

TEST_F(ConformanceTest, PosixLocksConflictWithHostProcesses) {
  startAll();
  writeFile(m("f"), std::string(100, 'x'));
  UniqueFd viaMount(::open(m("f").c_str(), O_RDWR | O_CLOEXEC));
  UniqueFd onHost(::open(h("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(viaMount && onHost);

  // The mount's write lock on [0, 10) keeps the host out of that range only.
  ASSERT_EQ(lockErrno(viaMount.get(), F_SETLK, F_WRLCK, 0, 10), 0);
  EXPECT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 5, 10), EAGAIN);
  EXPECT_EQ(lockErrno(onHost.get(), F_SETLK, F_RDLCK, 0, 1), EAGAIN);
  struct flock seen = probeLock(onHost.get(), 0, 100);
  EXPECT_EQ(seen.l_type, F_WRLCK);
  EXPECT_EQ(seen.l_start, 0);
  EXPECT_EQ(seen.l_len, 10);
  ASSERT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 50, 0), 0);  // [50, EOF)

  // And the host's lock keeps the mount out.
  EXPECT_EQ(lockErrno(viaMount.get(), F_SETLK, F_WRLCK, 60, 1), EAGAIN);
  seen = probeLock(viaMount.get(), 40, 20);
  EXPECT_EQ(seen.l_type, F_WRLCK);
  EXPECT_EQ(seen.l_start, 50);
  EXPECT_EQ(seen.l_len, 0);
  EXPECT_EQ(seen.l_pid, 0);  // a host process: its pid means nothing to the client
  EXPECT_EQ(probeLock(viaMount.get(), 10, 40).l_type, F_UNLCK);

  // Unlocking part of a range splits it; the owner's own locks never conflict with it.
  ASSERT_EQ(lockErrno(viaMount.get(), F_SETLK, F_UNLCK, 0, 5), 0);
  EXPECT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 0, 5), 0);
  EXPECT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 5, 1), EAGAIN);
  EXPECT_EQ(lockErrno(viaMount.get(), F_SETLK, F_RDLCK, 5, 5), 0);  // downgrade in place

  // close(2) of any descriptor of the file drops the owner's locks, as POSIX says.
  UniqueFd second(::open(m("f").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(second);
  second.reset();
  EXPECT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 5, 5), 0);
}

// The client answers most closes itself (a read-only file whose owner never locked it): the ones
// that must release locks still do, whichever descriptor is closed and whenever it was opened.
TEST_F(ConformanceTest, ClosesReleaseExactlyTheClosingOwnersLocks) {
  startAll();
  writeFile(m("f"), std::string(10, 'x'));
  UniqueFd openedBefore(::open(m("f").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd locking(::open(m("f").c_str(), O_RDWR | O_CLOEXEC));
  UniqueFd onHost(::open(h("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(openedBefore && locking && onHost);
  ASSERT_EQ(lockErrno(locking.get(), F_SETLK, F_WRLCK, 0, 0), 0);

  // Another process opening and closing the file (it holds no locks) releases nothing.
  Forked other([&] {
    int fd = ::open(m("f").c_str(), O_RDONLY | O_CLOEXEC);
    return fd >= 0 && ::close(fd) == 0 ? 0 : 1;
  });
  ASSERT_EQ(other.wait(), 0);
  EXPECT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 0, 1), EAGAIN);

  // Closing the read-only descriptor opened before the lock releases it.
  openedBefore.reset();
  EXPECT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 0, 1), 0);
  ASSERT_EQ(lockErrno(onHost.get(), F_SETLK, F_UNLCK, 0, 1), 0);

  // Locking again after that release: the next close releases again.
  ASSERT_EQ(lockErrno(locking.get(), F_SETLK, F_RDLCK, 0, 0), 0);
  EXPECT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 0, 1), EAGAIN);
  UniqueFd(::open(m("f").c_str(), O_RDONLY | O_CLOEXEC)).reset();
  EXPECT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 0, 1), 0);
}

TEST_F(ConformanceTest, PosixLocksOfTwoClientProcessesConflictAndReportThePid) {
  startAll();
  writeFile(m("f"), "0123456789");
  UniqueFd fd(::open(m("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd);
  ASSERT_EQ(lockErrno(fd.get(), F_SETLK, F_RDLCK, 0, 4), 0);
  const pid_t self = ::getpid();
  Forked child([&] {
    int own = ::open(m("f").c_str(), O_RDWR | O_CLOEXEC);
    if (own < 0) return 1;
    if (lockErrno(own, F_SETLK, F_RDLCK, 0, 4) != 0) return 2;  // read locks share
    ::fcntl(own, F_SETLK, nullptr);
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    lock.l_len = 10;
    if (::fcntl(own, F_GETLK, &lock) != 0) return 3;
    if (lock.l_type != F_RDLCK || lock.l_pid != self || lock.l_len != 4) return 4;
    if (lockErrno(own, F_SETLK, F_WRLCK, 2, 1) != EAGAIN) return 5;
    return 0;
  });
  EXPECT_EQ(child.wait(), 0);
}

TEST_F(ConformanceTest, BlockingLockWaitsForTheHostToRelease) {
  startAll();
  writeFile(m("f"), "x");
  UniqueFd onHost(::open(h("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(onHost);
  ASSERT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 0, 0), 0);
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  UniqueFd readyRead(ready[0]), readyWrite(ready[1]);
  Forked waiter([&] {
    int fd = ::open(m("f").c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return 1;
    if (lockErrno(fd, F_SETLKW, F_WRLCK, 0, 0) != 0) return 2;
    // Holds the lock now: tell the parent, then keep it until the parent reads.
    if (::write(readyWrite.get(), "1", 1) != 1) return 3;
    return 0;
  });
  readyWrite.reset();
  ASSERT_TRUE(waitForBlockedLockOn(inodeOf(h("f"))));
  ASSERT_EQ(lockErrno(onHost.get(), F_SETLK, F_UNLCK, 0, 0), 0);
  char byte;
  EXPECT_EQ(::read(readyRead.get(), &byte, 1), 1);
  EXPECT_EQ(waiter.wait(), 0);
  // The waiter exited, which released its lock.
  EXPECT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 0, 0), 0);
}

TEST_F(ConformanceTest, InterruptedLockWaitIsCancelledOnTheServer) {
  startAll();
  writeFile(m("f"), "x");
  writeFile(m("g"), "y");
  UniqueFd onHost(::open(h("f").c_str(), O_RDWR | O_CLOEXEC));
  UniqueFd onHostG(::open(h("g").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(onHost && onHostG);
  ASSERT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 0, 0), 0);
  ASSERT_EQ(::flock(onHostG.get(), LOCK_EX), 0);
  // Without the interrupt reaching the server, its reply would never come and the child would
  // hang: EINTR proves the wait was cancelled there.
  Forked posix([&] {
    int fd = ::open(m("f").c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return 1;
    armPeriodicAlarm();
    return lockErrno(fd, F_SETLKW, F_WRLCK, 0, 0) == EINTR ? 0 : 2;
  });
  Forked flocker([&] {
    int fd = ::open(m("g").c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return 1;
    armPeriodicAlarm();
    return ::flock(fd, LOCK_EX) != 0 && errno == EINTR ? 0 : 2;
  });
  EXPECT_EQ(posix.wait(), 0);
  EXPECT_EQ(flocker.wait(), 0);
  // The cancelled waits took nothing: once the host lets go, the mount gets both locks at once.
  ASSERT_EQ(lockErrno(onHost.get(), F_SETLK, F_UNLCK, 0, 0), 0);
  ASSERT_EQ(::flock(onHostG.get(), LOCK_UN), 0);
  UniqueFd f(::open(m("f").c_str(), O_RDWR | O_CLOEXEC));
  UniqueFd g(::open(m("g").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(f && g);
  EXPECT_EQ(lockErrno(f.get(), F_SETLK, F_WRLCK, 0, 0), 0);
  EXPECT_EQ(::flock(g.get(), LOCK_EX | LOCK_NB), 0) << std::strerror(errno);
}

TEST_F(ConformanceTest, FlockConflictsWithHostProcesses) {
  startAll();
  writeFile(m("f"), "x");
  UniqueFd viaMount(::open(m("f").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd viaMountToo(::open(m("f").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd onHost(::open(h("f").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(viaMount && viaMountToo && onHost);
  ASSERT_EQ(::flock(viaMount.get(), LOCK_EX | LOCK_NB), 0);
  EXPECT_EQ(::flock(onHost.get(), LOCK_SH | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  // flock locks belong to open files: another open of the same file conflicts too.
  EXPECT_EQ(::flock(viaMountToo.get(), LOCK_EX | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  ASSERT_EQ(::flock(viaMount.get(), LOCK_SH), 0);  // downgrade
  EXPECT_EQ(::flock(onHost.get(), LOCK_SH | LOCK_NB), 0);
  EXPECT_EQ(::flock(viaMountToo.get(), LOCK_EX | LOCK_NB), -1);
  ASSERT_EQ(::flock(onHost.get(), LOCK_UN), 0);
  // Closing the last descriptor of the open file releases its lock. FUSE sends that release
  // after close(2) has returned, so the host waits for it rather than tries once.
  viaMount.reset();
  EXPECT_EQ(::flock(onHost.get(), LOCK_EX), 0);
  EXPECT_EQ(::flock(viaMountToo.get(), LOCK_SH | LOCK_NB), -1);
  ASSERT_EQ(::flock(onHost.get(), LOCK_UN), 0);
  EXPECT_EQ(::flock(viaMountToo.get(), LOCK_SH), 0);
}

TEST_F(ConformanceTest, ReadOnlyServerStillArbitratesLocks) {
  std::ofstream(h("f")) << "x";
  startAll(/*readOnly=*/true);
  UniqueFd viaMount(::open(m("f").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd onHost(::open(h("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(viaMount && onHost);
  ASSERT_EQ(lockErrno(viaMount.get(), F_SETLK, F_RDLCK, 0, 0), 0);
  EXPECT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 0, 0), EAGAIN);
  EXPECT_EQ(lockErrno(viaMount.get(), F_SETLK, F_WRLCK, 0, 0), EBADF);  // not open for writing
}

// ---- Requests in flight when the server dies or the mount goes. ----

TEST_F(ConformanceTest, ServerDeathFailsABlockedLockWaitWithEio) {
  startAll();
  writeFile(m("f"), "x");
  UniqueFd onHost(::open(h("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(onHost);
  ASSERT_EQ(lockErrno(onHost.get(), F_SETLK, F_WRLCK, 0, 0), 0);
  Forked waiter([&] {
    int fd = ::open(m("f").c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return 1;
    return lockErrno(fd, F_SETLKW, F_WRLCK, 0, 0) == EIO ? 0 : 2;
  });
  ASSERT_TRUE(waitForBlockedLockOn(inodeOf(h("f"))));
  server_->signalAndWait(SIGKILL);
  server_.reset();
  EXPECT_EQ(waiter.wait(), 0);
  EXPECT_EQ(openErrno(m("f"), O_RDONLY), EIO);
  int status = mount_->signalAndWait(SIGTERM);
  mount_.reset();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_FALSE(isMounted(mountpoint_));
}

TEST_F(ConformanceTest, UnmountWithABlockedRequestInFlightDoesNotHang) {
  startAll();
  writeFile(m("f"), "x");
  UniqueFd onHost(::open(h("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(onHost);
  ASSERT_EQ(::flock(onHost.get(), LOCK_EX), 0);
  Forked waiter([&] {
    int fd = ::open(m("f").c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return 1;
    return ::flock(fd, LOCK_EX) != 0 ? 0 : 2;  // fails once the mount is gone
  });
  ASSERT_TRUE(waitForBlockedLockOn(inodeOf(h("f"))));
  int status = mount_->signalAndWait(SIGTERM);
  mount_.reset();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_FALSE(isMounted(mountpoint_));
  EXPECT_EQ(waiter.wait(), 0);
  // The server cancelled the wait when the client went: the host's lock is the only one, and
  // the server still serves new mounts.
  ASSERT_EQ(::flock(onHost.get(), LOCK_UN), 0);
  EXPECT_EQ(::flock(onHost.get(), LOCK_EX | LOCK_NB), 0);
  startMount();
  EXPECT_EQ(readFile(m("f")), "x");
}

// ---- Permissions as an unprivileged caller (uid/gid 65534) with supplementary groups. ----

constexpr uid_t kNobody = 65534;
constexpr gid_t kGroupA = 4242;  // the caller is a member
constexpr gid_t kGroupB = 4343;  // the caller is not

TEST_F(ConformanceTest, SetattrRulesForUnprivilegedCallers) {
  std::ofstream(h("mine")) << "data";
  ASSERT_EQ(::chown(h("mine").c_str(), kNobody, kGroupB), 0);
  std::ofstream(h("theirs")) << "data";
  fs::permissions(h("theirs"), fs::perms(0666));
  std::ofstream(h("setid")) << "data";
  ASSERT_EQ(::chown(h("setid").c_str(), kNobody, kGroupA), 0);
  ASSERT_EQ(::chmod(h("setid").c_str(), 06777), 0);
  std::ofstream(h("roots-setid")) << "data";  // root's: nobody writes it as a non-owner
  ASSERT_EQ(::chmod(h("roots-setid").c_str(), 06777), 0);
  startAll();
  int result = runAsNobody({kGroupA}, 022, [&] {
    // chmod: only the owner; setting S_ISGID on a file of a group one is not in drops the bit.
    if (::chmod(m("theirs").c_str(), 0600) == 0 || errno != EPERM) return 1;
    if (::chmod(m("mine").c_str(), 02755) != 0) return 2;
    struct stat st;
    if (::stat(m("mine").c_str(), &st) != 0 || (st.st_mode & 07777) != 0755) return 12;
    // truncate by path needs write permission, which the owner has.
    if (::truncate(m("mine").c_str(), 1) != 0) return 11;
    // chown: the owner may give the file to a group it is in, never to another user or group.
    if (::chown(m("mine").c_str(), -1, kGroupA) != 0) return 3;
    if (::chown(m("mine").c_str(), -1, kGroupB) == 0 || errno != EPERM) return 4;
    if (::chown(m("mine").c_str(), 0, -1) == 0 || errno != EPERM) return 5;
    // utimens: with write permission, "now" is allowed but explicit times only for the owner.
    if (::utimensat(AT_FDCWD, m("theirs").c_str(), nullptr, 0) != 0) return 6;
    timespec times[2] = {{1, 0}, {2, 0}};
    if (::utimensat(AT_FDCWD, m("theirs").c_str(), times, 0) == 0 || errno != EPERM) return 7;
    timespec omitBoth[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (::utimensat(AT_FDCWD, m("theirs").c_str(), omitBoth, 0) != 0) return 8;
    if (::utimensat(AT_FDCWD, m("mine").c_str(), times, 0) != 0) return 9;
    // Writing clears set-user-id and set-group-id (the writer lacks CAP_FSETID).
    UniqueFd fd(::open(m("setid").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    if (!fd || ::write(fd.get(), "!", 1) != 1) return 10;
    // ... also when the writer is not the owner (the bits go; the write is not refused).
    UniqueFd other(::open(m("roots-setid").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    if (!other) return 13;
    if (::write(other.get(), "!", 1) != 1) return 14;
    return 0;
  });
  EXPECT_EQ(result, 0);
  struct stat st;
  ASSERT_EQ(::stat(h("mine").c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, kGroupA);
  EXPECT_EQ(st.st_size, 1);
  EXPECT_EQ(st.st_mtim.tv_sec, 2);
  ASSERT_EQ(::stat(h("setid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0777u);
  ASSERT_EQ(::stat(h("roots-setid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0777u);
  EXPECT_EQ(st.st_size, 5);
  ASSERT_EQ(::stat(h("theirs").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  EXPECT_NE(st.st_mtim.tv_sec, 2);

  // chown by root clears set-id bits of an executable, as on any filesystem.
  ASSERT_EQ(::chmod(m("setid").c_str(), 06755), 0);
  ASSERT_EQ(::chown(m("setid").c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(::stat(h("setid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST_F(ConformanceTest, FtruncateThroughAnOpenHandleIgnoresLaterModeChanges) {
  std::ofstream(h("f")) << "0123456789";
  ASSERT_EQ(::chown(h("f").c_str(), kNobody, kNobody), 0);
  fs::permissions(h("f"), fs::perms(0600));
  startAll();
  int result = runAsNobody({}, 022, [&] {
    UniqueFd fd(::open(m("f").c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) return 1;
    if (::fchmod(fd.get(), 0400) != 0) return 2;
    if (openErrno(m("f"), O_WRONLY) != EACCES) return 3;
    if (::ftruncate(fd.get(), 4) != 0) return 4;  // FUSE passes the handle: no path check
    if (::truncate(m("f").c_str(), 2) == 0 || errno != EACCES) return 5;
    return 0;
  });
  EXPECT_EQ(result, 0);
  EXPECT_EQ(readFile(h("f")), "0123");
}

TEST_F(ConformanceTest, DirectoryRulesStickySetgidAndSearch) {
  fs::create_directory(h("tmp"));
  fs::permissions(h("tmp"), fs::perms(01777));
  std::ofstream(h("tmp/roots")) << "r";
  fs::create_directory(h("sgid"));
  ASSERT_EQ(::chown(h("sgid").c_str(), 0, kGroupA), 0);
  ASSERT_EQ(::chmod(h("sgid").c_str(), 02775), 0);
  fs::create_directory(h("noexec"));
  fs::permissions(h("noexec"), fs::perms(0766));
  std::ofstream(h("noexec/inside")) << "i";
  startAll();
  int result = runAsNobody({kGroupA}, 022, [&] {
    // Sticky directory: others' entries cannot be removed or renamed; one's own can.
    if (::unlink(m("tmp/roots").c_str()) == 0 || errno != EPERM) return 1;
    if (::rename(m("tmp/roots").c_str(), m("tmp/moved").c_str()) == 0 || errno != EPERM) return 2;
    if (openErrno(m("tmp/own"), O_CREAT | O_WRONLY) != 0) return 3;
    if (::rename(m("tmp/own").c_str(), m("tmp/own2").c_str()) != 0) return 4;
    if (::unlink(m("tmp/own2").c_str()) != 0) return 5;
    // Set-group-id directory (writable through group A): new entries take its group; new
    // subdirectories inherit the bit.
    if (openErrno(m("sgid/file"), O_CREAT | O_WRONLY) != 0) return 6;
    if (::mkdir(m("sgid/sub").c_str(), 0755) != 0) return 7;
    // No search permission: nothing inside can be reached, even if readable.
    if (openErrno(m("noexec/inside"), O_RDONLY) != EACCES) return 8;
    if (::access(m("noexec").c_str(), X_OK) == 0 || errno != EACCES) return 9;
    if (::access(m("noexec").c_str(), R_OK | W_OK) != 0) return 10;
    if (::rmdir(m("noexec").c_str()) == 0 || errno != EACCES) return 11;
    if (::mkdir(m("tmp/d").c_str(), 0700) != 0 || ::rmdir(m("tmp/d").c_str()) != 0) return 12;
    return 0;
  });
  EXPECT_EQ(result, 0);
  EXPECT_TRUE(fs::exists(h("tmp/roots")));
  struct stat st;
  ASSERT_EQ(::stat(h("sgid/file").c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, kGroupA);
  EXPECT_EQ(st.st_uid, kNobody);
  ASSERT_EQ(::stat(h("sgid/sub").c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, kGroupA);
  EXPECT_TRUE(st.st_mode & S_ISGID);
}

TEST_F(ConformanceTest, RenameLinkAndSymlinkPermissions) {
  fs::create_directory(h("ro"));
  std::ofstream(h("ro/f")) << "f";
  fs::permissions(h("ro"), fs::perms(0755));
  fs::create_directory(h("rw"));
  fs::permissions(h("rw"), fs::perms(0777));
  std::ofstream(h("rootfile")) << "secret";
  fs::permissions(h("rootfile"), fs::perms(0600));
  startAll();
  int result = runAsNobody({}, 022, [&] {
    if (::rename(m("ro/f").c_str(), m("rw/f").c_str()) == 0 || errno != EACCES) return 1;
    if (::symlink("target", m("ro/l").c_str()) == 0 || errno != EACCES) return 2;
    if (::symlink("target", m("rw/l").c_str()) != 0) return 3;
    // Hard links to files one cannot read are refused when the host protects them
    // (fs.protected_hardlinks), else allowed: either way the result matches the host.
    errno = 0;
    int linked = ::link(m("rootfile").c_str(), m("rw/hard").c_str());
    if (linked != 0 && errno != EPERM) return 4;
    if (::link(m("rw/l").c_str(), m("rw/l2").c_str()) != 0) return 5;
    int fd = ::open(m("rw/x").c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return 6;
    ::close(fd);
    if (::renameat2(AT_FDCWD, m("rw/x").c_str(), AT_FDCWD, m("rw/l").c_str(), RENAME_EXCHANGE) !=
        0) {
      return 7;
    }
    if (::renameat2(AT_FDCWD, m("rw/x").c_str(), AT_FDCWD, m("rw/l").c_str(), RENAME_NOREPLACE) ==
            0 ||
        errno != EEXIST) {
      return 8;
    }
    return 0;
  });
  EXPECT_EQ(result, 0);
  EXPECT_TRUE(fs::exists(h("ro/f")));
  EXPECT_TRUE(fs::is_symlink(h("rw/x")));
  EXPECT_TRUE(fs::is_regular_file(h("rw/l")));
  EXPECT_EQ(fs::read_symlink(h("rw/l2")), "target");
}

// A POSIX ACL xattr value (system.posix_acl_access): version 2, then (tag, perm, id) entries.
std::string aclValue(std::initializer_list<std::tuple<uint16_t, uint16_t, uint32_t>> entries) {
  std::string out;
  auto put = [&](uint64_t v, int width) {
    for (int i = 0; i < width; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  };
  put(2, 4);
  for (auto [tag, perm, id] : entries) {
    put(tag, 2);
    put(perm, 2);
    put(id, 4);
  }
  return out;
}
constexpr uint16_t kAclUserObj = 1, kAclUser = 2, kAclGroupObj = 4, kAclMask = 0x10,
                   kAclOther = 0x20;
constexpr uint32_t kAclUndefinedId = 0xffffffff;

TEST_F(ConformanceTest, XattrsAndPosixAclsDecideAccess) {
  std::ofstream(h("f")) << "acl";
  fs::permissions(h("f"), fs::perms(0600));
  fs::create_directory(h("d"));
  startAll();
  // Grant uid 65534 read access through an ACL set via the mount.
  std::string acl = aclValue({{kAclUserObj, 6, kAclUndefinedId},
                              {kAclUser, 4, kNobody},
                              {kAclGroupObj, 0, kAclUndefinedId},
                              {kAclMask, 4, kAclUndefinedId},
                              {kAclOther, 0, kAclUndefinedId}});
  if (::setxattr(h("d").c_str(), "user.probe", "1", 1, 0) != 0) {
    GTEST_FAIL() << "the host filesystem has no xattrs: " << std::strerror(errno);
  }
  ASSERT_EQ(::setxattr(m("f").c_str(), "system.posix_acl_access", acl.data(), acl.size(), 0), 0)
      << std::strerror(errno);
  char buffer[256];
  ssize_t n = ::getxattr(h("f").c_str(), "system.posix_acl_access", buffer, sizeof buffer);
  ASSERT_EQ(n, static_cast<ssize_t>(acl.size()));
  // A default ACL on a directory is inherited by what is created in it through the mount.
  ASSERT_EQ(::setxattr(m("d").c_str(), "system.posix_acl_default", acl.data(), acl.size(), 0), 0)
      << std::strerror(errno);
  int result = runAsNobody({}, 077, [&] {
    if (readFile(m("f")) != "acl") return 1;
    if (openErrno(m("f"), O_WRONLY) != EACCES) return 2;
    // user xattrs need write permission on the file.
    if (::setxattr(m("f").c_str(), "user.x", "1", 1, 0) == 0 || errno != EACCES) return 3;
    return 0;
  });
  EXPECT_EQ(result, 0);
  writeFile(m("d/child"), "c");  // umask 022 of this process is ignored: the default ACL rules
  n = ::getxattr(h("d/child").c_str(), "system.posix_acl_access", buffer, sizeof buffer);
  EXPECT_GT(n, 0) << std::strerror(errno);
  EXPECT_EQ(runAsNobody({}, 077, [&] { return readFile(m("d/child")) == "c" ? 0 : 1; }), 0);
}

// ---- Node types and readdir details. ----

TEST_F(ConformanceTest, MknodFifosSocketsAndDevices) {
  startAll();
  ASSERT_EQ(::mknod(m("fifo").c_str(), S_IFIFO | 0640, 0), 0);
  struct stat st;
  ASSERT_EQ(::lstat(h("fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  // A socket bound inside the mount is a mknod(S_IFSOCK) on the host.
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = m("sock");
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  ASSERT_EQ(::lstat(h("sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  // Device nodes: placeholders on the host, the client's nodes through the mount; the mount is
  // nodev, so none opens a device (see README, Security decisions).
  ASSERT_EQ(::mknod(m("blk").c_str(), S_IFBLK | 0600, makedev(8, 0)), 0) << std::strerror(errno);
  ASSERT_EQ(::lstat(m("blk").c_str(), &st), 0);
  EXPECT_TRUE(S_ISBLK(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(8, 0));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::lstat(h("blk").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(openErrno(m("blk"), O_RDONLY), EACCES);
  ASSERT_EQ(::chmod(m("blk").c_str(), 0640), 0);
  ASSERT_EQ(::rename(m("blk").c_str(), m("blk2").c_str()), 0);
  ASSERT_EQ(::lstat(m("blk2").c_str(), &st), 0);
  EXPECT_TRUE(S_ISBLK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  char names[256];
  EXPECT_EQ(::listxattr(m("blk2").c_str(), names, sizeof names), 0);
  // ... and ones made on the host cannot be opened through the mount.
  ASSERT_EQ(::mknod(h("null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  EXPECT_EQ(openErrno(m("null"), O_RDONLY), EACCES);
  // Unprivileged callers get what the host kernel says.
  fs::permissions(hostRoot_, fs::perms(0777));
  EXPECT_EQ(runAsNobody({}, 022,
                        [&] {
                          if (::mkfifo(m("nobodys-fifo").c_str(), 0600) != 0) return 1;
                          return ::mknod(m("c").c_str(), S_IFCHR | 0600, makedev(1, 3)) == -1 &&
                                         errno == EPERM
                                     ? 0
                                     : 2;
                        }),
            0);
}

// Names of 256 to 1024 bytes: ENAMETOOLONG from every call that takes one, as on the host.
TEST_F(ConformanceTest, OverlongNamesAreEnametoolong) {
  startAll();
  ASSERT_EQ(::mkdir(m("d").c_str(), 0755), 0);
  std::ofstream(h("f")) << "x";
  for (size_t length : {256u, 1024u}) {
    SCOPED_TRACE(length);
    std::string name = m(std::string(length, 'n'));
    auto fails = [](int result) { return result == -1 ? errno : 0; };
    EXPECT_EQ(fails(::mkdir(name.c_str(), 0755)), ENAMETOOLONG);
    EXPECT_EQ(fails(::mknod(name.c_str(), S_IFREG | 0644, 0)), ENAMETOOLONG);
    EXPECT_EQ(fails(::mkfifo(name.c_str(), 0644)), ENAMETOOLONG);
    EXPECT_EQ(openErrno(name, O_RDONLY), ENAMETOOLONG);
    EXPECT_EQ(openErrno(name, O_CREAT | O_WRONLY), ENAMETOOLONG);
    EXPECT_EQ(fails(::unlink(name.c_str())), ENAMETOOLONG);
    EXPECT_EQ(fails(::rmdir(name.c_str())), ENAMETOOLONG);
    EXPECT_EQ(fails(::link(m("f").c_str(), name.c_str())), ENAMETOOLONG);
    EXPECT_EQ(fails(::symlink("f", name.c_str())), ENAMETOOLONG);
    EXPECT_EQ(fails(::rename(m("f").c_str(), name.c_str())), ENAMETOOLONG);
    EXPECT_EQ(fails(::chmod(name.c_str(), 0600)), ENAMETOOLONG);
    EXPECT_EQ(fails(::chown(name.c_str(), 0, 0)), ENAMETOOLONG);
    EXPECT_EQ(fails(::truncate(name.c_str(), 0)), ENAMETOOLONG);
  }
  EXPECT_TRUE(fs::exists(h("f")));
}

TEST_F(ConformanceTest, ReaddirReportsTypesAndInodesLikeTheHost) {
  fs::create_directory(h("d"));
  fs::create_directory(h("d/sub"));
  std::ofstream(h("d/file")) << "x";
  fs::create_symlink("file", h("d/link"));
  ASSERT_EQ(::mkfifo(h("d/fifo").c_str(), 0600), 0);
  startAll();
  std::map<std::string, std::pair<unsigned char, ino_t>> viaMount, onHost;
  auto list = [](const std::string& dir, auto& out) {
    DIR* d = ::opendir(dir.c_str());
    ASSERT_NE(d, nullptr);
    while (dirent* e = ::readdir(d)) out[e->d_name] = {e->d_type, e->d_ino};
    ::closedir(d);
  };
  list(m("d"), viaMount);
  list(h("d"), onHost);
  ASSERT_EQ(viaMount.size(), onHost.size());
  for (const auto& [name, typeAndIno] : onHost) {
    ASSERT_TRUE(viaMount.count(name)) << name;
    EXPECT_EQ(viaMount[name].first, typeAndIno.first) << name;
    if (name != "." && name != "..") {
      EXPECT_EQ(viaMount[name].second, typeAndIno.second) << name;
    }
  }
  // readdirplus filled the attribute cache: stat agrees with the host for every entry.
  for (const char* name : {"sub", "file", "link", "fifo"}) {
    struct stat a, b;
    ASSERT_EQ(::lstat(m(std::string("d/") + name).c_str(), &a), 0);
    ASSERT_EQ(::lstat(h(std::string("d/") + name).c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_EQ(a.st_mode, b.st_mode);
    EXPECT_EQ(a.st_size, b.st_size);
  }
  // telldir/seekdir: resuming a listing at a remembered offset.
  DIR* d = ::opendir(m("d").c_str());
  ASSERT_NE(d, nullptr);
  ::readdir(d);
  long position = ::telldir(d);
  std::string next = ::readdir(d)->d_name;
  while (::readdir(d)) {
  }
  ::seekdir(d, position);
  dirent* again = ::readdir(d);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(next, again->d_name);
  ::closedir(d);
}

TEST_F(ConformanceTest, OpenFlagsExclTruncAppendAndUnlinkedFiles) {
  startAll();
  int fd = ::open(m("f").c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  UniqueFd file(fd);
  writeAll(file.get(), "abc");
  EXPECT_EQ(openErrno(m("f"), O_CREAT | O_EXCL | O_RDWR), EEXIST);
  {
    UniqueFd append(::open(m("f").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    ASSERT_TRUE(append);
    ASSERT_EQ(::pwrite(file.get(), "Z", 1, 0), 1);
    writeAll(append.get(), "def");  // at the end, whatever the offset
  }
  EXPECT_EQ(readFile(h("f")), "Zbcdef");
  // An unlinked file stays usable through open descriptors.
  ASSERT_EQ(::unlink(m("f").c_str()), 0);
  EXPECT_FALSE(fs::exists(h("f")));
  char buf[8] = {};
  EXPECT_EQ(::pread(file.get(), buf, sizeof buf, 0), 6);
  EXPECT_EQ(std::string(buf, 6), "Zbcdef");
  struct stat st;
  ASSERT_EQ(::fstat(file.get(), &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
  {
    UniqueFd trunc(::open(m("g").c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(trunc);
    writeAll(trunc.get(), "long content");
  }
  UniqueFd trunc(::open(m("g").c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  ASSERT_TRUE(trunc);
  EXPECT_EQ(fs::file_size(h("g")), 0u);
  // O_DIRECTORY on a file, and a directory opened for writing.
  EXPECT_EQ(openErrno(m("g"), O_RDONLY | O_DIRECTORY), ENOTDIR);
  ASSERT_EQ(::mkdir(m("dir").c_str(), 0755), 0);
  EXPECT_EQ(openErrno(m("dir"), O_WRONLY), EISDIR);
}

// ---- Escape attempts. ----

TEST_F(ConformanceTest, SymlinksPointingOutAreResolvedByTheClientOnly) {
  fs::create_directory(h("d"));
  fs::create_symlink("../../secret", h("d/up"));
  fs::create_symlink(tmp_ / "srv/secret", h("abs"));
  startAll();
  // Both name the host's secret when resolved on the host; through the mount they resolve in
  // the client's namespace, where tmp/srv/secret is reached only by the absolute link (the tests
  // share one namespace), never by walking up out of the served tree.
  EXPECT_EQ(openErrno(m("d/up"), O_RDONLY), ENOENT);
  EXPECT_EQ(readFile(m("abs")), "host secret");  // the client's own path, not through the server
  // Creating through a dangling link creates in the client's namespace, not beside the root.
  EXPECT_EQ(openErrno(m("d/up"), O_CREAT | O_WRONLY), 0);
  EXPECT_TRUE(fs::exists(tmp_ / "secret"));
  fs::remove(tmp_ / "secret");
  // The server refuses to act on the link itself as if it were its target.
  EXPECT_EQ(::truncate(m("d/up").c_str(), 0), -1);
  EXPECT_EQ(readFile(tmp_ / "srv/secret"), "host secret");
  EXPECT_EQ(openErrno(m("d/up"), O_RDONLY | O_NOFOLLOW), ELOOP);
  EXPECT_EQ(::lchown(m("d/up").c_str(), 1, 1), 0);  // the link itself, on the host
  struct stat st;
  ASSERT_EQ(::lstat(h("d/up").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1u);
  ASSERT_EQ(::stat((tmp_ / "srv/secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
}

TEST_F(ConformanceTest, RenameRacesNeverLeaveTheRoot) {
  fs::create_directories(h("a/b/c"));
  startAll();
  std::atomic<bool> stop = false;
  std::atomic<int> leaks = 0;
  // One thread moves a subtree up and down while another walks ".." chains from inside it:
  // whatever the interleaving, ".." is resolved by the client's kernel within the mount, so the
  // walk ends at the mountpoint or above it in the client's namespace, never at tmp/srv.
  std::thread mover([&] {
    for (int i = 0; i < 300 && !stop; ++i) {
      ::rename(m("a/b").c_str(), m("b").c_str());
      ::rename(m("b").c_str(), m("a/b").c_str());
    }
    stop = true;
  });
  std::thread walker([&] {
    while (!stop) {
      // On the host, root/../secret is the secret; through the mount each of these is
      // mnt/secret, which does not exist.
      for (const char* path : {"a/b/c/../../../secret", "b/c/../../secret", "a/../secret"}) {
        std::string content = readFile(m(path));
        if (content == "host secret") ++leaks;
      }
    }
  });
  mover.join();
  walker.join();
  EXPECT_EQ(leaks, 0);
  EXPECT_TRUE(fs::is_directory(h("a/b/c")) || fs::is_directory(h("b/c")));
}

// ---- Malformed frames sent straight to a running server. ----

class RawConnection {
 public:
  explicit RawConnection(const std::string& socket)
      : fd_(connectEndpoint(parseEndpoint("unix:" + socket))) {
    timeval timeout{10, 0};  // a server that hangs fails the test instead of hanging it
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  }
  int fd() const { return fd_.get(); }
  void handshake() { clientHandshake(fd_.get()); }
  void sendRaw(const std::vector<uint8_t>& bytes) {
    ASSERT_EQ(::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  void sendFrame(uint16_t opcode, uint64_t id, const std::vector<uint8_t>& payload,
                 uint16_t flags = 0) {
    FrameWriter(fd_.get()).write({.opcode = opcode, .flags = flags, .requestId = id}, payload);
  }
  // The errno of the reply to `id`, or -1 if the server closed the connection instead.
  int replyErrno(uint64_t id) {
    try {
      auto frame = FrameReader(fd_.get(), kMaxFramePayload, 0).read();
      if (!frame) return -1;
      EXPECT_EQ(frame->header.requestId, id);
      EXPECT_EQ(frame->header.flags, kFrameReply);
      WireReader r(frame->payload);
      int e = r.i32();
      EXPECT_FALSE(r.failed());
      return e;
    } catch (const SysError& e) {
      EXPECT_NE(e.code(), EAGAIN) << "no reply within the timeout";
      return -1;
    } catch (const std::exception&) {
      return -1;
    }
  }

 private:
  UniqueFd fd_;
};

std::vector<uint8_t> body(const std::function<void(WireWriter&)>& fields) {
  WireWriter w;
  encodeCredentials(w, Credentials{.uid = 0, .gid = 0, .pid = 1, .umask = 022, .groups = {}});
  fields(w);
  return w.take();
}

TEST_F(ConformanceTest, MalformedFramesGetErrorsOrACloseAndTheServerLivesOn) {
  startServer();
  {
    RawConnection c(socket_);
    c.handshake();
    auto op = [](Opcode o) { return static_cast<uint16_t>(o); };
    c.sendFrame(999, 1, body([](WireWriter&) {}));
    EXPECT_EQ(c.replyErrno(1), ENOSYS);
    c.sendFrame(op(Opcode::kLookup), 2, body([](WireWriter& w) { w.u64(1); }));  // no name
    EXPECT_EQ(c.replyErrno(2), EPROTO);
    c.sendFrame(op(Opcode::kLookup), 3, body([](WireWriter& w) {
                  w.u64(1);
                  w.string("../srv");
                }));
    EXPECT_EQ(c.replyErrno(3), EINVAL);
    c.sendFrame(op(Opcode::kLookup), 4, body([](WireWriter& w) {
                  w.u64(1);
                  w.string("..");
                }));
    EXPECT_EQ(c.replyErrno(4), EINVAL);
    c.sendFrame(op(Opcode::kGetattr), 5, body([](WireWriter& w) {
                  w.u64(0xdeadbeef);
                  w.u8(0);
                  w.u64(0);
                }));
    EXPECT_EQ(c.replyErrno(5), ESTALE);
    c.sendFrame(op(Opcode::kRead), 6, body([](WireWriter& w) {
                  w.u64(77);
                  w.u64(0);
                  w.u32(16);
                }));
    EXPECT_EQ(c.replyErrno(6), EBADF);
    // A group count far beyond the limit, and a truncated credentials block.
    WireWriter groups;
    for (uint32_t v : {0u, 0u, 1u, 022u, 0x7fffffffu}) groups.u32(v);
    c.sendFrame(op(Opcode::kStatfs), 7, groups.take());
    EXPECT_EQ(c.replyErrno(7), EPROTO);
    c.sendFrame(op(Opcode::kStatfs), 8, {1, 2, 3});
    EXPECT_EQ(c.replyErrno(8), EPROTO);
    // A malformed interrupt, or one naming nothing, gets no reply; the next request still does.
    c.sendFrame(op(Opcode::kInterrupt), 9, {1});
    c.sendFrame(op(Opcode::kInterrupt), 0, body([](WireWriter& w) { w.u64(12345); }));
    c.sendFrame(op(Opcode::kStatfs), 10, body([](WireWriter& w) { w.u64(1); }));
    EXPECT_EQ(c.replyErrno(10), 0);
    // A frame claiming more than the largest payload: the connection is closed before reading.
    std::vector<uint8_t> huge(kFrameHeaderSize);
    encodeFrameHeader({.payloadLength = kMaxFramePayload + 1,
                       .opcode = op(Opcode::kWrite),
                       .flags = 0,
                       .requestId = 11},
                      huge.data());
    c.sendRaw(huge);
    EXPECT_EQ(c.replyErrno(11), -1);
  }
  {
    RawConnection c(socket_);  // a reply flag on a request closes the connection
    c.handshake();
    c.sendFrame(static_cast<uint16_t>(Opcode::kStatfs), 1, body([](WireWriter& w) { w.u64(1); }),
                kFrameReply);
    EXPECT_EQ(c.replyErrno(1), -1);
  }
  {
    RawConnection c(socket_);  // a request before the handshake
    c.sendFrame(static_cast<uint16_t>(Opcode::kStatfs), 1, body([](WireWriter& w) { w.u64(1); }));
    EXPECT_EQ(c.replyErrno(1), -1);
  }
  {
    RawConnection c(socket_);  // a frame cut short, then the end of the stream
    c.handshake();
    std::vector<uint8_t> header(kFrameHeaderSize);
    encodeFrameHeader({.payloadLength = 100, .opcode = 4, .flags = 0, .requestId = 1},
                      header.data());
    header.push_back(1);
    c.sendRaw(header);
    ::shutdown(c.fd(), SHUT_WR);
    EXPECT_EQ(c.replyErrno(1), -1);
  }
  {
    std::mt19937 random(1234);  // garbage after a valid handshake
    for (int round = 0; round < 20; ++round) {
      RawConnection c(socket_);
      c.handshake();
      std::vector<uint8_t> junk(1 + random() % 200);
      for (auto& b : junk) b = static_cast<uint8_t>(random());
      c.sendRaw(junk);
      ::shutdown(c.fd(), SHUT_WR);
      while (true) {  // read until the server closes: it must, and must not crash
        char buf[4096];
        ssize_t n = ::read(c.fd(), buf, sizeof buf);
        if (n <= 0) break;
      }
    }
  }
  ASSERT_EQ(::kill(server_->pid(), 0), 0);  // alive
  startMount();
  writeFile(m("after"), "still serving");
  EXPECT_EQ(readFile(h("after")), "still serving");
}

}  // namespace
}  // namespace fcvm::fusepipe
