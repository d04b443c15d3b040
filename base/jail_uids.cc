#include "base/jail_uids.h"

#include <grp.h>
#include <pwd.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_field.h"

namespace fcvm {

JailUids JailUids::load(const std::filesystem::path& file) {
  JailUids uids;
  std::ifstream in(file);
  if (!in) {
    std::error_code ec;
    if (file.empty() || !std::filesystem::exists(file, ec)) return uids;
    throw Error(fmt::format("{}: cannot be read", file.string()));
  }
  try {
    auto config = nlohmann::json::parse(in);
    if (!config.is_object() || !config.contains("jail")) return uids;
    const auto& jail = config.at("jail");
    if (!jail.is_object()) throw Error("jail: not an object");
    for (const auto& [key, value] : jail.items()) {
      if (key != "first_uid" && key != "uids") {
        throw Error(fmt::format("jail: unknown key '{}' (first_uid, uids)", key));
      }
    }
    uids.first = optionalJsonField<uid_t>(jail, "first_uid").value_or(uids.first);
    uids.count = optionalJsonField<uint32_t>(jail, "uids").value_or(uids.count);
    // Not root's or a system account's; the last uid (-1) means "no change" to set*id calls.
    if (uids.first < 65536 || uids.count == 0 ||
        uint64_t{uids.first} + uids.count > std::numeric_limits<uid_t>::max()) {
      throw Error(fmt::format("jail: {} uids from {} is not a range of unprivileged uids",
                              uids.count, uids.first));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON: {}", file.string(), e.what()));
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", file.string(), e.what()));
  }
  return uids;
}

std::optional<std::string> JailUids::ownedByAnAccount() const {
  std::optional<std::string> found;
  ::setpwent();
  for (passwd* user = ::getpwent(); user != nullptr && !found; user = ::getpwent()) {
    if (contains(user->pw_uid))
      found = fmt::format("user '{}' (uid {})", user->pw_name, user->pw_uid);
  }
  ::endpwent();
  ::setgrent();
  for (group* g = ::getgrent(); g != nullptr && !found; g = ::getgrent()) {
    if (contains(g->gr_gid)) found = fmt::format("group '{}' (gid {})", g->gr_name, g->gr_gid);
  }
  ::endgrent();
  return found;
}

}  // namespace fcvm
