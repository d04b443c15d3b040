// The uids jailed VMMs run as (worker/qemu_jail.h): each with the gid of the same number, one per
// running VM. A range far above what user databases and subordinate-id ranges hand out, unless the
// host's administrator sets another in the configuration file (Paths::configFile):
//
//   {"jail": {"first_uid": 1900000000, "uids": 65536}}
//
// No user of the host may own a uid in the range: a jailed QEMU would share its rights.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace fcvm {

struct JailUids {
  uid_t first = 1'900'000'000;
  uint32_t count = 65536;

  // The range of configuration file `file`'s "jail" object; the default if the file or the
  // object is missing. Throws fcvm::Error naming the file and what is wrong with it.
  static JailUids load(const std::filesystem::path& file);

  // A user or group of the host's databases (as far as they can be listed) whose id lies in the
  // range, named ("user 'x' (uid N)"); none if there is none. A jailed QEMU with that id would
  // have its files' rights.
  std::optional<std::string> ownedByAnAccount() const;

  bool contains(uint64_t id) const { return id >= first && id - first < count; }
};

}  // namespace fcvm
