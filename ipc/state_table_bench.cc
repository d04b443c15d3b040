// `make bench`: what a concurrent writer costs the state table's lock-free readers, and what
// readers cost the writer. Each figure is printed beside its uncontended baseline, as a ratio.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "ipc/state_table.h"
#include "tests/support/temp_dir.h"

namespace {

using fcvm::ipc::StateTable;
using fcvm::ipc::StateTableWriter;
using fcvm::ipc::VmRecord;
using Clock = std::chrono::steady_clock;

constexpr fcvm::ipc::TableCapacity kCapacity{};  // the supervisor's real size
constexpr int kReadPasses = 2000;
constexpr int kPublishes = 2000000;

VmRecord record(uint64_t n) {
  VmRecord r;
  r.id.assign(fmt::format("{:016x}", n));
  r.name.assign(fmt::format("vm-{}", n));
  r.state = fcvm::ipc::VmState::kRunning;
  r.createdAtNs = static_cast<int64_t>(n);
  return r;
}

// Full-table reads per second (every slot copied out and validated).
double readRate(const StateTable& reader) {
  auto start = Clock::now();
  size_t seen = 0;
  for (int i = 0; i < kReadPasses; ++i) seen += reader.vms().readAll().size();
  std::chrono::duration<double> took = Clock::now() - start;
  if (seen == 0) fmt::print("(table empty)\n");
  return kReadPasses / took.count();
}

double publishRate(StateTableWriter& writer) {
  auto start = Clock::now();
  for (int i = 0; i < kPublishes; ++i) writer.publishVm(i % kCapacity.vms, record(i));
  std::chrono::duration<double> took = Clock::now() - start;
  return kPublishes / took.count();
}

}  // namespace

int main() {
  fcvm::testing::TempDir dir("fcvm-bench");
  auto path = dir / "state";
  auto writer = StateTableWriter::open(path, kCapacity, 0600);
  for (size_t i = 0; i < kCapacity.vms; ++i) writer.publishVm(i, record(i));
  auto reader = StateTable::openReader(path);

  double readAlone = readRate(reader);
  double publishAlone = publishRate(writer);

  std::atomic<bool> stop{false};
  std::thread background([&] {
    for (uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
      writer.publishVm(n % kCapacity.vms, record(n));
    }
  });
  double readContended = readRate(reader);
  stop = true;
  background.join();

  stop = false;
  std::thread readers([&] {
    while (!stop.load(std::memory_order_relaxed)) (void)reader.vms().readAll();
  });
  double publishContended = publishRate(writer);
  stop = true;
  readers.join();

  fmt::print("state table, {} VM slots ({} bytes per slot)\n", kCapacity.vms,
             sizeof(fcvm::ipc::PublishedSlot<VmRecord>));
  fmt::print("{:<34} {:>14} {:>14} {:>8}\n", "", "baseline", "contended", "ratio");
  fmt::print("{:<34} {:>14.0f} {:>14.0f} {:>8.2f}\n", "full-table reads/s (writer busy)", readAlone,
             readContended, readContended / readAlone);
  fmt::print("{:<34} {:>14.0f} {:>14.0f} {:>8.2f}\n", "record publishes/s (reader busy)",
             publishAlone, publishContended, publishContended / publishAlone);
  return 0;
}
