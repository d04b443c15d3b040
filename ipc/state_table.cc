#include "ipc/state_table.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <boost/interprocess/file_mapping.hpp>
#include <cstring>

#include "base/error.h"

namespace fcvm::ipc {
namespace bip = boost::interprocess;
namespace {

constexpr char kMagic[8] = {'F', 'C', 'V', 'M', 'S', 'T', 'A', 'T'};
constexpr uint32_t kLayoutVersion = 2;  // 2: VmRecord.snapshotId

struct TableHeader {
  char magic[8];
  uint32_t layoutVersion;
  uint32_t headerSize;
  uint32_t vmCapacity;
  uint32_t snapshotCapacity;
  uint32_t serveCapacity;
  uint32_t vmRecordSize;
  uint32_t snapshotRecordSize;
  uint32_t serveRecordSize;
  uint64_t writerEpoch;  // written by the writer only, read through atomic_ref
  uint64_t writerPid;    // likewise
  uint64_t reserved;
};
static_assert(sizeof(TableHeader) == 64);

size_t vmOffset() { return sizeof(TableHeader); }
size_t snapshotOffset(const TableCapacity& c) {
  return vmOffset() + c.vms * sizeof(PublishedSlot<VmRecord>);
}
size_t serveOffset(const TableCapacity& c) {
  return snapshotOffset(c) + c.snapshots * sizeof(PublishedSlot<SnapshotRecord>);
}
size_t tableSize(const TableCapacity& c) {
  return serveOffset(c) + c.serves * sizeof(PublishedSlot<ServeRecord>);
}

TableHeader makeHeader(const TableCapacity& c) {
  TableHeader h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.layoutVersion = kLayoutVersion;
  h.headerSize = sizeof(TableHeader);
  h.vmCapacity = c.vms;
  h.snapshotCapacity = c.snapshots;
  h.serveCapacity = c.serves;
  h.vmRecordSize = sizeof(VmRecord);
  h.snapshotRecordSize = sizeof(SnapshotRecord);
  h.serveRecordSize = sizeof(ServeRecord);
  return h;
}

// Checks a header copied out of a mapping of `size` bytes; returns the capacity it describes.
std::optional<TableCapacity> checkHeader(const TableHeader& h, size_t size, std::string* why) {
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) {
    *why = "not an fcvm state table";
    return std::nullopt;
  }
  TableCapacity c{h.vmCapacity, h.snapshotCapacity, h.serveCapacity};
  TableHeader expected = makeHeader(c);
  if (h.layoutVersion != kLayoutVersion || h.headerSize != expected.headerSize ||
      h.vmRecordSize != expected.vmRecordSize ||
      h.snapshotRecordSize != expected.snapshotRecordSize ||
      h.serveRecordSize != expected.serveRecordSize) {
    *why = fmt::format("layout version {} is not this build's {}", h.layoutVersion, kLayoutVersion);
    return std::nullopt;
  }
  if (c.vms > (1u << 20) || c.snapshots > (1u << 20) || c.serves > (1u << 20) ||
      tableSize(c) != size) {
    *why = fmt::format("size {} does not match its header", size);
    return std::nullopt;
  }
  return c;
}

uint64_t& headerWord(char* base, uint64_t TableHeader::*field) {
  return reinterpret_cast<TableHeader*>(base)->*field;
}

bip::mapped_region mapFile(const std::filesystem::path& path, bip::mode_t mode) {
  try {
    bip::file_mapping file(path.c_str(), mode);
    return bip::mapped_region(file, mode);
  } catch (const bip::interprocess_exception& e) {
    int err = e.get_native_error();
    throw Error(fmt::format("map state table {}: {}", path.string(),
                            err != 0 ? errnoText(err) : std::string(e.what())));
  }
}

// Writes a fresh, empty table under a temporary name and renames it over `path`.
void createTable(const std::filesystem::path& path, const TableCapacity& capacity, mode_t mode) {
  auto tmp = path;
  tmp += fmt::format(".new.{}", ::getpid());
  UniqueFd fd(static_cast<int>(
      checkSys(::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode),
               "create state table {}", tmp.string())));
  checkSys(::fchmod(fd.get(), mode), "chmod {}", tmp.string());
  checkSys(::ftruncate(fd.get(), static_cast<off_t>(tableSize(capacity))), "size {}", tmp.string());
  TableHeader header = makeHeader(capacity);
  checkSys(::pwrite(fd.get(), &header, sizeof header, 0), "write {}", tmp.string());
  checkSys(::rename(tmp.c_str(), path.c_str()), "rename {} to {}", tmp.string(), path.string());
}

}  // namespace

StateTable::StateTable(bip::mapped_region region, TableCapacity capacity)
    : region_(std::move(region)), capacity_(capacity) {}

StateTable StateTable::openReader(const std::filesystem::path& path) {
  auto region = mapFile(path, bip::read_only);
  if (region.get_size() < sizeof(TableHeader)) {
    throw Error(
        fmt::format("state table {}: truncated ({} bytes)", path.string(), region.get_size()));
  }
  TableHeader header;
  std::memcpy(&header, region.get_address(), sizeof header);
  std::string why;
  auto capacity = checkHeader(header, region.get_size(), &why);
  if (!capacity) throw Error(fmt::format("state table {}: {}", path.string(), why));
  return StateTable(std::move(region), *capacity);
}

SlotArray<VmRecord> StateTable::vms() const {
  return {reinterpret_cast<PublishedSlot<VmRecord>*>(base() + vmOffset()), capacity_.vms};
}

SlotArray<SnapshotRecord> StateTable::snapshots() const {
  return {reinterpret_cast<PublishedSlot<SnapshotRecord>*>(base() + snapshotOffset(capacity_)),
          capacity_.snapshots};
}

SlotArray<ServeRecord> StateTable::serves() const {
  return {reinterpret_cast<PublishedSlot<ServeRecord>*>(base() + serveOffset(capacity_)),
          capacity_.serves};
}

uint64_t StateTable::writerEpoch() const {
  return std::atomic_ref<uint64_t>(headerWord(base(), &TableHeader::writerEpoch))
      .load(std::memory_order_acquire);
}

int32_t StateTable::writerPid() const {
  return static_cast<int32_t>(std::atomic_ref<uint64_t>(headerWord(base(), &TableHeader::writerPid))
                                  .load(std::memory_order_acquire));
}

StateTableWriter::StateTableWriter(StateTable table, UniqueFd lock, bool adopted)
    : StateTable(std::move(table)), lock_(std::move(lock)), adopted_(adopted) {}

StateTableWriter StateTableWriter::open(const std::filesystem::path& path, TableCapacity capacity,
                                        mode_t mode) {
  auto lockPath = path;
  lockPath += ".lock";
  UniqueFd lock(static_cast<int>(
      checkSys(::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600), "open {}",
               lockPath.string())));
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) == -1) {
    if (errno == EWOULDBLOCK) {
      throw Error(fmt::format("state table {} already has a live writer", path.string()));
    }
    throw SysError(errno, "lock " + lockPath.string());
  }

  bool adopted = false;
  try {
    auto existing = StateTable::openReader(path);
    adopted = existing.capacity_.vms == capacity.vms &&
              existing.capacity_.snapshots == capacity.snapshots &&
              existing.capacity_.serves == capacity.serves;
  } catch (const Error&) {
    adopted = false;  // missing or unusable: replaced below
  }
  if (!adopted) createTable(path, capacity, mode);

  auto region = mapFile(path, bip::read_write);
  StateTableWriter writer(StateTable(std::move(region), capacity), std::move(lock), adopted);
  char* base = writer.base();
  std::atomic_ref<uint64_t>(headerWord(base, &TableHeader::writerPid))
      .store(static_cast<uint64_t>(::getpid()), std::memory_order_release);
  std::atomic_ref<uint64_t>(headerWord(base, &TableHeader::writerEpoch))
      .fetch_add(1, std::memory_order_acq_rel);
  return writer;
}

template <typename T>
void StateTableWriter::publish(SlotArray<T> array, size_t index, const T& r) {
  if (index >= array.size_) {
    throw Error(fmt::format("state table slot {} out of range ({})", index, array.size_));
  }
  array.slots_[index].publish(r);
}

template void StateTableWriter::publish(SlotArray<VmRecord>, size_t, const VmRecord&);
template void StateTableWriter::publish(SlotArray<SnapshotRecord>, size_t, const SnapshotRecord&);
template void StateTableWriter::publish(SlotArray<ServeRecord>, size_t, const ServeRecord&);

}  // namespace fcvm::ipc
