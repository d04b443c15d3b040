// Tests on a real FUSE mount (see mount_fixture.h); conformance_test.cc has the wider suite.
#include <gtest/gtest.h>

#include "fuse-pipe/mount_fixture.h"

namespace fcvm::fusepipe {
namespace {

namespace fs = std::filesystem;

TEST_F(MountTest, CreateWriteReadAppendTruncateUnlink) {
  startAll();
  writeFile(m("file"), "hello world");
  EXPECT_EQ(readFile(h("file")), "hello world");
  EXPECT_EQ(readFile(m("file")), "hello world");
  writeFile(m("file"), "!", O_APPEND);
  EXPECT_EQ(readFile(h("file")), "hello world!");
  EXPECT_EQ(openErrno(m("file"), O_CREAT | O_EXCL | O_WRONLY), EEXIST);
  EXPECT_EQ(openErrno(m("fresh"), O_CREAT | O_EXCL | O_WRONLY), 0);
  EXPECT_TRUE(fs::exists(h("fresh")));
  writeFile(m("file"), "new", O_TRUNC);
  EXPECT_EQ(readFile(h("file")), "new");
  {
    UniqueFd fd(::open(m("file").c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::pwrite(fd.get(), "xy", 2, 10), 2);  // leaves a hole
    char buf[16] = {};
    ASSERT_EQ(::pread(fd.get(), buf, sizeof buf, 0), 12);
    EXPECT_EQ(std::string(buf, 12), std::string("new") + std::string(7, '\0') + "xy");
  }
  EXPECT_EQ(fs::file_size(h("file")), 12u);
  ASSERT_EQ(::unlink(m("file").c_str()), 0);
  EXPECT_FALSE(fs::exists(h("file")));
  EXPECT_EQ(openErrno(m("file"), O_RDONLY), ENOENT);
  EXPECT_EQ(::unlink(m("file").c_str()), -1);
  EXPECT_EQ(errno, ENOENT);
}

// An open of a file (or directory) unchanged since its previous open keeps the kernel's cached
// pages (keep_cache); a change on the host in between, even one that keeps size and mtime, is seen.
TEST_F(MountTest, CachedDataIsKeptOnlyWhileTheHostFileIsUnchanged) {
  startAll();
  writeFile(h("file"), "first version");
  ASSERT_EQ(::mkdir(h("dir").c_str(), 0755), 0);
  writeFile(h("dir/a"), "");
  // A version is trusted only once its ctime is more than a clock tick old (a second, to be sure).
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  auto list = [&] {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(m("dir"))) names.insert(e.path().filename());
    return names;
  };
  EXPECT_EQ(list(), std::set<std::string>{"a"});
  EXPECT_EQ(list(), std::set<std::string>{"a"});  // kept: the kernel's cached listing
  writeFile(h("dir/b"), "");
  EXPECT_EQ(list(), (std::set<std::string>{"a", "b"}));
  writeFile(m("dir/c"), "");
  EXPECT_EQ(list(), (std::set<std::string>{"a", "b", "c"}));
  ASSERT_EQ(::unlink(m("dir/a").c_str()), 0);
  EXPECT_EQ(list(), (std::set<std::string>{"b", "c"}));
  EXPECT_EQ(readFile(m("file")), "first version");
  EXPECT_EQ(readFile(m("file")), "first version");  // kept: served from the page cache
  struct stat before {};
  ASSERT_EQ(::stat(h("file").c_str(), &before), 0);
  writeFile(h("file"), "other version", O_TRUNC);  // same size...
  const timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, h("file").c_str(), times, 0), 0);  // ...and the same mtime
  EXPECT_EQ(readFile(m("file")), "other version");
  writeFile(m("file"), "written via mount", O_TRUNC);
  EXPECT_EQ(readFile(m("file")), "written via mount");
  EXPECT_EQ(readFile(h("file")), "written via mount");
}

TEST_F(MountTest, LargeFileRoundTrips) {
  startAll();
  std::string data(3 * 1024 * 1024 + 123, '\0');
  std::mt19937 random(7);
  for (auto& c : data) c = static_cast<char>(random());
  writeFile(m("big"), data);
  EXPECT_EQ(readFile(h("big")), data);
  EXPECT_EQ(readFile(m("big")), data);
}

TEST_F(MountTest, DirectoriesAndLongListings) {
  startAll();
  ASSERT_EQ(::mkdir(m("d").c_str(), 0750), 0);
  ASSERT_EQ(::mkdir(m("d/sub").c_str(), 0755), 0);
  EXPECT_TRUE(fs::is_directory(h("d/sub")));
  std::set<std::string> expected = {"sub"};
  for (int i = 0; i < 400; ++i) {  // far more than one readdir buffer
    std::string name = "entry-" + std::to_string(i) + "-" + std::string(80, 'n');
    writeFile(m("d/" + name), "");
    expected.insert(name);
  }
  std::set<std::string> listed;
  for (const auto& e : fs::directory_iterator(m("d"))) listed.insert(e.path().filename());
  EXPECT_EQ(listed, expected);
  EXPECT_EQ(::rmdir(m("d").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  ASSERT_EQ(::rmdir(m("d/sub").c_str()), 0);
  EXPECT_FALSE(fs::exists(h("d/sub")));
  EXPECT_EQ(::mkdir(m("d").c_str(), 0755), -1);
  EXPECT_EQ(errno, EEXIST);
}

TEST_F(MountTest, RenameLinkSymlinkReadlink) {
  startAll();
  writeFile(m("a"), "A");
  writeFile(m("b"), "B");
  ASSERT_EQ(::rename(m("a").c_str(), m("c").c_str()), 0);
  EXPECT_FALSE(fs::exists(h("a")));
  EXPECT_EQ(readFile(h("c")), "A");
  ASSERT_EQ(::rename(m("c").c_str(), m("b").c_str()), 0);  // replaces b
  EXPECT_EQ(readFile(h("b")), "A");

  EXPECT_EQ(::renameat2(AT_FDCWD, m("b").c_str(), AT_FDCWD, m("b").c_str(), RENAME_NOREPLACE), -1);
  writeFile(m("other"), "O");
  EXPECT_EQ(::renameat2(AT_FDCWD, m("b").c_str(), AT_FDCWD, m("other").c_str(), RENAME_NOREPLACE),
            -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_EQ(::renameat2(AT_FDCWD, m("b").c_str(), AT_FDCWD, m("other").c_str(), RENAME_EXCHANGE),
            0);
  EXPECT_EQ(readFile(h("b")), "O");
  EXPECT_EQ(readFile(h("other")), "A");

  ASSERT_EQ(::link(m("b").c_str(), m("hard").c_str()), 0);
  struct stat st;
  ASSERT_EQ(::stat(m("hard").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  EXPECT_EQ(fs::hard_link_count(h("b")), 2u);

  ASSERT_EQ(::symlink("some/target", m("sym").c_str()), 0);
  EXPECT_EQ(fs::read_symlink(h("sym")), "some/target");
  EXPECT_EQ(fs::read_symlink(m("sym")), "some/target");
  ASSERT_EQ(::lstat(m("sym").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));

  ASSERT_EQ(::mkdir(m("dir").c_str(), 0755), 0);
  ASSERT_EQ(::rename(m("dir").c_str(), m("dir2").c_str()), 0);
  EXPECT_TRUE(fs::is_directory(h("dir2")));
}

TEST_F(MountTest, SetattrModeOwnerTimesSize) {
  startAll();
  writeFile(m("f"), "0123456789");
  ASSERT_EQ(::chmod(m("f").c_str(), 0600), 0);
  struct stat st;
  ASSERT_EQ(::stat(h("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::chown(m("f").c_str(), 1234, 5678), 0);
  ASSERT_EQ(::stat(h("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);

  timespec times[2] = {{1000, 500}, {2000, 600}};
  ASSERT_EQ(::utimensat(AT_FDCWD, m("f").c_str(), times, 0), 0);
  ASSERT_EQ(::stat(h("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_atim.tv_sec, 1000);
  EXPECT_EQ(st.st_atim.tv_nsec, 500);
  EXPECT_EQ(st.st_mtim.tv_sec, 2000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 600);
  timespec omitNow[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  time_t before = ::time(nullptr);
  ASSERT_EQ(::utimensat(AT_FDCWD, m("f").c_str(), omitNow, 0), 0);
  ASSERT_EQ(::stat(h("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_atim.tv_sec, 1000);  // omitted: unchanged
  EXPECT_GE(st.st_mtim.tv_sec, before);

  ASSERT_EQ(::truncate(m("f").c_str(), 3), 0);
  EXPECT_EQ(readFile(h("f")), "012");
  UniqueFd fd(::open(m("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd);
  ASSERT_EQ(::ftruncate(fd.get(), 5), 0);
  EXPECT_EQ(fs::file_size(h("f")), 5u);
  ASSERT_EQ(::fchmod(fd.get(), 0640), 0);
  ASSERT_EQ(::stat(h("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

TEST_F(MountTest, FsyncStatfsAccessMknod) {
  startAll();
  UniqueFd fd(::open(m("f").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd);
  writeAll(fd.get(), "data");
  EXPECT_EQ(::fsync(fd.get()), 0);
  EXPECT_EQ(::fdatasync(fd.get()), 0);
  UniqueFd dir(::open(mountpoint_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir);
  EXPECT_EQ(::fsync(dir.get()), 0);

  struct statvfs viaMount, onHost;
  ASSERT_EQ(::statvfs(mountpoint_.c_str(), &viaMount), 0);
  ASSERT_EQ(::statvfs(hostRoot_.c_str(), &onHost), 0);
  EXPECT_EQ(viaMount.f_blocks * viaMount.f_frsize, onHost.f_blocks * onHost.f_frsize);
  EXPECT_EQ(viaMount.f_namemax, onHost.f_namemax);

  EXPECT_EQ(::access(m("f").c_str(), R_OK | W_OK), 0);
  EXPECT_EQ(::access(m("missing").c_str(), F_OK), -1);
  EXPECT_EQ(errno, ENOENT);

  ASSERT_EQ(::mkfifo(m("fifo").c_str(), 0600), 0);
  EXPECT_TRUE(fs::is_fifo(h("fifo")));
  // A device node is a placeholder on the host (see ConformanceTest.MknodFifosSocketsAndDevices).
  ASSERT_EQ(::mknod(m("null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  EXPECT_TRUE(fs::is_character_file(m("null")));
  EXPECT_TRUE(fs::is_regular_file(h("null")));
}

TEST_F(MountTest, ConcurrentCallersAreMultiplexed) {
  startAll();
  constexpr int kThreads = 8;
  std::atomic<int> failures = 0;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        std::string name = m("t" + std::to_string(t) + "-" + std::to_string(i % 5));
        std::string content(1000 + t * 100 + i, static_cast<char>('a' + t));
        {
          UniqueFd fd(::open(name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
          if (!fd || ::write(fd.get(), content.data(), content.size()) !=
                         static_cast<ssize_t>(content.size())) {
            ++failures;
            continue;
          }
        }
        if (readFile(name) != content) ++failures;
        struct stat st;
        if (::stat(mountpoint_.c_str(), &st) != 0) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
}

TEST_F(MountTest, HostSymlinksAreNotFollowedByTheServer) {
  fs::create_symlink("../secret", h("link"));  // on the host this reaches tmp/srv/secret
  fs::create_symlink("/", h("abs"));
  startAll();
  EXPECT_EQ(fs::read_symlink(m("link")), "../secret");
  // The client resolves the link in its own namespace: mnt/../secret is tmp/secret, which does
  // not exist; the host's tmp/srv/secret stays out of reach.
  EXPECT_EQ(openErrno(m("link"), O_RDONLY), ENOENT);
  EXPECT_EQ(openErrno(m("link"), O_WRONLY | O_CREAT), 0);  // creates tmp/secret, outside both
  EXPECT_EQ(readFile(tmp_ / "srv/secret"), "host secret");
  fs::remove(tmp_ / "secret");
  // ".." from the mount's root is the mountpoint's parent, never the served root's parent.
  struct stat viaDotDot, parent;
  ASSERT_EQ(::stat(m("..").c_str(), &viaDotDot), 0);
  ASSERT_EQ(::stat(tmp_.path().c_str(), &parent), 0);
  EXPECT_EQ(viaDotDot.st_ino, parent.st_ino);
  EXPECT_EQ(fs::read_symlink(m("abs")), "/");
}

TEST_F(MountTest, ReadOnlyServerRefusesMutationsWithErofs) {
  std::ofstream(h("file")) << "content";
  fs::create_directory(h("dir"));
  startAll(/*readOnly=*/true);
  EXPECT_EQ(readFile(m("file")), "content");
  EXPECT_EQ(openErrno(m("new"), O_CREAT | O_WRONLY), EROFS);
  EXPECT_EQ(openErrno(m("file"), O_WRONLY), EROFS);
  EXPECT_EQ(openErrno(m("file"), O_RDONLY | O_TRUNC), EROFS);
  EXPECT_EQ(::mkdir(m("d2").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::unlink(m("file").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::rmdir(m("dir").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::chmod(m("file").c_str(), 0600), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::rename(m("file").c_str(), m("moved").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::symlink("x", m("sym").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  // The client learned in the handshake that the server is read-only and mounted read-only.
  struct statvfs st;
  ASSERT_EQ(::statvfs(mountpoint_.c_str(), &st), 0);
  EXPECT_TRUE(st.f_flag & ST_RDONLY);
  EXPECT_EQ(readFile(h("file")), "content");
  EXPECT_TRUE(fs::is_directory(h("dir")));
}

TEST_F(MountTest, SignalUnmountsCleanly) {
  startAll();
  writeFile(m("f"), "x");
  int status = mount_->signalAndWait(SIGINT);
  mount_.reset();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_FALSE(isMounted(mountpoint_));
  EXPECT_EQ(readFile(h("f")), "x");
}

TEST_F(MountTest, OneServerServesSeveralMountsAndStopsCleanlyOnSigterm) {
  startAll();
  const std::string second = tmp_ / "mnt2";
  fs::create_directory(second);
  UnmountGuard secondGuard(second);
  auto secondMount = Child::startAndWaitReady({FUSE_PIPE_BINARY, "--log-level", "warn", "mount",
                                               "--connect", "unix:" + socket_, second,
                                               "--cache-timeout", "0", "--ready-fd", "3"});
  writeFile(m("shared"), "from the first mount");
  EXPECT_EQ(readFile(second + "/shared"), "from the first mount");
  writeFile(second + "/other", "from the second");
  EXPECT_EQ(readFile(m("other")), "from the second");

  int status = server_->signalAndWait(SIGTERM);
  server_.reset();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_EQ(openErrno(m("shared"), O_RDONLY), EIO);
  EXPECT_EQ(openErrno(second + "/shared", O_RDONLY), EIO);
  status = secondMount->signalAndWait(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_FALSE(isMounted(second));
}

TEST_F(MountTest, ServerDeathGivesEioAndTheMountStillUnmounts) {
  startAll();
  writeFile(m("f"), "x");
  UniqueFd openBefore(::open(m("f").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(openBefore);
  server_->signalAndWait(SIGKILL);
  server_.reset();
  EXPECT_EQ(openErrno(m("f"), O_RDONLY), EIO);
  EXPECT_EQ(openErrno(m("g"), O_CREAT | O_WRONLY), EIO);
  struct stat st;
  EXPECT_EQ(::stat(m("f").c_str(), &st), -1);
  EXPECT_EQ(errno, EIO);
  char c;
  EXPECT_EQ(::pread(openBefore.get(), &c, 1, 0), -1);
  EXPECT_EQ(errno, EIO);
  openBefore.reset();
  int status = mount_->signalAndWait(SIGTERM);
  mount_.reset();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_FALSE(isMounted(mountpoint_));
}

TEST_F(MountTest, ExtendedAttributes) {
  startAll();
  writeFile(m("f"), "x");
  if (::setxattr(h("f").c_str(), "user.probe", "1", 1, 0) != 0) {
    GTEST_FAIL() << "the host filesystem has no user xattrs: " << std::strerror(errno);
  }
  ASSERT_EQ(::removexattr(h("f").c_str(), "user.probe"), 0);
  ASSERT_EQ(::setxattr(m("f").c_str(), "user.color", "blue", 4, 0), 0);
  char value[64] = {};
  ASSERT_EQ(::getxattr(h("f").c_str(), "user.color", value, sizeof value), 4);
  EXPECT_EQ(std::string(value, 4), "blue");
  EXPECT_EQ(::getxattr(m("f").c_str(), "user.color", nullptr, 0), 4);  // size query
  std::memset(value, 0, sizeof value);
  ASSERT_EQ(::getxattr(m("f").c_str(), "user.color", value, sizeof value), 4);
  EXPECT_EQ(std::string(value, 4), "blue");
  EXPECT_EQ(::getxattr(m("f").c_str(), "user.color", value, 2), -1);
  EXPECT_EQ(errno, ERANGE);
  EXPECT_EQ(::setxattr(m("f").c_str(), "user.color", "red", 3, XATTR_CREATE), -1);
  EXPECT_EQ(errno, EEXIST);

  // Namespaces that would grant privileges on the host are refused, and hidden when listing.
  EXPECT_EQ(::setxattr(m("f").c_str(), "trusted.evil", "1", 1, 0), -1);
  EXPECT_EQ(errno, EPERM);
  // (security.capability itself is validated by the client kernel first; the request handler
  // test covers it reaching the server.)
  EXPECT_EQ(::setxattr(m("f").c_str(), "security.evil", "1", 1, 0), -1);
  EXPECT_EQ(errno, EPERM);
  ASSERT_EQ(::setxattr(h("f").c_str(), "trusted.hostonly", "1", 1, 0), 0);
  char list[256] = {};
  ssize_t n = ::listxattr(m("f").c_str(), list, sizeof list);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(list, static_cast<size_t>(n)), std::string("user.color\0", 11));
  EXPECT_EQ(::listxattr(m("f").c_str(), nullptr, 0), 11);

  ASSERT_EQ(::removexattr(m("f").c_str(), "user.color"), 0);
  EXPECT_EQ(::getxattr(h("f").c_str(), "user.color", value, sizeof value), -1);
  EXPECT_EQ(errno, ENODATA);
  EXPECT_EQ(::removexattr(m("f").c_str(), "trusted.hostonly"), -1);
  EXPECT_EQ(errno, EPERM);
}

TEST_F(MountTest, FallocateSeekDataHoleCopyFileRange) {
  startAll();
  constexpr off_t kMiB = 1 << 20;
  {
    UniqueFd fd(::open(m("sparse").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::fallocate(fd.get(), 0, 0, kMiB), 0);
    EXPECT_EQ(fs::file_size(h("sparse")), static_cast<uintmax_t>(kMiB));
    struct stat st;
    ASSERT_EQ(::stat(h("sparse").c_str(), &st), 0);
    EXPECT_GE(st.st_blocks * 512, kMiB);
    ASSERT_EQ(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, kMiB), 0);
    ASSERT_EQ(::pwrite(fd.get(), "data", 4, 2 * kMiB), 4);
  }
  // SEEK_DATA / SEEK_HOLE through the mount agree with the host.
  UniqueFd viaMount(::open(m("sparse").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd onHost(::open(h("sparse").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(viaMount && onHost);
  for (off_t at : {off_t{0}, kMiB, 2 * kMiB}) {
    EXPECT_EQ(::lseek(viaMount.get(), at, SEEK_DATA), ::lseek(onHost.get(), at, SEEK_DATA)) << at;
    EXPECT_EQ(::lseek(viaMount.get(), at, SEEK_HOLE), ::lseek(onHost.get(), at, SEEK_HOLE)) << at;
  }
  EXPECT_EQ(::lseek(viaMount.get(), 0, SEEK_DATA) >= kMiB, true);
  EXPECT_EQ(::lseek(viaMount.get(), 3 * kMiB, SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);

  std::string data(300000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 13);
  writeFile(m("src"), data);
  UniqueFd in(::open(m("src").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd out(::open(m("dst").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  ASSERT_TRUE(in && out);
  size_t copied = 0;
  while (copied < data.size()) {
    ssize_t n = ::copy_file_range(in.get(), nullptr, out.get(), nullptr, data.size() - copied, 0);
    ASSERT_GT(n, 0) << std::strerror(errno);
    copied += static_cast<size_t>(n);
  }
  out.reset();
  EXPECT_EQ(readFile(h("dst")), data);
}

// Locks are kept by the client's kernel (the server implements no lock requests): they hold
// between the client's processes, not against processes on the host.
TEST_F(MountTest, PosixLocksAndFlockHoldBetweenClientProcesses) {
  startAll();
  writeFile(m("f"), "0123456789");
  UniqueFd first(::open(m("f").c_str(), O_RDWR | O_CLOEXEC));
  UniqueFd second(::open(m("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(first && second);
  ASSERT_EQ(::flock(first.get(), LOCK_EX), 0);
  EXPECT_EQ(::flock(second.get(), LOCK_EX | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  ASSERT_EQ(::flock(first.get(), LOCK_UN), 0);
  EXPECT_EQ(::flock(second.get(), LOCK_EX | LOCK_NB), 0);

  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = 2;
  lock.l_len = 3;
  ASSERT_EQ(::fcntl(first.get(), F_SETLK, &lock), 0);
  const pid_t self = ::getpid();
  pid_t child = ::fork();
  if (child == 0) {
    int fd = ::open(m("f").c_str(), O_RDWR | O_CLOEXEC);
    struct flock probe {};
    probe.l_type = F_WRLCK;
    probe.l_whence = SEEK_SET;
    probe.l_start = 0;
    probe.l_len = 10;
    if (fd < 0 || ::fcntl(fd, F_GETLK, &probe) != 0) ::_exit(1);
    if (probe.l_type != F_WRLCK || probe.l_pid != self || probe.l_start != 2) ::_exit(2);
    probe.l_type = F_WRLCK;
    if (::fcntl(fd, F_SETLK, &probe) == 0 || (errno != EAGAIN && errno != EACCES)) ::_exit(3);
    probe.l_start = 5;  // just after the parent's range
    probe.l_len = 5;
    if (::fcntl(fd, F_SETLK, &probe) != 0) ::_exit(4);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST_F(MountTest, CallerCredentialsDecidePermissionsOnTheHost) {
  fs::create_directory(h("shared"));
  fs::permissions(h("shared"), fs::perms(0777));
  fs::create_directory(h("group"));
  ASSERT_EQ(::chown(h("group").c_str(), 0, 4242), 0);
  fs::permissions(h("group"), fs::perms(0070));
  std::ofstream(h("rootonly")) << "secret";
  fs::permissions(h("rootonly"), fs::perms(0600));
  startAll();

  int result = runAsNobody({4242}, 027, [&] {
    if (openErrno(m("denied"), O_CREAT | O_WRONLY) != EACCES) return 1;
    if (openErrno(m("rootonly"), O_RDONLY) != EACCES) return 2;
    if (openErrno(m("shared/mine"), O_CREAT | O_WRONLY, 0666) != 0) return 3;
    if (::mkdir(m("shared/mydir").c_str(), 0777) != 0) return 4;
    if (openErrno(m("group/viagroup"), O_CREAT | O_WRONLY) != 0) return 5;
    if (::chmod(m("rootonly").c_str(), 0666) == 0 || errno != EPERM) return 6;
    if (::unlink(m("rootonly").c_str()) == 0 || errno != EACCES) return 7;
    if (::access(m("rootonly").c_str(), R_OK) == 0 || errno != EACCES) return 8;
    if (::access(m("shared/mine").c_str(), W_OK) != 0) return 9;
    return 0;
  });
  EXPECT_EQ(result, 0);
  struct stat st;
  ASSERT_EQ(::stat(h("shared/mine").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_EQ(st.st_gid, 65534u);
  EXPECT_EQ(st.st_mode & 0777, 0640u);  // 0666 under umask 027
  ASSERT_EQ(::stat(h("shared/mydir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0750u);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_FALSE(fs::exists(h("denied")));
  EXPECT_TRUE(fs::exists(h("group/viagroup")));

  // Without the supplementary group the group-only directory is closed.
  EXPECT_EQ(runAsNobody({}, 022, [&] { return openErrno(m("group/nogroup"), O_CREAT | O_WRONLY); }),
            EACCES);
  EXPECT_FALSE(fs::exists(h("group/nogroup")));
}

}  // namespace
}  // namespace fcvm::fusepipe
