#include "fuse-pipe/fs_workloads.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <latch>
#include <thread>

#include "base/error.h"
#include "base/unique_fd.h"

namespace fcvm::fsbench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

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

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double perOp(int count, const std::function<void()>& op) {
  op();  // warm: the first lookup of a name is not what is measured
  auto t0 = Clock::now();
  for (int i = 0; i < count; ++i) op();
  return seconds(Clock::now() - t0) / count;
}

}  // namespace

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
  if (failures) throw Error("parallel reads failed " + std::to_string(failures));
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
  if (total != size) throw Error("short read of big");
  return seconds(elapsed);
}

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
    if (entries != kListEntries + 2) throw Error("readdir: wrong entry count");
  });
}

Row measureRoundRobin(const std::string& workload, RowKind kind, const std::string& unit,
                      double scale, const std::vector<fs::path>& targets,
                      const std::vector<std::string>& names,
                      const std::function<double(const fs::path&)>& once, int repeat) {
  std::vector<std::vector<double>> samples(targets.size());
  for (int i = 0; i < repeat; ++i) {
    for (size_t t = 0; t < targets.size(); ++t) samples[t].push_back(once(targets[t]));
  }
  Row row{workload, kind, unit, scale, {}};
  for (size_t t = 0; t < targets.size(); ++t) {
    std::erase_if(samples[t], [](double v) { return std::isnan(v); });
    std::sort(samples[t].begin(), samples[t].end());
    row.figures.push_back(samples[t].empty() ? std::nan("") : samples[t][samples[t].size() / 2]);
    std::string all;
    for (double v : samples[t]) all += " " + std::to_string(static_cast<int64_t>(v * scale));
    std::printf("  %-34s %-15s %10.1f %s  (all:%s)\n", workload.c_str(), names[t].c_str(),
                row.figures.back() * scale, unit.c_str(), all.c_str());
  }
  (void)std::fflush(stdout);
  return row;
}

std::vector<Row> runSuite(const std::vector<fs::path>& targets,
                          const std::vector<std::string>& names, const SuiteOptions& options) {
  const bool quick = options.quick;
  const size_t big = options.bigSize;
  auto count = [&](int n) { return std::max(10, static_cast<int>(n * options.operations)); };
  std::vector<Row> rows;
  auto measure = [&](const std::string& workload, RowKind kind, const std::string& unit,
                     double scale, const std::function<double(const fs::path&)>& once, int repeat) {
    rows.push_back(measureRoundRobin(
        workload, kind, unit, scale, targets, names,
        [&](const fs::path& dir) {
          if (!options.takeSample) return once(dir);
          auto at = std::find(targets.begin(), targets.end(), dir) - targets.begin();
          return options.takeSample(workload, names[at], [&] { return once(dir); });
        },
        repeat));
  };
  const std::string mib = std::to_string(big >> 20) + " MiB";
  measure("parallel read 256 thr, 1024x4KiB", RowKind::kThroughput, "ms", 1e3, parallelReads,
          quick ? 3 : 7);
  measure(
      "sequential read " + mib, RowKind::kThroughput, "ms", 1e3,
      [&](const fs::path& d) { return sequentialRead(d, big); }, quick ? 1 : 3);
  measure(
      "  same, file changed", RowKind::kThroughput, "ms", 1e3,
      [&](const fs::path& d) {
        if (options.changeBig) options.changeBig(d);
        return sequentialRead(d, big);
      },
      quick ? 1 : 3);
  measure(
      "sequential write " + mib, RowKind::kThroughput, "ms", 1e3,
      [&](const fs::path& d) { return sequentialWrite(d, big); }, quick ? 1 : 3);
  measure(
      "4 KiB write + fsync", RowKind::kPerOperation, "us", 1e6,
      [&](const fs::path& d) { return fsyncWrites(d, count(quick ? 50 : 100)); }, quick ? 1 : 5);
  measure(
      "getattr (statx FORCE_SYNC)", RowKind::kPerOperation, "us", 1e6,
      [&](const fs::path& d) { return getattrLatency(d, count(quick ? 2000 : 5000)); },
      quick ? 1 : 5);
  measure(
      "open + close", RowKind::kPerOperation, "us", 1e6,
      [&](const fs::path& d) { return openCloseLatency(d, count(quick ? 1000 : 2000)); },
      quick ? 1 : 5);
  measure(
      "create + unlink", RowKind::kPerOperation, "us", 1e6,
      [&](const fs::path& d) { return createUnlinkLatency(d, count(quick ? 500 : 600)); },
      quick ? 1 : 5);
  measure(
      "readdir of 1000 entries", RowKind::kThroughput, "us", 1e6,
      [&](const fs::path& d) { return readdirLatency(d, 20); }, quick ? 1 : 5);
  return rows;
}

void printTable(const std::vector<Row>& rows, const std::vector<std::string>& names,
                const std::vector<Ratio>& ratios) {
  std::printf("\n%-34s", "workload (time, lower is better)");
  for (const auto& name : names) std::printf(" %14s", name.c_str());
  for (const auto& ratio : ratios) std::printf(" %9s", ratio.title.c_str());
  std::printf("\n");
  for (const auto& r : rows) {
    std::printf("%-34s", r.workload.c_str());
    for (double f : r.figures) {
      if (std::isnan(f)) {
        std::printf(" %14s", "none");
      } else {
        std::printf(" %10.1f %-3s", f * r.scale, r.unit.c_str());
      }
    }
    for (const auto& ratio : ratios) {
      double v = r.figures[ratio.numerator] / r.figures[ratio.denominator];
      if (std::isnan(v)) {
        std::printf(" %9s", "-");
      } else {
        std::printf(" %8.2fx", v);
      }
    }
    std::printf("\n");
  }
  (void)std::fflush(stdout);
}

}  // namespace fcvm::fsbench
