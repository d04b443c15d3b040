// The file-system workloads of fcvm's volume benchmarks. The same code measures directories on
// the host (`make bench-fuse-pipe`: the host's own, passthrough_ll, fuse-pipe) and in a guest
// (`make bench-volumes`: the guest's disk, virtio-9p, fuse-pipe over --map's channel), so the two
// tables describe the same work. Each workload returns seconds: a whole pass, or per operation.
//
// Only the C++ library and base/error, base/unique_fd are needed: the guest side is a static
// binary in an initramfs.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace fcvm::fsbench {

// makeData's layout under DATA: small/0..1023 (4 KiB each), list/ (1000 empty files), big
// (bigSize bytes), scratch/ (where the writing workloads write and remove their files).
void makeData(const std::filesystem::path& data, size_t bigSize);

// 256 threads read the 1024 small files (open, read, close); the wall time of one pass.
double parallelReads(const std::filesystem::path& dir);
// `big`, read in 1 MiB reads.
double sequentialRead(const std::filesystem::path& dir, size_t size);
// `size` bytes written in 1 MiB writes and closed (no fsync: the page cache and the transport
// are measured, not the disk); then removed.
double sequentialWrite(const std::filesystem::path& dir, size_t size);
// Per operation: a 4 KiB write followed by fsync.
double fsyncWrites(const std::filesystem::path& dir, int count);
// Per operation: statx(AT_STATX_FORCE_SYNC), which makes FUSE (and 9p) ask its server.
double getattrLatency(const std::filesystem::path& dir, int count);
double openCloseLatency(const std::filesystem::path& dir, int count);
double createUnlinkLatency(const std::filesystem::path& dir, int count);
// Per pass over list/ (opendir, readdir to the end, closedir).
double readdirLatency(const std::filesystem::path& dir, int count);

enum class RowKind {
  kThroughput,    // moves data or entries in bulk
  kPerOperation,  // one round trip after another
};

// One workload's figures, one per target (medians of its samples, in seconds; NaN where a target
// gave none).
struct Row {
  std::string workload;
  RowKind kind;
  std::string unit;  // of the printed figures: "ms" or "us"
  double scale;      // seconds to unit
  std::vector<double> figures;
};

// Runs `once` `repeat` times on each target directory, round by round (what the machine does
// meanwhile falls on all targets alike), prints each target's samples as it goes and returns
// the medians. A sample may be NaN (none); the median is of the others.
Row measureRoundRobin(const std::string& workload, RowKind kind, const std::string& unit,
                      double scale, const std::vector<std::filesystem::path>& targets,
                      const std::vector<std::string>& names,
                      const std::function<double(const std::filesystem::path&)>& once, int repeat);

struct SuiteOptions {
  size_t bigSize = 64u << 20;  // of `big`, read and written whole
  bool quick = false;          // fewer rounds and operations
  double operations = 1.0;     // scales the per-operation counts (a guest under TCG is slower)
  // Before each read of the row "same, file changed": make `big` new to the target in `dir`
  // (a FUSE filesystem that keeps its page cache for unchanged files then reads through).
  std::function<void(const std::filesystem::path& dir)> changeBig;
  // Takes each sample: calls `sample` and returns its seconds, or NaN for none (the target hung).
  // Unset: calls it. The host bench checks for SIGINT first; the guest runs each sample in a
  // child it can kill, because 9p can hang.
  std::function<double(const std::string& workload, const std::string& target,
                       const std::function<double()>& sample)>
      takeSample;
};

// Every workload above on each target's data (made by makeData), in a fixed order.
std::vector<Row> runSuite(const std::vector<std::filesystem::path>& targets,
                          const std::vector<std::string>& names, const SuiteOptions& options);

// A ratio column: figures[numerator] / figures[denominator], headed `title`.
struct Ratio {
  size_t numerator;
  size_t denominator;
  std::string title;
};

// The rows as a table: one column per target, then the ratios (lower is better throughout).
void printTable(const std::vector<Row>& rows, const std::vector<std::string>& names,
                const std::vector<Ratio>& ratios);

}  // namespace fcvm::fsbench
