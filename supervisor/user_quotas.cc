#include "supervisor/user_quotas.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace fcvm::supervisor {
namespace {

using nlohmann::json;

template <typename T>
std::optional<T> limit(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) return std::nullopt;
  const auto& value = j.at(key);
  if (!value.is_number_unsigned() || value.get<uint64_t>() > std::numeric_limits<T>::max()) {
    throw Error(fmt::format("{}.{}: not a count (a whole number from 0)", where, key));
  }
  return value.get<T>();
}

Quota quotaOf(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(fmt::format("{}: not an object", where));
  for (const auto& [key, value] : j.items()) {
    if (key != "vms" && key != "memory_mib" && key != "snapshots") {
      throw Error(fmt::format("{}: unknown limit '{}' (vms, memory_mib, snapshots)", where, key));
    }
  }
  return {limit<uint32_t>(j, "vms", where), limit<uint64_t>(j, "memory_mib", where),
          limit<uint32_t>(j, "snapshots", where)};
}

std::string plural(uint64_t n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

}  // namespace

UserQuotas UserQuotas::load(const std::filesystem::path& file) {
  UserQuotas quotas;
  quotas.file_ = file;
  if (file.empty()) return quotas;
  std::ifstream in(file);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return quotas;
    throw Error(fmt::format("{}: cannot be read", file.string()));
  }
  try {
    auto config = json::parse(in);
    if (!config.is_object()) throw Error("not a JSON object");
    for (const auto& [key, value] : config.items()) {
      // "jail" is base/jail_uids.h's, "startup_snapshots" startup_cache.h's.
      if (key != "quotas" && key != "jail" && key != "startup_snapshots") {
        throw Error(fmt::format("unknown setting '{}' (quotas, jail, startup_snapshots)", key));
      }
    }
    if (!config.contains("quotas")) return quotas;
    const auto& q = config.at("quotas");
    if (!q.is_object()) throw Error("quotas: not an object");
    for (const auto& [key, value] : q.items()) {
      if (key == "default") {
        quotas.default_ = quotaOf(value, "quotas.default");
      } else if (key == "uids") {
        if (!value.is_object()) throw Error("quotas.uids: not an object");
        for (const auto& [uid, quota] : value.items()) {
          if (uid.empty() || uid.size() > 10 ||
              uid.find_first_not_of("0123456789") != std::string::npos ||
              std::stoull(uid) > std::numeric_limits<uid_t>::max() - 1) {
            throw Error(fmt::format("quotas.uids: '{}' is not a uid", uid));
          }
          quotas.uids_[static_cast<uid_t>(std::stoull(uid))] = quotaOf(quota, "quotas.uids." + uid);
        }
      } else {
        throw Error(fmt::format("quotas: unknown key '{}' (default, uids)", key));
      }
    }
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON: {}", file.string(), e.what()));
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", file.string(), e.what()));
  }
  return quotas;
}

Quota UserQuotas::of(uid_t uid) const {
  if (auto it = uids_.find(uid); it != uids_.end()) {
    // A listed uid's own limits, the default's where it sets none.
    Quota quota = it->second;
    if (default_ && uid != 0) {
      if (!quota.vms) quota.vms = default_->vms;
      if (!quota.memoryMib) quota.memoryMib = default_->memoryMib;
      if (!quota.snapshots) quota.snapshots = default_->snapshots;
    }
    return quota;
  }
  if (uid == 0 || !default_) return {};
  return *default_;
}

void UserQuotas::checkVm(uid_t uid, const QuotaUsage& now, uint32_t memoryMib) const {
  auto quota = of(uid);
  if (quota.vms && *quota.vms == 0) {
    throw Error(fmt::format("uid {} may run no VMs (quota set in {})", uid, file_.string()));
  }
  if (quota.vms && now.vms + 1 > *quota.vms) {
    throw Error(
        fmt::format("uid {} has {} of its quota of {} (set in {}); stop or remove one first", uid,
                    plural(now.vms, "VM", "VMs"), plural(*quota.vms, "VM", "VMs"), file_.string()));
  }
  if (quota.memoryMib && now.memoryMib + memoryMib > *quota.memoryMib) {
    throw Error(fmt::format(
        "uid {} would use {} MiB of guest memory with this VM's {} MiB, over its quota of {} MiB "
        "(set in {})",
        uid, now.memoryMib + memoryMib, memoryMib, *quota.memoryMib, file_.string()));
  }
}

void UserQuotas::checkSnapshot(uid_t uid, const QuotaUsage& now) const {
  auto quota = of(uid);
  if (quota.snapshots && *quota.snapshots == 0) {
    throw Error(fmt::format("uid {} may keep no snapshots (quota set in {})", uid, file_.string()));
  }
  if (quota.snapshots && now.snapshots + 1 > *quota.snapshots) {
    throw Error(fmt::format("uid {} has {} of its quota of {} (set in {}); remove one first", uid,
                            plural(now.snapshots, "snapshot", "snapshots"),
                            plural(*quota.snapshots, "snapshot", "snapshots"), file_.string()));
  }
}

}  // namespace fcvm::supervisor
