// fuse_pipe_bench: the same workloads on the same data, side by side, on the host directory
// itself, through libfuse's passthrough_ll example and through fuse-pipe over a Unix socket.
// `make bench-fuse-pipe` runs it (root and /dev/fuse needed). Every mount and child process is
// owned by an object that removes it, also when a workload fails or the run is interrupted.
//
//   fuse_pipe_bench [--dir PARENT] [--quick] [--workers N] [--readers N]
//
// --workers and --readers are passed to fuse-pipe serve and mount (defaults: theirs).
//
// Caching is each filesystem's default: one second of attribute and entry caching for both FUSE
// filesystems; passthrough_ll drops the page cache at every open, fuse-pipe keeps it when the file
// is unchanged on the host since its previous open (keep_cache). So the rounds after the first of
// "parallel read" and "sequential read" read fuse-pipe's page cache; "same, file changed on host"
// touches the host file (utimensat) before every run, so that fuse-pipe too reads through the
// transport. getattr is measured with statx(AT_STATX_FORCE_SYNC), which makes FUSE ask its
// server, so that it is a round trip and not a kernel cache hit.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"

#ifndef PASSTHROUGH_LL_BINARY
#error "needs libfuse's passthrough_ll.c example (libfuse3-dev); see fuse-pipe/CMakeLists.txt"
#endif

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using fcvm::SysError;
using fcvm::UniqueFd;

std::atomic<bool> interrupted = false;

void checkInterrupted() {
  if (interrupted) throw std::runtime_error("interrupted");
}

// ---- Processes and mounts, each owned by one object. ----

class Child {
 public:
  // Spawns argv; with `readyFd`, passes a pipe as fd 3 and waits for the child to write to it.
  Child(std::vector<std::string> argv, bool waitReady) {
    int fds[2] = {-1, -1};
    if (waitReady && ::pipe2(fds, O_CLOEXEC) != 0) throw SysError(errno, "pipe2");
    UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (waitReady) posix_spawn_file_actions_adddup2(&actions, writeEnd.get(), 3);
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int rc = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw SysError(rc, "spawn " + argv[0]);
    if (!waitReady) return;
    writeEnd.reset();
    char byte;
    ssize_t n;
    do {
      n = ::read(readEnd.get(), &byte, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
      kill();
      throw std::runtime_error(argv[0] + " exited before it was ready");
    }
  }
  ~Child() { kill(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Waits for the child to exit; returns its exit code (-1 if killed by a signal).
  int wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  void terminate() {
    if (pid_ > 0) ::kill(pid_, SIGTERM);
    if (pid_ > 0) wait();
  }

 private:
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  pid_t pid_ = -1;
};

// Lazily unmounts `path` on destruction if something is mounted there.
class MountGuard {
 public:
  explicit MountGuard(std::string path) : path_(std::move(path)) {}
  ~MountGuard() { ::umount2(path_.c_str(), MNT_DETACH); }
  MountGuard(const MountGuard&) = delete;
  MountGuard& operator=(const MountGuard&) = delete;

 private:
  std::string path_;
};

// A directory removed with its contents on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const fs::path& parent) {
    std::string pattern = (parent / "fuse-pipe-bench.XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw SysError(errno, "mkdtemp " + pattern);
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// One way to reach the data: a directory, and whatever keeps it mounted.
struct Target {
  std::string name;
  fs::path dir;
  std::vector<std::unique_ptr<Child>> processes;  // stopped before the guard unmounts
  std::unique_ptr<MountGuard> guard;
  ~Target() {
    for (auto it = processes.rbegin(); it != processes.rend(); ++it) (*it)->terminate();
  }
};

// ---- Data. ----

constexpr int kSmallFiles = 1024;
constexpr size_t kSmallSize = 4096;
constexpr int kParallelWorkers = 256;
constexpr int kListEntries = 1000;

void writeWhole(const fs::path& path, size_t size, char fill) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) throw SysError(errno, "create " + path.string());
  std::vector<char> chunk(std::min<size_t>(size, 1 << 20), fill);
  for (size_t done = 0; done < size;) {
    size_t n = std::min(chunk.size(), size - done);
    if (::write(fd.get(), chunk.data(), n) != static_cast<ssize_t>(n)) {
      throw SysError(errno, "write " + path.string());
    }
    done += n;
  }
}

void makeData(const fs::path& data, size_t bigSize) {
  fs::create_directories(data / "small");
  for (int i = 0; i < kSmallFiles; ++i) {
    writeWhole(data / "small" / std::to_string(i), kSmallSize, static_cast<char>('a' + i % 26));
  }
  fs::create_directories(data / "list");
  for (int i = 0; i < kListEntries; ++i) writeWhole(data / "list" / std::to_string(i), 0, 0);
  writeWhole(data / "big", bigSize, 'b');
  fs::create_directories(data / "scratch");
  ::sync();
}

// ---- Workloads: each returns seconds (total or per operation). ----

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// 256 threads read the 1024 small files (4 each: open, read, close); the wall time of one pass.
double parallelReads(const fs::path& dir) {
  std::latch start(1), done(kParallelWorkers);
  std::atomic<int> failures = 0;
  std::vector<std::jthread> workers;
  workers.reserve(kParallelWorkers);
  for (int w = 0; w < kParallelWorkers; ++w) {
    workers.emplace_back([&, w] {
      start.wait();
      char buffer[kSmallSize];
      for (int i = w; i < kSmallFiles; i += kParallelWorkers) {
        UniqueFd fd(::open((dir / "small" / std::to_string(i)).c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd || ::read(fd.get(), buffer, sizeof buffer) != static_cast<ssize_t>(kSmallSize)) {
          ++failures;
        }
      }
      done.count_down();
    });
  }
  auto t0 = Clock::now();
  start.count_down();
  done.wait();
  auto elapsed = Clock::now() - t0;
  if (failures) throw std::runtime_error("parallel reads failed " + std::to_string(failures));
  return seconds(elapsed);
}

double sequentialRead(const fs::path& dir, size_t size) {
  UniqueFd fd(::open((dir / "big").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw SysError(errno, "open big");
  std::vector<char> buffer(1 << 20);
  size_t total = 0;
  auto t0 = Clock::now();
  while (true) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) throw SysError(errno, "read big");
    if (n == 0) break;
    total += static_cast<size_t>(n);
  }
  auto elapsed = Clock::now() - t0;
  if (total != size) throw std::runtime_error("short read of big");
  return seconds(elapsed);
}

// Writes `size` bytes in 1 MiB writes and closes the file (no fsync: the page cache and the
// transport are measured, not the disk).
double sequentialWrite(const fs::path& dir, size_t size) {
  fs::path path = dir / "scratch" / "written";
  std::vector<char> buffer(1 << 20, 'w');
  auto t0 = Clock::now();
  {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) throw SysError(errno, "create " + path.string());
    for (size_t done = 0; done < size; done += buffer.size()) {
      if (::write(fd.get(), buffer.data(), buffer.size()) != static_cast<ssize_t>(buffer.size())) {
        throw SysError(errno, "write " + path.string());
      }
    }
  }
  auto elapsed = Clock::now() - t0;
  ::unlink(path.c_str());
  ::sync();
  return seconds(elapsed);
}

// Per operation: a 4 KiB write followed by fsync.
double fsyncWrites(const fs::path& dir, int count) {
  ::sync();  // not the writeback of an earlier workload
  fs::path path = dir / "scratch" / "fsynced";
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) throw SysError(errno, "create " + path.string());
  char block[4096];
  std::memset(block, 'f', sizeof block);
  auto t0 = Clock::now();
  for (int i = 0; i < count; ++i) {
    if (::pwrite(fd.get(), block, sizeof block, static_cast<off_t>(i) * 4096) != 4096 ||
        ::fsync(fd.get()) != 0) {
      throw SysError(errno, "write+fsync " + path.string());
    }
  }
  auto elapsed = Clock::now() - t0;
  fd.reset();
  ::unlink(path.c_str());
  return seconds(elapsed) / count;
}

double perOp(int count, const std::function<void()>& op) {
  op();  // warm: the first lookup of a name is not what is measured
  auto t0 = Clock::now();
  for (int i = 0; i < count; ++i) op();
  return seconds(Clock::now() - t0) / count;
}

double getattrLatency(const fs::path& dir, int count) {
  std::string path = (dir / "small" / "0").string();
  return perOp(count, [&] {
    struct statx st;
    if (::statx(AT_FDCWD, path.c_str(), AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &st) != 0) {
      throw SysError(errno, "statx " + path);
    }
  });
}

double openCloseLatency(const fs::path& dir, int count) {
  std::string path = (dir / "small" / "1").string();
  return perOp(count, [&] {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw SysError(errno, "open " + path);
  });
}

double createUnlinkLatency(const fs::path& dir, int count) {
  std::string path = (dir / "scratch" / "created").string();
  return perOp(count, [&] {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) throw SysError(errno, "create " + path);
    fd.reset();
    if (::unlink(path.c_str()) != 0) throw SysError(errno, "unlink " + path);
  });
}

double readdirLatency(const fs::path& dir, int count) {
  std::string path = (dir / "list").string();
  return perOp(count, [&] {
    DIR* d = ::opendir(path.c_str());
    if (!d) throw SysError(errno, "opendir " + path);
    int entries = 0;
    while (::readdir(d)) ++entries;
    ::closedir(d);
    if (entries != kListEntries + 2) throw std::runtime_error("readdir: wrong entry count");
  });
}

// ---- Setup of the three targets. ----

std::unique_ptr<Target> hostTarget(const fs::path& data) {
  auto t = std::make_unique<Target>();
  t->name = "host";
  t->dir = data;
  return t;
}

std::unique_ptr<Target> passthroughLlTarget(const fs::path& data, const fs::path& mountpoint) {
  auto t = std::make_unique<Target>();
  t->name = "passthrough_ll";
  t->dir = mountpoint;
  fs::create_directories(mountpoint);
  t->guard = std::make_unique<MountGuard>(mountpoint);
  // Without -f it daemonizes after mounting: its exit says the mount exists. Unmounting ends the
  // daemon.
  Child starter({PASSTHROUGH_LL_BINARY, "-o", "source=" + data.string(), mountpoint.string()},
                false);
  if (starter.wait() != 0) throw std::runtime_error("passthrough_ll failed to mount");
  return t;
}

std::unique_ptr<Target> fusePipeTarget(const fs::path& data, const fs::path& mountpoint,
                                       const fs::path& socket, const std::string& workers,
                                       const std::string& readers) {
  auto t = std::make_unique<Target>();
  t->name = "fuse-pipe";
  t->dir = mountpoint;
  fs::create_directories(mountpoint);
  t->guard = std::make_unique<MountGuard>(mountpoint);
  // FUSE_PIPE_BENCH_BINARY: another build of fuse-pipe to compare, e.g. before a change.
  const char* override = ::getenv("FUSE_PIPE_BENCH_BINARY");
  const std::string binary = override && *override ? override : FUSE_PIPE_BINARY;
  t->processes.push_back(std::make_unique<Child>(
      std::vector<std::string>{binary, "--log-level", "warn", "serve", "--root", data.string(),
                               "--listen", "unix:" + socket.string(), "--ready-fd", "3"},
      true));
  t->processes.push_back(std::make_unique<Child>(
      std::vector<std::string>{binary, "--log-level", "warn", "mount", "--connect",
                               "unix:" + socket.string(), mountpoint.string(), "--readers", readers,
                               "--ready-fd", "3"},
      true));
  return t;
}

struct Row {
  std::string workload;
  std::string unit;  // of the figures: "s" totals or "us/op"
  double scale;      // seconds to unit
  std::vector<double> figures;
};

void printTable(const std::vector<Row>& rows, const std::vector<std::string>& names) {
  std::printf("\n%-34s %14s %14s %14s %9s %9s %9s\n", "workload (time, lower is better)",
              names[0].c_str(), names[1].c_str(), names[2].c_str(), "pll/host", "fp/host",
              "fp/pll");
  for (const auto& r : rows) {
    std::printf("%-34s", r.workload.c_str());
    for (double f : r.figures) {
      std::printf(" %10.1f %-3s", f * r.scale, r.unit.c_str());
    }
    std::printf(" %8.2fx %8.2fx %8.2fx\n", r.figures[1] / r.figures[0], r.figures[2] / r.figures[0],
                r.figures[2] / r.figures[1]);
  }
}

int run(int argc, char** argv) {
  fs::path parent = fs::temp_directory_path();
  bool quick = false;
  std::string workers = "4", readers = "2";  // fuse-pipe's defaults
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--dir" && i + 1 < argc) {
      parent = argv[++i];
    } else if (arg == "--workers" && i + 1 < argc) {
      workers = argv[++i];
    } else if (arg == "--readers" && i + 1 < argc) {
      readers = argv[++i];
    } else if (arg == "--quick") {
      quick = true;
    } else {
      (void)std::fprintf(stderr, "usage: %s [--dir PARENT] [--quick] [--workers N] [--readers N]\n",
                         argv[0]);
      return 2;
    }
  }
  if (::geteuid() != 0) throw std::runtime_error("needs root (mounts)");
  const size_t bigSize = quick ? (64u << 20) : (1u << 30);
  const int rounds = quick ? 3 : 7;

  ScratchDir scratch(parent);
  const fs::path data = scratch.path() / "data";
  std::printf("fuse_pipe_bench: data in %s (%zu MiB sequential file)\n", data.c_str(),
              bigSize >> 20);
  makeData(data, bigSize);

  std::vector<std::unique_ptr<Target>> targets;
  targets.push_back(hostTarget(data));
  targets.push_back(passthroughLlTarget(data, scratch.path() / "mnt-pll"));
  targets.push_back(fusePipeTarget(data, scratch.path() / "mnt-fp", scratch.path() / "fp.sock",
                                   workers, readers));
  std::vector<std::string> names;
  names.reserve(targets.size());
  for (auto& t : targets) names.push_back(t->name);

  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::vector<Row> rows;
  auto measure = [&](const std::string& workload, const std::string& unit, double scale,
                     const std::function<double(const fs::path&)>& once, int repeat) {
    // Round by round, each target in turn: what the machine does meanwhile (the disk writing back
    // an earlier workload, other processes) falls on all three alike.
    std::vector<std::vector<double>> samples(targets.size());
    for (int i = 0; i < repeat; ++i) {
      for (size_t t = 0; t < targets.size(); ++t) {
        checkInterrupted();
        samples[t].push_back(once(targets[t]->dir));
      }
    }
    Row row{workload, unit, scale, {}};
    for (size_t t = 0; t < targets.size(); ++t) {
      row.figures.push_back(median(samples[t]));
      std::sort(samples[t].begin(), samples[t].end());
      std::string all;
      for (double v : samples[t]) all += " " + std::to_string(static_cast<int64_t>(v * scale));
      std::printf("  %-34s %-15s %10.1f %s  (all:%s)\n", workload.c_str(), targets[t]->name.c_str(),
                  row.figures.back() * scale, unit.c_str(), all.c_str());
    }
    (void)std::fflush(stdout);
    rows.push_back(row);
  };

  measure("parallel read 256 thr, 1024x4KiB", "ms", 1e3, parallelReads, rounds);
  measure(
      "sequential read " + std::to_string(bigSize >> 20) + " MiB", "ms", 1e3,
      [&](const fs::path& d) { return sequentialRead(d, bigSize); }, quick ? 1 : 3);
  measure(
      "  same, file changed on host", "ms", 1e3,
      [&](const fs::path& d) {
        if (::utimensat(AT_FDCWD, (data / "big").c_str(), nullptr, 0) != 0) {
          throw SysError(errno, "utimensat big");
        }
        return sequentialRead(d, bigSize);
      },
      quick ? 1 : 3);
  measure(
      "sequential write " + std::to_string(bigSize >> 20) + " MiB", "ms", 1e3,
      [&](const fs::path& d) { return sequentialWrite(d, bigSize); }, quick ? 1 : 3);
  measure(
      "4 KiB write + fsync", "us", 1e6,
      [&](const fs::path& d) { return fsyncWrites(d, quick ? 50 : 100); }, quick ? 1 : 5);
  measure(
      "getattr (statx FORCE_SYNC)", "us", 1e6,
      [&](const fs::path& d) { return getattrLatency(d, quick ? 2000 : 5000); }, quick ? 1 : 5);
  measure(
      "open + close", "us", 1e6,
      [&](const fs::path& d) { return openCloseLatency(d, quick ? 1000 : 2000); }, quick ? 1 : 5);
  measure(
      "create + unlink", "us", 1e6,
      [&](const fs::path& d) { return createUnlinkLatency(d, quick ? 500 : 600); }, quick ? 1 : 5);
  measure(
      "readdir of 1000 entries", "us", 1e6,
      [&](const fs::path& d) { return readdirLatency(d, 20); }, quick ? 1 : 5);

  printTable(rows, names);
  const Row& par = rows[0];
  const Row& seq = rows[2];  // through the transport
  const Row& sync = rows[4];
  std::printf(
      "\ntargets: parallel reads within 3x of host: %.2fx %s; within 1.3x of passthrough_ll: "
      "%.2fx %s\n",
      par.figures[2] / par.figures[0], par.figures[2] / par.figures[0] <= 3 ? "met" : "MISSED",
      par.figures[2] / par.figures[1], par.figures[2] / par.figures[1] <= 1.3 ? "met" : "MISSED");
  std::printf(
      "         sequential read (changed on host) >= half of passthrough_ll's throughput: %.2f "
      "%s\n",
      seq.figures[1] / seq.figures[2], seq.figures[1] / seq.figures[2] >= 0.5 ? "met" : "MISSED");
  std::printf("         fsync writes within 1.2x of host: %.2fx %s\n",
              sync.figures[2] / sync.figures[0],
              sync.figures[2] / sync.figures[0] <= 1.2 ? "met" : "MISSED");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  struct sigaction action {};
  action.sa_handler = [](int) { interrupted = true; };
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    (void)std::fprintf(stderr, "fuse_pipe_bench: %s\n", e.what());
    return 1;
  }
}
