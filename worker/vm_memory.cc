#include "worker/vm_memory.h"

#include <fmt/format.h>

#include <charconv>

#include "base/error.h"
#include "base/small_file.h"

namespace fcvm::worker {

std::optional<uint64_t> kilobyteField(std::string_view text, std::string_view key) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    if (!line.starts_with(key) || line.size() <= key.size() || line[key.size()] != ':') continue;
    std::string_view rest = line.substr(key.size() + 1);
    size_t digits = rest.find_first_not_of(' ');
    if (digits == std::string_view::npos) throw Error(fmt::format("{}: no value", key));
    rest = rest.substr(digits);
    uint64_t kib = 0;
    auto [after, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), kib);
    if (ec != std::errc() || std::string_view(after, rest.data() + rest.size() - after) != " kB") {
      throw Error(fmt::format("{}: not a number of kB", key));
    }
    if (kib > UINT64_MAX / 1024) throw Error(fmt::format("{}: out of range", key));
    return kib * 1024;
  }
  return std::nullopt;
}

GuestMemory parseGuestMeminfo(std::string_view text) {
  if (text.size() > kMaxMeminfoBytes) throw Error("the guest's meminfo is too long");
  auto total = kilobyteField(text, "MemTotal");
  auto available = kilobyteField(text, "MemAvailable");
  if (!total || !available) throw Error("the guest's meminfo lacks MemTotal or MemAvailable");
  if (*total == 0 || *available > *total) {
    throw Error(fmt::format("the guest's meminfo is inconsistent: {} bytes available of {}",
                            *available, *total));
  }
  return GuestMemory{*total, *available};
}

VmmMemory readVmmMemory(pid_t pid) {
  std::string path = fmt::format("/proc/{}/smaps_rollup", pid);
  auto rollup = readSmallFile(path);
  auto pss = kilobyteField(rollup, "Pss");
  auto anon = kilobyteField(rollup, "Anonymous");
  if (!pss || !anon) throw Error(path + " lacks Pss or Anonymous");
  return VmmMemory{*pss, *anon};
}

}  // namespace fcvm::worker
