#include "uffd-server/uffd_handshake.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "base/error.h"

namespace fcvm::uffd {
namespace {

using Json = nlohmann::json;

[[noreturn]] void refuse(const std::string& reason) { throw Error("uffd handshake: " + reason); }

// nlohmann keeps the last of repeated keys without a word; the parse callback sees each key of a
// region object (depth 2) and remembers the first repeat, so it can be refused.
Json parseRejectingRepeatedKeys(std::string_view text) {
  std::set<std::string> keys;
  std::string repeated;
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start && depth == 1) keys.clear();
    if (event == Json::parse_event_t::key && depth == 2 && repeated.empty() &&
        !keys.insert(parsed.get<std::string>()).second) {
      repeated = parsed.get<std::string>();
    }
    return true;
  };
  Json value;
  try {
    value = Json::parse(text, callback);
  } catch (const Json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    refuse(fmt::format("not JSON: {}", e.what()));
  }
  if (!repeated.empty()) refuse(fmt::format("field \"{}\" given twice", repeated));
  return value;
}

uint64_t unsignedField(const Json& object, const char* name, size_t index) {
  const auto it = object.find(name);
  if (it == object.end()) refuse(fmt::format("region {}: missing \"{}\"", index, name));
  if (!it->is_number_unsigned()) {
    refuse(fmt::format("region {}: \"{}\" is not an unsigned integer", index, name));
  }
  return it->get<uint64_t>();
}

GuestRegion decodeRegion(const Json& object, size_t index) {
  if (!object.is_object()) refuse(fmt::format("region {} is not an object", index));
  static const std::set<std::string, std::less<>> kKnown = {"base_host_virt_addr", "size", "offset",
                                                            "page_size", "page_size_kib"};
  for (const auto& [key, value] : object.items()) {
    if (!kKnown.contains(key)) refuse(fmt::format("region {}: unknown field \"{}\"", index, key));
  }
  GuestRegion region;
  region.base = unsignedField(object, "base_host_virt_addr", index);
  region.size = unsignedField(object, "size", index);
  region.offset = unsignedField(object, "offset", index);
  const bool bytes = object.contains("page_size");
  const bool legacy = object.contains("page_size_kib");  // bytes despite the name
  if (!bytes && !legacy) refuse(fmt::format("region {}: missing \"page_size\"", index));
  region.pageSize = unsignedField(object, bytes ? "page_size" : "page_size_kib", index);
  if (bytes && legacy && unsignedField(object, "page_size_kib", index) != region.pageSize) {
    refuse(fmt::format("region {}: \"page_size\" and \"page_size_kib\" differ", index));
  }
  return region;
}

void checkRegion(const GuestRegion& r, size_t index, uint64_t imageSize, uint64_t pageSize) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  if (r.pageSize != pageSize) {
    refuse(fmt::format("region {}: page size {} but the snapshot's is {}", index, r.pageSize,
                       pageSize));
  }
  if (r.size == 0) refuse(fmt::format("region {}: size 0", index));
  if (r.base % pageSize || r.size % pageSize || r.offset % pageSize) {
    refuse(fmt::format("region {}: base, size or offset not aligned to {}", index, pageSize));
  }
  if (r.base > kMax - r.size) refuse(fmt::format("region {}: base + size overflows", index));
  if (r.offset > kMax - r.size) refuse(fmt::format("region {}: offset + size overflows", index));
  if (r.offset + r.size > imageSize) {
    refuse(fmt::format("region {}: image range {:#x}+{:#x} beyond the image's {:#x} bytes", index,
                       r.offset, r.size, imageSize));
  }
}

// Regions are disjoint when, sorted by `start`, each ends before the next begins.
template <typename Start>
void checkDisjoint(std::vector<GuestRegion> regions, Start start, const char* where) {
  std::sort(regions.begin(), regions.end(),
            [&](const GuestRegion& a, const GuestRegion& b) { return start(a) < start(b); });
  for (size_t i = 1; i < regions.size(); ++i) {
    if (start(regions[i - 1]) + regions[i - 1].size > start(regions[i])) {
      refuse(fmt::format("regions overlap {} at {:#x}", where, start(regions[i])));
    }
  }
}

}  // namespace

std::vector<GuestRegion> decodeHandshake(std::string_view json, uint64_t imageSize,
                                         uint64_t expectedPageSize) {
  const Json value = parseRejectingRepeatedKeys(json);
  if (!value.is_array()) refuse("not a JSON array");
  if (value.empty() || value.size() > kMaxGuestRegions) {
    refuse(fmt::format("{} regions (1 to {} expected)", value.size(), kMaxGuestRegions));
  }
  std::vector<GuestRegion> regions;
  for (size_t i = 0; i < value.size(); ++i) {
    regions.push_back(decodeRegion(value[i], i));
    checkRegion(regions.back(), i, imageSize, expectedPageSize);
  }
  checkDisjoint(
      regions, [](const GuestRegion& r) { return r.offset; }, "in the image");
  std::sort(regions.begin(), regions.end(),
            [](const GuestRegion& a, const GuestRegion& b) { return a.base < b.base; });
  checkDisjoint(
      regions, [](const GuestRegion& r) { return r.base; }, "in host addresses");
  return regions;
}

}  // namespace fcvm::uffd
